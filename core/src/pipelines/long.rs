//! LongSANA generation (MODEL-SPEC §5, §8.7): the video is made chunk by chunk, each chunk
//! denoised by the LongLive sampler against the constant-size [`LongState`] of all earlier
//! chunks, then committed to the state by one clean t = 0 pass.

use burn::tensor::{DType, Device, Tensor};

use crate::io::safetensors::tensor_from_f32;
use crate::models::dit::{LongState, SanaVideoTransformer3DModel, Timesteps};
use crate::samplers::{longlive, noise};
use crate::{Error, Result};

/// The conditioning of one chunk: prompt embeddings `[1, L, C]` and their mask.
pub struct ChunkText<'a> {
    pub embeds: &'a Tensor<3>,
    pub mask: &'a [f32],
}

/// Denoises one chunk of `shape` `[1, C, F, H, W]` at the state's position with the LongLive
/// steps `timesteps`. `draw(k)` returns the k-th noise of this chunk (k = 0: the initial
/// latents, k ≥ 1: the re-noising before step k). Returns the clean chunk x̂₀ (f32).
pub fn denoise_chunk(
    dit: &SanaVideoTransformer3DModel,
    state: &LongState,
    text: &ChunkText<'_>,
    timesteps: &[f32],
    mut draw: impl FnMut(usize) -> Result<Tensor<5>>,
    mut after_step: impl FnMut(usize),
) -> Result<Tensor<5>> {
    if timesteps.is_empty() {
        return Err(Error::Input("LongLive needs at least one timestep".into()));
    }
    let c_lat = dit.config.in_channels;
    let mut x = draw(0)?;
    for (k, &t) in timesteps.iter().enumerate() {
        let b = x.dims()[0];
        let (v, _) = dit.forward_chunk(x.clone(), text.embeds.clone(), &Timesteps::PerSample(vec![t; b]), Some(text.mask), state, false)?;
        let v = crate::nn::to_f32(v);
        let v = if dit.config.out_channels == 2 * c_lat { v.narrow(1, 0, c_lat) } else { v };
        let x0 = longlive::predict_x0(x, v, t);
        after_step(k);
        match timesteps.get(k + 1) {
            Some(&next) => x = longlive::renoise(x0, draw(k + 1)?, next),
            None => return Ok(x0),
        }
    }
    unreachable!("the loop returns at its last timestep")
}

/// Commits a clean chunk to the state: one forward at t = 0 that records each layer's
/// contribution (its prediction is discarded).
pub fn commit_chunk(dit: &SanaVideoTransformer3DModel, state: &mut LongState, x0: Tensor<5>, text: &ChunkText<'_>) -> Result<()> {
    let [b, _, f, _, _] = x0.dims();
    let x0 = crate::nn::to_dtype(x0, dit.dtype);
    let (_, updates) = dit.forward_chunk(x0, text.embeds.clone(), &Timesteps::PerSample(vec![0.0; b]), Some(text.mask), state, true)?;
    let updates = updates.ok_or_else(|| Error::Device("the t = 0 pass recorded no state".into()))?;
    state.commit(updates, f)
}

/// Seeded noise of chunk `chunk` (absolute index), draw `k`, `[1, C, F, H, W]`.
pub fn seeded_draw(seed: u64, chunk: usize, k: usize, shape: [usize; 5], device: &Device) -> Tensor<5> {
    let n: usize = shape.iter().product();
    tensor_from_f32(noise::gaussian(seed, noise::stream_long(chunk, k), 0, n), shape.to_vec(), device, DType::F32)
}

// ---------------------------------------------------------------------------------------
// The pipeline: prompts → chunks (denoise, commit, decode, emit) → optional state file.

use std::collections::{BTreeMap, HashMap, VecDeque};

use burn::tensor::TensorData;

use super::{check_cancel, channel_tensor, latent_stats, read_f32, Events, Generated, Plan, Request, Stage};
use crate::io::{join, FileSource};
use crate::kernels::linear_attention::KvSums;
use crate::models::dit::{DitKind, LayerState};
use crate::models::text_encoder::TextEncoder;
use crate::models::vae::wan::{StreamSnapshot, TimeCache};
use crate::models::vae::Vae;

/// LongSANA settings besides the [`Request`] (whose `steps`, `cfg_scale`, `sampler` and
/// negative prompt LongLive does not use: 4 fixed steps, no guidance).
#[derive(Clone, Debug)]
pub struct LongOptions {
    /// Latent frames per chunk (LongSANA: 10).
    pub chunk_frames: usize,
    /// `--cached-blocks K`: attend to the last K finished chunks only.
    pub cached_blocks: Option<usize>,
    /// `(start in seconds, prompt)`, sorted; the prompt in force at a chunk's first frame
    /// conditions the whole chunk. Empty: `Request::prompt` throughout.
    pub prompt_schedule: Vec<(f64, String)>,
    pub fps: u32,
    /// Continue the video saved in this state file (`--resume`).
    pub resume: Option<String>,
    /// Write the state after the last chunk here (`--save-state`), atomically.
    pub save_state: Option<String>,
    /// Keep every chunk's latents for `Generated::latents` (memory grows with length).
    pub keep_latents: bool,
}

/// What [`Events::chunk`] reports after each chunk.
#[derive(Clone, Debug)]
pub struct ChunkInfo {
    pub index: usize,
    pub total: usize,
    pub latent_frames: usize,
    pub video_frames: usize,
    pub seconds: f64,
    /// Of `seconds`, the DiT's part (4 steps and the state pass), measured after a device
    /// sync; the rest is decoding and handing frames on. `None` in the browser (no sync).
    pub dit_seconds: Option<f64>,
    pub prompt_index: usize,
}

const STATE_FORMAT: &str = "sana-video-longsana-state";
const STATE_VERSION: &str = "1";

/// FNV-1a, fed in pieces: the model fingerprint and the tensor checksum of state files.
struct Fnv(u64);

impl Fnv {
    fn new() -> Fnv {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
    fn feed(&mut self, bytes: &[u8]) -> &mut Fnv {
        for &b in bytes {
            self.0 = (self.0 ^ b as u64).wrapping_mul(0x0100_0000_01b3);
        }
        self
    }
    fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// Identifies the transformer and VAE a state belongs to (their config.json files).
pub fn model_fingerprint(source: &dyn FileSource, plan: &Plan) -> Result<String> {
    let t = source.read_string(&join(&plan.transformer_dir, "config.json"))?;
    let v = source.read_string(&join(&plan.vae_dir, "config.json"))?;
    Ok(Fnv::new().feed(format!("{t}\n{v}").as_bytes()).hex())
}

/// Video frames made by latent frames `start .. start + n` (the very first latent frame makes
/// one frame, every later one four).
pub fn video_frames(start: usize, n: usize, temporal: usize) -> usize {
    if n == 0 {
        0
    } else if start == 0 {
        1 + temporal * (n - 1)
    } else {
        temporal * n
    }
}

/// Reads `--prompt-schedule`: one `SECONDS PROMPT` per line (`#` comments, blank lines
/// skipped), times ascending, the first at 0.
pub fn parse_prompt_schedule(text: &str, path: &str) -> Result<Vec<(f64, String)>> {
    let mut out: Vec<(f64, String)> = Vec::new();
    for (i, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let bad = |msg: &str| Error::Input(format!("--prompt-schedule {path}, line {}: {msg} (expected `SECONDS PROMPT`)", i + 1));
        let (t, p) = line.split_once(|c: char| c.is_whitespace()).ok_or_else(|| bad("no prompt after the time"))?;
        let t: f64 = t.trim_end_matches(['s', ':']).parse().map_err(|_| bad(&format!("`{t}` is not a number of seconds")))?;
        if !t.is_finite() || t < 0.0 {
            return Err(bad("the time must be ≥ 0"));
        }
        if let Some((prev, _)) = out.last() {
            if t <= *prev {
                return Err(bad(&format!("time {t} s does not come after {prev} s")));
            }
        }
        let p = p.trim();
        if p.is_empty() {
            return Err(bad("empty prompt"));
        }
        out.push((t, p.to_string()));
    }
    match out.first() {
        None => Err(Error::Input(format!("--prompt-schedule {path}: no prompts"))),
        Some((t, _)) if *t != 0.0 => Err(Error::Input(format!("--prompt-schedule {path}: the first prompt must start at 0 s, not {t} s"))),
        _ => Ok(out),
    }
}

/// A state file read back to the host (tensors moved to the device once the model is loaded).
struct SavedState {
    meta: HashMap<String, String>,
    tensors: BTreeMap<String, (Vec<f32>, Vec<usize>)>,
}

fn read_state_file(path: &str) -> Result<SavedState> {
    let bytes = std::fs::read(path).map_err(|e| Error::Input(format!("--resume {path}: cannot read: {e}")))?;
    let bad = |msg: String| Error::Input(format!("--resume {path}: not a sana-video LongSANA state file ({msg})"));
    let (_, header) = safetensors::SafeTensors::read_metadata(&bytes).map_err(|e| bad(e.to_string()))?;
    let meta: HashMap<String, String> = header.metadata().clone().unwrap_or_default();
    if meta.get("format").map(String::as_str) != Some(STATE_FORMAT) {
        return Err(bad("no `format` metadata".into()));
    }
    if meta.get("version").map(String::as_str) != Some(STATE_VERSION) {
        return Err(Error::Input(format!(
            "--resume {path}: state file version {} is not this program's version {STATE_VERSION}",
            meta.get("version").map(String::as_str).unwrap_or("?")
        )));
    }
    let st = safetensors::SafeTensors::deserialize(&bytes).map_err(|e| bad(e.to_string()))?;
    let mut tensors = BTreeMap::new();
    for (name, view) in st.tensors() {
        if view.dtype() != safetensors::Dtype::F32 {
            return Err(bad(format!("tensor `{name}` is {:?}, expected F32", view.dtype())));
        }
        let v: Vec<f32> = view.data().chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect();
        tensors.insert(name, (v, view.shape().to_vec()));
    }
    if meta.get("checksum").map(String::as_str) != Some(checksum(&tensors).as_str()) {
        return Err(Error::Input(format!("--resume {path}: the state file is damaged (its checksum does not match its tensors)")));
    }
    Ok(SavedState { meta, tensors })
}

/// FNV-1a over every tensor's name, shape and values (in name order): a state file that was
/// truncated, edited or mixed from two runs is refused instead of loaded into the model.
fn checksum<'a>(tensors: impl IntoIterator<Item = (&'a String, &'a (Vec<f32>, Vec<usize>))>) -> String {
    let mut sorted: Vec<_> = tensors.into_iter().collect();
    sorted.sort_by(|a, b| a.0.cmp(b.0));
    let mut h = Fnv::new();
    for (name, (data, shape)) in sorted {
        h.feed(name.as_bytes());
        for d in shape {
            h.feed(&(*d as u64).to_le_bytes());
        }
        h.feed(bytemuck::cast_slice(data));
    }
    h.hex()
}

impl SavedState {
    fn get(&self, key: &str, path: &str) -> Result<&str> {
        self.meta
            .get(key)
            .map(String::as_str)
            .ok_or_else(|| Error::Input(format!("--resume {path}: the state file lacks `{key}`")))
    }
    fn num(&self, key: &str, path: &str) -> Result<usize> {
        let v = self.get(key, path)?;
        v.parse().map_err(|_| Error::Input(format!("--resume {path}: `{key}` = `{v}` is not a number")))
    }
    fn tensor<const D: usize>(&self, key: &str, path: &str, device: &Device) -> Result<Tensor<D>> {
        let (v, s) = self
            .tensors
            .get(key)
            .ok_or_else(|| Error::Input(format!("--resume {path}: the state file lacks tensor `{key}`")))?;
        if s.len() != D {
            return Err(Error::Input(format!("--resume {path}: tensor `{key}` has {} dimensions, expected {D}", s.len())));
        }
        Ok(Tensor::<D>::from_data(TensorData::new(v.clone(), s.clone()), device))
    }
}

/// Everything a resumed run must agree with, as stored in the file.
fn state_key(fingerprint: &str, plan: &Plan, opts: &LongOptions) -> Vec<(&'static str, String)> {
    vec![
        ("model", fingerprint.to_string()),
        ("latent_shape", format!("{}x{}x{}", plan.latent_shape[1], plan.latent_shape[3], plan.latent_shape[4])),
        ("window", opts.cached_blocks.map_or("all".to_string(), |k| k.to_string())),
        ("fps", opts.fps.to_string()),
        ("chunk_frames", opts.chunk_frames.to_string()),
    ]
}

async fn host<const D: usize>(t: Tensor<D>) -> Result<(Vec<f32>, Vec<usize>)> {
    let dims = t.dims().to_vec();
    Ok((read_f32(crate::nn::to_f32(t)).await?, dims))
}

async fn write_state_file(
    path: &str,
    key: Vec<(&'static str, String)>,
    state: &LongState,
    vae: &StreamSnapshot,
    seed: u64,
    video_frames_done: usize,
) -> Result<()> {
    let mut tensors: Vec<(String, (Vec<f32>, Vec<usize>))> = Vec::new();
    for (i, l) in state.layers.iter().enumerate() {
        if let Some(s) = &l.sums {
            tensors.push((format!("layers.{i}.kv"), host(s.kv.clone()).await?));
            tensors.push((format!("layers.{i}.ksum"), host(s.ksum.clone()).await?));
        }
        if let Some(f) = &l.last_frame {
            tensors.push((format!("layers.{i}.last_frame"), host(f.clone()).await?));
        }
    }
    for (c, chunk) in state.window_history().iter().enumerate() {
        for (i, s) in chunk.iter().enumerate() {
            tensors.push((format!("window.{c}.{i}.kv"), host(s.kv.clone()).await?));
            tensors.push((format!("window.{c}.{i}.ksum"), host(s.ksum.clone()).await?));
        }
    }
    for (i, c) in vae.convs.iter().enumerate() {
        if let Some(t) = c {
            tensors.push((format!("vae.conv.{i}"), host(t.clone()).await?));
        }
    }
    let mut times = Vec::new();
    for (i, t) in vae.times.iter().enumerate() {
        times.push(match t {
            TimeCache::Fresh => "fresh",
            TimeCache::Started => "started",
            TimeCache::Frames(f) => {
                tensors.push((format!("vae.time.{i}"), host(f.clone()).await?));
                "frames"
            }
        });
    }
    let mut meta: HashMap<String, String> = key.into_iter().map(|(k, v)| (k.to_string(), v)).collect();
    meta.insert("format".into(), STATE_FORMAT.into());
    meta.insert("version".into(), STATE_VERSION.into());
    meta.insert("layers".into(), state.layers.len().to_string());
    meta.insert("frames_done".into(), state.frames_done.to_string());
    meta.insert("chunks_done".into(), state.chunks_done.to_string());
    meta.insert("video_frames_done".into(), video_frames_done.to_string());
    meta.insert("window_chunks".into(), state.window_history().len().to_string());
    meta.insert("seed".into(), seed.to_string());
    meta.insert("vae_times".into(), times.join(","));
    meta.insert("vae_convs".into(), vae.convs.len().to_string());
    meta.insert("vae_started".into(), vae.started.to_string());
    meta.insert("checksum".into(), checksum(tensors.iter().map(|(n, t)| (n, t))));
    if let Some([b, h, w]) = vae.shape {
        meta.insert("vae_shape".into(), format!("{b}x{h}x{w}"));
    }
    let views: Vec<(String, safetensors::tensor::TensorView<'_>)> = tensors
        .iter()
        .map(|(name, (data, shape))| {
            safetensors::tensor::TensorView::new(safetensors::Dtype::F32, shape.clone(), bytemuck::cast_slice(data))
                .map(|v| (name.clone(), v))
                .map_err(|e| Error::Input(format!("--save-state {path}: cannot serialise `{name}`: {e}")))
        })
        .collect::<Result<_>>()?;
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| Error::Input(format!("--save-state {path}: {e}")))?;
    #[cfg(not(target_arch = "wasm32"))]
    return crate::io::write_atomic(path, &bytes);
    #[cfg(target_arch = "wasm32")]
    {
        let _ = bytes;
        Err(Error::Input(format!("--save-state {path}: there is no file system in the browser")))
    }
}

/// Refuses a state made for another model, size, window or frame rate.
fn check_key(saved: &SavedState, path: &str, key: &[(&'static str, String)]) -> Result<()> {
    for (k, want) in key {
        let got = saved.get(k, path)?;
        if got != want {
            let what = match *k {
                "model" => "another model (transformer or VAE config differs)".to_string(),
                "latent_shape" => format!("another size (latents {got}, this run {want})"),
                "window" => format!("another --cached-blocks ({got}, this run {want})"),
                "chunk_frames" => format!("another --chunk-frames ({got}, this run {want})"),
                _ => format!("another {k} ({got}, this run {want})"),
            };
            return Err(Error::Input(format!("--resume {path}: the state was saved for {what}")));
        }
    }
    Ok(())
}

/// What a state file must match: its key, and the model's layers, window and state shapes
/// (batch, heads, head dim, width, tokens per frame).
struct Expect<'a> {
    key: &'a [(&'static str, String)],
    layers: usize,
    dims: (usize, usize, usize, usize, usize),
    window: Option<usize>,
}

/// Everything about a state file that can be checked before loading weights: the key (model,
/// size, window, fps, chunking), the counters' consistency, and every DiT tensor's presence
/// and shape (a wrong one would fail deep in the device code instead of here).
fn validate(saved: &SavedState, path: &str, e: &Expect<'_>) -> Result<()> {
    let (layers, window) = (e.layers, e.window);
    check_key(saved, path, e.key)?;
    let bad = |msg: String| Error::Input(format!("--resume {path}: {msg}"));
    if saved.num("layers", path)? != layers {
        return Err(bad(format!("the state has {} layers, the transformer {layers}", saved.num("layers", path)?)));
    }
    let (frames, chunks, video) =
        (saved.num("frames_done", path)?, saved.num("chunks_done", path)?, saved.num("video_frames_done", path)?);
    if chunks == 0 || frames < chunks || frames >= 1 << 24 || video != 1 + 4 * (frames - 1) {
        return Err(bad(format!("inconsistent counters (chunks {chunks}, latent frames {frames}, frames {video})")));
    }
    let kept = saved.num("window_chunks", path)?;
    if kept > window.unwrap_or(0) || kept > chunks {
        return Err(bad(format!("{kept} windowed chunks for a window of {}", window.map_or("all".into(), |k| k.to_string()))));
    }
    let shape_ok = |key: &str, want: &[usize]| -> Result<()> {
        match saved.tensors.get(key) {
            None => Err(bad(format!("the state file lacks tensor `{key}`"))),
            Some((_, s)) if s.as_slice() != want => Err(bad(format!("tensor `{key}` has shape {s:?}, this model needs {want:?}"))),
            _ => Ok(()),
        }
    };
    let (b, heads, hd, dim, per_frame) = e.dims;
    for i in 0..layers {
        shape_ok(&format!("layers.{i}.kv"), &[b, heads, hd, hd])?;
        shape_ok(&format!("layers.{i}.ksum"), &[b, heads, hd])?;
        shape_ok(&format!("layers.{i}.last_frame"), &[b, per_frame, dim])?;
    }
    for c in 0..kept {
        for i in 0..layers {
            shape_ok(&format!("window.{c}.{i}.kv"), &[b, heads, hd, hd])?;
            shape_ok(&format!("window.{c}.{i}.ksum"), &[b, heads, hd])?;
        }
    }
    let convs = saved.num("vae_convs", path)?;
    if convs > 4096 || saved.tensors.keys().any(|k| k.starts_with("vae.") && saved.tensors[k].1.len() != 5) {
        return Err(bad("malformed VAE decoder cache".into()));
    }
    Ok(())
}

/// Rebuilds the DiT state and the VAE stream from a state file (checked by [`validate`]).
fn restore(saved: &SavedState, path: &str, e: &Expect<'_>, device: &Device) -> Result<(LongState, StreamSnapshot, u64, usize)> {
    validate(saved, path, e)?;
    let layers = e.layers;
    let mut state = LongState::new(layers, e.window)?;
    // `validate` found every layer's tensors (a saved state has at least one chunk).
    for (i, layer) in state.layers.iter_mut().enumerate() {
        *layer = LayerState {
            sums: Some(KvSums {
                kv: saved.tensor(&format!("layers.{i}.kv"), path, device)?,
                ksum: saved.tensor(&format!("layers.{i}.ksum"), path, device)?,
            }),
            last_frame: Some(saved.tensor(&format!("layers.{i}.last_frame"), path, device)?),
        };
    }
    let mut history = VecDeque::new();
    for c in 0..saved.num("window_chunks", path)? {
        let mut chunk = Vec::with_capacity(layers);
        for i in 0..layers {
            chunk.push(KvSums {
                kv: saved.tensor(&format!("window.{c}.{i}.kv"), path, device)?,
                ksum: saved.tensor(&format!("window.{c}.{i}.ksum"), path, device)?,
            });
        }
        history.push_back(chunk);
    }
    state.set_window_history(history);
    state.frames_done = saved.num("frames_done", path)?;
    state.chunks_done = saved.num("chunks_done", path)?;
    let convs = (0..saved.num("vae_convs", path)?)
        .map(|i| {
            let k = format!("vae.conv.{i}");
            if saved.tensors.contains_key(&k) { saved.tensor::<5>(&k, path, device).map(Some) } else { Ok(None) }
        })
        .collect::<Result<Vec<_>>>()?;
    let times = saved
        .get("vae_times", path)?
        .split(',')
        .filter(|s| !s.is_empty())
        .enumerate()
        .map(|(i, s)| match s {
            "fresh" => Ok(TimeCache::Fresh),
            "started" => Ok(TimeCache::Started),
            "frames" => Ok(TimeCache::Frames(saved.tensor::<5>(&format!("vae.time.{i}"), path, device)?)),
            other => Err(Error::Input(format!("--resume {path}: unknown VAE cache state `{other}`"))),
        })
        .collect::<Result<Vec<_>>>()?;
    let shape = match saved.meta.get("vae_shape") {
        Some(s) => {
            let v: Vec<usize> = s.split('x').filter_map(|x| x.parse().ok()).collect();
            if v.len() != 3 {
                return Err(Error::Input(format!("--resume {path}: bad vae_shape `{s}`")));
            }
            Some([v[0], v[1], v[2]])
        }
        None => None,
    };
    let snap = StreamSnapshot { convs, times, started: saved.get("vae_started", path)? == "true", shape };
    let seed: u64 = saved.get("seed", path)?.parse().map_err(|_| Error::Input(format!("--resume {path}: bad seed")))?;
    Ok((state, snap, seed, saved.num("video_frames_done", path)?))
}

/// Latent frames this run makes: a new video's `frames` are 1 + 4k (k + 1 latent frames);
/// a resumed one continues with 4k more frames (k latent frames).
pub fn new_latent_frames(frames: usize, temporal: usize, resumed: bool) -> Result<usize> {
    if resumed {
        if frames == 0 || frames % temporal != 0 {
            return Err(Error::Input(format!(
                "--frames {frames}: a resumed video continues in steps of {temporal} frames (one latent frame each); try {}",
                (frames / temporal).max(1) * temporal
            )));
        }
        Ok(frames / temporal)
    } else {
        Ok((frames.max(1) - 1) / temporal + 1)
    }
}

/// Runs a LongSANA request (blocking). `plan` comes from [`super::plan`] with `req.frames`
/// set to the frames of a new video of the same latent length (see [`plan_long`]).
#[cfg(not(target_arch = "wasm32"))]
pub fn run_long(
    source: &dyn FileSource,
    plan: &Plan,
    req: &Request,
    opts: &LongOptions,
    device: &Device,
    events: &mut dyn Events,
) -> Result<Generated> {
    pollster::block_on(run_long_async(source, plan, req, opts, device, events))
}

/// Plans a LongSANA run: the usual checks, with the transformer's activations for one chunk
/// (not the whole video) plus the state, which is what makes memory independent of length.
pub fn plan_long(source: &dyn FileSource, model_dir: &str, req: &Request, opts: &LongOptions) -> Result<Plan> {
    let mut r = req.clone();
    r.cfg_scale = 1.0;
    r.resolution_binning = false;
    let temporal = 4;
    if opts.resume.is_some() {
        // Validate sizes as for a new video of the same latent length.
        r.frames = 1 + temporal * new_latent_frames(req.frames, temporal, true)?.saturating_sub(1);
    }
    let mut plan = super::plan(source, model_dir, &r)?;
    let dit = SanaVideoTransformer3DModel::read_config(source, &plan.transformer_dir)?;
    if dit.kind != DitKind::BlockCausal {
        return Err(Error::config(
            join(&plan.transformer_dir, "config.json"),
            "LongSANA needs a block-causal checkpoint (_class_name SanaVideoCausalTransformer3DModel)",
        ));
    }
    if opts.chunk_frames == 0 {
        return Err(Error::Input("--chunk-frames 0: a chunk needs at least one latent frame".into()));
    }
    let [_, _, lat_f, lat_h, lat_w] = plan.latent_shape;
    let [pt, ph, pw] = dit.patch_size;
    let sizes = longlive::chunk_sizes(lat_f, opts.chunk_frames)?;
    if let Some(n) = sizes.iter().find(|n| **n % pt.max(1) != 0) {
        return Err(Error::Input(format!(
            "--chunk-frames {}: a chunk of {n} latent frames is not a multiple of the temporal patch {pt}",
            opts.chunk_frames
        )));
    }
    let largest = sizes.into_iter().max().unwrap_or(1);
    let per_frame = (lat_h / ph) * (lat_w / pw);
    let chunk_tokens = (largest / pt.max(1)) * per_frame;
    let elt = if req.dtype == DType::F32 { 4 } else { 2 };
    let sums_bytes = dit.heads * dit.head_dim * (dit.head_dim + 1) * 4;
    // The running sums and cached frame per layer, plus a window's per-chunk sums.
    let state_bytes = (dit.layers * (sums_bytes * (1 + opts.cached_blocks.unwrap_or(0)) + per_frame * dit.dim * elt)) as u64;
    for s in plan.memory.stages.iter_mut().filter(|s| s.name == "transformer") {
        s.activations = super::memory::dit_activations(1, chunk_tokens, dit.dim, dit.ffn_hidden, elt, dit.out_channels * pt * ph * pw, plan.dit_memory)
            + state_bytes;
    }
    // The transformer and the VAE stay loaded together (chunks alternate between them).
    plan.memory.resident = true;
    plan.tokens = chunk_tokens;
    // A state file for another model or size is refused now, before any weights load.
    if let Some(path) = &opts.resume {
        let saved = read_state_file(path)?;
        let key = state_key(&model_fingerprint(source, &plan)?, &plan, opts);
        let dims = (1, dit.heads, dit.head_dim, dit.dim, per_frame);
        validate(&saved, path, &Expect { key: &key, layers: dit.layers, dims, window: opts.cached_blocks })?;
    }
    // The state is written at the end: make sure it can be, before the work.
    if let Some(path) = &opts.save_state {
        let parent = std::path::Path::new(path).parent().filter(|p| !p.as_os_str().is_empty());
        if parent.is_some_and(|p| !p.is_dir()) {
            return Err(Error::Input(format!("--save-state {path}: the folder does not exist")));
        }
        if std::path::Path::new(path).is_dir() {
            return Err(Error::Input(format!("--save-state {path}: is a folder")));
        }
    }
    Ok(plan)
}

pub async fn run_long_async(
    source: &dyn FileSource,
    plan: &Plan,
    req: &Request,
    opts: &LongOptions,
    device: &Device,
    events: &mut dyn Events,
) -> Result<Generated> {
    let [_, c_lat, _, lat_h, lat_w] = plan.latent_shape;
    let temporal = 4;
    // One chunk at a time, without CFG: `plan.tokens` is a chunk's.
    super::check_buffer_limit(source, plan, req, 1, true, device)?;
    let saved = opts.resume.as_deref().map(read_state_file).transpose()?;
    let new_lat = new_latent_frames(req.frames, temporal, saved.is_some())?;
    let sizes = longlive::chunk_sizes(new_lat, opts.chunk_frames)?;

    // 1. Every distinct prompt of the schedule, then release the encoder.
    let schedule: Vec<(f64, String)> =
        if opts.prompt_schedule.is_empty() { vec![(0.0, req.prompt.clone())] } else { opts.prompt_schedule.clone() };
    events.stage(Stage::LoadTextEncoder, 0);
    let (te, _) = TextEncoder::load(source, &plan.model_dir, device, req.dtype)?;
    events.stage_done(Stage::LoadTextEncoder);
    check_cancel(events)?;
    events.stage(Stage::EncodePrompt, 0);
    let mut texts: Vec<(Tensor<3>, Vec<f32>)> = Vec::new();
    for (_, p) in &schedule {
        let enc = te.encode(&[p.clone()], None, &req.prompt_options)?;
        for w in &enc.warnings {
            events.warn(w);
        }
        texts.push((crate::nn::to_dtype(enc.prompt.embeds.clone(), req.dtype), enc.prompt.mask.iter().map(|&v| v as f32).collect()));
    }
    te.unload();
    events.stage_done(Stage::EncodePrompt);

    // 2. Transformer and VAE, both resident.
    check_cancel(events)?;
    events.stage(Stage::LoadTransformer, 0);
    let (dit, _) = SanaVideoTransformer3DModel::load(source, &plan.transformer_dir, device, req.dtype)?;
    events.stage_done(Stage::LoadTransformer);
    events.stage(Stage::LoadVae, 0);
    let (vae, _) = Vae::load(source, &plan.vae_dir, device, req.vae_dtype)?;
    events.stage_done(Stage::LoadVae);
    let wan = match &vae {
        Vae::Wan(v) => v,
        Vae::Ltx2(_) => return Err(Error::config(join(&plan.vae_dir, "config.json"), "LongSANA streams through the Wan2.1 VAE; this is LTX-2")),
    };
    let (mean, std) = latent_stats(&vae);
    let inv: Vec<f32> = std.iter().map(|s| 1.0 / s).collect();
    let (mean_t, inv_t) = (channel_tensor(&mean, device), channel_tensor(&inv, device));

    // 3. State: fresh, or the saved one.
    let fingerprint = model_fingerprint(source, plan)?;
    let key = state_key(&fingerprint, plan, opts);
    let layers = dit.transformer_blocks.len();
    let (mut state, mut stream, seed, mut video_done) = match &saved {
        Some(s) => {
            let path = opts.resume.as_deref().unwrap_or("");
            let c = &dit.config;
            let [_, ph, pw] = c.patch_size;
            let dims = (1, c.heads, c.head_dim, c.dim, (lat_h / ph) * (lat_w / pw));
            let expect = Expect { key: &key, layers, dims, window: opts.cached_blocks };
            let (mut st, mut snap, seed, vd) = restore(s, path, &expect, device)?;
            // Saved in f32; computed in the run's dtypes.
            for l in st.layers.iter_mut() {
                l.last_frame = l.last_frame.take().map(|f| crate::nn::to_dtype(f, req.dtype));
            }
            snap.convs = snap.convs.into_iter().map(|c| c.map(|t| crate::nn::to_dtype(t, req.vae_dtype))).collect();
            snap.times = snap
                .times
                .into_iter()
                .map(|t| match t {
                    TimeCache::Frames(f) => TimeCache::Frames(crate::nn::to_dtype(f, req.vae_dtype)),
                    other => other,
                })
                .collect();
            let stream = wan.decode_stream_from(snap).map_err(|e| Error::Input(format!("--resume {path}: {e}")))?;
            (st, stream, seed, vd)
        }
        None => (LongState::new(layers, opts.cached_blocks)?, wan.decode_stream(), req.seed, 0),
    };
    drop(saved);

    // 4. Chunks.
    let mut emitted = 0usize;
    let mut kept = Vec::new();
    events.stage(Stage::Denoise, sizes.len());
    for (j, &n) in sizes.iter().enumerate() {
        let t0 = web_time_now();
        events.pause().await;
        check_cancel(events)?;
        let chunk = state.chunks_done;
        let start_frame = video_done;
        let now_s = start_frame as f64 / opts.fps.max(1) as f64;
        let pi = schedule.iter().rposition(|(t, _)| *t <= now_s + 1e-9).unwrap_or(0);
        let text = ChunkText { embeds: &texts[pi].0, mask: &texts[pi].1 };
        let shape = [1, c_lat, n, lat_h, lat_w];
        let x0 = denoise_chunk(&dit, &state, &text, &longlive::TIMESTEPS, |k| Ok(seeded_draw(seed, chunk, k, shape, device)), |_| {
            super::sync_step(device)
        })?;
        commit_chunk(&dit, &mut state, x0.clone(), &text)?;
        // The decode below waits for the DiT anyway, so this sync costs nothing.
        #[cfg(not(target_arch = "wasm32"))]
        let dit_seconds = device.sync().ok().map(|_| web_time_now() - t0);
        #[cfg(target_arch = "wasm32")]
        let dit_seconds = None;
        if opts.keep_latents {
            kept.push(read_f32(x0.clone()).await?);
        }
        // Decode this chunk now (the VAE is causal: its caches carry across chunks).
        let z = crate::nn::to_dtype(x0 / inv_t.clone() + mean_t.clone(), req.vae_dtype);
        let before = emitted;
        // Each push's frames are post-processed after the next push is issued (`Decoded`).
        let mut ready: Option<super::Decoded> = None;
        for f in 0..n {
            let px = stream.push(z.clone().narrow(2, f, 1))?;
            if let Some(r) = ready.take() {
                r.emit(plan, &mut emitted, events)?;
            }
            ready = super::Decoded::read(px).await?;
        }
        if let Some(r) = ready {
            r.emit(plan, &mut emitted, events)?;
        }
        video_done += emitted - before;
        events.chunk(ChunkInfo {
            index: j,
            total: sizes.len(),
            latent_frames: n,
            video_frames: emitted - before,
            seconds: web_time_now() - t0,
            dit_seconds,
            prompt_index: pi,
        });
        events.advance(j + 1);
    }
    events.stage_done(Stage::Denoise);

    // 5. The state for a later --resume.
    if let Some(path) = &opts.save_state {
        write_state_file(path, key, &state, &stream.snapshot(), seed, video_done).await?;
    }
    let latents: Vec<f32> = kept.concat();
    let lat_total = if opts.keep_latents { new_lat } else { 0 };
    Ok(Generated { latents, latent_shape: [1, c_lat, lat_total, lat_h, lat_w], frames: emitted })
}

/// Seconds since an arbitrary origin (std's clock where there is one; the browser has none).
fn web_time_now() -> f64 {
    #[cfg(not(target_arch = "wasm32"))]
    {
        use std::sync::OnceLock;
        static T0: OnceLock<std::time::Instant> = OnceLock::new();
        T0.get_or_init(std::time::Instant::now).elapsed().as_secs_f64()
    }
    #[cfg(target_arch = "wasm32")]
    {
        0.0
    }
}

/// Whether a model folder's transformer is LongSANA's block-causal class.
pub fn is_block_causal(source: &dyn FileSource, model_dir: &str) -> Result<bool> {
    let dir = crate::io::diffusers::component_dir(source, model_dir, "transformer")?;
    Ok(SanaVideoTransformer3DModel::read_config(source, &dir)?.kind == DitKind::BlockCausal)
}
