//! The video autoencoders (MODEL-SPEC §7): `wan/` (Wan2.1, `AutoencoderKLWan`: the 480p
//! and LongSANA checkpoints). The LTX-2 VAE of the 720p checkpoint joins it next.

pub mod wan;

use crate::io::{diffusers, join, FileSource};
use crate::{Error, Result};

/// The `vae/` folder of a pipeline or component folder and its `_class_name`.
pub fn vae_class(source: &dyn FileSource, dir: &str) -> Result<(String, String)> {
    let dir = diffusers::component_dir(source, dir, "vae")?;
    let path = join(&dir, "config.json");
    let v: serde_json::Value =
        serde_json::from_str(&source.read_string(&path)?).map_err(|e| Error::file(&path, format!("invalid JSON: {e}")))?;
    let class = v.get("_class_name").and_then(|c| c.as_str()).unwrap_or("").to_string();
    Ok((dir, class))
}
