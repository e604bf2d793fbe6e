//! `sana-video inspect DIR`: what a model folder holds, before loading anything heavy.

use crate::io::safetensors::Weights;
use crate::io::{diffusers, join, FileSource};
use crate::models::dit::{DitConfig, SanaVideoTransformer3DModel};
use crate::models::text_encoder::{Gemma2Config, Gemma2Model, GemmaTokenizer, LayerType};
use crate::Result;

/// A human-readable report of a pipeline or component folder.
pub fn inspect(source: &dyn FileSource, given: &str) -> Result<String> {
    let dir = diffusers::resolve_model_dir(source, given)?;
    let mut out = format!("model folder: {dir}\n");
    let components: Vec<(String, String, String)> = if source.exists(&join(&dir, "model_index.json")) {
        diffusers::list_components(source, &dir)?
    } else {
        vec![(String::new(), String::new(), String::new())]
    };
    for (name, lib, class) in components {
        let cdir = if name.is_empty() { dir.clone() } else { join(&dir, &name) };
        if !name.is_empty() {
            if class == "null" {
                out += &format!("\n[{name}] (none)\n");
                continue;
            }
            out += &format!("\n[{name}] {lib}.{class}\n");
        }
        if name == "tokenizer" || (name.is_empty() && source.exists(&join(&cdir, "tokenizer.json"))) {
            match GemmaTokenizer::load(source, &cdir) {
                Ok(t) => out += &format!("  tokenizer.json: {} tokens (pad id {})\n", t.vocab_size(), t.pad_id),
                Err(e) => out += &format!("  tokenizer: {e}\n"),
            }
            continue;
        }
        let sched_path = join(&cdir, "scheduler_config.json");
        if source.exists(&sched_path) && !source.exists(&join(&cdir, "config.json")) {
            match crate::samplers::SchedulerConfig::from_json(&source.read_string(&sched_path)?, &sched_path) {
                Ok(c) => out += &format!("  sampler {} (shift {}), the default of `generate`\n", c.kind.name(), c.shift),
                Err(e) => out += &format!("  scheduler: {e}\n"),
            }
            continue;
        }
        if class == "null" || !source.exists(&join(&cdir, "config.json")) {
            out += "  (no config.json: not inspected)\n";
            continue;
        }
        let cfg_text = source.read_string(&join(&cdir, "config.json"))?;
        let class_in_cfg = serde_json::from_str::<serde_json::Value>(&cfg_text)
            .ok()
            .and_then(|v| v.get("_class_name").and_then(|c| c.as_str()).map(str::to_string))
            .unwrap_or_default();
        let model_type = serde_json::from_str::<serde_json::Value>(&cfg_text)
            .ok()
            .and_then(|v| v.get("model_type").and_then(|c| c.as_str()).map(str::to_string))
            .unwrap_or_default();
        if model_type == "gemma2" {
            let cfg = Gemma2Model::read_config(source, &cdir)?;
            out += &describe_gemma2(&cfg);
            match Weights::open_dir(source, &cdir, "model") {
                Ok(w) => {
                    out += &describe_weights(&w, None);
                    let prefix = if w.meta("model.embed_tokens.weight").is_some() { "model." } else { "" };
                    let expected: Vec<(String, Vec<usize>)> =
                        cfg.expected_tensors().into_iter().map(|(n, s)| (format!("{prefix}{n}"), s)).collect();
                    match w.check(&expected) {
                        Ok(_) => out += "  tensor check: all expected tensors present with the right shapes\n",
                        Err(e) => out += &format!("  tensor check FAILED: {e}\n"),
                    }
                }
                Err(e) => out += &format!("  weights: {e}\n"),
            }
        } else if class_in_cfg.starts_with("SanaVideo") {
            let cfg = SanaVideoTransformer3DModel::read_config(source, &cdir)?;
            out += &describe_dit(&cfg);
            out += &describe_memory(&cfg);
            match Weights::open_dir(source, &cdir, "diffusion_pytorch_model") {
                Ok(w) => out += &describe_weights(&w, Some(&cfg)),
                Err(e) => out += &format!("  weights: {e}\n"),
            }
        } else if class_in_cfg.starts_with("AutoencoderKL") {
            match crate::models::vae::VaeConfig::read(source, &cdir) {
                Ok((_, cfg)) => {
                    out += &format!(
                        "  {class_in_cfg}: {}x spatial, {}x temporal, {} latent channels\n",
                        cfg.spatial_factor(),
                        cfg.temporal_factor(),
                        cfg.latent_channels()
                    );
                }
                Err(e) => out += &format!("  {e}\n"),
            }
            if let Ok(w) = Weights::open_dir(source, &cdir, "diffusion_pytorch_model") {
                out += &describe_weights(&w, None);
            }
        } else {
            out += &format!("  class {class_in_cfg}: not used by this engine\n");
            for stem in ["diffusion_pytorch_model", "model"] {
                if let Ok(w) = Weights::open_dir(source, &cdir, stem) {
                    out += &describe_weights(&w, None);
                    break;
                }
            }
        }
    }
    Ok(out)
}

fn describe_dit(c: &DitConfig) -> String {
    format!(
        "  {} ({:?}): {} layers, width {} ({} heads x {}), cross-attention {} x {}, caption {} ch, \
         FFN hidden {} (mlp_ratio {}), patch {:?}, in/out channels {}/{}, sample_size {}\n",
        c.class_name, c.kind, c.layers, c.dim, c.heads, c.head_dim, c.cross_heads, c.cross_head_dim,
        c.caption_channels, c.ffn_hidden, c.mlp_ratio, c.patch_size, c.in_channels, c.out_channels, c.sample_size
    )
}

fn human(bytes: f64) -> String {
    if bytes >= 1e9 { format!("{:.2} GB", bytes / 1e9) } else { format!("{:.1} MB", bytes / 1e6) }
}

fn describe_weights(w: &Weights, cfg: Option<&DitConfig>) -> String {
    let mut params: u64 = 0;
    let mut dtypes: std::collections::BTreeMap<String, usize> = Default::default();
    for name in w.names() {
        if let Some(m) = w.meta(&name) {
            params += m.shape.iter().product::<usize>() as u64;
            *dtypes.entry(format!("{:?}", m.dtype)).or_default() += 1;
        }
    }
    let mut s = format!(
        "  weights: {} ({} files, {} tensors)\n  parameters: {} ({:.3} B)\n  stored dtypes: {}\n",
        w.location(),
        w.files().len(),
        w.names().len(),
        params,
        params as f64 / 1e9,
        dtypes.iter().map(|(k, v)| format!("{k} x{v}")).collect::<Vec<_>>().join(", ")
    );
    s += &format!(
        "  weights in memory: f32 {}, f16/bf16 {}\n",
        human(params as f64 * 4.0),
        human(params as f64 * 2.0)
    );
    if let Some(cfg) = cfg {
        match w.check(&cfg.expected_tensors()) {
            Ok(unexpected) if unexpected.is_empty() => s += "  tensor check: all expected tensors present with the right shapes\n",
            Ok(unexpected) => s += &format!("  tensor check: ok; unexpected tensors ignored: {}\n", unexpected.join(", ")),
            Err(e) => s += &format!("  tensor check FAILED: {e}\n"),
        }
    }
    s
}

/// Estimated peak memory of one DiT forward per compute dtype, at the official 5 s clip sizes
/// (CFG batch 2, 300 caption tokens).
fn describe_memory(c: &DitConfig) -> String {
    let mut s = String::from("  estimated peak memory of one forward, CFG batch 2, 300 text tokens:\n");
    for (label, tokens) in [("480p 81 frames, 32,760 tokens/sample", 32_760usize), ("720p 81 frames, 9,680 tokens/sample", 9_680)] {
        let f32b = c.forward_peak_bytes(2, tokens, 300, 4) as f64;
        let halfb = c.forward_peak_bytes(2, tokens, 300, 2) as f64;
        s += &format!("    {label}: f32 {}, f16/bf16 {}\n", human(f32b), human(halfb));
    }
    s
}

fn describe_gemma2(c: &Gemma2Config) -> String {
    let sliding = c.layer_types.iter().filter(|t| **t == LayerType::Sliding).count();
    let dev = c.device_parameter_count() as f64;
    let act = |bytes| human(c.forward_peak_bytes(1, 520, bytes) as f64);
    format!(
        "  Gemma2Model: {} layers ({} with a sliding window of {}, {} global), hidden {}, {} heads / {} KV heads x {}, \
         MLP {}, vocab {}, RoPE theta {}, attention soft-cap {}\n  \
         on the device (the embedding table stays on the host): {:.1} M parameters, f32 {}, f16/bf16 {}; \
         activations of one 520-token prompt: f32 {}, bf16 {}\n",
        c.num_hidden_layers, sliding, c.sliding_window.map_or("-".into(), |w| w.to_string()), c.num_hidden_layers - sliding,
        c.hidden_size, c.num_attention_heads, c.num_key_value_heads, c.head_dim, c.intermediate_size, c.vocab_size,
        c.rope_theta, c.attn_logit_softcapping.map_or("none".into(), |v| v.to_string()), dev / 1e6, human(dev * 4.0),
        human(dev * 2.0), act(4), act(2)
    )
}
