//! The built-in model (builtin-model/ at the repository root: a small SANA-Video trained on
//! the synthetic motion dataset by tools/train, see its README), compiled into the binary so
//! `sana-video generate` makes a real video offline, with no download and no `--model`.

use sana_video_core::io::diffusers::resolve_model_dir;
use sana_video_core::pipelines::{self, ModelDefaults};
use sana_video_core::io::{FileSource, FsSource, StaticSource};

/// `--model builtin` (the default) names it.
pub const NAME: &str = "builtin";

macro_rules! embedded {
    ($($path:literal),* $(,)?) => {
        &[$(($path, include_bytes!(concat!("../../builtin-model/", $path)) as &[u8])),*]
    };
}

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

/// The settings `generate` and `evaluate` use when no flag says otherwise
/// (`sana_video_core::pipelines::defaults`, shared with the browser).
pub fn defaults(source: &dyn FileSource, model_dir: &str) -> Result<ModelDefaults, String> {
    pipelines::defaults(source, model_dir, model_dir == NAME).map_err(|e| e.to_string())
}

/// The files and folder `--model` names: the built-in model when absent or `builtin`, else a
/// diffusers folder (or a repo id found in the Hugging Face cache) on disk.
pub fn resolve(model: Option<&str>) -> Result<(&'static dyn FileSource, String), String> {
    static DISK: FsSource = FsSource;
    match model {
        None | Some(NAME) => Ok((&SOURCE, NAME.to_string())),
        Some(arg) => Ok((&DISK, resolve_model_dir(&DISK, arg).map_err(|e| e.to_string())?)),
    }
}
