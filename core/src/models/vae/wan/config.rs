//! `vae/config.json` of `AutoencoderKLWan` (diffusers 0.42.1
//! `models/autoencoders/autoencoder_kl_wan.py`; MODEL-SPEC §7.1). Wan2.1 only: the Wan2.2
//! variants (`is_residual`, `patch_size`) and attention inside the down blocks
//! (`attn_scales`) are refused.

use serde::Deserialize;

use crate::{Error, Result};

#[derive(Clone, Debug)]
pub struct WanVaeConfig {
    pub base_dim: usize,
    pub decoder_base_dim: usize,
    pub z_dim: usize,
    pub dim_mult: Vec<usize>,
    pub num_res_blocks: usize,
    pub temperal_downsample: Vec<bool>,
    pub in_channels: usize,
    pub out_channels: usize,
    pub latents_mean: Vec<f32>,
    pub latents_std: Vec<f32>,
}

#[derive(Deserialize, Debug)]
struct Raw {
    #[serde(rename = "_class_name")]
    class_name: Option<String>,
    #[serde(default = "d96")]
    base_dim: usize,
    decoder_base_dim: Option<usize>,
    #[serde(default = "d16")]
    z_dim: usize,
    #[serde(default = "dmult")]
    dim_mult: Vec<usize>,
    #[serde(default = "d2")]
    num_res_blocks: usize,
    #[serde(default)]
    attn_scales: Vec<f64>,
    #[serde(default = "dtd")]
    temperal_downsample: Vec<bool>,
    #[serde(default)]
    is_residual: bool,
    #[serde(default = "d3")]
    in_channels: usize,
    #[serde(default = "d3")]
    out_channels: usize,
    patch_size: Option<usize>,
    latents_mean: Option<Vec<f32>>,
    latents_std: Option<Vec<f32>>,
    scale_factor_temporal: Option<usize>,
    scale_factor_spatial: Option<usize>,
}

fn d96() -> usize { 96 }
fn d16() -> usize { 16 }
fn d2() -> usize { 2 }
fn d3() -> usize { 3 }
fn dmult() -> Vec<usize> { vec![1, 2, 4, 4] }
fn dtd() -> Vec<bool> { vec![false, true, true] }

impl WanVaeConfig {
    pub fn from_json(text: &str, path: &str) -> Result<WanVaeConfig> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| Error::config(path, format!("invalid config: {e}")))?;
        let bad = |msg: String| Error::config(path, msg);
        if let Some(c) = &raw.class_name {
            if c != "AutoencoderKLWan" {
                return Err(bad(format!("_class_name `{c}` is not AutoencoderKLWan")));
            }
        }
        if raw.is_residual {
            return Err(bad("is_residual = true (the Wan2.2 VAE) is not supported; SANA-Video uses the Wan2.1 VAE".into()));
        }
        if raw.patch_size.is_some() {
            return Err(bad("patch_size is set (the Wan2.2 VAE) and is not supported; SANA-Video uses the Wan2.1 VAE".into()));
        }
        if !raw.attn_scales.is_empty() {
            return Err(bad(format!("attn_scales {:?} (attention in the down blocks) is not supported", raw.attn_scales)));
        }
        if raw.dim_mult.len() < 2 || raw.dim_mult.contains(&0) {
            return Err(bad(format!("dim_mult {:?} must have at least two positive entries", raw.dim_mult)));
        }
        if raw.temperal_downsample.len() != raw.dim_mult.len() - 1 {
            return Err(bad(format!(
                "temperal_downsample has {} entries; dim_mult {:?} needs {}",
                raw.temperal_downsample.len(),
                raw.dim_mult,
                raw.dim_mult.len() - 1
            )));
        }
        // diffusers encodes in chunks of 4 frames and decodes 1 -> 4: exactly two temporal stages.
        if raw.temperal_downsample.iter().filter(|&&t| t).count() != 2 {
            return Err(bad(format!(
                "temperal_downsample {:?}: exactly two temporal stages (4x in time) are supported",
                raw.temperal_downsample
            )));
        }
        for (name, v) in [("base_dim", raw.base_dim), ("z_dim", raw.z_dim), ("num_res_blocks", raw.num_res_blocks)] {
            if v == 0 {
                return Err(bad(format!("{name} must be positive")));
            }
        }
        let decoder_base_dim = raw.decoder_base_dim.unwrap_or(raw.base_dim);
        let top = decoder_base_dim * raw.dim_mult[raw.dim_mult.len() - 1];
        if top % 2 != 0 || raw.dim_mult.iter().any(|m| (m * decoder_base_dim) % 2 != 0) {
            return Err(bad("decoder channel counts must be even (the upsamplers halve them)".into()));
        }
        let cfg = WanVaeConfig {
            base_dim: raw.base_dim,
            decoder_base_dim,
            z_dim: raw.z_dim,
            dim_mult: raw.dim_mult,
            num_res_blocks: raw.num_res_blocks,
            temperal_downsample: raw.temperal_downsample,
            in_channels: raw.in_channels,
            out_channels: raw.out_channels,
            latents_mean: raw.latents_mean.unwrap_or_default(),
            latents_std: raw.latents_std.unwrap_or_default(),
        };
        if cfg.latents_mean.len() != cfg.z_dim || cfg.latents_std.len() != cfg.z_dim {
            return Err(bad(format!(
                "latents_mean / latents_std must have z_dim = {} entries (found {} / {})",
                cfg.z_dim,
                cfg.latents_mean.len(),
                cfg.latents_std.len()
            )));
        }
        if let Some(s) = raw.scale_factor_spatial {
            if s != cfg.spatial_factor() {
                return Err(bad(format!("scale_factor_spatial {s} disagrees with dim_mult ({}x)", cfg.spatial_factor())));
            }
        }
        if let Some(t) = raw.scale_factor_temporal {
            if t != 4 {
                return Err(bad(format!("scale_factor_temporal {t} is not supported (4)")));
            }
        }
        Ok(cfg)
    }

    /// Checks latents `[B, z_dim, T, h, w]` before any compute.
    pub fn check_latents(&self, dims: &[usize]) -> Result<()> {
        let z = self.z_dim;
        match dims {
            [b, c, t, h, w] if *c == z && [*b, *t, *h, *w].iter().all(|&d| d > 0) => Ok(()),
            _ => Err(Error::Input(format!(
                "latents have shape {dims:?}; the Wan VAE decodes [batch, {z}, frames, height, width] (all positive)"
            ))),
        }
    }

    /// Checks a pixel video `[B, in_channels, 1 + 4k, H, W]` with H, W multiples of 8.
    pub fn check_sample(&self, dims: &[usize]) -> Result<()> {
        let (ci, s) = (self.in_channels, self.spatial_factor());
        let ok = match dims {
            [b, c, f, h, w] => *b > 0 && *c == ci && *f % 4 == 1 && *h > 0 && *w > 0 && h % s == 0 && w % s == 0,
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Input(format!(
                "video has shape {dims:?}; the Wan VAE encodes [batch, {ci}, 1 + 4k frames, height, width] with height and width multiples of {s}"
            )))
        }
    }

    /// Pixels per latent position along height and width.
    pub fn spatial_factor(&self) -> usize {
        1 << (self.dim_mult.len() - 1)
    }

    /// Pixel frames per latent frame after the first.
    pub fn temporal_factor(&self) -> usize {
        4
    }

    /// Pixel frames decoded from `t` latent frames.
    pub fn pixel_frames(&self, t: usize) -> usize {
        1 + self.temporal_factor() * (t.max(1) - 1)
    }

    /// Encoder channel widths `[base, base·m0, base·m1, ...]`.
    pub fn encoder_dims(&self) -> Vec<usize> {
        std::iter::once(1).chain(self.dim_mult.iter().copied()).map(|m| m * self.base_dim).collect()
    }

    /// Decoder widths `[base·m_last, base·m_last, ..., base·m0]` (diffusers' `dims`).
    pub fn decoder_dims(&self) -> Vec<usize> {
        let last = self.dim_mult[self.dim_mult.len() - 1];
        std::iter::once(last).chain(self.dim_mult.iter().rev().copied()).map(|m| m * self.decoder_base_dim).collect()
    }

    /// Every tensor with its shape, for the pre-load check.
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let mut t = Vec::new();
        let conv3 = |t: &mut Vec<(String, Vec<usize>)>, p: String, o: usize, i: usize, k: [usize; 3]| {
            t.push((format!("{p}.weight"), vec![o, i, k[0], k[1], k[2]]));
            t.push((format!("{p}.bias"), vec![o]));
        };
        let conv2 = |t: &mut Vec<(String, Vec<usize>)>, p: String, o: usize, i: usize, k: usize| {
            t.push((format!("{p}.weight"), vec![o, i, k, k]));
            t.push((format!("{p}.bias"), vec![o]));
        };
        let res = |t: &mut Vec<(String, Vec<usize>)>, p: String, i: usize, o: usize| {
            t.push((format!("{p}.norm1.gamma"), vec![i, 1, 1, 1]));
            conv3(t, format!("{p}.conv1"), o, i, [3, 3, 3]);
            t.push((format!("{p}.norm2.gamma"), vec![o, 1, 1, 1]));
            conv3(t, format!("{p}.conv2"), o, o, [3, 3, 3]);
            if i != o {
                conv3(t, format!("{p}.conv_shortcut"), o, i, [1, 1, 1]);
            }
        };
        let mid = |t: &mut Vec<(String, Vec<usize>)>, p: &str, c: usize| {
            res(t, format!("{p}.mid_block.resnets.0"), c, c);
            t.push((format!("{p}.mid_block.attentions.0.norm.gamma"), vec![c, 1, 1]));
            conv2(t, format!("{p}.mid_block.attentions.0.to_qkv"), 3 * c, c, 1);
            conv2(t, format!("{p}.mid_block.attentions.0.proj"), c, c, 1);
            res(t, format!("{p}.mid_block.resnets.1"), c, c);
        };
        // Encoder.
        let dims = self.encoder_dims();
        conv3(&mut t, "encoder.conv_in".into(), dims[0], self.in_channels, [3, 3, 3]);
        let mut k = 0;
        let stages = self.dim_mult.len();
        for i in 0..stages {
            let (mut cin, cout) = (dims[i], dims[i + 1]);
            for _ in 0..self.num_res_blocks {
                res(&mut t, format!("encoder.down_blocks.{k}"), cin, cout);
                cin = cout;
                k += 1;
            }
            if i != stages - 1 {
                conv2(&mut t, format!("encoder.down_blocks.{k}.resample.1"), cout, cout, 3);
                if self.temperal_downsample[i] {
                    conv3(&mut t, format!("encoder.down_blocks.{k}.time_conv"), cout, cout, [3, 1, 1]);
                }
                k += 1;
            }
        }
        let top = dims[stages];
        mid(&mut t, "encoder", top);
        t.push(("encoder.norm_out.gamma".into(), vec![top, 1, 1, 1]));
        conv3(&mut t, "encoder.conv_out".into(), 2 * self.z_dim, top, [3, 3, 3]);
        conv3(&mut t, "quant_conv".into(), 2 * self.z_dim, 2 * self.z_dim, [1, 1, 1]);
        // Decoder.
        let d = self.decoder_dims();
        conv3(&mut t, "post_quant_conv".into(), self.z_dim, self.z_dim, [1, 1, 1]);
        conv3(&mut t, "decoder.conv_in".into(), d[0], self.z_dim, [3, 3, 3]);
        mid(&mut t, "decoder", d[0]);
        let up = self.temporal_upsample();
        for i in 0..stages {
            let mut cin = if i > 0 { d[i] / 2 } else { d[i] };
            let cout = d[i + 1];
            for j in 0..=self.num_res_blocks {
                res(&mut t, format!("decoder.up_blocks.{i}.resnets.{j}"), cin, cout);
                cin = cout;
            }
            if i != stages - 1 {
                conv2(&mut t, format!("decoder.up_blocks.{i}.upsamplers.0.resample.1"), cout / 2, cout, 3);
                if up[i] {
                    conv3(&mut t, format!("decoder.up_blocks.{i}.upsamplers.0.time_conv"), 2 * cout, cout, [3, 1, 1]);
                }
            }
        }
        let last = d[stages];
        t.push(("decoder.norm_out.gamma".into(), vec![last, 1, 1, 1]));
        conv3(&mut t, "decoder.conv_out".into(), self.out_channels, last, [3, 3, 3]);
        t
    }

    /// Per decoder stage: whether its upsampler is temporal (the reversed downsample list).
    pub fn temporal_upsample(&self) -> Vec<bool> {
        self.temperal_downsample.iter().rev().copied().collect()
    }

    pub fn parameter_count(&self) -> u64 {
        self.expected_tensors().iter().map(|(_, s)| s.iter().product::<usize>() as u64).sum()
    }
}
