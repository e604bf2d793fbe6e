//! The LTX-2 video VAE, `AutoencoderKLLTX2Video` (diffusers 0.42.1; MODEL-SPEC §7.2): the
//! 720p checkpoint's autoencoder. 4x4 patchify, per-channel RMS norms without affine,
//! resnets of 3x3x3 convs with replicate padding in time (causal: the first frame twice
//! on the left; non-causal: first and last frame once each side) and zero or reflect
//! padding in space, space-to-depth downsamplers with an averaged residual, depth-to-space
//! upsamplers with a repeated residual. No clamp on the decoded video (diffusers has none).

pub mod config;

use burn::tensor::{activation, DType, Device, Tensor};

pub use config::{Ltx2VaeConfig, Padding};
use config::UpsamplePlan;

use crate::io::safetensors::Weights;
use crate::models::vae::conv::Conv3d;
use crate::io::{diffusers, join, FileSource};
use crate::nn::{to_dtype, to_f32};
use crate::{Error, Result};

/// `LTX2VideoCausalConv3d`: a 3x3x3 conv with temporal replicate padding.
pub struct Conv {
    pub conv: Conv3d,
    pub padding: Padding,
}

impl Conv {
    fn load(w: &Weights, p: &str, padding: Padding, device: &Device, dtype: DType) -> Result<Self> {
        Ok(Conv { conv: Conv3d::load(w, &format!("{p}.conv"), device, dtype)?, padding })
    }

    pub fn forward(&self, x: Tensor<5>, causal: bool) -> Tensor<5> {
        let t = x.dims()[2];
        let first = x.clone().narrow(2, 0, 1);
        let x = if causal {
            Tensor::cat(vec![first.clone(), first, x], 2)
        } else {
            let last = x.clone().narrow(2, t - 1, 1);
            Tensor::cat(vec![first, x, last], 2)
        };
        let (x, pad) = match self.padding {
            Padding::Zeros => (x, 1),
            Padding::Reflect => (reflect_pad_hw(x), 0),
        };
        self.conv.forward(x, 1, pad)
    }
}

/// Reflect padding by one on height and width (PyTorch `padding_mode="reflect"`).
fn reflect_pad_hw(x: Tensor<5>) -> Tensor<5> {
    let [_, _, _, h, w] = x.dims();
    let x = Tensor::cat(vec![x.clone().narrow(3, 1, 1), x.clone(), x.narrow(3, h - 2, 1)], 3);
    Tensor::cat(vec![x.clone().narrow(4, 1, 1), x.clone(), x.narrow(4, w - 2, 1)], 4)
}

/// `x / sqrt(mean(x², channels) + 1e-8)`, statistics in f32, no affine.
fn rms(x: Tensor<5>) -> Tensor<5> {
    let dtype = x.dtype();
    let x = to_f32(x);
    let ms = x.clone().square().mean_dim(1);
    to_dtype(x / (ms + 1e-8).sqrt(), dtype)
}

fn silu(x: Tensor<5>) -> Tensor<5> {
    activation::silu(x)
}

pub struct Resnet {
    pub conv1: Conv,
    pub conv2: Conv,
}

impl Resnet {
    fn load(w: &Weights, p: &str, pad: Padding, device: &Device, dtype: DType) -> Result<Self> {
        Ok(Resnet {
            conv1: Conv::load(w, &format!("{p}.conv1"), pad, device, dtype)?,
            conv2: Conv::load(w, &format!("{p}.conv2"), pad, device, dtype)?,
        })
    }

    fn forward(&self, x: Tensor<5>, causal: bool) -> Tensor<5> {
        let h = self.conv1.forward(silu(rms(x.clone())), causal);
        let h = self.conv2.forward(silu(rms(h)), causal);
        h + x
    }
}

/// `[B, C, T, H, W]` → `[B, C·st·sh·sw, T/st, H/sh, W/sw]`, channel order (c, st, sh, sw).
fn space_to_depth(x: Tensor<5>, s: [usize; 3]) -> Tensor<5> {
    let [b, c, t, h, w] = x.dims();
    let [st, sh, sw] = s;
    x.reshape([b, c, t / st, st, h / sh, sh, w / sw, sw])
        .permute([0, 1, 3, 5, 7, 2, 4, 6])
        .reshape([b, c * st * sh * sw, t / st, h / sh, w / sw])
}

/// The inverse: `[B, C·st·sh·sw, T, H, W]` → `[B, C, T·st, H·sh, W·sw]`.
fn depth_to_space(x: Tensor<5>, s: [usize; 3]) -> Tensor<5> {
    let [b, c, t, h, w] = x.dims();
    let [st, sh, sw] = s;
    let c2 = c / (st * sh * sw);
    x.reshape([b, c2, st, sh, sw, t, h, w]).permute([0, 1, 5, 2, 6, 3, 7, 4]).reshape([b, c2, t * st, h * sh, w * sw])
}

pub struct Downsampler {
    pub stride: [usize; 3],
    pub out_channels: usize,
    pub conv: Conv,
}

impl Downsampler {
    fn forward(&self, x: Tensor<5>, causal: bool) -> Tensor<5> {
        let st = self.stride[0];
        let x = if st > 1 { Tensor::cat(vec![x.clone().narrow(2, 0, st - 1), x], 2) } else { x };
        let r = space_to_depth(x.clone(), self.stride);
        let [b, c, t, h, w] = r.dims();
        let r = r.reshape([b, self.out_channels, c / self.out_channels, t, h, w]).mean_dim(2).reshape([b, self.out_channels, t, h, w]);
        space_to_depth(self.conv.forward(x, causal), self.stride) + r
    }
}

pub struct Upsampler {
    pub plan: UpsamplePlan,
    pub conv: Conv,
}

impl Upsampler {
    fn forward(&self, x: Tensor<5>, causal: bool) -> Tensor<5> {
        let s = self.plan.stride;
        let drop = s[0] - 1;
        let residual = self.plan.residual.then(|| {
            let r = depth_to_space(x.clone(), s);
            let repeats = s.iter().product::<usize>() / self.plan.upscale_factor;
            let r = Tensor::cat(vec![r; repeats], 1);
            let t = r.dims()[2];
            r.narrow(2, drop, t - drop)
        });
        let h = depth_to_space(self.conv.forward(x, causal), s);
        let t = h.dims()[2];
        let h = h.narrow(2, drop, t - drop);
        match residual {
            Some(r) => h + r,
            None => h,
        }
    }
}

pub struct DownBlock {
    pub resnets: Vec<Resnet>,
    pub downsampler: Option<Downsampler>,
}

pub struct UpBlock {
    pub upsampler: Option<Upsampler>,
    pub resnets: Vec<Resnet>,
}

pub struct AutoencoderKLLTX2Video {
    pub config: Ltx2VaeConfig,
    pub dtype: DType,
    pub device: Device,
    pub encoder_conv_in: Conv,
    pub down_blocks: Vec<DownBlock>,
    pub encoder_mid: Vec<Resnet>,
    pub encoder_conv_out: Conv,
    pub decoder_conv_in: Conv,
    pub decoder_mid: Vec<Resnet>,
    pub up_blocks: Vec<UpBlock>,
    pub decoder_conv_out: Conv,
    /// Per-channel latent statistics (persistent buffers in the weights file).
    pub latents_mean: Vec<f32>,
    pub latents_std: Vec<f32>,
}

impl AutoencoderKLLTX2Video {
    pub fn read_config(source: &dyn FileSource, dir: &str) -> Result<Ltx2VaeConfig> {
        let path = join(dir, "config.json");
        Ltx2VaeConfig::from_json(&source.read_string(&path)?, &path)
    }

    pub fn load(source: &dyn FileSource, dir: &str, device: &Device, dtype: DType) -> Result<(Self, Vec<String>)> {
        let dir = diffusers::component_dir(source, dir, "vae")?;
        let cfg = Self::read_config(source, &dir)?;
        let w = Weights::open_dir(source, &dir, "diffusion_pytorch_model")?;
        let unexpected = w.check(&cfg.expected_tensors())?;
        let (ep, dp) = (cfg.encoder_padding, cfg.decoder_padding);
        let res = |p: String, pad| Resnet::load(&w, &p, pad, device, dtype);
        let conv = |p: &str, pad| Conv::load(&w, p, pad, device, dtype);

        let mut down_blocks = Vec::new();
        for (i, b) in cfg.encoder_plan().iter().enumerate() {
            let resnets = (0..b.layers).map(|j| res(format!("encoder.down_blocks.{i}.resnets.{j}"), ep)).collect::<Result<_>>()?;
            let downsampler = match b.downsample {
                Some((stride, out)) => Some(Downsampler {
                    stride,
                    out_channels: out,
                    conv: conv(&format!("encoder.down_blocks.{i}.downsamplers.0.conv"), ep)?,
                }),
                None => None,
            };
            down_blocks.push(DownBlock { resnets, downsampler });
        }
        let enc_mid = cfg.layers_per_block[cfg.layers_per_block.len() - 1];
        let dec_mid = cfg.decoder_layers_per_block[cfg.decoder_layers_per_block.len() - 1];
        let mut up_blocks = Vec::new();
        for (i, b) in cfg.decoder_plan().into_iter().enumerate() {
            let upsampler = match b.upsample {
                Some(plan) => Some(Upsampler { plan, conv: conv(&format!("decoder.up_blocks.{i}.upsamplers.0.conv"), dp)? }),
                None => None,
            };
            let resnets = (0..b.layers).map(|j| res(format!("decoder.up_blocks.{i}.resnets.{j}"), dp)).collect::<Result<_>>()?;
            up_blocks.push(UpBlock { upsampler, resnets });
        }
        let vae = AutoencoderKLLTX2Video {
            encoder_conv_in: conv("encoder.conv_in", ep)?,
            down_blocks,
            encoder_mid: (0..enc_mid).map(|j| res(format!("encoder.mid_block.resnets.{j}"), ep)).collect::<Result<_>>()?,
            encoder_conv_out: conv("encoder.conv_out", ep)?,
            decoder_conv_in: conv("decoder.conv_in", dp)?,
            decoder_mid: (0..dec_mid).map(|j| res(format!("decoder.mid_block.resnets.{j}"), dp)).collect::<Result<_>>()?,
            up_blocks,
            decoder_conv_out: conv("decoder.conv_out", dp)?,
            latents_mean: w.read_f32("latents_mean")?.0,
            latents_std: w.read_f32("latents_std")?.0,
            config: cfg,
            dtype,
            device: device.clone(),
        };
        Ok((vae, unexpected))
    }

    /// Checks latents `[B, latent_channels, T, h, w]` (reflect padding needs h, w ≥ 2).
    pub fn check_latents(&self, dims: &[usize]) -> Result<()> {
        self.config.check_latents(dims)
    }

    /// `vae.decode(z).sample`: `[B, C, T, h, w]` → `[B, 3, 1 + 8(T-1), 32h, 32w]` (factors
    /// from the config). The decoder is non-causal in the released config: every frame
    /// depends on its neighbours, so this decodes the whole sequence at once.
    pub fn decode(&self, z: Tensor<5>) -> Result<Tensor<5>> {
        self.check_latents(&z.dims())?;
        let causal = self.config.decoder_causal;
        let mut x = self.decoder_conv_in.forward(z, causal);
        for r in &self.decoder_mid {
            x = r.forward(x, causal);
        }
        for b in &self.up_blocks {
            if let Some(u) = &b.upsampler {
                x = u.forward(x, causal);
            }
            for r in &b.resnets {
                x = r.forward(x, causal);
            }
        }
        let x = self.decoder_conv_out.forward(silu(rms(x)), causal);
        // Unpatchify: channel (c, p_w, p_h) → pixel (h·p + p_h, w·p + p_w).
        let p = self.config.patch_size;
        let [b, c, t, h, w] = x.dims();
        let c3 = c / (p * p);
        Ok(x.reshape([b, c3, p, p, t, h, w]).permute([0, 1, 4, 5, 3, 6, 2]).reshape([b, c3, t, h * p, w * p]))
    }

    /// Checks a video `[B, in_channels, 1 + 8k, H, W]` with H, W multiples of 32.
    pub fn check_sample(&self, dims: &[usize]) -> Result<()> {
        self.config.check_sample(dims)
    }

    /// `vae.encode(x).latent_dist.mean`: the first `latent_channels` outputs of the
    /// (causal, in the released config) encoder.
    pub fn encode_mean(&self, x: Tensor<5>) -> Result<Tensor<5>> {
        self.check_sample(&x.dims())?;
        let causal = self.config.encoder_causal;
        let p = self.config.patch_size;
        let [b, c, f, h, w] = x.dims();
        // Patchify: channel order (c, p_w, p_h).
        let x = x.reshape([b, c, f, h / p, p, w / p, p]).permute([0, 1, 6, 4, 2, 3, 5]).reshape([b, c * p * p, f, h / p, w / p]);
        let mut x = self.encoder_conv_in.forward(x, causal);
        for blk in &self.down_blocks {
            for r in &blk.resnets {
                x = r.forward(x, causal);
            }
            if let Some(d) = &blk.downsampler {
                x = d.forward(x, causal);
            }
        }
        for r in &self.encoder_mid {
            x = r.forward(x, causal);
        }
        let x = self.encoder_conv_out.forward(silu(rms(x)), causal);
        Ok(x.narrow(1, 0, self.config.latent_channels))
    }
}

impl AutoencoderKLLTX2Video {
    /// Latent frames of context an output frame needs on each side (left, right), from the
    /// decoder's layout: every 3-frame conv at a level running `r` frames per latent frame
    /// adds `1/r` (non-causal: each side; causal: `2/r` on the left), plus one frame of
    /// slack for the upsamplers' dropped first frames.
    pub fn decoder_context(&self) -> (usize, usize) {
        let causal = self.config.decoder_causal;
        let (mut left, mut right, mut rate) = (0.0f64, 0.0f64, 1.0f64);
        let mut conv = |n: usize, rate: f64| {
            if causal {
                left += 2.0 * n as f64 / rate;
            } else {
                left += n as f64 / rate;
                right += n as f64 / rate;
            }
        };
        conv(1 + 2 * self.decoder_mid.len(), rate);
        for b in &self.up_blocks {
            if let Some(u) = &b.upsampler {
                conv(1, rate);
                rate *= u.plan.stride[0] as f64;
            }
            conv(2 * b.resnets.len(), rate);
        }
        conv(1, rate);
        (left.ceil() as usize + 1, right.ceil() as usize + 1)
    }

    /// Starts a streaming decode. The released decoder is non-causal (each frame sees
    /// `decoder_context().1` latent frames ahead), so the stream holds back exactly the
    /// latent frames whose pixel frames still depend on frames not yet pushed, and decodes
    /// windows with enough context on both sides that every emitted frame equals the
    /// whole-sequence decode. Memory is bounded by the window, not the video length.
    pub fn decode_stream(&self) -> Ltx2DecodeStream<'_> {
        Ltx2DecodeStream { vae: self, frames: Vec::new(), first: 0, pushed: 0, emitted: 0, shape: None }
    }

    /// Pixel frames of latent frames `[a, b)`, decoding a window of `frames` (latent
    /// frames `first..first + frames.len()`, the end of which is the end of the video so
    /// far) with the decoder's context on both sides.
    fn decode_range(&self, frames: &[Tensor<5>], first: usize, a: usize, b: usize) -> Result<Tensor<5>> {
        let (cl, cr) = self.decoder_context();
        let w0 = a.saturating_sub(cl + 1).max(first);
        let w1 = (b + cr + 1).min(first + frames.len());
        let out = self.decode(Tensor::cat(frames[w0 - first..w1 - first].to_vec(), 2))?;
        // A window [w0, w1) decodes to the global pixel frames [tf·w0, tf·(w1 − 1) + 1).
        let tf = self.config.temporal_factor();
        let pix = |i: usize| if i == 0 { 0 } else { tf * (i - 1) + 1 };
        let (p0, p1) = (pix(a), pix(b));
        Ok(out.narrow(2, p0 - tf * w0, p1 - p0))
    }
}

/// A streaming LTX-2 decode in progress (see `AutoencoderKLLTX2Video::decode_stream`).
pub struct Ltx2DecodeStream<'a> {
    vae: &'a AutoencoderKLLTX2Video,
    /// Latent frames still needed as context, from absolute index `first`.
    frames: Vec<Tensor<5>>,
    first: usize,
    pushed: usize,
    emitted: usize,
    shape: Option<[usize; 3]>,
}

impl Ltx2DecodeStream<'_> {
    /// Adds latent frames `[B, C, t, h, w]`; returns the pixel frames that became final
    /// (possibly none: `[B, 3, 0, H, W]` is not representable, so `None`).
    pub fn push(&mut self, z: Tensor<5>) -> Result<Option<Tensor<5>>> {
        self.vae.check_latents(&z.dims())?;
        let d = z.dims();
        match self.shape {
            Some(s) if (s[0], s[1], s[2]) != (d[0], d[3], d[4]) => {
                return Err(Error::Input(format!("latent frames of shape {d:?} do not continue the stream")))
            }
            _ => self.shape = Some([d[0], d[3], d[4]]),
        }
        for i in 0..d[2] {
            self.frames.push(z.clone().narrow(2, i, 1));
        }
        self.pushed += d[2];
        let (_, cr) = self.vae.decoder_context();
        // Frames whose right context is complete even if the video went on.
        let ready = self.pushed.saturating_sub(cr + 1);
        self.emit(ready)
    }

    /// Latent frames currently held (bounded by the context, not by the video length).
    pub fn held_frames(&self) -> usize {
        self.frames.len()
    }

    /// Ends the stream: decodes the remaining frames (the true end of the video).
    pub fn finish(mut self) -> Result<Option<Tensor<5>>> {
        let n = self.pushed;
        self.emit(n)
    }

    fn emit(&mut self, upto: usize) -> Result<Option<Tensor<5>>> {
        if upto <= self.emitted {
            return Ok(None);
        }
        let out = self.vae.decode_range(&self.frames, self.first, self.emitted, upto)?;
        self.emitted = upto;
        // Drop latent frames no later output needs as left context.
        let (cl, _) = self.vae.decoder_context();
        let keep_from = self.emitted.saturating_sub(cl + 1);
        if keep_from > self.first {
            self.frames.drain(..keep_from - self.first);
            self.first = keep_from;
        }
        Ok(Some(out))
    }
}
