//! The cross-attention's softmax, fused: from the f32 logits `q·kᵀ` to the probabilities in
//! the compute dtype, for the product with `v` (issue 9).
//!
//! ```text
//! p[b, h, n, :] = softmax(scale · logits[b, h, n, :] + bias[b, 0, 0, :])    logits [B, H, N, L] f32
//! ```
//!
//! As tensor ops this is about eight passes over the f32 logits, the largest tensor of the
//! cross-attention (1.6 GB a layer at 480p, 81 frames, CFG batch 2); the kernel reads them
//! once and writes the probabilities once, in the compute dtype.

#[cfg(feature = "cube")]
pub mod cube;
pub mod reference;

use burn::tensor::{DType, Tensor};

use crate::Impl;

/// `softmax(scale · logits + bias)` over the last axis, in `dtype`; `logits` f32
/// `[B, H, N, L]`, `bias` (additive key mask) f32 `[B, 1, 1, L]`.
pub fn attention_probs(logits: Tensor<4>, scale: f64, bias: Option<&Tensor<4>>, dtype: DType, which: Impl) -> Tensor<4> {
    let [b, _, _, l] = logits.dims();
    assert_eq!(logits.dtype(), DType::F32, "attention_probs: f32 logits");
    if let Some(bias) = bias {
        assert_eq!(bias.dims(), [b, 1, 1, l], "attention_probs: bias must be [{b}, 1, 1, {l}]");
    }
    let bias_f32 = bias.is_none_or(|t| t.dtype() == DType::F32);
    if which == Impl::Auto && crate::is_cube_device(&logits.device()) && bias_f32 && matches!(dtype, DType::F32 | DType::F16 | DType::BF16) {
        #[cfg(feature = "cube")]
        return cube::attention_probs(logits, scale, bias, dtype);
    }
    reference::attention_probs(logits, scale, bias, dtype)
}
