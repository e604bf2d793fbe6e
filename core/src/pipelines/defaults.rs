//! The settings a front end uses when the user names none, read from the model's configs
//! (nothing heavy is loaded). Shared by the CLI and the browser so both generate the same
//! video for the same seed.

use crate::io::diffusers::component_dir;
use crate::models::dit::{DitKind, SanaVideoTransformer3DModel};
use crate::models::text_encoder::DEFAULT_NEGATIVE_PROMPT;
use crate::models::vae::VaeConfig;
use crate::pipelines::binning::bins_for;
use crate::io::FileSource;
use crate::Result;

#[derive(Clone, Debug)]
pub struct ModelDefaults {
    pub height: usize,
    pub width: usize,
    pub frames: usize,
    pub steps: usize,
    /// Classifier-free guidance scale: 6 for the released checkpoints; 5 for the built-in
    /// model, chosen on validation prompts (tools/dataset/validation_prompts.txt, BENCHMARKS.md).
    pub cfg_scale: f32,
    pub negative_prompt: &'static str,
    /// Resolution binning: on for the released sample sizes, which have aspect bins.
    pub binning: bool,
    /// ` motion score: N.` appended to the prompt: LongSANA's released checkpoint was trained
    /// and is run with 10 (MODEL-SPEC §5.6); the others take none unless asked.
    pub motion_score: Option<u32>,
    /// LongSANA only: latent frames per chunk and the attention window (chunks) when no flag
    /// says otherwise (None: LongLive's 10 and every finished chunk).
    pub chunk_frames: Option<usize>,
    pub cached_blocks: Option<usize>,
}

/// The released checkpoints: their sizes, 81 frames, 50 steps, the official negative
/// prompt. The built-in model (`builtin`): what it was trained for, 17 frames (1 s at 16 fps)
/// of 128x128 and the empty prompt as the unconditional branch (its caption dropout); being
/// small, it needs only 20 steps, and guidance 5. Other models: their trained size (sample_size latent
/// positions) and the released settings.
pub fn defaults(source: &dyn FileSource, model_dir: &str, builtin: bool) -> Result<ModelDefaults> {
    let tdir = component_dir(source, model_dir, "transformer")?;
    let dit = SanaVideoTransformer3DModel::read_config(source, &tdir)?;
    let (height, width) = match dit.sample_size {
        22 => (704, 1280),
        30 => (480, 832),
        n => {
            let vdir = component_dir(source, model_dir, "vae")?;
            let (_, vae) = VaeConfig::read(source, &vdir)?;
            (n * vae.spatial_factor(), n * vae.spatial_factor())
        }
    };
    Ok(ModelDefaults {
        height,
        width,
        frames: if builtin { 17 } else { 81 },
        steps: if builtin { 20 } else { 50 },
        cfg_scale: if builtin { 5.0 } else { 6.0 },
        negative_prompt: if builtin { "" } else { DEFAULT_NEGATIVE_PROMPT },
        binning: bins_for(dit.sample_size).is_some(),
        motion_score: (dit.kind == DitKind::BlockCausal && !builtin && bins_for(dit.sample_size).is_some()).then_some(10),
        chunk_frames: None,
        cached_blocks: None,
    })
}
