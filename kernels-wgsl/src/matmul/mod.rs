//! Matrix products that keep f32 exact.
//!
//! burn's default CubeCL matmul runs f32 problems on tensor cores as TF32 where the device
//! has them (CUDA, Vulkan with cooperative matrices), about 1e-3 relative error per
//! product. With `--dtype f32` we promise f32 numerics (parity 1e-5 with the float64
//! reference), so f32 products on CubeCL devices go through cubek's unit (non-tensor-core)
//! routine instead. f16/bf16 products keep burn's default (tensor cores).
//!
//! The reference is burn's own `Tensor::matmul`, exact on the CPU backend.

#[cfg(feature = "cube")]
pub mod cube;
#[cfg(feature = "cuda")]
pub mod cublas;
#[cfg(feature = "cube")]
pub use cube::{matmul_half_routine, DEFAULT_HALF_ROUTINE, HALF_ROUTINES};

#[cfg(feature = "cube")]
use burn::tensor::DType;
use burn::tensor::Tensor;

use crate::Impl;

/// `a · b` of f16/bf16 operands with f32 accumulation and an f32 result (what flash
/// attention does for its logits): tensor cores without rounding the products' sum to the
/// operands' 8- or 11-bit mantissa. f32 operands go to [`matmul`].
pub fn matmul_to_f32<const D: usize>(a: Tensor<D>, b: Tensor<D>, which: Impl) -> Tensor<D> {
    use burn::tensor::FloatDType;
    if a.dtype() == burn::tensor::DType::F32 && b.dtype() == burn::tensor::DType::F32 {
        return matmul(a, b, which);
    }
    #[cfg(feature = "cube")]
    if which == Impl::Auto && crate::is_cube_device(&a.device()) {
        return cube::matmul_to_f32(a, b);
    }
    // Reference: the operands are exact in f32, so this differs only in summation order.
    matmul(a.cast(FloatDType::F32), b.cast(FloatDType::F32), which)
}

/// `a · b` accumulated in f32 and rounded once to `a`'s dtype: what [`matmul_to_f32`]
/// then a cast gives, without writing and re-reading the f32 product on CubeCL devices
/// (their half-precision GEMMs round from the f32 accumulators).
pub fn matmul_rounded<const D: usize>(a: Tensor<D>, b: Tensor<D>, which: Impl) -> Tensor<D> {
    let dtype = a.dtype();
    #[cfg(feature = "cube")]
    if which == Impl::Auto && a.dtype() == b.dtype() && matches!(dtype, DType::F16 | DType::BF16) && crate::is_cube_device(&a.device()) {
        return cube::matmul_half(a, b, false);
    }
    let out = matmul_to_f32(a, b, which);
    if out.dtype() == dtype {
        out
    } else {
        out.cast(burn::tensor::FloatDType::from(dtype))
    }
}

/// [`matmul_rounded`] of per-head operands `[B, H, M, K] · [B, H, K, N]`, returned with the
/// heads merged, `[B, M, H, N]`: row-major on CubeCL devices (on CUDA the GEMM writes that
/// layout itself), a view on the reference path.
pub fn matmul_rounded_merge_heads(a: Tensor<4>, b: Tensor<4>, which: Impl) -> Tensor<4> {
    #[cfg(feature = "cube")]
    if which == Impl::Auto && a.dtype() == b.dtype() && matches!(a.dtype(), DType::F16 | DType::BF16) && crate::is_cube_device(&a.device()) {
        return cube::matmul_half_heads_merged(a, b);
    }
    matmul_rounded(a, b, which).swap_dims(1, 2)
}

/// [`matmul`] of f32 operands for a result that is rounded to f16/bf16 afterwards (the
/// linear attention's sums in a 16-bit model): on CUDA TF32 tensor cores (operands rounded to
/// 10 explicit mantissa bits, 2^-11 relative, against the 2^-8 or 2^-11 of the final rounding;
/// f32 accumulation), elsewhere exactly [`matmul`]. The reference is exact f32.
pub fn matmul_fast_f32<const D: usize>(a: Tensor<D>, b: Tensor<D>, which: Impl) -> Tensor<D> {
    #[cfg(feature = "cube")]
    if which == Impl::Auto && a.dtype() == DType::F32 && b.dtype() == DType::F32 && crate::is_cube_device(&a.device()) {
        return cube::matmul_f32_fast(a, b);
    }
    matmul(a, b, which)
}

/// `a · b` for same-rank tensors with equal batch dims (`[.., M, K] · [.., K, N]`).
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>, which: Impl) -> Tensor<D> {
    #[cfg(feature = "cube")]
    if which == Impl::Auto && a.dtype() == DType::F32 && b.dtype() == DType::F32 && crate::is_cube_device(&a.device()) {
        return cube::matmul_f32(a, b);
    }
    #[cfg(feature = "cube")]
    if which == Impl::Auto && a.dtype() == b.dtype() && matches!(a.dtype(), DType::F16 | DType::BF16) && crate::is_cube_device(&a.device()) {
        return cube::matmul_half(a, b, false);
    }
    let _ = which;
    a.matmul(b)
}
