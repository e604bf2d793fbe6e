//! The host reference of the NVFP4 activation quantisation: the values read back, encoded by
//! [`super::encode_rows`], the codes (or their values) uploaded.

use burn::tensor::{DType, FloatDType, Int, Tensor, TensorData};

use super::{ScaleLayout, Weight};
use crate::Impl;

fn host_values(x: Tensor<2>) -> Vec<f32> {
    // After the cast the data is f32, so reading it as f32 cannot fail.
    x.cast(burn::tensor::FloatDType::F32).into_data().try_to_vec::<f32>().expect("f32 data after a cast to f32")
}

pub fn quantize_rows(x: Tensor<2>, layout: ScaleLayout, weight_global: f32) -> (Tensor<2, Int>, Tensor<1, Int>, Tensor<1>) {
    let [rows, cols] = x.dims();
    let device = x.device();
    let enc = super::encode_rows(&host_values(x), rows, cols, layout, weight_global);
    let words = enc.scales.len();
    (
        Tensor::from_data(TensorData::new(enc.codes, [rows, cols / 8]), (&device, DType::I32)),
        Tensor::from_data(TensorData::new(enc.scales, [words]), (&device, DType::I32)),
        Tensor::from_data(TensorData::new(enc.globals.to_vec(), [3]), (&device, DType::F32)),
    )
}

pub fn fake_quantize_rows(x: Tensor<2>) -> Tensor<2> {
    let [rows, cols] = x.dims();
    let (device, dtype) = (x.device(), x.dtype());
    let enc = super::encode_rows(&host_values(x), rows, cols, ScaleLayout::RowMajor, 1.0);
    let values = super::decode_rows(&enc, rows, cols, ScaleLayout::RowMajor);
    let t = Tensor::<2>::from_data(TensorData::new(values, [rows, cols]), (&device, DType::F32));
    if dtype == DType::F32 {
        t
    } else {
        t.cast(burn::tensor::FloatDType::from(dtype))
    }
}

/// `w` as `[N, K]` f32 values (with the global scale).
pub fn dequant_weight(w: &Weight) -> Tensor<2> {
    dequant_codes(w) * w.global
}

/// `w`'s codes times their block scales, `[N, K]` f32, without the global scale (each value
/// has at most six significant bits, so it is exact in f32, bf16 and TF32): nibbles and scale
/// bytes shifted out of their words and looked up in the e2m1 and e4m3 tables.
pub fn dequant_codes(w: &Weight) -> Tensor<2> {
    let [n, k8] = w.codes.dims();
    let k = 8 * k8;
    let device = w.codes.device();
    let ints = |v: Vec<i32>, len: usize| Tensor::<1, Int>::from_data(TensorData::new(v, [len]), (&device, DType::I32));
    let floats = |v: Vec<f32>, len: usize| Tensor::<1>::from_data(TensorData::new(v, [len]), (&device, DType::F32));
    let nibbles = w
        .codes
        .clone()
        .unsqueeze_dim::<3>(2)
        .repeat_dim(2, 8)
        .bitwise_right_shift(ints((0..8).map(|i| 4 * i).collect(), 8).reshape([1, 1, 8]).expand([n, k8, 8]))
        .bitwise_and_scalar(15)
        .reshape([n * k]);
    let e2m1: Vec<f32> = (0..16).map(|c| if c & 8 != 0 { -super::E2M1[c & 7] } else { super::E2M1[c & 7] }).collect();
    let values = floats(e2m1, 16).select(0, nibbles).reshape([n, k]);
    let groups = k / super::GROUP;
    let bytes = w
        .scales_rows
        .clone()
        .unsqueeze_dim::<3>(2)
        .repeat_dim(2, 4)
        .bitwise_right_shift(ints(vec![0, 8, 16, 24], 4).reshape([1, 1, 4]).expand([n, groups, 4]))
        .bitwise_and_scalar(255)
        .reshape([n * k / super::BLOCK]);
    let e4m3: Vec<f32> = (0..256u32).map(|c| if c <= super::E4M3_MAX_CODE { super::e4m3_value(c) } else { 0.0 }).collect();
    let scales = floats(e4m3, 256).select(0, bytes).reshape([n, k / super::BLOCK, 1]).repeat_dim(2, super::BLOCK).reshape([n, k]);
    values * scales
}

/// The W4A4 product as tensor ops (any burn device), in the FP4 tensor cores' order: the
/// activations' NVFP4 values ([`super::fake_quantize_rows`]) times the weight's codes and
/// block scales, both exact in any float format (TF32 included, which a GPU's f32 product
/// may use), accumulated in f32; then the weight's global scale (cuBLASLt's alpha), the bias,
/// and one rounding to `dtype`.
pub fn linear(x: Tensor<2>, w: &Weight, bias: Option<&Tensor<1>>, dtype: DType, inner: Impl) -> Tensor<2> {
    let n = w.codes.dims()[0];
    let xq = super::fake_quantize_rows(x.cast(FloatDType::F32), inner);
    let mut y = crate::matmul::matmul_to_f32(xq, dequant_codes(w).transpose(), inner) * w.global;
    if let Some(b) = bias {
        y = y + b.clone().cast(FloatDType::F32).reshape([1, n]);
    }
    if dtype == DType::F32 {
        y
    } else {
        y.cast(FloatDType::from(dtype))
    }
}
