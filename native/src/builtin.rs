//! The built-in model (builtin-model/ at the repository root: a small SANA-Video trained on
//! the synthetic motion dataset by tools/train, see its README), compiled into the binary so
//! `sana-video generate` makes a real video offline, with no download and no `--model`.

use sana_video_core::io::diffusers::resolve_model_dir;
use sana_video_core::pipelines::{self, ModelDefaults};
use sana_video_core::io::{FileSource, FsSource, StaticSource};

/// `--model builtin` (the default) names it.
pub const NAME: &str = "builtin";
/// `--model builtin-long`: the built-in model's block-causal variant (builtin-model-long/, a
/// transformer fine-tuned by tools/train/train_causal.py, and a VAE whose decoder was
/// fine-tuned on long clips) with the built-in tokenizer and scheduler. `generate` picks it when no `--model` is given and the
/// video is longer than the built-in model's 17 frames, or a LongSANA flag is used.
pub const LONG_NAME: &str = "builtin-long";

#[cfg(feature = "builtin")]
macro_rules! embedded {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!("../../builtin-model/", $path)) as &[u8])),*]
    };
}

// Without the `builtin` feature (on by default) the binary embeds no model: about 35 MB
// smaller, for builds that always name `--model` (the GPU-machine benchmarks).
#[cfg(feature = "builtin")]
pub static SOURCE: StaticSource = StaticSource {
    root: NAME,
    files: embedded!(
        "model_index.json",
        "scheduler/scheduler_config.json",
        "text_encoder/config.json",
        "text_encoder/model.safetensors",
        "tokenizer/tokenizer.json",
        "tokenizer/tokenizer_config.json",
        "transformer/config.json",
        "transformer/diffusion_pytorch_model.safetensors",
        "vae/config.json",
        "vae/diffusion_pytorch_model.safetensors",
    ),
};

#[cfg(feature = "builtin")]
pub static LONG_SOURCE: StaticSource = StaticSource {
    root: LONG_NAME,
    files: &[
        ("model_index.json", include_bytes!("../../builtin-model-long/model_index.json")),
        ("scheduler/scheduler_config.json", include_bytes!("../../builtin-model/scheduler/scheduler_config.json")),
        ("text_encoder/config.json", include_bytes!("../../builtin-model-long/text_encoder/config.json")),
        ("text_encoder/model.safetensors", include_bytes!("../../builtin-model-long/text_encoder/model.safetensors")),
        ("tokenizer/tokenizer.json", include_bytes!("../../builtin-model/tokenizer/tokenizer.json")),
        ("tokenizer/tokenizer_config.json", include_bytes!("../../builtin-model/tokenizer/tokenizer_config.json")),
        ("transformer/config.json", include_bytes!("../../builtin-model-long/transformer/config.json")),
        ("transformer/diffusion_pytorch_model.safetensors", include_bytes!("../../builtin-model-long/transformer/diffusion_pytorch_model.safetensors")),
        // Its own VAE: the built-in encoder, the decoder fine-tuned on long clips
        // (tools/train/device_vae_long.sh); the built-in decoder darkens past ~20 frames.
        ("vae/config.json", include_bytes!("../../builtin-model-long/vae/config.json")),
        ("vae/diffusion_pytorch_model.safetensors", include_bytes!("../../builtin-model-long/vae/diffusion_pytorch_model.safetensors")),
    ],
};

/// The settings `generate` and `evaluate` use when no flag says otherwise
/// (`sana_video_core::pipelines::defaults`, shared with the browser).
pub fn defaults(source: &dyn FileSource, model_dir: &str) -> Result<ModelDefaults, String> {
    let mut d = pipelines::defaults(source, model_dir, model_dir == NAME || model_dir == LONG_NAME).map_err(|e| e.to_string())?;
    if model_dir == LONG_NAME {
        // What train_causal.py trained: chunks of 2 latent frames, each reading the one before.
        d.frames = 161;
        d.chunk_frames = Some(2);
        d.cached_blocks = Some(1);
    }
    Ok(d)
}

/// The embedded model a name means, if any.
pub fn embedded(name: &str) -> Option<&'static StaticSource> {
    #[cfg(feature = "builtin")]
    return match name {
        NAME => Some(&SOURCE),
        LONG_NAME => Some(&LONG_SOURCE),
        _ => None,
    };
    #[cfg(not(feature = "builtin"))]
    {
        let _ = name;
        None
    }
}

/// The files and folder `--model` names: the built-in model when absent or `builtin`, else a
/// diffusers folder (or a repo id found in the Hugging Face cache) on disk.
pub fn resolve(model: Option<&str>) -> Result<(&'static dyn FileSource, String), String> {
    static DISK: FsSource = FsSource;
    let name = model.unwrap_or(NAME);
    if let Some(source) = embedded(name) {
        return Ok((source, name.to_string()));
    }
    if name == NAME || name == LONG_NAME {
        return Err(format!("this sana-video was built without its built-in models (cargo feature `builtin`): pass --model DIR instead of `{name}`"));
    }
    Ok((&DISK, resolve_model_dir(&DISK, name).map_err(|e| e.to_string())?))
}
