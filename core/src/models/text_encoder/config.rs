//! `text_encoder/config.json` of `Gemma2Model` (transformers 5.24.0
//! `models/gemma2/configuration_gemma2.py`; MODEL-SPEC §6.1), in both layouts seen in the
//! wild: transformers 4.x (`rope_theta` at top level, no `layer_types`) and 5.x
//! (`rope_parameters`, `layer_types`).

use serde::Deserialize;
use serde_json::Value;

use crate::{Error, Result};

/// Attention span of one layer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum LayerType {
    Full,
    /// Causal window: query `i` sees keys `j` with `i - window < j <= i`.
    Sliding,
}

#[derive(Clone, Debug)]
pub struct Gemma2Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_hidden_layers: usize,
    pub num_attention_heads: usize,
    pub num_key_value_heads: usize,
    pub head_dim: usize,
    pub rms_norm_eps: f64,
    pub rope_theta: f64,
    pub attention_bias: bool,
    pub query_pre_attn_scalar: f64,
    pub sliding_window: Option<usize>,
    pub attn_logit_softcapping: Option<f64>,
    pub layer_types: Vec<LayerType>,
    pub pad_token_id: Option<usize>,
}

#[derive(Deserialize, Debug)]
struct RawConfig {
    model_type: Option<String>,
    #[serde(default = "d256000")]
    vocab_size: usize,
    #[serde(default = "d2304")]
    hidden_size: usize,
    #[serde(default = "d9216")]
    intermediate_size: usize,
    #[serde(default = "d26")]
    num_hidden_layers: usize,
    #[serde(default = "d8")]
    num_attention_heads: usize,
    #[serde(default = "d4")]
    num_key_value_heads: usize,
    #[serde(default = "d256")]
    head_dim: usize,
    hidden_activation: Option<String>,
    hidden_act: Option<String>,
    #[serde(default = "d1e6")]
    rms_norm_eps: f64,
    rope_theta: Option<f64>,
    rope_parameters: Option<Value>,
    rope_scaling: Option<Value>,
    #[serde(default)]
    attention_bias: bool,
    #[serde(default = "d256f")]
    query_pre_attn_scalar: f64,
    #[serde(default = "d4096")]
    sliding_window: Option<usize>,
    layer_types: Option<Vec<String>>,
    #[serde(default = "d50")]
    attn_logit_softcapping: Option<f64>,
    use_bidirectional_attention: Option<bool>,
    pad_token_id: Option<usize>,
}

fn d256000() -> usize { 256_000 }
fn d2304() -> usize { 2304 }
fn d9216() -> usize { 9216 }
fn d26() -> usize { 26 }
fn d8() -> usize { 8 }
fn d4() -> usize { 4 }
fn d256() -> usize { 256 }
fn d256f() -> f64 { 256.0 }
fn d1e6() -> f64 { 1e-6 }
fn d4096() -> Option<usize> { Some(4096) }
fn d50() -> Option<f64> { Some(50.0) }

impl Gemma2Config {
    pub fn from_json(text: &str, path: &str) -> Result<Gemma2Config> {
        let raw: RawConfig = serde_json::from_str(text).map_err(|e| Error::config(path, format!("invalid config: {e}")))?;
        let bad = |msg: String| Error::config(path, msg);
        if let Some(t) = &raw.model_type {
            if t != "gemma2" {
                return Err(bad(format!("model_type `{t}` is not supported; the text encoder must be a Gemma-2 model (`gemma2`)")));
            }
        }
        // Newer configs name the activation `hidden_activation`; both mean the same here.
        let act = raw.hidden_activation.or(raw.hidden_act).unwrap_or_else(|| "gelu_pytorch_tanh".into());
        if !matches!(act.as_str(), "gelu_pytorch_tanh" | "gelu_new" | "gelu_fast") {
            return Err(bad(format!("hidden_activation `{act}` is not supported (only the tanh GELU, `gelu_pytorch_tanh`)")));
        }
        if raw.use_bidirectional_attention == Some(true) {
            return Err(bad("use_bidirectional_attention = true is not supported (SANA's Gemma-2 is causal)".into()));
        }
        if raw.rope_scaling.as_ref().is_some_and(|v| !v.is_null()) {
            return Err(bad("rope_scaling is not supported (Gemma-2 uses plain RoPE)".into()));
        }
        let rope_theta = match &raw.rope_parameters {
            Some(Value::Object(p)) => {
                let kind = p.get("rope_type").and_then(Value::as_str).unwrap_or("default");
                if kind != "default" {
                    return Err(bad(format!("rope_parameters.rope_type `{kind}` is not supported (only `default`)")));
                }
                match p.get("rope_theta").and_then(Value::as_f64).or(raw.rope_theta) {
                    Some(t) => t,
                    None => return Err(bad("rope_parameters has no rope_theta".into())),
                }
            }
            Some(Value::Null) | None => raw.rope_theta.unwrap_or(10_000.0),
            Some(other) => return Err(bad(format!("rope_parameters must be an object, found {other}"))),
        };
        for (name, v) in [
            ("vocab_size", raw.vocab_size),
            ("hidden_size", raw.hidden_size),
            ("intermediate_size", raw.intermediate_size),
            ("num_hidden_layers", raw.num_hidden_layers),
            ("num_attention_heads", raw.num_attention_heads),
            ("num_key_value_heads", raw.num_key_value_heads),
            ("head_dim", raw.head_dim),
        ] {
            if v == 0 {
                return Err(bad(format!("{name} must be positive")));
            }
        }
        if raw.num_attention_heads % raw.num_key_value_heads != 0 {
            return Err(bad(format!(
                "num_attention_heads ({}) is not a multiple of num_key_value_heads ({})",
                raw.num_attention_heads, raw.num_key_value_heads
            )));
        }
        if raw.head_dim % 2 != 0 {
            return Err(bad(format!("head_dim {} must be even for rotary embeddings", raw.head_dim)));
        }
        if raw.query_pre_attn_scalar <= 0.0 {
            return Err(bad("query_pre_attn_scalar must be positive".into()));
        }
        if raw.sliding_window == Some(0) {
            return Err(bad("sliding_window must be positive".into()));
        }
        // transformers' default pattern: sliding on even layers, global on odd ones.
        let layer_types = match raw.layer_types {
            None => (0..raw.num_hidden_layers)
                .map(|i| if (i + 1) % 2 == 1 { LayerType::Sliding } else { LayerType::Full })
                .collect(),
            Some(names) => {
                if names.len() != raw.num_hidden_layers {
                    return Err(bad(format!(
                        "layer_types has {} entries but num_hidden_layers is {}",
                        names.len(),
                        raw.num_hidden_layers
                    )));
                }
                names
                    .iter()
                    .map(|n| match n.as_str() {
                        "full_attention" => Ok(LayerType::Full),
                        "sliding_attention" => Ok(LayerType::Sliding),
                        other => Err(bad(format!(
                            "layer_types entry `{other}` is not supported (full_attention or sliding_attention)"
                        ))),
                    })
                    .collect::<Result<Vec<_>>>()?
            }
        };
        if layer_types.contains(&LayerType::Sliding) && raw.sliding_window.is_none() {
            return Err(bad("layer_types has sliding_attention layers but sliding_window is null".into()));
        }
        Ok(Gemma2Config {
            vocab_size: raw.vocab_size,
            hidden_size: raw.hidden_size,
            intermediate_size: raw.intermediate_size,
            num_hidden_layers: raw.num_hidden_layers,
            num_attention_heads: raw.num_attention_heads,
            num_key_value_heads: raw.num_key_value_heads,
            head_dim: raw.head_dim,
            rms_norm_eps: raw.rms_norm_eps,
            rope_theta,
            attention_bias: raw.attention_bias,
            query_pre_attn_scalar: raw.query_pre_attn_scalar,
            sliding_window: raw.sliding_window,
            attn_logit_softcapping: raw.attn_logit_softcapping,
            layer_types,
            pad_token_id: raw.pad_token_id,
        })
    }

    /// Every tensor of a `Gemma2Model` with its shape (names without any `model.` prefix).
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let (d, hd) = (self.hidden_size, self.head_dim);
        let (q, kv) = (self.num_attention_heads * hd, self.num_key_value_heads * hd);
        let mut t = vec![("embed_tokens.weight".to_string(), vec![self.vocab_size, d]), ("norm.weight".into(), vec![d])];
        for i in 0..self.num_hidden_layers {
            let p = format!("layers.{i}");
            for (name, shape) in [
                ("self_attn.q_proj", vec![q, d]),
                ("self_attn.k_proj", vec![kv, d]),
                ("self_attn.v_proj", vec![kv, d]),
                ("self_attn.o_proj", vec![d, q]),
                ("mlp.gate_proj", vec![self.intermediate_size, d]),
                ("mlp.up_proj", vec![self.intermediate_size, d]),
                ("mlp.down_proj", vec![d, self.intermediate_size]),
            ] {
                if self.attention_bias && name.starts_with("self_attn") {
                    t.push((format!("{p}.{name}.bias"), vec![shape[0]]));
                }
                t.push((format!("{p}.{name}.weight"), shape));
            }
            for n in ["input_layernorm", "post_attention_layernorm", "pre_feedforward_layernorm", "post_feedforward_layernorm"]
            {
                t.push((format!("{p}.{n}.weight"), vec![d]));
            }
        }
        t
    }

    pub fn parameter_count(&self) -> u64 {
        self.expected_tensors().iter().map(|(_, s)| s.iter().product::<usize>() as u64).sum()
    }

    /// Parameters outside the embedding table (which stays on the host: only the rows of
    /// the prompt's tokens are read).
    pub fn device_parameter_count(&self) -> u64 {
        self.parameter_count() - (self.vocab_size * self.hidden_size) as u64
    }

    /// Peak activation bytes of one forward over `batch` sequences of `len` tokens
    /// (hidden states, the MLP's two intermediate tensors, one layer's attention scores
    /// in f32), in a compute dtype of `dtype_bytes`.
    pub fn forward_peak_bytes(&self, batch: usize, len: usize, dtype_bytes: usize) -> u64 {
        let (b, l, s) = (batch as u64, len as u64, dtype_bytes as u64);
        let hidden = b * l * self.hidden_size as u64 * s * 4;
        let mlp = b * l * self.intermediate_size as u64 * s * 3;
        let scores = b * self.num_attention_heads as u64 * l * l * 4 * 3;
        hidden + mlp + scores
    }
}
