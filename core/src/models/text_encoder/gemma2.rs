//! `Gemma2Model` (transformers 5.24.0 `models/gemma2/modeling_gemma2.py`, eager
//! attention; MODEL-SPEC §6.1): the decoder without its LM head, used as SANA's text
//! encoder. Output: the last hidden state after the final RMSNorm.
//!
//! Per layer: `x += post_attn_norm(attn(input_norm(x)))`, then
//! `x += post_ffw_norm(mlp(pre_ffw_norm(x)))`. Attention: grouped-query, rotate-half RoPE,
//! scores `q·kᵀ / sqrt(query_pre_attn_scalar)`, soft-capped `c·tanh(s/c)`, causal plus
//! right-padding mask (and a sliding window on the layers the config marks), softmax in
//! f32. MLP: `down(gelu_tanh(gate(x)) ⊙ up(x))`.
//!
//! The embedding table (590 M parameters in the 2B model) never goes to the device: the
//! rows of the prompt's tokens are read from the file on the host.

use burn::tensor::{activation, DType, Device, Tensor};

use super::config::{Gemma2Config, LayerType};
use crate::io::safetensors::{tensor_from_f32, Weights};
use crate::io::{diffusers, join, FileSource};
use crate::nn::{gelu_tanh, matmul, to_dtype, to_f32, Linear};
use crate::{Error, Result};

/// Gemma's RMSNorm: statistics and the `(1 + w)` scale in f32, result cast back.
pub struct RmsNorm {
    /// `1 + w`, kept in f32.
    pub scale: Tensor<1>,
    pub eps: f64,
}

impl RmsNorm {
    fn load(w: &Weights, name: &str, eps: f64, device: &Device) -> Result<RmsNorm> {
        let (v, shape) = w.read_f32(name)?;
        // `1.0 + weight.float()` in f32, as the reference computes it.
        let scale = tensor_from_f32(v.into_iter().map(|x| 1.0f32 + x).collect(), shape, device, DType::F32);
        Ok(RmsNorm { scale, eps })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dtype = x.dtype();
        let x = to_f32(x);
        let ms = x.clone().square().mean_dim(D - 1);
        let y = x * (ms + self.eps).sqrt().recip();
        to_dtype(y * self.scale.clone().unsqueeze::<D>(), dtype)
    }
}

pub struct SelfAttention {
    pub q_proj: Linear,
    pub k_proj: Linear,
    pub v_proj: Linear,
    pub o_proj: Linear,
}

pub struct Mlp {
    pub gate_proj: Linear,
    pub up_proj: Linear,
    pub down_proj: Linear,
}

pub struct DecoderLayer {
    pub self_attn: SelfAttention,
    pub mlp: Mlp,
    pub input_layernorm: RmsNorm,
    pub post_attention_layernorm: RmsNorm,
    pub pre_feedforward_layernorm: RmsNorm,
    pub post_feedforward_layernorm: RmsNorm,
    pub layer_type: LayerType,
}

pub struct Gemma2Model {
    pub config: Gemma2Config,
    pub dtype: DType,
    pub device: Device,
    /// Weight files, kept open (memory-mapped) for host-side embedding lookups.
    weights: Weights,
    /// `""` or `"model."`: the prefix the files use for every tensor name.
    prefix: String,
    pub layers: Vec<DecoderLayer>,
    pub norm: RmsNorm,
}

/// What a loaded text encoder found in its files.
pub struct LoadReport {
    pub weights_location: String,
    pub unexpected: Vec<String>,
}

/// Token ids and mask of a right-padded batch, row-major `[batch, len]`.
pub struct TokenBatch {
    pub batch: usize,
    pub len: usize,
    pub input_ids: Vec<u32>,
    /// 1 for real tokens, 0 for padding.
    pub attention_mask: Vec<u8>,
}

impl Gemma2Model {
    pub fn read_config(source: &dyn FileSource, dir: &str) -> Result<Gemma2Config> {
        let path = join(dir, "config.json");
        Gemma2Config::from_json(&source.read_string(&path)?, &path)
    }

    /// Loads a transformers `text_encoder/` folder (or a pipeline folder holding one):
    /// `model.safetensors` or sharded `model-*.safetensors` with their index, tensor names
    /// with or without the `model.` prefix. Every tensor is checked before loading.
    pub fn load(source: &dyn FileSource, dir: &str, device: &Device, dtype: DType) -> Result<(Self, LoadReport)> {
        let dir = diffusers::component_dir(source, dir, "text_encoder")?;
        let config = Self::read_config(source, &dir)?;
        let weights = Weights::open_dir(source, &dir, "model")?;
        let prefix = if weights.meta("embed_tokens.weight").is_some() {
            ""
        } else if weights.meta("model.embed_tokens.weight").is_some() {
            "model."
        } else {
            ""
        };
        let expected: Vec<(String, Vec<usize>)> =
            config.expected_tensors().into_iter().map(|(n, s)| (format!("{prefix}{n}"), s)).collect();
        // A causal-LM save may carry `lm_head.weight`; it is not needed (tied or not).
        let unexpected: Vec<String> =
            weights.check(&expected)?.into_iter().filter(|n| n != "lm_head.weight").collect();
        let model = Self::from_weights(config, weights, prefix, device, dtype)?;
        let location = model.weights.location();
        Ok((model, LoadReport { weights_location: location, unexpected }))
    }

    fn from_weights(config: Gemma2Config, w: Weights, prefix: &str, device: &Device, dtype: DType) -> Result<Self> {
        let eps = config.rms_norm_eps;
        let mut layers = Vec::with_capacity(config.num_hidden_layers);
        for (i, &layer_type) in config.layer_types.iter().enumerate() {
            let p = format!("{prefix}layers.{i}");
            // FP8 weights stay W8A16 here (see `Linear::load_w8a16`).
            let attn = |n: &str| Linear::load_w8a16(&w, &format!("{p}.self_attn.{n}"), config.attention_bias, device, dtype);
            let mlp = |n: &str| Linear::load_w8a16(&w, &format!("{p}.mlp.{n}"), false, device, dtype);
            let norm = |n: &str| RmsNorm::load(&w, &format!("{p}.{n}.weight"), eps, device);
            layers.push(DecoderLayer {
                self_attn: SelfAttention {
                    q_proj: attn("q_proj")?,
                    k_proj: attn("k_proj")?,
                    v_proj: attn("v_proj")?,
                    o_proj: attn("o_proj")?,
                },
                mlp: Mlp { gate_proj: mlp("gate_proj")?, up_proj: mlp("up_proj")?, down_proj: mlp("down_proj")? },
                input_layernorm: norm("input_layernorm")?,
                post_attention_layernorm: norm("post_attention_layernorm")?,
                pre_feedforward_layernorm: norm("pre_feedforward_layernorm")?,
                post_feedforward_layernorm: norm("post_feedforward_layernorm")?,
                layer_type,
            });
        }
        let norm = RmsNorm::load(&w, &format!("{prefix}norm.weight"), eps, device)?;
        Ok(Gemma2Model { config, dtype, device: device.clone(), weights: w, prefix: prefix.to_string(), layers, norm })
    }

    /// Checks a token batch against this model: shapes, id range, mask values.
    pub fn check_tokens(&self, t: &TokenBatch) -> Result<()> {
        if t.batch == 0 || t.len == 0 {
            return Err(Error::Input(format!("empty token batch ({} x {})", t.batch, t.len)));
        }
        if t.input_ids.len() != t.batch * t.len || t.attention_mask.len() != t.batch * t.len {
            return Err(Error::Input(format!(
                "token batch {}x{} has {} ids and {} mask values",
                t.batch,
                t.len,
                t.input_ids.len(),
                t.attention_mask.len()
            )));
        }
        if let Some((i, id)) = t.input_ids.iter().enumerate().find(|(_, &id)| id as usize >= self.config.vocab_size) {
            return Err(Error::Input(format!(
                "input_ids[{}][{}] = {id} is outside the text encoder's vocabulary of {} tokens",
                i / t.len,
                i % t.len,
                self.config.vocab_size
            )));
        }
        if let Some(i) = t.attention_mask.iter().position(|&m| m > 1) {
            return Err(Error::Input(format!("attention_mask[{}][{}] is not 0 or 1", i / t.len, i % t.len)));
        }
        Ok(())
    }

    /// The last hidden state `[B, L, hidden]` (in the model dtype) after the final norm.
    pub fn forward(&self, tokens: &TokenBatch) -> Result<Tensor<3>> {
        self.check_tokens(tokens)?;
        let cfg = &self.config;
        let (b, l, d) = (tokens.batch, tokens.len, cfg.hidden_size);

        // Embedding rows straight from the file, scaled by sqrt(hidden) rounded to the
        // compute dtype (Gemma multiplies in the weight dtype).
        let rows: Vec<usize> = tokens.input_ids.iter().map(|&i| i as usize).collect();
        let (mut x0, _) = self.weights.read_rows_f32(&format!("{}embed_tokens.weight", self.prefix), &rows)?;
        let scale = round_to(self.dtype, (d as f64).sqrt() as f32);
        x0.iter_mut().for_each(|v| *v *= scale);
        let mut x: Tensor<3> = tensor_from_f32(x0, vec![b, l, d], &self.device, self.dtype);

        let (cos, sin) = rope_tables(cfg.head_dim, l, cfg.rope_theta, &self.device, self.dtype);
        let full = attention_bias(tokens, None, &self.device);
        let sliding = cfg
            .layer_types
            .contains(&LayerType::Sliding)
            .then(|| attention_bias(tokens, cfg.sliding_window, &self.device));
        for layer in &self.layers {
            let bias = match layer.layer_type {
                LayerType::Full => &full,
                LayerType::Sliding => sliding.as_ref().unwrap_or(&full),
            };
            let h = layer.input_layernorm.forward(x.clone());
            let h = self.attention(&layer.self_attn, h, &cos, &sin, bias);
            x = x + layer.post_attention_layernorm.forward(h);
            let h = layer.pre_feedforward_layernorm.forward(x.clone());
            let m = &layer.mlp;
            let h = m.down_proj.forward(gelu_tanh(m.gate_proj.forward(h.clone())) * m.up_proj.forward(h));
            x = x + layer.post_feedforward_layernorm.forward(h);
        }
        Ok(self.norm.forward(x))
    }

    fn attention(&self, a: &SelfAttention, x: Tensor<3>, cos: &Tensor<4>, sin: &Tensor<4>, bias: &Tensor<5>) -> Tensor<3> {
        let cfg = &self.config;
        let [b, l, _] = x.dims();
        let (h, kv, hd) = (cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim);
        let g = h / kv;
        let q = a.q_proj.forward(x.clone()).reshape([b, l, h, hd]).swap_dims(1, 2);
        let k = a.k_proj.forward(x.clone()).reshape([b, l, kv, hd]).swap_dims(1, 2);
        let v = a.v_proj.forward(x).reshape([b, l, kv, hd]).swap_dims(1, 2);
        let (q, k) = (rotate_half_rope(q, cos, sin), rotate_half_rope(k, cos, sin));
        // Grouped-query attention without repeating K/V: query heads kv·g..kv·g+g-1 share
        // KV head kv, so [B, H, L, hd] regroups as [B, KV, g·L, hd].
        let q = q.reshape([b, kv, g * l, hd]);
        let scores = matmul(q, k.swap_dims(2, 3));
        let mut s = to_f32(scores) * (1.0 / cfg.query_pre_attn_scalar.sqrt());
        if let Some(c) = cfg.attn_logit_softcapping {
            s = (s / c).tanh() * c;
        }
        let s = s.reshape([b, kv, g, l, l]) + bias.clone();
        let p = to_dtype(activation::softmax(s, 4), self.dtype).reshape([b, kv, g * l, l]);
        let o = matmul(p, v).reshape([b, h, l, hd]).swap_dims(1, 2).reshape([b, l, h * hd]);
        a.o_proj.forward(o)
    }

    /// Bytes this model holds on the device (for memory plans and reports).
    pub fn device_bytes(&self) -> u64 {
        let per = match self.dtype {
            DType::F16 | DType::BF16 => 2,
            _ => 4,
        };
        self.config.device_parameter_count() * per
    }

    /// Drops the weights and returns the device's cached blocks to the driver, so the
    /// memory is free for the next stage (the DiT).
    pub fn unload(self) {
        let device = self.device.clone();
        drop(self);
        device.memory_cleanup();
    }
}

fn round_to(dtype: DType, v: f32) -> f32 {
    match dtype {
        DType::F16 => half::f16::from_f32(v).to_f32(),
        DType::BF16 => half::bf16::from_f32(v).to_f32(),
        _ => v,
    }
}

/// `cos`, `sin` of the rotary angles `[1, 1, L, head_dim/2]`, computed in f32 the way
/// transformers does (inverse frequencies and angles in f32), then cast to `dtype`.
pub fn rope_tables(head_dim: usize, len: usize, theta: f64, device: &Device, dtype: DType) -> (Tensor<4>, Tensor<4>) {
    let half = head_dim / 2;
    let inv: Vec<f32> =
        (0..half).map(|i| 1.0f32 / (theta as f32).powf((2 * i) as f32 / head_dim as f32)).collect();
    let mut cos = Vec::with_capacity(len * half);
    let mut sin = Vec::with_capacity(len * half);
    for p in 0..len {
        for &f in &inv {
            let a = p as f32 * f;
            cos.push(a.cos());
            sin.push(a.sin());
        }
    }
    (
        tensor_from_f32(cos, vec![1, 1, len, half], device, dtype),
        tensor_from_f32(sin, vec![1, 1, len, half], device, dtype),
    )
}

/// Rotate-half RoPE on `[B, heads, L, head_dim]`: dims `[0, d/2)` pair with `[d/2, d)`.
fn rotate_half_rope(x: Tensor<4>, cos: &Tensor<4>, sin: &Tensor<4>) -> Tensor<4> {
    let [_, _, _, d] = x.dims();
    let x1 = x.clone().narrow(3, 0, d / 2);
    let x2 = x.narrow(3, d / 2, d / 2);
    let a = x1.clone() * cos.clone() - x2.clone() * sin.clone();
    let b = x2 * cos.clone() + x1 * sin.clone();
    Tensor::cat(vec![a, b], 3)
}

/// Additive attention bias `[B, 1, 1, L, L]` in f32: 0 where query `i` may see key `j`
/// (causal, key not padding, and within the window if any), else the lowest f32 (as
/// transformers' eager mask; scores are bounded, so it absorbs them exactly).
fn attention_bias(t: &TokenBatch, window: Option<usize>, device: &Device) -> Tensor<5> {
    let l = t.len;
    let mut bias = vec![f32::MIN; t.batch * l * l];
    for b in 0..t.batch {
        for i in 0..l {
            for j in 0..=i {
                let in_window = window.is_none_or(|w| i - j < w);
                if in_window && t.attention_mask[b * l + j] == 1 {
                    bias[(b * l + i) * l + j] = 0.0;
                }
            }
        }
    }
    tensor_from_f32(bias, vec![t.batch, 1, 1, l, l], device, DType::F32)
}
