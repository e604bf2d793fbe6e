//! Plain tensor-op reference of the fused attention softmax (any burn device).

use burn::tensor::{activation::softmax, DType, FloatDType, Tensor};

pub fn attention_probs(logits: Tensor<4>, scale: f64, bias: Option<&Tensor<4>>, dtype: DType) -> Tensor<4> {
    let mut logits = logits * scale;
    if let Some(bias) = bias {
        logits = logits + bias.clone();
    }
    let p = softmax(logits, 3);
    if p.dtype() == dtype { p } else { p.cast(FloatDType::from(dtype)) }
}
