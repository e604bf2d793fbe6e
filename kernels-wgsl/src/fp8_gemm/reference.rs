//! The W8A8 product as tensor ops (any burn device): the emulation that runs where FP8
//! tensor cores do not, and the reference the cuBLASLt path is tested against.

use burn::tensor::{DType, FloatDType, Int, Tensor};

use crate::dequant::dequant_fp8;
use crate::matmul::matmul_to_f32;
use crate::Impl;

/// `inner`: how the dequantisation and the product run (the kernels on CubeCL devices with
/// `Impl::Auto`; each is tested against its own reference).
#[allow(clippy::too_many_arguments)]
pub fn product(
    x_codes: Tensor<2, Int>,
    x_scale: Tensor<1>,
    w_codes: Tensor<2, Int>,
    w_scale: Tensor<1>,
    bias: Option<Tensor<1>>,
    lut: Tensor<1>,
    dtype: DType,
    inner: Impl,
) -> Tensor<2> {
    let ([m, kq], [n, _]) = (x_codes.dims(), w_codes.dims());
    let device = x_codes.device();
    // The codes' values, exact in any float dtype (unit scales); f32 accumulation.
    let ones = Tensor::<2>::ones([1, 4 * kq], (&device, DType::F32));
    let a = dequant_fp8(x_codes, ones.clone(), lut.clone(), dtype, inner);
    let w = dequant_fp8(w_codes, ones, lut, dtype, inner);
    let mut y = matmul_to_f32(a, w.transpose(), inner) * x_scale.reshape([m, 1]) * w_scale.reshape([1, n]);
    if let Some(b) = bias {
        y = y + b.cast(FloatDType::F32).reshape([1, n]);
    }
    if dtype == DType::F32 {
        y
    } else {
        y.cast(FloatDType::from(dtype))
    }
}
