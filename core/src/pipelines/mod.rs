//! Text-to-video and image-to-video (MODEL-SPEC §8), as diffusers' `SanaVideoPipeline` and
//! `SanaImageToVideoPipeline` compute them, for Wan (480p) and LTX-2 (720p) checkpoints
//! alike: `plan` reads only configs and safetensors headers (sizes, sampler, memory) so bad
//! requests fail before anything loads; `run` encodes the prompt, samples with CFG, and
//! decodes through the streaming VAE, handing finished frames to the caller as they arrive.
//!
//! ```text
//! Request ──plan──▶ Plan ──run──▶ text encoder (released) ─▶ [VAE encode of the image]
//!        ─▶ DiT × steps (CFG batch [uncond; cond]) ─▶ streaming VAE decode ─▶ Events::frames
//! ```

pub mod binning;
pub mod defaults;
pub mod long;
pub mod memory;

use std::future::Future;
use std::pin::Pin;

use burn::tensor::{DType, Device, Tensor, TensorData};

use crate::io::safetensors::{tensor_from_f32, Weights};
use crate::io::{diffusers, join, FileSource};
use crate::models::dit::{SanaVideoTransformer3DModel, Timesteps};
use crate::models::text_encoder::{Gemma2Model, PromptOptions, TextEncoder};
use crate::models::vae::{tiling::Tiling, Vae, VaeConfig};
use crate::samplers::{noise, Sampler, SamplerKind, SchedulerConfig};
use crate::{Error, Result};

pub use defaults::{defaults, ModelDefaults};
pub use memory::MemoryPlan;

/// What to generate. Sizes are in pixels and frames of the output video.
#[derive(Clone, Debug)]
pub struct Request {
    pub prompt: String,
    /// Used when `cfg_scale > 1`; may be empty (diffusers' default).
    pub negative_prompt: String,
    pub prompt_options: PromptOptions,
    pub height: usize,
    pub width: usize,
    pub frames: usize,
    pub steps: usize,
    pub cfg_scale: f32,
    pub seed: u64,
    /// `None`: the checkpoint's own scheduler.
    pub sampler: Option<SamplerKind>,
    pub resolution_binning: bool,
    /// Image-to-video: the first frame, RGB `[H, W, 3]` in [0, 1], already at the
    /// generation size (`Plan::gen_size`).
    pub image: Option<Image>,
    /// Noise made elsewhere, `[1, C, F, h, w]` (replaces the seeded draw).
    pub init_noise: Option<(Vec<f32>, Vec<usize>)>,
    pub dtype: DType,
    pub vae_dtype: DType,
    pub vae_tiling: Option<Tiling>,
    /// Keep every stage loaded (more memory, no reloads) instead of releasing each.
    pub keep_resident: bool,
    /// The VAE's convs run in place (cuDNN on CUDA: `kernels::conv::available`), without the
    /// tap GEMMs' copies; the memory plan's decoder model depends on it.
    pub vae_convs_in_place: bool,
    /// FP8 weights' products take FP8 activations on tensor cores (W8A8: `nn::fp8_activations`
    /// and `nn::fp8_tensor_cores`); the memory plan's DiT model depends on it.
    pub fp8_tensor_core_activations: bool,
    /// Reserve the DiT's largest tensor once before the first step (CubeCL devices), so the
    /// pool's pages have their final size from the start and none are retired while the
    /// first step grows them: the FP8 480p clip's peak on an H200 11.6 -> 7.3 GB (nvidia-smi),
    /// at about 5% of the denoise's speed (BENCHMARKS.md, sixth run). `sana-video generate`
    /// turns it on where free memory is tight (`SANA_POOL_PRESIZE` overrides).
    pub pool_presize: bool,
    /// The DiT runs the fused CubeCL kernels (wgpu, CUDA); the CPU backend's tensor-op
    /// references hold about three times the activations (the memory plan's DiT model).
    pub fused_kernels: bool,
    /// Plan the DiT as if its linear weights were FP8, as `sana-video quantize --format fp8`
    /// makes them (the memory refusal's suggestion for unquantised models; a run ignores it).
    pub plan_fp8_dit: bool,
}

/// An empty prompt at the released 480p model's size and schedule (832x480, 81 frames, 50
/// steps, CFG 6, seed 0), f32 throughout, no image; the device flags as for a device whose
/// capabilities were not probed (no in-place VAE convs, no W8A8 tensor cores, fused kernels,
/// pool pre-sizing on). Front ends set what they know with struct-update syntax.
impl Default for Request {
    fn default() -> Request {
        Request {
            prompt: String::new(),
            negative_prompt: String::new(),
            prompt_options: PromptOptions::default(),
            height: 480,
            width: 832,
            frames: 81,
            steps: 50,
            cfg_scale: 6.0,
            seed: 0,
            sampler: None,
            resolution_binning: true,
            image: None,
            init_noise: None,
            dtype: DType::F32,
            vae_dtype: DType::F32,
            vae_tiling: None,
            keep_resident: false,
            vae_convs_in_place: false,
            fp8_tensor_core_activations: false,
            pool_presize: true,
            fused_kernels: true,
            plan_fp8_dit: false,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Image {
    pub height: usize,
    pub width: usize,
    pub rgb: Vec<f32>,
}

/// Everything decided before loading: folders, configs, sizes, sampler and memory.
#[derive(Clone, Debug)]
pub struct Plan {
    pub model_dir: String,
    pub transformer_dir: String,
    pub vae_dir: String,
    pub vae_class: String,
    pub sampler: SamplerKind,
    pub scheduler: SchedulerConfig,
    /// The size the model generates at (the bin when binning), `(h, w)`.
    pub gen_size: (usize, usize),
    /// The size of the written video, `(h, w)`.
    pub out_size: (usize, usize),
    pub frames: usize,
    /// `[1, C, F, h, w]`.
    pub latent_shape: [usize; 5],
    pub tokens: usize,
    pub memory: MemoryPlan,
    /// The memory plan's DiT activation model for this request.
    pub dit_memory: memory::DitModel,
}

/// Stages reported to `Events`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    LoadTextEncoder,
    EncodePrompt,
    LoadVae,
    EncodeImage,
    LoadTransformer,
    Denoise,
    Decode,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::LoadTextEncoder => "load text encoder",
            Stage::EncodePrompt => "encode prompt",
            Stage::LoadVae => "load VAE",
            Stage::EncodeImage => "encode image",
            Stage::LoadTransformer => "load transformer",
            Stage::Denoise => "denoise",
            Stage::Decode => "decode",
        }
    }
}

/// Decoded frames `[T, H, W, 3]`, RGB in [0, 1] (diffusers' `output_type="np"`).
pub struct Frames {
    pub data: Vec<f32>,
    pub count: usize,
    pub height: usize,
    pub width: usize,
}

/// The caller's view of a run: progress, warnings, frames as they are decoded, cancellation.
pub trait Events {
    /// A stage starts; `units` steps or frames follow (0: one unit).
    fn stage(&mut self, _stage: Stage, _units: usize) {}
    /// `done` units of the current stage are complete.
    fn advance(&mut self, _done: usize) {}
    /// The current stage is complete.
    fn stage_done(&mut self, _stage: Stage) {}
    fn warn(&mut self, _msg: &str) {}
    fn frames(&mut self, frames: Frames) -> Result<()>;
    /// Polled between steps and frames; `true` stops the run with `Error::Interrupted`.
    fn cancelled(&self) -> bool {
        false
    }
    /// Awaited before every step and decoded chunk: the browser returns a future that
    /// yields to its event loop (so a page stays responsive and can cancel); native callers
    /// keep the default, which is ready at once.
    fn pause(&mut self) -> Pin<Box<dyn Future<Output = ()> + '_>> {
        Box::pin(std::future::ready(()))
    }
    /// Wait for the device after each denoising step (a one-value read-back), so progress
    /// and ETA report finished work. The browser wants this: WebGPU queues steps far ahead
    /// of the GPU, and the page would otherwise show all steps done while the GPU still
    /// works through them. Native callers keep the default (no extra read-backs).
    fn sync_steps(&self) -> bool {
        false
    }
    /// LongSANA: a chunk is denoised, committed to the state and decoded.
    fn chunk(&mut self, _info: long::ChunkInfo) {}
}

/// The result besides the frames: the final latents before decoding.
pub struct Generated {
    pub latents: Vec<f32>,
    pub latent_shape: [usize; 5],
    pub frames: usize,
}

fn dtype_size(d: DType) -> usize {
    match d {
        DType::F16 | DType::BF16 => 2,
        _ => 4,
    }
}

/// Multiples of `m` near `v`, for messages.
fn near_multiples(v: usize, m: usize) -> String {
    let lo = (v / m) * m;
    let hi = lo + m;
    if lo == 0 {
        format!("{hi}")
    } else {
        format!("{lo} or {hi}")
    }
}

fn param_bytes(w: &Weights, skip: &[&str], elt: usize) -> u64 {
    w.names()
        .iter()
        .filter(|n| !skip.iter().any(|s| n.ends_with(s)))
        .filter_map(|n| w.meta(n))
        .map(|m| {
            // FP8 and NVFP4 weights stay 8-bit (and packed 4-bit) on the device
            // (`SANA_FP8_RESIDENT`, `SANA_NVFP4_RESIDENT`); the rest load as `elt`.
            let stored = if matches!(m.dtype, safetensors::Dtype::U8 | safetensors::Dtype::I8 | safetensors::Dtype::F8_E4M3 | safetensors::Dtype::F8_E5M2) { 1 } else { elt };
            m.shape.iter().product::<usize>() as u64 * stored as u64
        })
        .sum()
}

fn dit_model(req: &Request, w8a8: bool) -> memory::DitModel {
    match (req.fused_kernels, w8a8) {
        (false, _) => memory::DitModel::Reference,
        (true, false) => memory::DitModel::Fused,
        (true, true) => memory::DitModel::FusedW8a8,
    }
}

/// [`param_bytes`] of `w` after `quantize --format fp8`: its linear and conv weights
/// (`quant::convert::fp8_matrix_of`) one byte each plus an f32 scale per output channel, the
/// rest as they load.
fn fp8_param_bytes(w: &Weights, elt: usize) -> u64 {
    w.names()
        .iter()
        .filter_map(|n| w.meta(n).map(|m| (n, m)))
        .map(|(n, m)| match crate::quant::convert::fp8_matrix_of(n, &m.shape) {
            Some((out, inp)) => (out * inp + 4 * out) as u64,
            None => m.shape.iter().product::<usize>() as u64 * elt as u64,
        })
        .sum()
}

/// Whether any weight is stored as FP8 (its products run W8A8 where the device allows).
fn has_fp8_weights(w: &Weights) -> bool {
    w.names().iter().filter_map(|n| w.meta(n)).any(|m| m.dtype == safetensors::Dtype::F8_E4M3)
}

/// Reads configs and headers, checks the request, and plans memory. Nothing is loaded.
pub fn plan(source: &dyn FileSource, model_dir: &str, req: &Request) -> Result<Plan> {
    let transformer_dir = diffusers::component_dir(source, model_dir, "transformer")?;
    let dit = SanaVideoTransformer3DModel::read_config(source, &transformer_dir)?;
    let vae_dir = diffusers::component_dir(source, model_dir, "vae")?;
    let (vae_class, vae_cfg) = VaeConfig::read(source, &vae_dir)?;
    let sched_dir = diffusers::component_dir_marked(source, model_dir, "scheduler", "scheduler_config.json")?;
    let sched_path = join(&sched_dir, "scheduler_config.json");
    let scheduler = SchedulerConfig::from_json(&source.read_string(&sched_path)?, &sched_path)?;
    let te_dir = diffusers::component_dir(source, model_dir, "text_encoder")?;
    let te_cfg = Gemma2Model::read_config(source, &te_dir)?;
    if te_cfg.hidden_size != dit.caption_channels {
        return Err(Error::config(
            join(&te_dir, "config.json"),
            format!("hidden_size {} differs from the transformer's caption_channels {}", te_cfg.hidden_size, dit.caption_channels),
        ));
    }

    let (s_t, s_s, z) = (vae_cfg.temporal_factor(), vae_cfg.spatial_factor(), vae_cfg.latent_channels());
    if z != dit.in_channels {
        return Err(Error::config(
            join(&vae_dir, "config.json"),
            format!("the VAE has {z} latent channels, the transformer takes {}", dit.in_channels),
        ));
    }
    if req.height == 0 || req.width == 0 {
        return Err(Error::Input(format!("--height {} / --width {}: sizes must be positive", req.height, req.width)));
    }
    if req.frames == 0 || (req.frames - 1) % s_t != 0 {
        let lo = if req.frames > 0 { ((req.frames - 1) / s_t) * s_t + 1 } else { 1 };
        return Err(Error::Input(format!(
            "--frames {}: this VAE makes 1 + {s_t}·k frames (k ≥ 0); try {}",
            req.frames,
            if lo == req.frames || lo + s_t == req.frames { format!("{}", lo + s_t) } else { format!("{lo} or {}", lo + s_t) }
        )));
    }
    if !(req.cfg_scale.is_finite() && req.cfg_scale >= 0.0) {
        return Err(Error::Input(format!("--cfg-scale {}: must be a finite number ≥ 0", req.cfg_scale)));
    }
    if req.steps == 0 || req.steps > 1000 {
        return Err(Error::Input(format!("--steps {}: must be between 1 and 1000", req.steps)));
    }

    let out_size = (req.height, req.width);
    let gen_size = if req.resolution_binning {
        let bins = binning::bins_for(dit.sample_size).ok_or_else(|| {
            Error::Input(format!(
                "--resolution-binning on: the transformer's sample_size {} has no bin table (30: 480p, 22: 720p); use --resolution-binning off",
                dit.sample_size
            ))
        })?;
        binning::classify(req.height, req.width, bins)
    } else {
        out_size
    };
    let [pt, ph, pw] = dit.patch_size;
    let (mh, mw) = (s_s * ph, s_s * pw);
    if gen_size.0 % mh != 0 || gen_size.1 % mw != 0 {
        return Err(Error::Input(format!(
            "--height {} / --width {}: must be multiples of {mh} / {mw} (VAE factor {s_s} × patch {ph}×{pw}); \
             try height {} and width {}",
            gen_size.0,
            gen_size.1,
            near_multiples(gen_size.0, mh),
            near_multiples(gen_size.1, mw)
        )));
    }
    let lat_f = (req.frames - 1) / s_t + 1;
    if lat_f % pt != 0 {
        return Err(Error::Input(format!("--frames {}: {lat_f} latent frames are not a multiple of the temporal patch {pt}", req.frames)));
    }
    let latent_shape = [1, z, lat_f, gen_size.0 / s_s, gen_size.1 / s_s];
    let tokens = (lat_f / pt) * (latent_shape[3] / ph) * (latent_shape[4] / pw);
    if let Some(img) = &req.image {
        if (img.height, img.width) != gen_size || img.rgb.len() != img.height * img.width * 3 {
            return Err(Error::Input(format!(
                "--image is {}x{}, expected the generation size {}x{} (width x height)",
                img.width, img.height, gen_size.1, gen_size.0
            )));
        }
    }
    if let Some((data, shape)) = &req.init_noise {
        if shape.as_slice() != latent_shape.as_slice() || data.len() != latent_shape.iter().product::<usize>() {
            return Err(Error::Input(format!("--init-noise: tensor `latents` has shape {shape:?}, expected {latent_shape:?}")));
        }
    }
    let sampler = req.sampler.unwrap_or(scheduler.kind);

    // Memory plan from headers and shapes.
    let elt = dtype_size(req.dtype);
    let velt = dtype_size(req.vae_dtype);
    let cfg_batch = if req.cfg_scale > 1.0 { 2 } else { 1 };
    let te_w = Weights::open_dir(source, &te_dir, "model")?;
    let dit_w = Weights::open_dir(source, &transformer_dir, "diffusion_pytorch_model")?;
    let vae_w = Weights::open_dir(source, &vae_dir, "diffusion_pytorch_model")?;
    let max_len = req.prompt_options.max_sequence_length + 300;
    let out_per_token = dit.out_channels * pt * ph * pw;
    let wan_vae = matches!(vae_cfg, VaeConfig::Wan(_));
    let (dec_pixels, dec_channels) = {
        let (h, w) = match req.vae_tiling {
            Some(t) => (gen_size.0.min(t.tile), gen_size.1.min(t.tile)),
            None => gen_size,
        };
        let ch = match &vae_cfg {
            VaeConfig::Wan(c) => c.decoder_base_dim * c.dim_mult.first().copied().unwrap_or(1),
            VaeConfig::Ltx2(c) => c.decoder_block_out_channels.first().copied().unwrap_or(128),
        };
        (h * w, ch)
    };
    let mut stages = vec![memory::StagePlan {
        name: "text encoder",
        weights: param_bytes(&te_w, &["embed_tokens.weight"], elt),
        activations: memory::text_activations(cfg_batch, max_len, te_cfg.hidden_size, te_cfg.intermediate_size),
    }];
    if req.image.is_some() {
        stages.push(memory::StagePlan {
            name: "VAE encode",
            weights: param_bytes(&vae_w, &[], velt),
            activations: memory::decoder_activations(dec_pixels, dec_channels, velt, req.vae_convs_in_place, wan_vae),
        });
    }
    let stored_fp8 = has_fp8_weights(&dit_w);
    let w8a8 = req.fp8_tensor_core_activations && (stored_fp8 || req.plan_fp8_dit);
    let dit_weights = if req.plan_fp8_dit && !stored_fp8 { fp8_param_bytes(&dit_w, elt) } else { param_bytes(&dit_w, &[], elt) };
    stages.push(memory::StagePlan {
        name: "transformer",
        weights: dit_weights,
        activations: memory::dit_activations(cfg_batch, tokens, dit.dim, dit.ffn_hidden, elt, out_per_token, dit_model(req, w8a8)),
    });
    stages.push(memory::StagePlan {
        name: "VAE decode",
        weights: param_bytes(&vae_w, &[], velt),
        activations: memory::decoder_activations(dec_pixels, dec_channels, velt, req.vae_convs_in_place, wan_vae),
    });
    let memory = MemoryPlan { stages, resident: req.keep_resident };

    Ok(Plan {
        model_dir: model_dir.to_string(),
        transformer_dir,
        vae_dir,
        vae_class,
        sampler,
        scheduler,
        gen_size,
        out_size,
        frames: req.frames,
        latent_shape,
        tokens,
        memory,
        dit_memory: dit_model(req, w8a8),
    })
}

fn check_cancel(events: &dyn Events) -> Result<()> {
    if events.cancelled() {
        Err(Error::Interrupted)
    } else {
        Ok(())
    }
}

/// Natively, waits for the device to finish a denoising step before the next is issued:
/// progress and ETA then report finished work, and on an H200 (2026-11-28, BENCHMARKS.md)
/// the 480p loop ran at 1.08 s a step with the wait against 1.17 s without it (forwards
/// issued back to back run slower than one at a time: 0.97 s against 0.58 s in
/// `dit-forward --chain`; not yet explained). A failed wait is reported by the next read.
pub(crate) fn sync_step(device: &Device) {
    #[cfg(not(target_arch = "wasm32"))]
    let _ = device.sync();
    #[cfg(target_arch = "wasm32")]
    let _ = device;
}

/// Reads a tensor back; asynchronous because WebGPU has no blocking read-back.
async fn read_f32<const D: usize>(t: Tensor<D>) -> Result<Vec<f32>> {
    t.into_data_async()
        .await
        .map_err(|e| Error::Device(format!("the device failed while computing this result: {e:?}")))?
        .convert::<f32>()
        .try_into_vec::<f32>()
        .map_err(|e| Error::Device(format!("reading a tensor back from the device failed: {e:?}")))
}

/// Per-channel `[1, C, 1, 1, 1]` constants.
fn channel_tensor(v: &[f32], device: &Device) -> Tensor<5> {
    Tensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), device).reshape([1, v.len(), 1, 1, 1])
}

fn latent_stats(vae: &Vae) -> (Vec<f32>, Vec<f32>) {
    match vae {
        Vae::Wan(v) => (v.config.latents_mean.clone(), v.config.latents_std.clone()),
        Vae::Ltx2(v) => (v.latents_mean.clone(), v.latents_std.clone()),
    }
}

/// Runs a planned request, blocking until done. Frames go to `events.frames` as they are
/// decoded. (Not on wasm32, where only [`run_async`] can read results back.)
#[cfg(not(target_arch = "wasm32"))]
pub fn run(source: &dyn FileSource, plan: &Plan, req: &Request, device: &Device, events: &mut dyn Events) -> Result<Generated> {
    pollster::block_on(run_async(source, plan, req, device, events))
}

/// Sends one decoded chunk `[1, 3, t, h, w]` in [-1, 1] to `events`, resized and cropped back
/// to the asked size, in [0, 1].
async fn emit(pixels: Tensor<5>, plan: &Plan, emitted: &mut usize, events: &mut dyn Events) -> Result<()> {
    let read = Decoded::read(pixels).await?;
    deliver(read, plan, emitted, events).await
}

/// [`Decoded::emit`] with the progress report and a cancellation point.
async fn deliver(read: Option<Decoded>, plan: &Plan, emitted: &mut usize, events: &mut dyn Events) -> Result<()> {
    let Some(read) = read else { return Ok(()) };
    read.emit(plan, emitted, events)?;
    events.advance(*emitted);
    events.pause().await;
    check_cancel(events)
}

/// Decoded frames read back to the host, `[t, h, w, 3]` in [-1, 1], not yet post-processed.
/// The streamed decodes read each push's frames back as soon as they are done, issue the next
/// push, and only then post-process the frames read (resize, crop, range), so that host work
/// overlaps the GPU's next decode instead of leaving the GPU idle.
struct Decoded {
    px: Vec<f32>,
    t: usize,
    h: usize,
    w: usize,
}

impl Decoded {
    /// Waits for `pixels` `[1, 3, t, h, w]` and reads them back; `None` for no frames.
    async fn read(pixels: Tensor<5>) -> Result<Option<Decoded>> {
        let [_, _, t, h, w] = pixels.dims();
        if t == 0 {
            return Ok(None);
        }
        let px = read_f32(crate::nn::to_f32(pixels.permute([0, 2, 3, 4, 1]))).await?;
        Ok(Some(Decoded { px, t, h, w }))
    }

    /// Resized and cropped back to the asked size, in [0, 1], to `events` (no progress report:
    /// LongSANA reports per chunk).
    fn emit(self, plan: &Plan, emitted: &mut usize, events: &mut dyn Events) -> Result<()> {
        let Decoded { px, t, h, w } = self;
        let mut data = Vec::with_capacity(t * plan.out_size.0 * plan.out_size.1 * 3);
        for f in 0..t {
            let frame = &px[f * h * w * 3..(f + 1) * h * w * 3];
            let frame = binning::resize_and_crop(frame, (h, w), plan.out_size);
            data.extend(frame.iter().map(|&x| (x / 2.0 + 0.5).clamp(0.0, 1.0)));
        }
        *emitted += t;
        events.frames(Frames { data, count: t, height: plan.out_size.0, width: plan.out_size.1 })
    }
}

/// [`run`] as a future: the same work, with the device read-backs awaited and
/// [`Events::pause`] awaited before each step, so the browser can drive it.
pub async fn run_async(
    source: &dyn FileSource,
    plan: &Plan,
    req: &Request,
    device: &Device,
    events: &mut dyn Events,
) -> Result<Generated> {
    let [_, c_lat, lat_f, lat_h, lat_w] = plan.latent_shape;
    let cfg = req.cfg_scale > 1.0;
    check_buffer_limit(source, plan, req, if cfg { 2 } else { 1 }, false, device)?;

    // 1. Prompt embeddings, then release the encoder.
    events.stage(Stage::LoadTextEncoder, 0);
    let (te, _) = TextEncoder::load(source, &plan.model_dir, device, req.dtype)?;
    events.stage_done(Stage::LoadTextEncoder);
    check_cancel(events)?;
    events.stage(Stage::EncodePrompt, 0);
    let negatives = [req.negative_prompt.clone()];
    let enc = te.encode(&[req.prompt.clone()], if cfg { Some(&negatives) } else { None }, &req.prompt_options)?;
    for w in &enc.warnings {
        events.warn(w);
    }
    let resident_te = if req.keep_resident { Some(te) } else { te.unload(); None };
    let (embeds, mask) = match &enc.negative {
        Some(neg) if cfg => {
            let (lp, ln) = (enc.prompt.embeds.dims()[1], neg.embeds.dims()[1]);
            if lp != ln {
                return Err(Error::Input(format!("prompt ({lp} tokens) and negative prompt ({ln} tokens) embeddings differ in length")));
            }
            let mut m: Vec<f32> = neg.mask.iter().map(|&v| v as f32).collect();
            m.extend(enc.prompt.mask.iter().map(|&v| v as f32));
            (Tensor::cat(vec![neg.embeds.clone(), enc.prompt.embeds.clone()], 0), m)
        }
        _ => (enc.prompt.embeds.clone(), enc.prompt.mask.iter().map(|&v| v as f32).collect()),
    };
    drop(enc);
    events.stage_done(Stage::EncodePrompt);

    // 2. Initial latents (seeded or injected), f32.
    let n_lat: usize = plan.latent_shape.iter().product();
    let noise = match &req.init_noise {
        Some((data, _)) => data.clone(),
        None => noise::gaussian(req.seed, noise::STREAM_INITIAL_LATENTS, 0, n_lat),
    };
    let mut latents: Tensor<5> = tensor_from_f32(noise, plan.latent_shape.to_vec(), device, DType::F32);

    // 3. Image-to-video: the normalised posterior mean of the image replaces frame 0.
    let mut vae_resident: Option<Vae> = None;
    if let Some(img) = &req.image {
        check_cancel(events)?;
        events.stage(Stage::LoadVae, 0);
        let (vae, _) = Vae::load(source, &plan.vae_dir, device, req.vae_dtype)?;
        events.stage_done(Stage::LoadVae);
        events.stage(Stage::EncodeImage, 0);
        let (h, w) = (img.height, img.width);
        let x: Tensor<4> = Tensor::<1>::from_data(TensorData::new(img.rgb.clone(), [h * w * 3]), device).reshape([1, h, w, 3]);
        let x: Tensor<5> = (x.permute([0, 3, 1, 2]) * 2.0 - 1.0).unsqueeze_dim::<5>(2);
        let x = crate::nn::to_dtype(x, req.vae_dtype);
        let mean_lat = crate::nn::to_f32(vae.encode_mean(x)?);
        let (mean, std) = latent_stats(&vae);
        let inv: Vec<f32> = std.iter().map(|s| 1.0 / s).collect();
        let image_lat = (mean_lat - channel_tensor(&mean, device)) * channel_tensor(&inv, device);
        latents = Tensor::cat(vec![image_lat, latents.slice([0..1, 0..c_lat, 1..lat_f, 0..lat_h, 0..lat_w])], 2);
        if req.keep_resident {
            vae_resident = Some(vae);
        } else {
            drop(vae);
            device.memory_cleanup();
        }
        events.stage_done(Stage::EncodeImage);
    }

    // 4. Denoising with CFG batched as [uncond; cond].
    check_cancel(events)?;
    events.stage(Stage::LoadTransformer, 0);
    let (dit, _) = SanaVideoTransformer3DModel::load(source, &plan.transformer_dir, device, req.dtype)?;
    events.stage_done(Stage::LoadTransformer);
    let mut sampler = Sampler::new(plan.sampler, req.steps, &plan.scheduler)?;
    let timesteps = sampler.timesteps().to_vec();
    let batch = if cfg { 2 } else { 1 };
    let [pt, ph, pw] = dit.config.patch_size;
    let (gf, gh, gw) = (lat_f / pt, lat_h / ph, lat_w / pw);
    let n_tok = gf * gh * gw;
    let embeds = crate::nn::to_dtype(embeds, req.dtype);
    if req.pool_presize {
        presize_pool(device, batch * n_tok * 2 * dit.config.ffn_hidden, req.dtype);
    }
    events.stage(Stage::Denoise, timesteps.len());
    let profiled = crate::profile::step_to_profile();
    for (i, &t) in timesteps.iter().enumerate() {
        events.pause().await;
        check_cancel(events)?;
        // Only when profiling: `Instant` is not available in the browser build.
        let step_start = (profiled == Some(i)).then(|| {
            // The earlier steps' device work still queued (the host runs ahead of the device).
            let t = std::time::Instant::now();
            let _ = device.sync();
            eprintln!("profiled step {i}: waited {:.4} s for the earlier steps' device work", t.elapsed().as_secs_f64());
            crate::profile::enable(true);
            crate::profile::mark(device, "start");
            std::time::Instant::now()
        });
        let input = if cfg { Tensor::cat(vec![latents.clone(), latents.clone()], 0) } else { latents.clone() };
        crate::profile::mark(device, "step: CFG batch");
        let ts = if req.image.is_some() {
            // Tokens of the first patch frame are clean (timestep 0).
            let mut v = vec![t; batch * n_tok];
            for b in 0..batch {
                v[b * n_tok..b * n_tok + gh * gw].iter_mut().for_each(|x| *x = 0.0);
            }
            Timesteps::PerToken(v)
        } else {
            Timesteps::PerSample(vec![t; batch])
        };
        let out = crate::nn::to_f32(dit.forward(input, embeds.clone(), &ts, Some(&mask))?);
        let out = if dit.config.out_channels == 2 * c_lat { out.slice([0..batch, 0..c_lat]) } else { out };
        let v = if cfg {
            let uncond = out.clone().slice([0..1]);
            let cond = out.slice([1..2]);
            uncond.clone() + (cond - uncond) * req.cfg_scale
        } else {
            out
        };
        latents = if req.image.is_some() {
            let first = latents.clone().slice([0..1, 0..c_lat, 0..1]);
            let rest = latents.slice([0..1, 0..c_lat, 1..lat_f]);
            let stepped = sampler.step(v.slice([0..1, 0..c_lat, 1..lat_f]), rest)?;
            Tensor::cat(vec![first, stepped], 2)
        } else {
            sampler.step(v, latents)?
        };
        crate::profile::mark(device, "step: CFG combination and sampler");
        if events.sync_steps() || step_start.is_some() {
            read_f32(latents.clone().slice([0..1, 0..1, 0..1, 0..1, 0..1])).await?;
        }
        sync_step(device);
        if i == 0 {
            // Whatever pages the first forward still retired (see `presize_pool`) go back to
            // the driver now, not at the end of the denoise.
            device.memory_cleanup();
        }
        if let Some(start) = step_start {
            let rec = crate::profile::take();
            crate::profile::enable(false);
            eprintln!("{}", crate::profile::table(&format!("denoising step {i}"), start.elapsed().as_secs_f64(), rec));
        }
        events.advance(i + 1);
    }
    events.stage_done(Stage::Denoise);
    let final_latents = read_f32(latents.clone()).await?;
    if !req.keep_resident {
        drop(dit);
        device.memory_cleanup();
    }

    // 5. Decode: denormalise, stream latent frames through the VAE, post-process, emit.
    check_cancel(events)?;
    let vae = match vae_resident.take() {
        Some(v) => v,
        None => {
            events.stage(Stage::LoadVae, 0);
            let (v, _) = Vae::load(source, &plan.vae_dir, device, req.vae_dtype)?;
            events.stage_done(Stage::LoadVae);
            v
        }
    };
    let (mean, std) = latent_stats(&vae);
    let inv: Vec<f32> = std.iter().map(|s| 1.0 / s).collect();
    let z = latents / channel_tensor(&inv, device) + channel_tensor(&mean, device);
    let z = crate::nn::to_dtype(z, req.vae_dtype);
    events.stage(Stage::Decode, plan.frames);
    let mut emitted = 0usize;
    if let Some(tiling) = req.vae_tiling {
        emit(vae.decode_tiled(z, tiling)?, plan, &mut emitted, events).await?;
    } else {
        match &vae {
            // Each push's frames are post-processed after the next push is issued (`Decoded`).
            Vae::Wan(v) => {
                let mut stream = v.decode_stream();
                let mut ready = None;
                for f in 0..lat_f {
                    let zf = z.clone().slice([0..1, 0..c_lat, f..f + 1]);
                    let px = stream.push(zf)?;
                    deliver(ready.take(), plan, &mut emitted, events).await?;
                    ready = Decoded::read(px).await?;
                }
                deliver(ready, plan, &mut emitted, events).await?;
            }
            Vae::Ltx2(v) => {
                let mut stream = v.decode_stream();
                let mut ready = None;
                for f in 0..lat_f {
                    let zf = z.clone().slice([0..1, 0..c_lat, f..f + 1]);
                    if let Some(px) = stream.push(zf)? {
                        deliver(ready.take(), plan, &mut emitted, events).await?;
                        ready = Decoded::read(px).await?;
                    }
                }
                let last = stream.finish()?;
                deliver(ready.take(), plan, &mut emitted, events).await?;
                if let Some(px) = last {
                    emit(px, plan, &mut emitted, events).await?;
                }
            }
        }
    }
    events.stage_done(Stage::Decode);
    if emitted != plan.frames {
        return Err(Error::Device(format!("the VAE produced {emitted} frames, expected {}", plan.frames)));
    }
    drop(resident_te);
    Ok(Generated { latents: final_latents, latent_shape: plan.latent_shape, frames: emitted })
}

/// The DiT forward's largest single tensor for `batch` samples of `tokens` tokens: the GLU
/// input `[B·N, 2·ffn]` in the model dtype, the cross-attention's f32 logits `[B, heads, N, L]`
/// (L: the caption at its padded length, an upper bound: the DiT trims the padding), the
/// linear attention's f32 operands `[B, H, N, d]`, and with per-token timesteps (image to
/// video) the per-token modulation `[B, N, 6, dim]` in the model dtype.
fn largest_dit_tensor(dit: &crate::models::dit::DitConfig, batch: usize, tokens: usize, caption: usize, per_token: bool, dtype: DType) -> (u64, String) {
    let bt = (batch * tokens) as u64;
    let elt = dtype_size(dtype) as u64;
    let mut candidates = vec![
        (bt * 2 * dit.ffn_hidden as u64 * elt, format!("the GLU input [{}, {}] in {dtype:?}", batch * tokens, 2 * dit.ffn_hidden)),
        (bt * (dit.cross_heads * caption * 4) as u64, format!("the cross-attention logits [{batch}, {}, {tokens}, {caption}] in F32", dit.cross_heads)),
        (bt * (dit.dim * 4) as u64, format!("the linear attention's operands [{batch}, {}, {tokens}, {}] in F32", dit.heads, dit.head_dim)),
    ];
    if per_token {
        candidates.push((bt * 6 * dit.dim as u64 * elt, format!("the per-token modulation [{batch}, {tokens}, 6, {}] in {dtype:?}", dit.dim)));
    }
    candidates.into_iter().max_by_key(|(bytes, _)| *bytes).expect("three candidates or more")
}

/// Refuses, before any weights load, a request whose DiT tensors exceed the largest buffer
/// the device allocates (wgpu's binding limit, as CubeCL's pool applies it): it would
/// otherwise fail at the first forward, after the prompt was encoded. `long`: a LongSANA run,
/// whose forwards see one chunk (`plan.tokens`), sized by --chunk-frames, not --frames.
fn check_buffer_limit(source: &dyn FileSource, plan: &Plan, req: &Request, batch: usize, long: bool, device: &Device) -> Result<()> {
    let Some(limit) = crate::kernels::max_buffer_bytes(device) else {
        return Ok(());
    };
    let dit = SanaVideoTransformer3DModel::read_config(source, &plan.transformer_dir)?;
    let caption = req.prompt_options.max_sequence_length;
    let per_token = req.image.is_some() && !long;
    let (bytes, what) = largest_dit_tensor(&dit, batch, plan.tokens, caption, per_token, req.dtype);
    if bytes <= limit {
        return Ok(());
    }
    let half_fits = req.dtype == DType::F32 && largest_dit_tensor(&dit, batch, plan.tokens, caption, per_token, DType::F16).0 <= limit;
    let half = if half_fits { "use --dtype f16, or " } else { "" };
    let (request, knobs) = if long {
        (format!("a chunk of {} tokens at {}x{}", plan.tokens, plan.gen_size.1, plan.gen_size.0), "--chunk-frames")
    } else {
        (format!("--frames {} at {}x{} (generation size)", req.frames, plan.gen_size.1, plan.gen_size.0), "--frames")
    };
    Err(Error::Input(format!(
        "{request}: {what} takes {:.2} GB, more than the largest buffer this device allocates ({:.2} GB, a limit of its \
         graphics API): {half}lower {knobs}, --height or --width",
        bytes as f64 / 1e9,
        limit as f64 / 1e9
    )))
}

/// CubeCL's pool carves allocations from pages sized to the largest allocation so far; as a
/// forward's tensors grow (q/k/v, the f32 attention sums, the GLU input), it opens pools of
/// larger pages and retires the smaller ones, whose memory reaches the driver again only at
/// a cleanup: 5.5 GB over the pool's own 6.5 GB during a 480p FP8 denoise on an H200
/// (BENCHMARKS.md, fifth run). Reserving the forward's largest tensor (`elems` of `dtype`,
/// the GLU input `[B·N, 2·hidden]`) once before the first step sizes the pages for it from
/// the start, so no smaller pools are opened to be retired ([`Request::pool_presize`]).
/// Only CubeCL devices have the pool (the CPU backend would allocate for nothing).
fn presize_pool(device: &Device, elems: usize, dtype: DType) {
    if elems > 0 && crate::kernels::is_cube_device(device) {
        drop(Tensor::<1>::empty([elems], (device, dtype)));
    }
}
