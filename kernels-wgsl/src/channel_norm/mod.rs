//! The Wan VAE's channel RMS norm, optionally followed by SiLU, fused (issue 9): as tensor
//! ops it was about ten passes over the decoder's largest activations (a cast, square, sum,
//! sqrt, clamp, divide, multiply, cast back, then SiLU), 13% of a 480p decode's GPU time.
//!
//! ```text
//! out[b, c, s] = act(x[b, c, s] / max(‖x[b, :, s]‖₂, 1e-12) · scale[c])   x [B, C, S], S = T·H·W
//! ```
//!
//! with `scale = √C·γ` in f32 and `act` SiLU or the identity. The kernel reads `x` twice (the
//! sum of squares, then the output) and writes once, in f32 whatever the storage dtype,
//! rounding once at the end; the reference rounds the norm's output before SiLU.

#[cfg(feature = "cube")]
pub mod cube;
pub mod reference;

use burn::tensor::{DType, Tensor};

use crate::Impl;

/// `x` `[B, C, ...]` normalised over axis 1 (module doc), `scale` `[C]` f32; SiLU after it
/// when `silu`. Returns `x`'s dtype.
pub fn rms_norm_channels<const D: usize>(x: Tensor<D>, scale: &Tensor<1>, silu: bool, which: Impl) -> Tensor<D> {
    assert!(D >= 2, "rms_norm_channels: x needs a channel axis");
    let c = x.dims()[1];
    assert_eq!(scale.dims(), [c], "rms_norm_channels: scale must be [{c}]");
    if which == Impl::Auto && crate::is_cube_device(&x.device()) && scale.dtype() == DType::F32 {
        #[cfg(feature = "cube")]
        return cube::rms_norm_channels(x, scale.clone(), silu);
    }
    reference::rms_norm_channels(x, scale, silu)
}
