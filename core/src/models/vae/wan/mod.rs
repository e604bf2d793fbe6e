//! The Wan2.1 video VAE, `AutoencoderKLWan` (diffusers 0.42.1; MODEL-SPEC §7.1): the
//! 480p and LongSANA checkpoints' autoencoder. Causal in time, so decoding streams
//! naturally: one latent frame in, its pixel frames out (1 for the first, 4 after), with
//! only the convs' two-frame caches carried between calls.
//!
//! ```text
//! sana-video debug vae-decode --model tests/fixtures/vae/wan_t3_3x5/vae \
//!     --inputs tests/fixtures/vae/wan_t3_3x5/decode_inputs.safetensors --output /tmp/dec.safetensors
//! ```

pub mod config;
pub mod layers;

use burn::tensor::{DType, Device, Tensor};

pub use config::WanVaeConfig;
use layers::{cached, AttentionBlock, CausalConv3d, Resample, ResidualBlock, RmsNorm};
pub use layers::TimeCache;

use crate::io::safetensors::Weights;
use crate::io::{diffusers, join, FileSource};
use crate::{Error, Result};

pub struct MidBlock {
    pub resnets: [ResidualBlock; 2],
    pub attention: AttentionBlock,
}

impl MidBlock {
    fn load(w: &Weights, p: &str, device: &Device, dtype: DType) -> Result<Self> {
        Ok(MidBlock {
            resnets: [
                ResidualBlock::load(w, &format!("{p}.resnets.0"), device, dtype)?,
                ResidualBlock::load(w, &format!("{p}.resnets.1"), device, dtype)?,
            ],
            attention: AttentionBlock::load(w, &format!("{p}.attentions.0"), device, dtype)?,
        })
    }

    /// Uses four cache slots.
    fn forward(&self, x: Tensor<5>, c: &mut [Option<Tensor<5>>]) -> Tensor<5> {
        let x = self.resnets[0].forward(x, &mut c[0..2]);
        let x = self.attention.forward(x);
        self.resnets[1].forward(x, &mut c[2..4])
    }
}

pub struct UpBlock {
    pub resnets: Vec<ResidualBlock>,
    pub upsampler: Option<Resample>,
}

pub struct Decoder {
    pub conv_in: CausalConv3d,
    pub mid_block: MidBlock,
    pub up_blocks: Vec<UpBlock>,
    pub norm_out: RmsNorm,
    pub conv_out: CausalConv3d,
}

pub enum DownLayer {
    Res(ResidualBlock),
    Resample(Resample),
}

pub struct Encoder {
    pub conv_in: CausalConv3d,
    pub down_blocks: Vec<DownLayer>,
    pub mid_block: MidBlock,
    pub norm_out: RmsNorm,
    pub conv_out: CausalConv3d,
}

pub struct AutoencoderKLWan {
    pub config: WanVaeConfig,
    pub dtype: DType,
    pub device: Device,
    pub encoder: Encoder,
    pub quant_conv: CausalConv3d,
    pub post_quant_conv: CausalConv3d,
    pub decoder: Decoder,
}

/// Caches carried between the chunks of one decode (or encode).
pub struct StreamState {
    convs: Vec<Option<Tensor<5>>>,
    times: Vec<TimeCache>,
}

impl StreamState {
    fn new(convs: usize, times: usize) -> Self {
        StreamState { convs: vec![None; convs], times: vec![TimeCache::Fresh; times] }
    }
}

impl AutoencoderKLWan {
    pub fn read_config(source: &dyn FileSource, dir: &str) -> Result<WanVaeConfig> {
        let path = join(dir, "config.json");
        WanVaeConfig::from_json(&source.read_string(&path)?, &path)
    }

    /// Loads a diffusers `vae/` folder (or a pipeline folder holding one), every tensor
    /// checked for presence and shape first. Returns the tensors present but unused.
    pub fn load(source: &dyn FileSource, dir: &str, device: &Device, dtype: DType) -> Result<(Self, Vec<String>)> {
        let dir = diffusers::component_dir(source, dir, "vae")?;
        let config = Self::read_config(source, &dir)?;
        let w = Weights::open_dir(source, &dir, "diffusion_pytorch_model")?;
        let unexpected = w.check(&config.expected_tensors())?;
        let conv = |p: &str, pad| CausalConv3d::load(&w, p, 1, pad, device, dtype);
        let res = |p: String| ResidualBlock::load(&w, &p, device, dtype);
        let stages = config.dim_mult.len();

        let mut down_blocks = Vec::new();
        let mut k = 0;
        for i in 0..stages {
            for _ in 0..config.num_res_blocks {
                down_blocks.push(DownLayer::Res(res(format!("encoder.down_blocks.{k}"))?));
                k += 1;
            }
            if i != stages - 1 {
                let p = format!("encoder.down_blocks.{k}");
                down_blocks.push(DownLayer::Resample(Resample::load_down(&w, &p, config.temperal_downsample[i], device, dtype)?));
                k += 1;
            }
        }
        let encoder = Encoder {
            conv_in: conv("encoder.conv_in", [1, 1])?,
            down_blocks,
            mid_block: MidBlock::load(&w, "encoder.mid_block", device, dtype)?,
            norm_out: RmsNorm::load(&w, "encoder.norm_out.gamma", device)?,
            conv_out: conv("encoder.conv_out", [1, 1])?,
        };
        let up = config.temporal_upsample();
        let mut up_blocks = Vec::new();
        for i in 0..stages {
            let resnets =
                (0..=config.num_res_blocks).map(|j| res(format!("decoder.up_blocks.{i}.resnets.{j}"))).collect::<Result<_>>()?;
            let upsampler = if i != stages - 1 {
                Some(Resample::load_up(&w, &format!("decoder.up_blocks.{i}.upsamplers.0"), up[i], device, dtype)?)
            } else {
                None
            };
            up_blocks.push(UpBlock { resnets, upsampler });
        }
        let decoder = Decoder {
            conv_in: conv("decoder.conv_in", [1, 1])?,
            mid_block: MidBlock::load(&w, "decoder.mid_block", device, dtype)?,
            up_blocks,
            norm_out: RmsNorm::load(&w, "decoder.norm_out.gamma", device)?,
            conv_out: conv("decoder.conv_out", [1, 1])?,
        };
        let vae = AutoencoderKLWan {
            quant_conv: conv("quant_conv", [0, 0])?,
            post_quant_conv: conv("post_quant_conv", [0, 0])?,
            encoder,
            decoder,
            config,
            dtype,
            device: device.clone(),
        };
        Ok((vae, unexpected))
    }

    fn decoder_slots(&self) -> (usize, usize) {
        let res: usize = self.decoder.up_blocks.iter().map(|b| b.resnets.len()).sum();
        (1 + 4 + 2 * res + 1, self.decoder.up_blocks.len())
    }

    /// Checks latents `[B, z_dim, T, h, w]` before any compute.
    pub fn check_latents(&self, dims: &[usize]) -> Result<()> {
        self.config.check_latents(dims)
    }

    /// Starts a streaming decode: push latent frames in order, get pixel frames back.
    pub fn decode_stream(&self) -> DecodeStream<'_> {
        let (convs, times) = self.decoder_slots();
        DecodeStream { vae: self, state: StreamState::new(convs, times), started: false, shape: None }
    }

    /// Continues a streaming decode from a [`DecodeStream::snapshot`] (LongSANA's resume), so
    /// the frames decoded next equal those an uninterrupted stream would give.
    pub fn decode_stream_from(&self, snap: StreamSnapshot) -> Result<DecodeStream<'_>> {
        let (convs, times) = self.decoder_slots();
        if snap.convs.len() != convs || snap.times.len() != times {
            return Err(Error::Input(format!(
                "the saved VAE decoder cache has {} conv and {} upsampling slots, this VAE {convs} and {times}",
                snap.convs.len(),
                snap.times.len()
            )));
        }
        Ok(DecodeStream {
            vae: self,
            state: StreamState { convs: snap.convs, times: snap.times },
            started: snap.started,
            shape: snap.shape,
        })
    }

    /// Whole-sequence decode, `[B, z, T, h, w]` (VAE space, as `vae.decode` takes it) to
    /// `[B, 3, 1 + 4(T-1), 8h, 8w]` in [-1, 1]: the first latent frame, then all others
    /// in one pass (the reference decodes one frame at a time; the causal caches make
    /// both the same, which the tests check).
    pub fn decode(&self, z: Tensor<5>) -> Result<Tensor<5>> {
        self.check_latents(&z.dims())?;
        self.decode_stream().push(z)
    }

    fn decode_chunk(&self, x: Tensor<5>, s: &mut StreamState) -> Tensor<5> {
        let d = &self.decoder;
        let x = self.post_quant_conv.forward(x, None);
        let mut x = cached(&d.conv_in, x, &mut s.convs[0]);
        x = d.mid_block.forward(x, &mut s.convs[1..5]);
        // The blocks up to the last temporal upsampler run on the whole chunk; after it every
        // layer is causal in time with at most two cached frames (resnets, spatial upsampling,
        // the head), so the full-resolution rest runs one frame at a time: the same values
        // (the caches carry the context, `tests/vae_parity.rs` checks streaming), a quarter of
        // the working set (the largest tensors of the decode: 480p f32, 613 MB for 4 frames).
        let split = self.config.temporal_upsample().iter().rposition(|&t| t).map_or(0, |k| k + 1).min(d.up_blocks.len());
        let mut i = 5;
        x = self.up_blocks(x, s, 0..split, &mut i);
        let t = x.dims()[2];
        let mut out = Vec::with_capacity(t);
        for f in 0..t {
            out.push(self.decode_tail(x.clone().narrow(2, f, 1), s, split, i));
        }
        if out.len() == 1 {
            out.pop().expect("one frame")
        } else {
            Tensor::cat(out, 2)
        }
    }

    /// The decoder's up blocks `blocks`, their conv cache slots from `*i` on (advanced past them).
    fn up_blocks(&self, mut x: Tensor<5>, s: &mut StreamState, blocks: std::ops::Range<usize>, i: &mut usize) -> Tensor<5> {
        for stage in blocks {
            let block = &self.decoder.up_blocks[stage];
            for r in &block.resnets {
                x = r.forward(x, &mut s.convs[*i..*i + 2]);
                *i += 2;
            }
            if let Some(u) = &block.upsampler {
                x = u.forward(x, &mut s.times[stage]);
            }
        }
        x
    }

    /// The decoder from up block `split` (conv cache slot `i`) to the pixels.
    fn decode_tail(&self, x: Tensor<5>, s: &mut StreamState, split: usize, mut i: usize) -> Tensor<5> {
        let d = &self.decoder;
        let x = self.up_blocks(x, s, split..d.up_blocks.len(), &mut i);
        let x = d.norm_out.forward_silu(x);
        let x = cached(&d.conv_out, x, &mut s.convs[i]);
        x.clamp(-1.0, 1.0)
    }

    /// Checks a pixel video `[B, in_channels, 1 + 4k, H, W]` with H, W multiples of 8.
    pub fn check_sample(&self, dims: &[usize]) -> Result<()> {
        self.config.check_sample(dims)
    }

    /// The posterior mean `[B, z, 1 + (F-1)/4, H/8, W/8]` of `vae.encode(x).latent_dist`
    /// (before SANA's latent normalisation). Processes the first frame, then groups of 4,
    /// as the reference does.
    pub fn encode_mean(&self, x: Tensor<5>) -> Result<Tensor<5>> {
        self.check_sample(&x.dims())?;
        let f = x.dims()[2];
        let e = &self.encoder;
        let convs = 1 + 4 + 2 * e.down_blocks.iter().filter(|l| matches!(l, DownLayer::Res(_))).count() + 1;
        let mut s = StreamState::new(convs, e.down_blocks.len());
        let mut outs = Vec::new();
        let mut start = 0;
        while start < f {
            let n = if start == 0 { 1 } else { 4 };
            outs.push(self.encode_chunk(x.clone().narrow(2, start, n), &mut s));
            start += n;
        }
        let h = self.quant_conv.forward(Tensor::cat(outs, 2), None);
        Ok(h.narrow(1, 0, self.config.z_dim))
    }

    fn encode_chunk(&self, x: Tensor<5>, s: &mut StreamState) -> Tensor<5> {
        let e = &self.encoder;
        let c = &mut s.convs;
        let mut x = cached(&e.conv_in, x, &mut c[0]);
        let mut i = 1;
        for (k, layer) in e.down_blocks.iter().enumerate() {
            x = match layer {
                DownLayer::Res(r) => {
                    let y = r.forward(x, &mut c[i..i + 2]);
                    i += 2;
                    y
                }
                DownLayer::Resample(r) => r.forward(x, &mut s.times[k]),
            };
        }
        x = e.mid_block.forward(x, &mut c[i..i + 4]);
        i += 4;
        let x = e.norm_out.forward_silu(x);
        cached(&e.conv_out, x, &mut c[i])
    }
}

/// A decode in progress. Memory is the model plus two frames per causal conv, whatever
/// the video length.
pub struct DecodeStream<'a> {
    vae: &'a AutoencoderKLWan,
    state: StreamState,
    started: bool,
    /// Batch, height, width of the first push; later pushes must match.
    shape: Option<[usize; 3]>,
}

/// The caches of a decode in progress, to continue it later (possibly in another process).
#[derive(Clone)]
pub struct StreamSnapshot {
    pub convs: Vec<Option<Tensor<5>>>,
    pub times: Vec<TimeCache>,
    pub started: bool,
    /// Batch, latent height, latent width of the stream.
    pub shape: Option<[usize; 3]>,
}

impl DecodeStream<'_> {
    pub fn snapshot(&self) -> StreamSnapshot {
        StreamSnapshot { convs: self.state.convs.clone(), times: self.state.times.clone(), started: self.started, shape: self.shape }
    }

    /// Decodes the next latent frames `[B, z, t, h, w]` in one pass and returns their
    /// final pixel frames (1 for the very first latent frame, 4 for each later one). The
    /// very first latent frame is always decoded on its own (its temporal upsampling
    /// differs); later frames may come one at a time (least memory) or several at once
    /// (faster on a GPU); the result is the same.
    pub fn push(&mut self, z: Tensor<5>) -> Result<Tensor<5>> {
        self.vae.check_latents(&z.dims())?;
        let dims = z.dims();
        match self.shape {
            Some(s) if (s[0], s[1], s[2]) != (dims[0], dims[3], dims[4]) => {
                return Err(Error::Input(format!(
                    "latent frames of shape {dims:?} do not continue a stream of [{}, {}, _, {}, {}]",
                    s[0], self.vae.config.z_dim, s[1], s[2]
                )))
            }
            _ => self.shape = Some([dims[0], dims[3], dims[4]]),
        }
        let t = dims[2];
        let mut out = Vec::with_capacity(2);
        let mut start = 0;
        if !self.started {
            out.push(self.vae.decode_chunk(z.clone().narrow(2, 0, 1), &mut self.state));
            self.started = true;
            start = 1;
        }
        if start < t {
            out.push(self.vae.decode_chunk(z.narrow(2, start, t - start), &mut self.state));
        }
        Ok(if out.len() == 1 { out.remove(0) } else { Tensor::cat(out, 2) })
    }
}
