//! `transformer/config.json` of `SanaVideoTransformer3DModel` (diffusers 0.42.1,
//! `models/transformers/transformer_sana_video.py`; MODEL-SPEC §2).

use serde::Deserialize;

use crate::{Error, Result};

#[derive(Deserialize, Clone, Copy, Debug)]
#[serde(untagged)]
enum PatchSize {
    One(usize),
    Three([usize; 3]),
}

#[derive(Deserialize, Debug)]
struct RawConfig {
    #[serde(rename = "_class_name")]
    class_name: Option<String>,
    #[serde(default = "d16")]
    in_channels: usize,
    out_channels: Option<usize>,
    #[serde(default = "d20")]
    num_attention_heads: usize,
    #[serde(default = "d112")]
    attention_head_dim: usize,
    #[serde(default = "d20")]
    num_layers: usize,
    num_cross_attention_heads: Option<usize>,
    cross_attention_head_dim: Option<usize>,
    cross_attention_dim: Option<usize>,
    #[serde(default = "d2304")]
    caption_channels: usize,
    #[serde(default = "d2_5")]
    mlp_ratio: f64,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default = "d30")]
    sample_size: usize,
    patch_size: Option<PatchSize>,
    #[serde(default)]
    norm_elementwise_affine: bool,
    #[serde(default = "d1e6")]
    norm_eps: f64,
    #[serde(default)]
    guidance_embeds: bool,
    #[serde(default = "qk_default")]
    qk_norm: Option<String>,
    #[serde(default = "d1024")]
    rope_max_seq_len: usize,
}

fn d16() -> usize { 16 }
fn d20() -> usize { 20 }
fn d30() -> usize { 30 }
fn d112() -> usize { 112 }
fn d1024() -> usize { 1024 }
fn d2304() -> usize { 2304 }
fn d2_5() -> f64 { 2.5 }
fn d1e6() -> f64 { 1e-6 }
fn qk_default() -> Option<String> { Some("rms_norm_across_heads".into()) }

/// Whether attention is bidirectional (SANA-Video) or block-causal (LongSANA).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DitKind {
    Bidirectional,
    BlockCausal,
}

/// A validated DiT configuration.
#[derive(Clone, Debug)]
pub struct DitConfig {
    pub kind: DitKind,
    pub class_name: String,
    pub in_channels: usize,
    pub out_channels: usize,
    pub heads: usize,
    pub head_dim: usize,
    /// Model width D = heads · head_dim.
    pub dim: usize,
    pub layers: usize,
    pub cross_heads: usize,
    pub cross_head_dim: usize,
    pub caption_channels: usize,
    pub mlp_ratio: f64,
    /// FFN hidden width `int(mlp_ratio · D)` (the GLU input is twice this).
    pub ffn_hidden: usize,
    pub attention_bias: bool,
    pub sample_size: usize,
    pub patch_size: [usize; 3],
    pub norm_eps: f64,
    pub rope_max_seq_len: usize,
}

impl DitConfig {
    /// Parses and validates `config.json` text; `path` names the file in errors.
    pub fn from_json(text: &str, path: &str) -> Result<DitConfig> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| Error::config(path, format!("invalid config: {e}")))?;
        let bad = |msg: String| Error::config(path, msg);
        let class_name = raw.class_name.clone().unwrap_or_else(|| "SanaVideoTransformer3DModel".into());
        let kind = match class_name.as_str() {
            "SanaVideoTransformer3DModel" => DitKind::Bidirectional,
            "SanaVideoCausalTransformer3DModel" => DitKind::BlockCausal,
            other => {
                return Err(bad(format!(
                    "unsupported _class_name `{other}`: expected SanaVideoTransformer3DModel or SanaVideoCausalTransformer3DModel"
                )))
            }
        };
        if raw.guidance_embeds {
            return Err(bad("guidance_embeds = true (guidance-distilled variant) is not supported".into()));
        }
        match raw.qk_norm.as_deref() {
            Some("rms_norm_across_heads") => {}
            other => return Err(bad(format!("qk_norm = {other:?} is not supported; expected \"rms_norm_across_heads\""))),
        }
        if raw.norm_elementwise_affine {
            return Err(bad("norm_elementwise_affine = true is not supported (released checkpoints use false)".into()));
        }
        let patch_size = match raw.patch_size.unwrap_or(PatchSize::Three([1, 2, 2])) {
            PatchSize::One(p) => [1, p, p],
            PatchSize::Three(p) => p,
        };
        if patch_size.iter().any(|&p| p == 0) {
            return Err(bad(format!("patch_size {patch_size:?} has a zero entry")));
        }
        let zero = |name: &str, v: usize| if v == 0 { Err(bad(format!("{name} must be positive"))) } else { Ok(()) };
        zero("in_channels", raw.in_channels)?;
        zero("num_attention_heads", raw.num_attention_heads)?;
        zero("attention_head_dim", raw.attention_head_dim)?;
        zero("num_layers", raw.num_layers)?;
        zero("caption_channels", raw.caption_channels)?;
        let dim = raw.num_attention_heads * raw.attention_head_dim;
        if raw.attention_head_dim % 2 != 0 || raw.attention_head_dim < 6 {
            return Err(bad(format!("attention_head_dim {} must be even and at least 6 (3-D RoPE)", raw.attention_head_dim)));
        }
        let cross_heads = raw.num_cross_attention_heads.unwrap_or(raw.num_attention_heads);
        let cross_head_dim = raw.cross_attention_head_dim.unwrap_or(raw.attention_head_dim);
        let cross_dim = raw.cross_attention_dim.ok_or_else(|| {
            bad("cross_attention_dim is null: a DiT without cross-attention is not supported".into())
        })?;
        if cross_dim != dim {
            return Err(bad(format!(
                "cross_attention_dim {cross_dim} differs from the model width {dim} (heads x head dim); the caption projection outputs the model width"
            )));
        }
        zero("num_cross_attention_heads", cross_heads)?;
        zero("cross_attention_head_dim", cross_head_dim)?;
        if !(raw.mlp_ratio.is_finite() && raw.mlp_ratio > 0.0) {
            return Err(bad(format!("mlp_ratio {} must be a positive number", raw.mlp_ratio)));
        }
        // Python's int(expand_ratio * in_channels): truncation of the f64 product.
        let ffn_hidden = (raw.mlp_ratio * dim as f64) as usize;
        zero("int(mlp_ratio * width)", ffn_hidden)?;
        Ok(DitConfig {
            kind,
            class_name,
            in_channels: raw.in_channels,
            out_channels: raw.out_channels.filter(|&c| c > 0).unwrap_or(raw.in_channels),
            heads: raw.num_attention_heads,
            head_dim: raw.attention_head_dim,
            dim,
            layers: raw.num_layers,
            cross_heads,
            cross_head_dim,
            caption_channels: raw.caption_channels,
            mlp_ratio: raw.mlp_ratio,
            ffn_hidden,
            attention_bias: raw.attention_bias,
            sample_size: raw.sample_size,
            patch_size,
            norm_eps: raw.norm_eps,
            rope_max_seq_len: raw.rope_max_seq_len,
        })
    }

    pub fn cross_dim(&self) -> usize {
        self.cross_heads * self.cross_head_dim
    }

    /// Every tensor of the checkpoint with its shape (MODEL-SPEC §4).
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let d = self.dim;
        let [pt, ph, pw] = self.patch_size;
        let cd = self.cross_dim();
        let hid = self.ffn_hidden;
        let mut v: Vec<(String, Vec<usize>)> = vec![
            ("patch_embedding.weight".into(), vec![d, self.in_channels, pt, ph, pw]),
            ("patch_embedding.bias".into(), vec![d]),
            ("time_embed.emb.timestep_embedder.linear_1.weight".into(), vec![d, 256]),
            ("time_embed.emb.timestep_embedder.linear_1.bias".into(), vec![d]),
            ("time_embed.emb.timestep_embedder.linear_2.weight".into(), vec![d, d]),
            ("time_embed.emb.timestep_embedder.linear_2.bias".into(), vec![d]),
            ("time_embed.linear.weight".into(), vec![6 * d, d]),
            ("time_embed.linear.bias".into(), vec![6 * d]),
            ("caption_projection.linear_1.weight".into(), vec![d, self.caption_channels]),
            ("caption_projection.linear_1.bias".into(), vec![d]),
            ("caption_projection.linear_2.weight".into(), vec![d, d]),
            ("caption_projection.linear_2.bias".into(), vec![d]),
            ("caption_norm.weight".into(), vec![d]),
            ("scale_shift_table".into(), vec![2, d]),
            ("proj_out.weight".into(), vec![pt * ph * pw * self.out_channels, d]),
            ("proj_out.bias".into(), vec![pt * ph * pw * self.out_channels]),
        ];
        for i in 0..self.layers {
            let p = |s: &str| format!("transformer_blocks.{i}.{s}");
            v.push((p("scale_shift_table"), vec![6, d]));
            for n in ["to_q", "to_k", "to_v"] {
                v.push((p(&format!("attn1.{n}.weight")), vec![d, d]));
                if self.attention_bias {
                    v.push((p(&format!("attn1.{n}.bias")), vec![d]));
                }
            }
            v.push((p("attn1.norm_q.weight"), vec![d]));
            v.push((p("attn1.norm_k.weight"), vec![d]));
            v.push((p("attn1.to_out.0.weight"), vec![d, d]));
            v.push((p("attn1.to_out.0.bias"), vec![d]));
            v.push((p("attn2.to_q.weight"), vec![cd, d]));
            v.push((p("attn2.to_q.bias"), vec![cd]));
            v.push((p("attn2.to_k.weight"), vec![cd, d]));
            v.push((p("attn2.to_k.bias"), vec![cd]));
            v.push((p("attn2.to_v.weight"), vec![cd, d]));
            v.push((p("attn2.to_v.bias"), vec![cd]));
            v.push((p("attn2.norm_q.weight"), vec![cd]));
            v.push((p("attn2.norm_k.weight"), vec![cd]));
            v.push((p("attn2.to_out.0.weight"), vec![d, cd]));
            v.push((p("attn2.to_out.0.bias"), vec![d]));
            v.push((p("ff.conv_inverted.weight"), vec![2 * hid, d, 1, 1]));
            v.push((p("ff.conv_inverted.bias"), vec![2 * hid]));
            v.push((p("ff.conv_depth.weight"), vec![2 * hid, 1, 3, 3]));
            v.push((p("ff.conv_depth.bias"), vec![2 * hid]));
            v.push((p("ff.conv_point.weight"), vec![d, hid, 1, 1]));
            v.push((p("ff.conv_temp.weight"), vec![d, d, 3, 1]));
        }
        v
    }

    pub fn parameter_count(&self) -> u64 {
        self.expected_tensors().iter().map(|(_, s)| s.iter().product::<usize>() as u64).sum()
    }
}

impl DitConfig {
    /// Rough peak bytes of one forward (weights + the largest live activations of a block),
    /// for `batch` samples of `tokens` tokens each and `text_len` caption tokens, in a compute
    /// dtype of `dtype_bytes`. The memory plan (refuse before heavy work) builds on this.
    pub fn forward_peak_bytes(&self, batch: usize, tokens: usize, text_len: usize, dtype_bytes: usize) -> u64 {
        let (b, n, d, s) = (batch as u64, tokens as u64, self.dim as u64, dtype_bytes as u64);
        let hid = self.ffn_hidden as u64;
        let weights = self.parameter_count() * s;
        // residual stream, modulated input, q/k/v and the attention output, plus f32 copies
        let stream = b * n * d * (6 * s + 4 * 4);
        // FFN: inverted-conv output, its padded copy and the 3x3 accumulation, then the GLU output
        let ffn = b * n * (2 * hid * 3 + hid) * s;
        // cross-attention logits and softmax in f32
        let cross = b * self.cross_heads as u64 * n * text_len as u64 * 4 * 2;
        weights + stream + ffn.max(cross)
    }
}
