//! The Mix-FFN's temporal (3, 1) conv after its one GEMM, fused (issue 9). With the three
//! taps' weights side by side, `p = s · [W₀ | W₁ | W₂]` is one GEMM (`[.., D] → [.., 3D]`);
//! this op adds the shifted products and the residual:
//!
//! ```text
//! out[f] = s[f] + (f > 0 ? p₀[f−1] : left₀) + p₁[f] + (f < F−1 ? p₂[f+1] : 0)
//! s [B, F, T, D], p [B, F, T, 3D] (p_k = p[.., kD .. (k+1)D]), left₀ = left · W₀ [B, T, D]
//! ```
//!
//! `left` is LongSANA's cached last frame of the previous chunk (zero padding otherwise).
//! As tensor ops: a padded copy of `s`, three shifted views and three adds; the kernel reads
//! `s` and `p` once and writes `out` once, summing in f32.

#[cfg(feature = "cube")]
pub mod cube;
pub mod reference;

use burn::tensor::Tensor;

use crate::Impl;

/// `out` as in the module doc; `left0` is `left · W₀` `[B, T, D]`, `None` for zero padding.
pub fn temporal_combine(s: Tensor<4>, p: Tensor<4>, left0: Option<Tensor<3>>, which: Impl) -> Tensor<4> {
    let [b, f, t, d] = s.dims();
    assert_eq!(p.dims(), [b, f, t, 3 * d], "temporal_combine: p must be [{b}, {f}, {t}, {}]", 3 * d);
    if let Some(l) = &left0 {
        assert_eq!(l.dims(), [b, t, d], "temporal_combine: left0 must be [{b}, {t}, {d}]");
    }
    let same = p.dtype() == s.dtype() && left0.as_ref().is_none_or(|l| l.dtype() == s.dtype());
    if which == Impl::Auto && crate::is_cube_device(&s.device()) && same {
        #[cfg(feature = "cube")]
        return cube::temporal_combine(s, p, left0);
    }
    reference::temporal_combine(s, p, left0)
}
