//! FP8 and NVFP4 dequantisation as plain tensor ops (any burn device).

use burn::tensor::{DType, Int, Tensor};

pub fn dequant_fp8(packed: Tensor<2, Int>, scale: Tensor<2>, lut: Tensor<1>, dtype: DType) -> Tensor<2> {
    let [inp, groups] = packed.dims();
    // Unpack the four codes of each i32 (an arithmetic shift may bring in sign bits; the
    // mask drops them), look each code up, scale per output channel.
    let bytes: Vec<Tensor<2, Int>> = (0..4).map(|k| packed.clone().bitwise_right_shift_scalar(8 * k as i64).bitwise_and_scalar(255)).collect();
    let codes = Tensor::stack::<3>(bytes, 2).reshape([inp * groups * 4]);
    let values = lut.select(0, codes).reshape([inp, groups * 4]) * scale;
    cast(values, dtype)
}

/// The `n` fields of `bits` bits in each i32 of `[rows, cols]`, lowest first: `[rows, cols·n]`.
fn unpack(packed: Tensor<2, Int>, bits: usize) -> Tensor<2, Int> {
    let [rows, cols] = packed.dims();
    let n = 32 / bits;
    let mask = (1i64 << bits) - 1;
    let fields: Vec<Tensor<2, Int>> =
        (0..n).map(|k| packed.clone().bitwise_right_shift_scalar((bits * k) as i64).bitwise_and_scalar(mask)).collect();
    Tensor::stack::<3>(fields, 2).reshape([rows, cols * n])
}

pub fn dequant_nvfp4(codes: Tensor<2, Int>, blocks: Tensor<2, Int>, global: Tensor<1>, e2m1: Tensor<1>, e4m3: Tensor<1>, dtype: DType) -> Tensor<2> {
    let [inp, groups] = codes.dims();
    let out = groups * 8;
    let values = e2m1.select(0, unpack(codes, 4).reshape([inp * out])).reshape([inp / 16, 16, out]);
    let scales = e4m3.select(0, unpack(blocks, 8).reshape([inp / 16 * out])).reshape([inp / 16, 1, out]);
    let w = (values * scales).reshape([inp, out]) * global.reshape([1, 1]);
    cast(w, dtype)
}

fn cast(x: Tensor<2>, dtype: DType) -> Tensor<2> {
    if x.dtype() == dtype {
        x
    } else {
        x.cast(burn::tensor::FloatDType::from(dtype))
    }
}
