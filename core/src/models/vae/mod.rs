//! The video autoencoders (MODEL-SPEC §7), chosen by the checkpoint's own
//! `vae/config.json`: `wan/` (Wan2.1, `AutoencoderKLWan`: the 480p and LongSANA
//! checkpoints; causal, streams frame by frame) and `ltx2/` (LTX-2,
//! `AutoencoderKLLTX2Video`: the 720p checkpoint).

pub mod conv;
pub mod ltx2;
pub mod tiling;
pub mod wan;

pub use tiling::Tiling;

use burn::tensor::{DType, Device, Tensor};

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

/// Either VAE's config, read before anything heavy so inputs can be checked first.
pub enum VaeConfig {
    Wan(wan::WanVaeConfig),
    Ltx2(ltx2::Ltx2VaeConfig),
}

impl VaeConfig {
    /// The `vae/` folder and its parsed config; classes we do not implement are refused.
    pub fn read(source: &dyn FileSource, dir: &str) -> Result<(String, VaeConfig)> {
        let (dir, class) = vae_class(source, dir)?;
        let cfg = match class.as_str() {
            "AutoencoderKLWan" => VaeConfig::Wan(wan::AutoencoderKLWan::read_config(source, &dir)?),
            "AutoencoderKLLTX2Video" => VaeConfig::Ltx2(ltx2::AutoencoderKLLTX2Video::read_config(source, &dir)?),
            other => {
                return Err(Error::config(
                    join(&dir, "config.json"),
                    format!("VAE class `{other}` is not supported (AutoencoderKLWan or AutoencoderKLLTX2Video)"),
                ))
            }
        };
        Ok((dir, cfg))
    }

    pub fn check_latents(&self, dims: &[usize]) -> Result<()> {
        match self {
            VaeConfig::Wan(c) => c.check_latents(dims),
            VaeConfig::Ltx2(c) => c.check_latents(dims),
        }
    }

    pub fn check_sample(&self, dims: &[usize]) -> Result<()> {
        match self {
            VaeConfig::Wan(c) => c.check_sample(dims),
            VaeConfig::Ltx2(c) => c.check_sample(dims),
        }
    }

    /// Pixels per latent position along height and width.
    pub fn spatial_factor(&self) -> usize {
        match self {
            VaeConfig::Wan(c) => c.spatial_factor(),
            VaeConfig::Ltx2(c) => c.spatial_factor(),
        }
    }

    /// Video frames per latent frame (after the first).
    pub fn temporal_factor(&self) -> usize {
        match self {
            VaeConfig::Wan(c) => c.temporal_factor(),
            VaeConfig::Ltx2(c) => c.temporal_factor(),
        }
    }

    pub fn latent_channels(&self) -> usize {
        match self {
            VaeConfig::Wan(c) => c.z_dim,
            VaeConfig::Ltx2(c) => c.latent_channels,
        }
    }
}

/// Either VAE, behind one interface.
pub enum Vae {
    Wan(wan::AutoencoderKLWan),
    Ltx2(ltx2::AutoencoderKLLTX2Video),
}

impl Vae {
    /// Loads the VAE its config names; other classes are refused by name. Returns the
    /// tensors present but unused.
    pub fn load(source: &dyn FileSource, dir: &str, device: &Device, dtype: DType) -> Result<(Vae, Vec<String>)> {
        let (dir, cfg) = VaeConfig::read(source, dir)?;
        match cfg {
            VaeConfig::Wan(_) => wan::AutoencoderKLWan::load(source, &dir, device, dtype).map(|(v, u)| (Vae::Wan(v), u)),
            VaeConfig::Ltx2(_) => ltx2::AutoencoderKLLTX2Video::load(source, &dir, device, dtype).map(|(v, u)| (Vae::Ltx2(v), u)),
        }
    }

    pub fn check_latents(&self, dims: &[usize]) -> Result<()> {
        match self {
            Vae::Wan(v) => v.check_latents(dims),
            Vae::Ltx2(v) => v.check_latents(dims),
        }
    }

    pub fn check_sample(&self, dims: &[usize]) -> Result<()> {
        match self {
            Vae::Wan(v) => v.check_sample(dims),
            Vae::Ltx2(v) => v.check_sample(dims),
        }
    }

    /// `vae.decode(latents).sample` for the whole sequence.
    pub fn decode(&self, z: Tensor<5>) -> Result<Tensor<5>> {
        match self {
            Vae::Wan(v) => v.decode(z),
            Vae::Ltx2(v) => v.decode(z),
        }
    }

    /// Pixels per latent position along height and width.
    pub fn spatial_factor(&self) -> usize {
        match self {
            Vae::Wan(v) => v.config.spatial_factor(),
            Vae::Ltx2(v) => v.config.spatial_factor(),
        }
    }

    /// The whole-sequence decode done in overlapping spatial tiles, blended (less memory,
    /// small seams: see BENCHMARKS.md for the measured error).
    pub fn decode_tiled(&self, z: Tensor<5>, tiling: Tiling) -> Result<Tensor<5>> {
        self.check_latents(&z.dims())?;
        tiling::decode_tiled(z, self.spatial_factor(), tiling, |t| self.decode(t))
    }

    /// `vae.encode(x).latent_dist.mean`.
    pub fn encode_mean(&self, x: Tensor<5>) -> Result<Tensor<5>> {
        match self {
            Vae::Wan(v) => v.encode_mean(x),
            Vae::Ltx2(v) => v.encode_mean(x),
        }
    }
}
