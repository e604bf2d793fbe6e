//! One SANA-Video transformer block (MODEL-SPEC §3.6): modulated ReLU linear attention
//! with RoPE, softmax cross-attention to the caption, and the GLU Mix-FFN with its
//! depth-wise 3x3 conv and temporal (3,1) conv. Field names follow the checkpoint keys
//! (`transformer_blocks.{i}.attn1.to_q`, `.ff.conv_depth`, ...).

use burn::tensor::{DType, Device, Tensor};

use super::config::DitConfig;
use crate::io::safetensors::{tensor_from_f32, Weights};
use crate::kernels::{glu_conv, norm, softmax, temporal};
use crate::kernels::linear_attention::{self, KvSums};
use crate::kernels::matmul::{matmul_rounded_merge_heads, matmul_to_f32};
use crate::kernels::Impl;
use crate::nn::{to_dtype, transpose_host, Linear};
use crate::profile;
use crate::Result;

/// diffusers' linear-attention epsilon (the official code uses 1e-8; the difference is invisible).
pub const LINEAR_ATTENTION_EPS: f32 = 1e-15;
/// QK RMSNorm epsilon of diffusers' `Attention(qk_norm="rms_norm_across_heads")`.
const QK_NORM_EPS: f64 = 1e-5;

/// `attn1` (self, linear) and `attn2` (cross, softmax) share this layout:
/// projections, QK RMSNorm across heads, output projection.
pub struct Attention {
    pub to_q: Linear,
    pub to_k: Linear,
    pub to_v: Linear,
    pub norm_q: Tensor<1>,
    pub norm_k: Tensor<1>,
    pub to_out: Linear,
}

impl Attention {
    fn load(w: &Weights, prefix: &str, qkv_bias: bool, device: &Device, dtype: DType) -> Result<Attention> {
        let lin = |s: &str, bias: bool| Linear::load(w, &format!("{prefix}.{s}"), bias, device, dtype);
        let vec1 = |s: &str| w.load::<1>(&format!("{prefix}.{s}"), device, dtype);
        Ok(Attention {
            to_q: lin("to_q", qkv_bias)?,
            to_k: lin("to_k", qkv_bias)?,
            to_v: lin("to_v", qkv_bias)?,
            norm_q: vec1("norm_q.weight")?,
            norm_k: vec1("norm_k.weight")?,
            to_out: lin("to_out.0", true)?,
        })
    }
}

/// GLUMBTempConv, channels-last.
pub struct FeedForward {
    pub conv_inverted: Linear,
    /// Depth-wise 3x3 taps `[9, 2·hidden]` (row-major over (dy, dx)) and bias `[2·hidden]`.
    pub conv_depth: Tensor<2>,
    pub conv_depth_bias: Tensor<1>,
    pub conv_point: Linear,
    /// The temporal (3, 1) conv as one linear layer `D -> 3D`, its taps (for frames f-1, f,
    /// f+1) side by side (tap k in outputs kD..(k+1)D), so one GEMM computes all three
    /// ([`Linear::load_taps`]; FP8 like the other layers when the file is).
    pub conv_temp: Linear,
}

/// LongSANA: what one layer carries from the finished chunks to the next (MODEL-SPEC §5.2).
#[derive(Clone, Debug, Default)]
pub struct LayerState {
    /// `Σ v ⊗ R·φ(k)` and `Σ φ(k)` over the finished chunks (in the window), f32.
    pub sums: Option<KvSums>,
    /// The FFN's pre-temporal-conv features of the previous chunk's last frame, `[B, H'·W', D]`:
    /// the left neighbour of the next chunk's first frame.
    pub last_frame: Option<Tensor<3>>,
}

/// One layer's contribution of a chunk, recorded on the clean t = 0 pass.
#[derive(Clone, Debug)]
pub struct LayerUpdate {
    pub sums: KvSums,
    pub last_frame: Tensor<3>,
}

pub struct Block {
    pub scale_shift_table: Tensor<2>,
    pub attn1: Attention,
    pub attn2: Attention,
    pub ff: FeedForward,
}

/// Per-forward context shared by all blocks.
pub struct BlockContext<'a> {
    /// `[B, T, 6, D]` timestep modulation (T = 1 or N).
    pub t6: &'a Tensor<4>,
    /// Projected, normalised caption `[B, L, D]`.
    pub caption: &'a Tensor<3>,
    /// Additive cross-attention bias `[B, 1, 1, L]` (f32), if a mask was given.
    pub caption_bias: Option<&'a Tensor<4>>,
    pub rope_cos: &'a Tensor<2>,
    pub rope_sin: &'a Tensor<2>,
    /// Token grid (F', H', W').
    pub grid: [usize; 3],
    pub kernels: Impl,
}

impl Block {
    pub fn load(w: &Weights, cfg: &DitConfig, i: usize, device: &Device, dtype: DType) -> Result<Block> {
        let p = |s: &str| format!("transformer_blocks.{i}.{s}");
        let lin = |s: &str, bias: bool| Linear::load(w, &p(s), bias, device, dtype);
        let vec1 = |s: &str| w.load::<1>(&p(s), device, dtype);
        let attn1 = Attention::load(w, &p("attn1"), cfg.attention_bias, device, dtype)?;
        let attn2 = Attention::load(w, &p("attn2"), true, device, dtype)?;
        let (depth, dshape) = w.read_f32(&p("ff.conv_depth.weight"))?;
        let channels = dshape[0];
        let conv_depth: Tensor<2> = tensor_from_f32::<2>(transpose_host(&depth, channels, 9), vec![9, channels], device, dtype);
        let conv_temp = Linear::load_taps(w, &p("ff.conv_temp.weight"), device, dtype)?;
        let ff = FeedForward {
            conv_inverted: lin("ff.conv_inverted", true)?,
            conv_depth,
            conv_depth_bias: vec1("ff.conv_depth.bias")?,
            conv_point: lin("ff.conv_point", false)?,
            conv_temp,
        };
        Ok(Block { scale_shift_table: w.load::<2>(&p("scale_shift_table"), device, dtype)?, attn1, attn2, ff })
    }

    pub fn forward(&self, x: Tensor<3>, ctx: &BlockContext<'_>, cfg: &DitConfig) -> Tensor<3> {
        self.forward_impl(x, ctx, cfg, None).0
    }

    /// Block-causal forward of one LongSANA chunk: attention reads `state` plus the chunk's own
    /// tokens, the temporal conv sees `state.last_frame` on the left and zeros on the right.
    /// With `record`, also returns this chunk's contribution to the state.
    pub fn forward_chunk(
        &self,
        x: Tensor<3>,
        ctx: &BlockContext<'_>,
        cfg: &DitConfig,
        state: &LayerState,
        record: bool,
    ) -> (Tensor<3>, Option<LayerUpdate>) {
        self.forward_impl(x, ctx, cfg, Some((state, record)))
    }

    fn forward_impl(
        &self,
        x: Tensor<3>,
        ctx: &BlockContext<'_>,
        cfg: &DitConfig,
        long: Option<(&LayerState, bool)>,
    ) -> (Tensor<3>, Option<LayerUpdate>) {
        let [b, _, d] = x.dims();
        let t = ctx.t6.dims()[1];
        let device = x.device();
        profile::mark(&device, "other");
        let modulation = self.scale_shift_table.clone().reshape([1, 1, 6, d]) + ctx.t6.clone();
        let part = |r: usize| modulation.clone().narrow(2, r, 1).reshape([b, t, d]);
        let (shift_msa, scale_msa, gate_msa) = (part(0), part(1), part(2));
        let (shift_mlp, scale_mlp, gate_mlp) = (part(3), part(4), part(5));

        // (a) self-attention
        let u = norm::layer_norm_modulate(x.clone(), scale_msa, shift_msa, cfg.norm_eps, ctx.kernels);
        profile::mark(&device, "norm1+modulate");
        let (attn, own_sums) = self.attn1.self_attention(u, ctx, cfg, long.map(|(s, _)| s));
        let x = x + gate_msa * attn;
        profile::mark(&device, "attn1.gate+residual");

        // (b) cross-attention, from the un-normalised stream
        let x = x.clone() + self.attn2.cross_attention(x, ctx, cfg);
        profile::mark(&device, "attn2 (cross)");

        // (c) Mix-FFN
        let u = norm::layer_norm_modulate(x.clone(), scale_mlp, shift_mlp, cfg.norm_eps, ctx.kernels);
        profile::mark(&device, "norm2+modulate");
        let (ff, last_frame) = self.ff.forward(u, ctx.grid, long.and_then(|(s, _)| s.last_frame.as_ref()), ctx.kernels);
        let update = match (long, own_sums) {
            (Some((_, true)), Some(sums)) => Some(LayerUpdate { sums, last_frame }),
            _ => None,
        };
        let x = x + gate_mlp * ff;
        profile::mark(&device, "ff.gate+residual");
        (x, update)
    }
}

impl Attention {
    /// ReLU linear attention with RoPE over all tokens (§3.6a); with a LongSANA `state`, over
    /// the finished chunks' sums plus this chunk's own (§5.2), whose sums are returned too.
    fn self_attention(
        &self,
        u: Tensor<3>,
        ctx: &BlockContext<'_>,
        cfg: &DitConfig,
        state: Option<&LayerState>,
    ) -> (Tensor<3>, Option<KvSums>) {
        let [b, n, d] = u.dims();
        let dtype = u.dtype();
        let [q, k, v] = Linear::forward_shared([&self.to_q, &self.to_k, &self.to_v], u);
        let q = norm::rms_norm(q, &self.norm_q, QK_NORM_EPS, ctx.kernels);
        let k = norm::rms_norm(k, &self.norm_k, QK_NORM_EPS, ctx.kernels);
        let device = v.device();
        profile::mark(&device, "attn1.qkv+rmsnorm");
        // Per-head views in the model dtype: the linear-attention ops compute in f32.
        let heads = |x: Tensor<3>| x.reshape([b, n, cfg.heads, cfg.head_dim]);
        let (cos, sin) = (ctx.rope_cos.clone(), ctx.rope_sin.clone());
        let (o, own) = match state {
            None => (linear_attention::attention(heads(q), heads(k), heads(v), cos, sin, LINEAR_ATTENTION_EPS, dtype, ctx.kernels), None),
            Some(st) => {
                // The same per-segment kernels as the bidirectional path: this chunk's sums,
                // plus the state's, then the queries (rotated at their absolute positions).
                let own = linear_attention::kv_sums(heads(k), heads(v), cos.clone(), sin.clone(), ctx.kernels);
                let total = match &st.sums {
                    Some(prev) => prev.clone().add(own.clone()),
                    None => own.clone(),
                };
                (linear_attention::apply(heads(q), &total, cos, sin, LINEAR_ATTENTION_EPS, dtype, ctx.kernels), Some(own))
            }
        };
        profile::mark(&device, "attn1.linear_attention");
        let out = self.to_out.forward(o.reshape([b, n, d]));
        profile::mark(&device, "attn1.to_out");
        (out, own)
    }

    /// Softmax attention from the residual stream to the caption (§3.6b).
    fn cross_attention(&self, x: Tensor<3>, ctx: &BlockContext<'_>, cfg: &DitConfig) -> Tensor<3> {
        let [b, n, _] = x.dims();
        let l = ctx.caption.dims()[1];
        let (h, dh) = (cfg.cross_heads, cfg.cross_head_dim);
        let dtype = x.dtype();
        let device = x.device();
        let q = norm::rms_norm(self.to_q.forward(x), &self.norm_q, QK_NORM_EPS, ctx.kernels);
        profile::mark(&device, "attn2.q+rmsnorm");
        let [k, v] = Linear::forward_shared([&self.to_k, &self.to_v], ctx.caption.clone());
        let k = norm::rms_norm(k, &self.norm_k, QK_NORM_EPS, ctx.kernels);
        profile::mark(&device, "attn2.k,v");
        // f32 models: f32 throughout. f16/bf16 models: operands in the model dtype with f32
        // accumulation and f32 logits/softmax, and the probabilities rounded to the model
        // dtype for the product with v, as PyTorch's fused attention does.
        let q = q.reshape([b, n, h, dh]).swap_dims(1, 2); // [B, H, N, dh]
        let k = k.reshape([b, l, h, dh]).permute([0, 2, 3, 1]); // [B, H, dh, L]
        let v = v.reshape([b, l, h, dh]).swap_dims(1, 2); // [B, H, L, dh]
        // Products stay `Auto` under `Impl::Reference` too: only our fused ops switch.
        let logits = matmul_to_f32(q, k, Impl::Auto);
        profile::mark(&device, "attn2.logits GEMM");
        // Scale, key mask, softmax and the cast to the model dtype: one fused op.
        let probs = softmax::attention_probs(logits, 1.0 / (dh as f64).sqrt(), ctx.caption_bias, dtype, ctx.kernels);
        profile::mark(&device, "attn2.softmax");
        // Accumulated in f32, rounded once to the model dtype (half the bytes of an f32
        // product for the head merge that follows).
        // Written by the GEMM with the heads already merged (no copy for the reshape).
        let o = matmul_rounded_merge_heads(probs, v, Impl::Auto); // [B, N, H, dh]
        profile::mark(&device, "attn2.pv GEMM");
        let out = self.to_out.forward(o.reshape([b, n, h * dh]));
        profile::mark(&device, "attn2.to_out");
        out
    }
}

impl FeedForward {
    /// Returns the output and the pre-temporal-conv features of the last frame `[B, H'·W', D]`
    /// (LongSANA's cached frame). `left`: the previous chunk's last frame, the first frame's
    /// left neighbour in the temporal conv (zeros when `None`); the right edge is always zero.
    fn forward(&self, u: Tensor<3>, grid: [usize; 3], left: Option<&Tensor<3>>, kernels: Impl) -> (Tensor<3>, Tensor<3>) {
        let [b, n, d] = u.dims();
        let [f, gh, gw] = grid;
        let device = u.device();
        let h = self.conv_inverted.forward(u); // [B, N, 2·hid], before its SiLU
        profile::mark(&device, "ff.conv_inverted");
        let c2 = h.dims()[2];
        // SiLU, depth-wise 3x3 over each frame, then the GLU gate: one fused op.
        let z = glu_conv::glu_depthwise3x3(
            h.reshape([b * f, gh, gw, c2]),
            self.conv_depth.clone(),
            self.conv_depth_bias.clone(),
            kernels,
        );
        profile::mark(&device, "ff.glu_depthwise");
        let s = self.conv_point.forward(z).reshape([b, f, gh * gw, d]);
        profile::mark(&device, "ff.conv_point");
        // Temporal (3,1) conv with zero padding, residual inside the module: the three taps'
        // products in one GEMM, then one fused op adds them, shifted, to `s`.
        let t = gh * gw;
        let last = s.clone().narrow(1, f - 1, 1).reshape([b, t, d]);
        let p = self.conv_temp.forward(s.clone().reshape([b * f * t, d])).reshape([b, f, t, 3 * d]);
        profile::mark(&device, "ff.conv_temp GEMM");
        // LongSANA's cached frame needs only tap 0: the whole product of one frame, cut (a
        // narrowed weight would be a resident copy on CUDA, whose views need aligned ends).
        let left0 = left.map(|l| self.conv_temp.forward(to_dtype(l.clone(), s.dtype()).reshape([b * t, d])).narrow(1, 0, d).reshape([b, t, d]));
        let out = temporal::temporal_combine(s, p, left0, kernels);
        profile::mark(&device, "ff.conv_temp");
        (out.reshape([b, n, d]), last)
    }
}
