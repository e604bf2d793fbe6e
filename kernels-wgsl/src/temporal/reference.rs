//! Plain tensor-op reference of the fused temporal-conv combine (any burn device).

use burn::tensor::Tensor;

pub fn temporal_combine(s: Tensor<4>, p: Tensor<4>, left0: Option<Tensor<3>>) -> Tensor<4> {
    let [b, f, t, d] = s.dims();
    let (device, dtype) = (s.device(), s.dtype());
    let zero = Tensor::<4>::zeros([b, 1, t, d], (&device, dtype));
    let tap = |k: usize| p.clone().narrow(3, k * d, d);
    let left = left0.map(|l| l.reshape([b, 1, t, d])).unwrap_or_else(|| zero.clone());
    // tap 0 reads the frame before (the left frame for the first), tap 2 the frame after.
    let before = if f > 1 { Tensor::cat(vec![left, tap(0).narrow(1, 0, f - 1)], 1) } else { left };
    let after = if f > 1 { Tensor::cat(vec![tap(2).narrow(1, 1, f - 1), zero], 1) } else { zero };
    s + before + tap(1) + after
}
