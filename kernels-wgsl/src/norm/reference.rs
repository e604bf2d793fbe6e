//! Plain tensor-op references of the fused normalisations (any burn device): statistics in
//! f32, the normalised values rounded to the storage dtype, then the affine part in it.

use burn::tensor::{DType, FloatDType, Tensor};

fn to_f32<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.dtype() == DType::F32 { x } else { x.cast(FloatDType::F32) }
}

fn to_dtype<const D: usize>(x: Tensor<D>, dtype: DType) -> Tensor<D> {
    if x.dtype() == dtype { x } else { x.cast(FloatDType::from(dtype)) }
}

/// LayerNorm over the last axis, no affine parameters, statistics in f32.
pub fn layer_norm<const D: usize>(x: Tensor<D>, eps: f64) -> Tensor<D> {
    let dtype = x.dtype();
    let x = to_f32(x);
    let mean = x.clone().mean_dim(D - 1);
    let centered = x - mean;
    let var = centered.clone().square().mean_dim(D - 1);
    to_dtype(centered / (var + eps).sqrt(), dtype)
}

pub fn layer_norm_modulate(x: Tensor<3>, scale: Tensor<3>, shift: Tensor<3>, eps: f64) -> Tensor<3> {
    layer_norm(x, eps) * (scale + 1.0) + shift
}

pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: &Tensor<1>, eps: f64) -> Tensor<D> {
    let dtype = x.dtype();
    let x = to_f32(x);
    let ms = x.clone().square().mean_dim(D - 1);
    let y = to_dtype(x / (ms + eps).sqrt(), dtype);
    y * weight.clone().unsqueeze::<D>()
}
