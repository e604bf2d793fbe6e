//! W8A8 products: FP8 (e4m3) activations with per-token scales times FP8 weights with
//! per-output-channel scales (issue 9).
//!
//! ```text
//! y[m, n] = dtype( s_m · w_n · Σ_k e4m3(x_codes[m, k]) · e4m3(w_codes[n, k])  (+ bias[n]) )
//! ```
//! the sum accumulated in f32. The activation codes and power-of-two token scales come from
//! [`crate::act_quant`]; the weight codes are `[N, K]` row-major e4m3 bytes, four per i32 along
//! `K` (first code in the lowest byte), the layout FP8 tensor cores read ("TN").
//!
//! * On CUDA devices whose cuBLASLt plans FP8 products with per-row scale vectors (Hopper and
//!   newer, cuBLASLt 12.9+), one cuBLASLt GEMM on FP8 tensor cores, scales and bias applied in
//!   its epilogue (`matmul::cublas::fp8_linear`), with fast accumulation by default
//!   ([`fast_accumulation`]).
//! * Elsewhere, and as the reference, the same numerics in tensor ops: the codes' values
//!   (exact in f16, bf16 and f32), a product with f32 accumulation, then the scales and the
//!   bias in f32 and one rounding to `dtype`.

#[cfg(feature = "cuda")]
pub mod cube;
pub mod reference;

use burn::tensor::{DType, Int, Tensor};

use crate::Impl;

/// `x` `[M, K]` (`K` a multiple of 4) through a W8A8 product with `w_codes` `[N, K/4]`,
/// `w_scale` `[N]` f32 and an optional `bias` `[N]`; `lut` is the `[256]` e4m3 table (used by
/// the reference path). Returns `[M, N]` in `dtype`.
pub fn linear(x: Tensor<2>, w_codes: &Tensor<2, Int>, w_scale: &Tensor<1>, bias: Option<&Tensor<1>>, lut: &Tensor<1>, dtype: DType, which: Impl) -> Tensor<2> {
    let (codes, scale) = crate::act_quant::quantize_fp8_rows(x, which);
    product(codes, scale, w_codes.clone(), w_scale.clone(), bias.cloned(), lut.clone(), dtype, which)
}

/// The product of quantised operands (see the module docs): `x_codes` `[M, K/4]` i32,
/// `x_scale` `[M]` f32, `w_codes` `[N, K/4]` i32, `w_scale` `[N]` f32, `bias` `[N]`.
#[allow(clippy::too_many_arguments)]
pub fn product(
    x_codes: Tensor<2, Int>,
    x_scale: Tensor<1>,
    w_codes: Tensor<2, Int>,
    w_scale: Tensor<1>,
    bias: Option<Tensor<1>>,
    lut: Tensor<1>,
    dtype: DType,
    which: Impl,
) -> Tensor<2> {
    let ([m, kq], [n, wkq]) = (x_codes.dims(), w_codes.dims());
    assert_eq!(kq, wkq, "fp8 product: activation codes [{m}, {kq}] and weight codes [{n}, {wkq}] differ in K/4");
    assert_eq!((x_scale.dims(), w_scale.dims()), ([m], [n]), "fp8 product: scales must be [{m}] and [{n}]");
    #[cfg(feature = "cuda")]
    if which == Impl::Auto {
        if let Some(y) = cube::product(&x_codes, &x_scale, &w_codes, &w_scale, bias.as_ref(), dtype) {
            return y;
        }
    }
    reference::product(x_codes, x_scale, w_codes, w_scale, bias, lut, dtype, which)
}

/// Whether W8A8 products on FP8 tensor cores use cuBLASLt's fast accumulation (the default;
/// `SANA_FP8_FAST_ACCUM=0` for the precise mode, see `matmul::cublas::fp8_fast_accumulation`).
/// Always false without CUDA (the emulation accumulates in f32).
pub fn fast_accumulation() -> bool {
    #[cfg(feature = "cuda")]
    {
        crate::matmul::cublas::fp8_fast_accumulation()
    }
    #[cfg(not(feature = "cuda"))]
    {
        false
    }
}

/// Chooses the accumulation of the FP8 tensor-core products planned from now on (tests and
/// comparisons); no effect without CUDA.
pub fn set_fast_accumulation(fast: bool) {
    #[cfg(feature = "cuda")]
    crate::matmul::cublas::set_fp8_fast_accumulation(fast);
    #[cfg(not(feature = "cuda"))]
    let _ = fast;
}

/// Whether `device` runs W8A8 products on FP8 tensor cores (probes cuBLASLt once per device).
pub fn tensor_cores(device: &burn::tensor::Device) -> bool {
    #[cfg(feature = "cuda")]
    {
        cube::tensor_cores(device)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = device;
        false
    }
}

/// `[rows, cols]` row-major e4m3 codes packed four per i32 along the row, first code in the
/// lowest byte (`cols` a multiple of 4): the weight layout of [`product`].
pub fn pack_rows(codes: &[u8], rows: usize, cols: usize) -> Vec<i32> {
    assert!(cols % 4 == 0 && codes.len() == rows * cols, "pack_rows: {} codes for [{rows}, {cols}]", codes.len());
    codes.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect()
}
