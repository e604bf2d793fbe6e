//! Plain tensor-op reference of the linear-attention sums (any burn device). Its products
//! go through `crate::matmul` so f32 stays f32 on tensor-core devices too.

use burn::tensor::{activation::relu, Tensor};

use super::KvSums;
use crate::matmul::matmul;
use crate::Impl;

/// Rotates channel pairs `(2p, 2p+1)` of `x` `[B, N, H, d]` by the angles whose
/// cos/sin are `[N, d/2]`: `(x0·c − x1·s, x0·s + x1·c)`.
pub fn rope(x: Tensor<4>, cos: Tensor<2>, sin: Tensor<2>) -> Tensor<4> {
    let [b, n, h, d] = x.dims();
    let pairs = x.reshape([b, n, h, d / 2, 2]);
    let x0 = pairs.clone().narrow(4, 0, 1);
    let x1 = pairs.narrow(4, 1, 1);
    let c = cos.reshape([1, n, 1, d / 2, 1]);
    let s = sin.reshape([1, n, 1, d / 2, 1]);
    let y0 = x0.clone() * c.clone() - x1.clone() * s.clone();
    let y1 = x0 * s + x1 * c;
    Tensor::cat(vec![y0, y1], 4).reshape([b, n, h, d])
}

pub fn kv_sums(k: Tensor<4>, v: Tensor<4>, cos: Tensor<2>, sin: Tensor<2>) -> KvSums {
    let [b, _, h, d] = k.dims();
    let phi_k = relu(k);
    let k_rot = rope(phi_k.clone(), cos, sin);
    // [B, H, d, N] x [B, H, N, d] -> [B, H, d, d], KV[a, c] = Σ_n v[n, a]·k_rot[n, c]
    let kv = matmul(v.permute([0, 2, 3, 1]), k_rot.permute([0, 2, 1, 3]), Impl::Auto);
    let ksum = phi_k.sum_dim(1).reshape([b, h, d]);
    KvSums { kv, ksum }
}

pub fn apply(q: Tensor<4>, s: &KvSums, cos: Tensor<2>, sin: Tensor<2>, eps: f32) -> Tensor<4> {
    let [b, _, h, d] = q.dims();
    let phi_q = relu(q);
    let q_rot = rope(phi_q.clone(), cos, sin);
    // num[n, a] = Σ_c KV[a, c]·q_rot[n, c]
    let num = matmul(q_rot.permute([0, 2, 1, 3]), s.kv.clone().swap_dims(2, 3), Impl::Auto); // [B, H, N, d]
    let den = (phi_q * s.ksum.clone().reshape([b, 1, h, d])).sum_dim(3) + eps; // [B, N, H, 1]
    num.permute([0, 2, 1, 3]) / den
}
