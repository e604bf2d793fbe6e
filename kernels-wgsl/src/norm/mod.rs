//! The DiT's normalisations, fused (issue 9: they were ~10 memory-bound passes each):
//!
//! ```text
//! layer_norm_modulate:  out = LN(x) · (1 + scale) + shift     x [B, N, D]; scale, shift [B, T, D], T ∈ {1, N}
//!                       LN(x) = (x − mean) / sqrt(var + eps)  (no affine; mean, var over D in f32)
//! rms_norm:             out = x / sqrt(mean(x²) + eps) · weight      x [.., D]; weight [D]
//! ```
//!
//! The kernel reads a row once into the cache and writes it once, doing the arithmetic in f32
//! and rounding once to the storage dtype. The reference is the tensor-op sequence the models
//! used before, which rounds `LN(x)` (or `x / rms`) to the storage dtype before the affine
//! part; in f32 the two agree to summation order.

#[cfg(feature = "cube")]
pub mod cube;
pub mod reference;

use burn::tensor::Tensor;

use crate::Impl;

/// `LN(x) · (1 + scale) + shift` (module doc); `scale` and `shift` have one row per sample
/// (`T = 1`) or per token (`T = N`). Returns `x`'s dtype.
pub fn layer_norm_modulate(x: Tensor<3>, scale: Tensor<3>, shift: Tensor<3>, eps: f64, which: Impl) -> Tensor<3> {
    let [b, n, d] = x.dims();
    let [sb, t, sd] = scale.dims();
    assert!(sb == b && sd == d && (t == 1 || t == n), "layer_norm_modulate: scale {:?} for x {:?}", scale.dims(), x.dims());
    assert_eq!(shift.dims(), scale.dims(), "layer_norm_modulate: shift and scale shapes differ");
    if which == Impl::Auto && crate::is_cube_device(&x.device()) && scale.dtype() == x.dtype() && shift.dtype() == x.dtype() {
        #[cfg(feature = "cube")]
        return cube::layer_norm_modulate(x, scale, shift, eps);
    }
    reference::layer_norm_modulate(x, scale, shift, eps)
}

/// RMSNorm over the last axis with a learned weight (module doc). Returns `x`'s dtype.
pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: &Tensor<1>, eps: f64, which: Impl) -> Tensor<D> {
    let d = x.dims()[D - 1];
    assert_eq!(weight.dims(), [d], "rms_norm: weight must be [{d}]");
    if which == Impl::Auto && crate::is_cube_device(&x.device()) && weight.dtype() == x.dtype() {
        #[cfg(feature = "cube")]
        return cube::rms_norm(x, weight.clone(), eps);
    }
    reference::rms_norm(x, weight, eps)
}
