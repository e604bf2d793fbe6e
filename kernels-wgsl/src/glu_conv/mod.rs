//! The middle of SANA's GLU Mix-FFN (MODEL-SPEC §3.6c), fused: SiLU of the inverted
//! conv's output, the depth-wise 3x3 conv (stride 1, zero padding 1) over all `2·C`
//! channels, then the gate `a · SiLU(g)` of its two halves.
//!
//! ```text
//! s      = SiLU(h)                                   h    [M, H, W, 2C] (channels-last)
//! y[c]   = bias[c] + Σ_{dy,dx} taps[dy·3+dx, c] · s[y+dy-1, x+dx-1, c]
//! out[c] = y[c] · SiLU(y[c + C])                     out  [M, H, W, C]
//! ```
//!
//! As separate tensor ops this is about twenty passes over the `2C`-channel activations
//! (the largest tensor of the model: 13,440 channels at full size); the kernel reads them
//! once and writes only the gated half.

#[cfg(feature = "cube")]
pub mod cube;
pub mod reference;

use burn::tensor::Tensor;

use crate::Impl;

/// `h` `[M, H, W, 2C]` (pre-activation), `taps` `[9, 2C]` row-major over (dy, dx), `bias`
/// `[2C]`; returns `[M, H, W, C]` in `h`'s dtype.
pub fn glu_depthwise3x3(h: Tensor<4>, taps: Tensor<2>, bias: Tensor<1>, which: Impl) -> Tensor<4> {
    let c2 = h.dims()[3];
    assert!(c2 % 2 == 0, "glu_depthwise3x3: channel count {c2} must be even");
    assert_eq!(taps.dims(), [9, c2], "glu_depthwise3x3: taps must be [9, {c2}]");
    assert_eq!(bias.dims(), [c2], "glu_depthwise3x3: bias must be [{c2}]");
    if which == Impl::Auto && crate::is_cube_device(&h.device()) {
        #[cfg(feature = "cube")]
        return cube::glu_depthwise3x3(h, taps, bias);
    }
    reference::glu_depthwise3x3(h, taps, bias)
}
