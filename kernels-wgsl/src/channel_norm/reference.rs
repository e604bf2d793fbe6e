//! Plain tensor-op reference of the fused channel RMS norm (any burn device): what the Wan
//! VAE computed before the kernel.

use burn::tensor::{activation, DType, FloatDType, Tensor};

pub fn rms_norm_channels<const D: usize>(x: Tensor<D>, scale: &Tensor<1>, silu: bool) -> Tensor<D> {
    let dtype = x.dtype();
    let x = if dtype == DType::F32 { x } else { x.cast(FloatDType::F32) };
    let norm = x.clone().square().sum_dim(1).sqrt().clamp_min(1e-12);
    let mut shape = [1usize; D];
    shape[1] = scale.dims()[0];
    let y = x / norm * scale.clone().reshape(shape);
    let y = if dtype == DType::F32 { y } else { y.cast(FloatDType::from(dtype)) };
    if silu {
        activation::silu(y)
    } else {
        y
    }
}
