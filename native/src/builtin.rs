//! The built-in model (builtin-model/ at the repository root: a small SANA-Video trained on
//! the synthetic motion dataset by tools/train, see its README), compiled into the binary so
//! `sana-video generate` makes a real video offline, with no download and no `--model`.

use sana_video_core::io::diffusers::{component_dir, resolve_model_dir};
use sana_video_core::models::dit::SanaVideoTransformer3DModel;
use sana_video_core::models::text_encoder::DEFAULT_NEGATIVE_PROMPT;
use sana_video_core::models::vae::VaeConfig;
use sana_video_core::pipelines::binning::bins_for;
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

/// The settings `generate` and `evaluate` use when no flag says otherwise.
pub struct ModelDefaults {
    pub height: usize,
    pub width: usize,
    pub frames: usize,
    pub steps: usize,
    pub negative_prompt: &'static str,
    /// Resolution binning: on for the released sample sizes, which have aspect bins.
    pub binning: bool,
}

/// Defaults from the model's configs (nothing heavy is read). The released checkpoints:
/// their sizes, 81 frames, 50 steps, the official negative prompt. The built-in model: what it
/// was trained for, 17 frames (1 s at 16 fps) of 128x128 and the empty prompt as the
/// unconditional branch (its caption dropout); being small, it needs only 20 steps. Other
/// models: their trained size (sample_size latent positions) and the released settings.
pub fn defaults(source: &dyn FileSource, model_dir: &str) -> Result<ModelDefaults, String> {
    let tdir = component_dir(source, model_dir, "transformer").map_err(|e| e.to_string())?;
    let dit = SanaVideoTransformer3DModel::read_config(source, &tdir).map_err(|e| e.to_string())?;
    let (height, width) = match dit.sample_size {
        22 => (704, 1280),
        30 => (480, 832),
        n => {
            let vdir = component_dir(source, model_dir, "vae").map_err(|e| e.to_string())?;
            let (_, vae) = VaeConfig::read(source, &vdir).map_err(|e| e.to_string())?;
            (n * vae.spatial_factor(), n * vae.spatial_factor())
        }
    };
    let builtin = model_dir == NAME;
    Ok(ModelDefaults {
        height,
        width,
        frames: if builtin { 17 } else { 81 },
        steps: if builtin { 20 } else { 50 },
        negative_prompt: if builtin { "" } else { DEFAULT_NEGATIVE_PROMPT },
        binning: bins_for(dit.sample_size).is_some(),
    })
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
