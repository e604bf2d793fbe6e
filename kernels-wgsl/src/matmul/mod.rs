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

#[cfg(feature = "cube")]
use burn::tensor::DType;
use burn::tensor::Tensor;

use crate::Impl;

/// `a · b` for same-rank tensors with equal batch dims (`[.., M, K] · [.., K, N]`).
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>, which: Impl) -> Tensor<D> {
    #[cfg(feature = "cube")]
    if which == Impl::Auto && a.dtype() == DType::F32 && b.dtype() == DType::F32 && crate::is_cube_device(&a.device()) {
        return cube::matmul_f32(a, b);
    }
    let _ = which;
    a.matmul(b)
}
