//! `vae/config.json` of `AutoencoderKLLTX2Video` (diffusers 0.42.1
//! `models/autoencoders/autoencoder_kl_ltx2.py`; MODEL-SPEC §7.2), and the layer plan it
//! implies (channel counts per block), shared by the tensor check and the loader.
//! Timestep conditioning, noise injection and `conv` downsamplers are refused.

use serde::Deserialize;
use serde_json::Value;

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Padding {
    Zeros,
    Reflect,
}

#[derive(Clone, Debug)]
pub struct Ltx2VaeConfig {
    pub in_channels: usize,
    pub out_channels: usize,
    pub latent_channels: usize,
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: Vec<usize>,
    pub downsample_type: Vec<[usize; 3]>,
    pub spatio_temporal_scaling: Vec<bool>,
    pub decoder_block_out_channels: Vec<usize>,
    pub decoder_layers_per_block: Vec<usize>,
    pub decoder_spatio_temporal_scaling: Vec<bool>,
    pub upsample_type: Vec<[usize; 3]>,
    pub upsample_residual: Vec<bool>,
    pub upsample_factor: Vec<usize>,
    pub patch_size: usize,
    pub encoder_causal: bool,
    pub decoder_causal: bool,
    pub encoder_padding: Padding,
    pub decoder_padding: Padding,
}

/// One down block: `layers` resnets at `channels`, then an optional downsampler to `out`.
#[derive(Clone, Debug)]
pub struct DownPlan {
    pub channels: usize,
    pub layers: usize,
    pub downsample: Option<([usize; 3], usize)>,
}

/// One up block: an optional upsampler (stride, in channels, conv out channels, residual,
/// upscale factor), then `layers` resnets at `channels`.
#[derive(Clone, Debug)]
pub struct UpPlan {
    pub upsample: Option<UpsamplePlan>,
    pub channels: usize,
    pub layers: usize,
}

#[derive(Clone, Debug)]
pub struct UpsamplePlan {
    pub stride: [usize; 3],
    pub in_channels: usize,
    pub conv_out: usize,
    pub residual: bool,
    pub upscale_factor: usize,
}

#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "_class_name")]
    class_name: Option<String>,
    #[serde(default = "d3")]
    in_channels: usize,
    #[serde(default = "d3")]
    out_channels: usize,
    #[serde(default = "d128")]
    latent_channels: usize,
    block_out_channels: Option<Vec<usize>>,
    down_block_types: Option<Vec<String>>,
    decoder_block_out_channels: Option<Vec<usize>>,
    layers_per_block: Option<Vec<usize>>,
    decoder_layers_per_block: Option<Vec<usize>>,
    spatio_temporal_scaling: Option<Value>,
    decoder_spatio_temporal_scaling: Option<Value>,
    decoder_inject_noise: Option<Value>,
    downsample_type: Option<Vec<String>>,
    upsample_type: Option<Vec<String>>,
    upsample_residual: Option<Value>,
    upsample_factor: Option<Vec<usize>>,
    #[serde(default)]
    timestep_conditioning: bool,
    #[serde(default = "d4")]
    patch_size: usize,
    #[serde(default = "d1")]
    patch_size_t: usize,
    #[serde(default = "dtrue")]
    encoder_causal: bool,
    #[serde(default = "dtrue")]
    decoder_causal: bool,
    encoder_spatial_padding_mode: Option<String>,
    decoder_spatial_padding_mode: Option<String>,
    spatial_compression_ratio: Option<usize>,
    temporal_compression_ratio: Option<usize>,
}

fn d1() -> usize { 1 }
fn d3() -> usize { 3 }
fn d4() -> usize { 4 }
fn d128() -> usize { 128 }
fn dtrue() -> bool { true }

/// A bool or a list of bools (diffusers accepts both) expanded to `n` entries.
fn bools(v: &Option<Value>, n: usize, default: bool, name: &str, path: &str) -> Result<Vec<bool>> {
    match v {
        None | Some(Value::Null) => Ok(vec![default; n]),
        Some(Value::Bool(b)) => Ok(vec![*b; n]),
        Some(Value::Array(a)) => {
            let out: Option<Vec<bool>> = a.iter().map(Value::as_bool).collect();
            match out {
                Some(o) if o.len() == n => Ok(o),
                _ => Err(Error::config(path, format!("{name} must be a bool or a list of {n} bools"))),
            }
        }
        Some(_) => Err(Error::config(path, format!("{name} must be a bool or a list of {n} bools"))),
    }
}

fn stride_of(kind: &str, name: &str, path: &str) -> Result<[usize; 3]> {
    match kind {
        "spatial" => Ok([1, 2, 2]),
        "temporal" => Ok([2, 1, 1]),
        "spatiotemporal" => Ok([2, 2, 2]),
        other => Err(Error::config(path, format!("{name} `{other}` is not supported (spatial, temporal or spatiotemporal)"))),
    }
}

fn padding(v: &Option<String>, default: Padding, name: &str, path: &str) -> Result<Padding> {
    match v.as_deref() {
        None => Ok(default),
        Some("zeros") => Ok(Padding::Zeros),
        Some("reflect") => Ok(Padding::Reflect),
        Some(other) => Err(Error::config(path, format!("{name} `{other}` is not supported (zeros or reflect)"))),
    }
}

impl Ltx2VaeConfig {
    pub fn from_json(text: &str, path: &str) -> Result<Ltx2VaeConfig> {
        let raw: Raw = serde_json::from_str(text).map_err(|e| Error::config(path, format!("invalid config: {e}")))?;
        let bad = |m: String| Error::config(path, m);
        if let Some(c) = &raw.class_name {
            if c != "AutoencoderKLLTX2Video" {
                return Err(bad(format!("_class_name `{c}` is not AutoencoderKLLTX2Video")));
            }
        }
        if raw.timestep_conditioning {
            return Err(bad("timestep_conditioning = true is not supported (the SANA-Video 720p VAE has none)".into()));
        }
        if raw.patch_size_t != 1 {
            return Err(bad(format!("patch_size_t {} is not supported (1)", raw.patch_size_t)));
        }
        let boc = raw.block_out_channels.unwrap_or_else(|| vec![256, 512, 1024, 2048]);
        let lpb = raw.layers_per_block.unwrap_or_else(|| vec![4, 6, 6, 2, 2]);
        let dboc = raw.decoder_block_out_channels.unwrap_or_else(|| vec![256, 512, 1024]);
        let dlpb = raw.decoder_layers_per_block.unwrap_or_else(|| vec![5, 5, 5, 5]);
        if lpb.len() != boc.len() + 1 || dlpb.len() != dboc.len() + 1 {
            return Err(bad(format!(
                "layers_per_block ({}) must have one more entry than block_out_channels ({}), and likewise for the decoder ({} vs {})",
                lpb.len(),
                boc.len(),
                dlpb.len(),
                dboc.len()
            )));
        }
        if let Some(types) = &raw.down_block_types {
            if let Some(t) = types.iter().find(|t| t.as_str() != "LTX2VideoDownBlock3D") {
                return Err(bad(format!("down_block_types entry `{t}` is not supported (LTX2VideoDownBlock3D)")));
            }
        }
        let n_enc = boc.len();
        let n_dec = dboc.len();
        let down: Vec<String> = raw.downsample_type.unwrap_or_else(|| {
            ["spatial", "temporal", "spatiotemporal", "spatiotemporal"].iter().map(|s| s.to_string()).collect()
        });
        let up: Vec<String> = raw.upsample_type.unwrap_or_else(|| vec!["spatiotemporal".into(); n_dec]);
        if down.len() != n_enc || up.len() != n_dec {
            return Err(bad("downsample_type / upsample_type lengths do not match the block counts".into()));
        }
        let noise = bools(&raw.decoder_inject_noise, n_dec + 1, false, "decoder_inject_noise", path)?;
        if noise.iter().any(|&b| b) {
            return Err(bad("decoder_inject_noise = true is not supported (noise injection)".into()));
        }
        let factor = raw.upsample_factor.unwrap_or_else(|| vec![2; n_dec]);
        if factor.len() != n_dec || factor.contains(&0) {
            return Err(bad(format!("upsample_factor must have {n_dec} positive entries")));
        }
        let cfg = Ltx2VaeConfig {
            in_channels: raw.in_channels,
            out_channels: raw.out_channels,
            latent_channels: raw.latent_channels,
            downsample_type: down.iter().map(|d| stride_of(d, "downsample_type", path)).collect::<Result<_>>()?,
            upsample_type: up.iter().map(|d| stride_of(d, "upsample_type", path)).collect::<Result<_>>()?,
            spatio_temporal_scaling: bools(&raw.spatio_temporal_scaling, n_enc, true, "spatio_temporal_scaling", path)?,
            decoder_spatio_temporal_scaling: bools(
                &raw.decoder_spatio_temporal_scaling,
                n_dec,
                true,
                "decoder_spatio_temporal_scaling",
                path,
            )?,
            upsample_residual: bools(&raw.upsample_residual, n_dec, true, "upsample_residual", path)?,
            upsample_factor: factor,
            block_out_channels: boc,
            layers_per_block: lpb,
            decoder_block_out_channels: dboc,
            decoder_layers_per_block: dlpb,
            patch_size: raw.patch_size,
            encoder_causal: raw.encoder_causal,
            decoder_causal: raw.decoder_causal,
            encoder_padding: padding(&raw.encoder_spatial_padding_mode, Padding::Zeros, "encoder_spatial_padding_mode", path)?,
            decoder_padding: padding(&raw.decoder_spatial_padding_mode, Padding::Reflect, "decoder_spatial_padding_mode", path)?,
        };
        // Channel arithmetic must work out, as diffusers' constructor assumes.
        cfg.check_plans().map_err(bad)?;
        if let Some(s) = raw.spatial_compression_ratio {
            if s != cfg.spatial_factor() {
                return Err(bad(format!("spatial_compression_ratio {s} disagrees with the blocks ({}x)", cfg.spatial_factor())));
            }
        }
        if let Some(t) = raw.temporal_compression_ratio {
            if t != cfg.temporal_factor() {
                return Err(bad(format!("temporal_compression_ratio {t} disagrees with the blocks ({}x)", cfg.temporal_factor())));
            }
        }
        Ok(cfg)
    }

    /// Checks latents `[B, latent_channels, T, h, w]` (reflect padding needs h, w ≥ 2).
    pub fn check_latents(&self, dims: &[usize]) -> Result<()> {
        let c = self.latent_channels;
        let min = if self.decoder_padding == Padding::Reflect { 2 } else { 1 };
        match dims {
            [b, ch, t, h, w] if *ch == c && *b > 0 && *t > 0 && *h >= min && *w >= min => Ok(()),
            _ => Err(Error::Input(format!(
                "latents have shape {dims:?}; the LTX-2 VAE decodes [batch, {c}, frames, height, width] with height and width at least {min}"
            ))),
        }
    }

    /// Checks a video `[B, in_channels, 1 + 8k, H, W]` with H, W multiples of 32.
    pub fn check_sample(&self, dims: &[usize]) -> Result<()> {
        let (ci, s, tf) = (self.in_channels, self.spatial_factor(), self.temporal_factor());
        let min = if self.encoder_padding == Padding::Reflect { 2 * s } else { s };
        let ok = match dims {
            [b, c, f, h, w] => {
                *b > 0 && *c == ci && *f % tf == 1 % tf && *f > 0 && h % s == 0 && w % s == 0 && *h >= min && *w >= min
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(Error::Input(format!(
                "video has shape {dims:?}; the LTX-2 VAE encodes [batch, {ci}, 1 + {tf}k frames, height, width] with height and width multiples of {s} (at least {min})"
            )))
        }
    }

    /// Pixels per latent position: the patch times every spatial stride of the decoder.
    pub fn spatial_factor(&self) -> usize {
        self.patch_size * self.decoder_plan().iter().filter_map(|p| p.upsample.as_ref()).map(|u| u.stride[1]).product::<usize>()
    }

    /// Video frames per latent frame after the first.
    pub fn temporal_factor(&self) -> usize {
        self.decoder_plan().iter().filter_map(|p| p.upsample.as_ref()).map(|u| u.stride[0]).product()
    }

    fn encoder_spatial(&self) -> usize {
        self.patch_size
            * self.spatio_temporal_scaling.iter().zip(&self.downsample_type).filter(|(s, _)| **s).map(|(_, t)| t[1]).product::<usize>()
    }

    fn encoder_temporal(&self) -> usize {
        self.spatio_temporal_scaling.iter().zip(&self.downsample_type).filter(|(s, _)| **s).map(|(_, t)| t[0]).product()
    }

    /// Encoder blocks in order (after `conv_in` to `latent_channels`).
    pub fn encoder_plan(&self) -> Vec<DownPlan> {
        let mut c = self.latent_channels;
        let mut plan = Vec::new();
        for i in 0..self.block_out_channels.len() {
            let out = self.block_out_channels[i];
            let ds = self.spatio_temporal_scaling[i].then_some((self.downsample_type[i], out));
            plan.push(DownPlan { channels: c, layers: self.layers_per_block[i], downsample: ds });
            c = if ds.is_some() { out } else { c };
        }
        plan
    }

    /// Channels at the encoder's mid block.
    pub fn encoder_top(&self) -> usize {
        self.encoder_plan().last().map_or(self.latent_channels, |p| p.downsample.map_or(p.channels, |(_, o)| o))
    }

    /// Decoder blocks in order (after `conv_in` and the mid block at `decoder_top`).
    pub fn decoder_plan(&self) -> Vec<UpPlan> {
        let rev: Vec<usize> = self.decoder_block_out_channels.iter().rev().copied().collect();
        let layers: Vec<usize> = self.decoder_layers_per_block.iter().rev().copied().collect();
        let scaling: Vec<bool> = self.decoder_spatio_temporal_scaling.iter().rev().copied().collect();
        let residual: Vec<bool> = self.upsample_residual.iter().rev().copied().collect();
        let factor: Vec<usize> = self.upsample_factor.iter().rev().copied().collect();
        let types: Vec<[usize; 3]> = self.upsample_type.clone();
        (0..rev.len())
            .map(|i| {
                let out = rev[i] / factor[i];
                let upsample = scaling[i].then(|| {
                    let stride = types[i];
                    let in_channels = out * factor[i];
                    UpsamplePlan {
                        stride,
                        in_channels,
                        conv_out: in_channels * stride.iter().product::<usize>() / factor[i],
                        residual: residual[i],
                        upscale_factor: factor[i],
                    }
                });
                UpPlan { upsample, channels: out, layers: layers[i + 1] }
            })
            .collect()
    }

    pub fn decoder_top(&self) -> usize {
        self.decoder_block_out_channels[self.decoder_block_out_channels.len() - 1]
    }

    /// The decoder's channel flow must be consistent (no shortcut resnets: the released
    /// configs have none, and diffusers' own channel bookkeeping breaks without it).
    fn check_plans(&self) -> std::result::Result<(), String> {
        let mut c = self.decoder_top();
        for (i, p) in self.decoder_plan().iter().enumerate() {
            match &p.upsample {
                Some(u) => {
                    if u.in_channels != c {
                        return Err(format!(
                            "decoder up block {i}: its upsampler expects {} channels but receives {c} (decoder_block_out_channels / upsample_factor inconsistent)",
                            u.in_channels
                        ));
                    }
                    let prod: usize = u.stride.iter().product();
                    if u.conv_out % prod != 0 || (u.residual && (c % prod != 0 || (prod / u.upscale_factor) * (c / prod) != u.conv_out / prod)) {
                        return Err(format!("decoder up block {i}: upsampler channel counts do not divide"));
                    }
                    c = u.conv_out / prod;
                }
                None => {}
            }
            if c != p.channels {
                return Err(format!(
                    "decoder up block {i} would need a shortcut resnet ({c} -> {} channels), which is not supported",
                    p.channels
                ));
            }
        }
        for (i, p) in self.encoder_plan().iter().enumerate() {
            if let Some((s, out)) = p.downsample {
                let prod: usize = s.iter().product();
                if out % prod != 0 || (p.channels * prod) % out != 0 {
                    return Err(format!("encoder down block {i}: downsampler channel counts do not divide"));
                }
            }
        }
        if self.encoder_spatial() != self.spatial_factor() || self.encoder_temporal() != self.temporal_factor() {
            return Err("encoder and decoder compress by different factors".into());
        }
        Ok(())
    }

    /// Every tensor with its shape (weights and the latent statistics buffers).
    pub fn expected_tensors(&self) -> Vec<(String, Vec<usize>)> {
        let mut t = vec![
            ("latents_mean".to_string(), vec![self.latent_channels]),
            ("latents_std".to_string(), vec![self.latent_channels]),
        ];
        let conv = |t: &mut Vec<(String, Vec<usize>)>, p: String, o: usize, i: usize| {
            t.push((format!("{p}.conv.weight"), vec![o, i, 3, 3, 3]));
            t.push((format!("{p}.conv.bias"), vec![o]));
        };
        let res = |t: &mut Vec<(String, Vec<usize>)>, p: String, c: usize| {
            conv(t, format!("{p}.conv1"), c, c);
            conv(t, format!("{p}.conv2"), c, c);
        };
        let p2 = self.patch_size * self.patch_size;
        conv(&mut t, "encoder.conv_in".into(), self.latent_channels, self.in_channels * p2);
        for (i, b) in self.encoder_plan().iter().enumerate() {
            for j in 0..b.layers {
                res(&mut t, format!("encoder.down_blocks.{i}.resnets.{j}"), b.channels);
            }
            if let Some((s, out)) = b.downsample {
                conv(&mut t, format!("encoder.down_blocks.{i}.downsamplers.0.conv"), out / s.iter().product::<usize>(), b.channels);
            }
        }
        let top = self.encoder_top();
        for j in 0..self.layers_per_block[self.layers_per_block.len() - 1] {
            res(&mut t, format!("encoder.mid_block.resnets.{j}"), top);
        }
        conv(&mut t, "encoder.conv_out".into(), self.latent_channels + 1, top);
        let dtop = self.decoder_top();
        conv(&mut t, "decoder.conv_in".into(), dtop, self.latent_channels);
        let dl: Vec<usize> = self.decoder_layers_per_block.iter().rev().copied().collect();
        for j in 0..dl[0] {
            res(&mut t, format!("decoder.mid_block.resnets.{j}"), dtop);
        }
        let plan = self.decoder_plan();
        for (i, b) in plan.iter().enumerate() {
            if let Some(u) = &b.upsample {
                conv(&mut t, format!("decoder.up_blocks.{i}.upsamplers.0.conv"), u.conv_out, u.in_channels);
            }
            for j in 0..b.layers {
                res(&mut t, format!("decoder.up_blocks.{i}.resnets.{j}"), b.channels);
            }
        }
        let last = plan.last().map_or(dtop, |b| b.channels);
        conv(&mut t, "decoder.conv_out".into(), self.out_channels * p2, last);
        t
    }

    pub fn parameter_count(&self) -> u64 {
        self.expected_tensors().iter().map(|(_, s)| s.iter().product::<usize>() as u64).sum()
    }
}
