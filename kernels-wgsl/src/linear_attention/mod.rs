//! ReLU linear attention with RoPE in the numerator only (MODEL-SPEC §3.6a).
//!
//! For one head, with φ = ReLU and R(n) the rotary rotation of token n:
//!
//! ```text
//! KV   = Σ_m v_m ⊗ R(m)·φ(k_m)        [d, d]  value-major: KV[a, c] = Σ_m v_m[a]·(R φk_m)[c]
//! ksum = Σ_m φ(k_m)                   [d]     no RoPE
//! o_n  = KV·R(n)·φ(q_n) / (⟨ksum, φ(q_n)⟩ + eps)
//! ```
//!
//! The API is split around these per-segment sums so the same kernels serve
//! both the bidirectional DiT (sum over every token, then apply) and the
//! block-causal LongSANA state (running sums over finished chunks, plus the
//! current chunk's own sums, then apply).
//!
//! Layouts (row-major): `q`, `k`, `v` are `[B, N, H, d]` in any float dtype (the linear
//! layer's output viewed per head, no permute or cast needed: the sums and products
//! accumulate in f32 whatever it is, a 16-bit model's operands rounded as `cube.rs` says); `cos`, `sin` are f32 `[N, d/2]`, one angle per channel pair
//! `(2p, 2p+1)`; `kv` is f32 `[B, H, d, d]` (any strides: the CubeCL path returns a view of
//! `KVᵀ`), `ksum` f32 `[B, H, d]`; the output is
//! `[B, N, H, d]` in the dtype asked for.

pub mod reference;
#[cfg(feature = "cube")]
pub mod cube;

use burn::tensor::{DType, FloatDType, Tensor};

use crate::Impl;

fn to_f32<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.dtype() == DType::F32 { x } else { x.cast(FloatDType::F32) }
}

/// Running sums of one segment of tokens (or of many segments, added up).
#[derive(Clone, Debug)]
pub struct KvSums {
    /// `Σ v ⊗ R·φ(k)`, `[B, H, d, d]`.
    pub kv: Tensor<4>,
    /// `Σ φ(k)`, `[B, H, d]`.
    pub ksum: Tensor<3>,
}

impl KvSums {
    /// Sum of two segments' sums (the LongSANA state update).
    pub fn add(self, other: KvSums) -> KvSums {
        KvSums { kv: self.kv + other.kv, ksum: self.ksum + other.ksum }
    }
}

fn check_qkv(name: &str, x: &Tensor<4>, cos: &Tensor<2>, sin: &Tensor<2>) {
    let [_, n, _, d] = x.dims();
    assert!(d % 2 == 0, "linear attention: head dim of {name} must be even, got {d}");
    assert_eq!(cos.dims(), [n, d / 2], "linear attention: cos table does not match {name}");
    assert_eq!(sin.dims(), [n, d / 2], "linear attention: sin table does not match {name}");
}

fn use_kernel(device: &burn::tensor::Device, which: Impl) -> bool {
    which == Impl::Auto && crate::is_cube_device(device)
}

/// Sums of one segment: `k`, `v` `[B, N, H, d]`, RoPE tables `[N, d/2]` for
/// those tokens' absolute positions.
pub fn kv_sums(k: Tensor<4>, v: Tensor<4>, cos: Tensor<2>, sin: Tensor<2>, which: Impl) -> KvSums {
    check_qkv("k", &k, &cos, &sin);
    assert_eq!(k.dims(), v.dims(), "linear attention: k and v shapes differ");
    if use_kernel(&k.device(), which) {
        #[cfg(feature = "cube")]
        return cube::kv_sums(k, v, cos, sin);
    }
    reference::kv_sums(to_f32(k), to_f32(v), cos, sin)
}

/// Attention output `[B, N, H, d]` in `dtype` (computed in f32, rounded once) of queries
/// `q` `[B, N, H, d]` against the sums `s` (of this segment and, for LongSANA, all earlier
/// ones).
pub fn apply(q: Tensor<4>, s: &KvSums, cos: Tensor<2>, sin: Tensor<2>, eps: f32, dtype: DType, which: Impl) -> Tensor<4> {
    check_qkv("q", &q, &cos, &sin);
    let [b, _, h, d] = q.dims();
    assert_eq!(s.kv.dims(), [b, h, d, d], "linear attention: kv sums do not match q");
    assert_eq!(s.ksum.dims(), [b, h, d], "linear attention: ksum does not match q");
    if use_kernel(&q.device(), which) {
        #[cfg(feature = "cube")]
        return cube::apply(q, s, cos, sin, eps, dtype);
    }
    let out = reference::apply(to_f32(q), s, cos, sin, eps);
    if dtype == DType::F32 { out } else { out.cast(FloatDType::from(dtype)) }
}

/// Bidirectional linear attention over all tokens of each sample, output in `dtype`.
#[allow(clippy::too_many_arguments)]
pub fn attention(q: Tensor<4>, k: Tensor<4>, v: Tensor<4>, cos: Tensor<2>, sin: Tensor<2>, eps: f32, dtype: DType, which: Impl) -> Tensor<4> {
    let s = kv_sums(k, v, cos.clone(), sin.clone(), which);
    apply(q, &s, cos, sin, eps, dtype, which)
}
