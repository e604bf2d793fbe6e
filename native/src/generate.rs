//! `sana-video generate`: prompt (and optionally an image) in, video file out.
//! Everything that can be checked is checked before loading (flags, sizes, the output path,
//! the memory plan); progress per stage on stderr; a summary of time and memory at the end.

use std::io::IsTerminal;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Instant;

use burn::tensor::{DType, Device};
use sana_video_core::device::{self, BackendKind};
use sana_video_core::io::safetensors::Weights;
use sana_video_core::io::{FileSource, FsSource};
use sana_video_core::models::text_encoder::{Instruction, PromptOptions};
use sana_video_core::models::vae::tiling::Tiling;
use sana_video_core::pipelines::long::{ChunkInfo, LongOptions};
use sana_video_core::pipelines::{self, memory::gb, Events, Frames, Image, ModelDefaults, Request, Stage};
use sana_video_core::samplers::{longlive, SamplerKind};
use sana_video_core::Error;

use crate::args::{parse, Args};
use crate::builtin;
use crate::video::{self, BackgroundWriter, Format, VideoWriter};

static INTERRUPTED: AtomicBool = AtomicBool::new(false);

pub const VALUED: &[&str] = &[
    "model", "prompt", "negative-prompt", "image", "frames", "seconds", "fps", "height", "width", "steps", "cfg-scale",
    "seed", "sampler", "motion-score", "instruction", "backend", "dtype", "vae-dtype", "vae-tile-size",
    "vae-tile-overlap", "resolution-binning", "init-noise", "max-memory", "output", "cached-blocks", "chunk-frames",
    "prompt-schedule", "save-state", "resume",
];
pub const SWITCHES: &[&str] = &["vae-tiling", "keep-resident", "no-lowercase", "quiet"];

/// Installs the Ctrl-C handler: the first press stops the run at the next step (the partial
/// output is removed by the writer); a second press removes it and exits at once.
fn install_interrupt() {
    let _ = ctrlc::set_handler(|| {
        if INTERRUPTED.swap(true, Ordering::SeqCst) {
            if let Ok(paths) = video::PARTIAL.lock() {
                for p in paths.iter() {
                    video::remove_partial(p);
                }
            }
            eprintln!("\ninterrupted");
            std::process::exit(130);
        }
        eprintln!("\ninterrupting after the current step (Ctrl-C again to stop at once)");
    });
}

/// Free memory on the device, when the platform tells us.
fn available_memory(kind: BackendKind, max_memory: Option<f64>) -> Option<(u64, String)> {
    if let Some(g) = max_memory {
        return Some(((g * 1e9) as u64, "--max-memory".into()));
    }
    match kind {
        BackendKind::Cpu => {
            let text = std::fs::read_to_string("/proc/meminfo").ok()?;
            let line = text.lines().find(|l| l.starts_with("MemAvailable:"))?;
            let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
            Some((kb * 1024, "available system memory".into()))
        }
        BackendKind::Cuda => {
            let out = std::process::Command::new("nvidia-smi")
                .args(["--query-gpu=memory.free", "--format=csv,noheader,nounits", "--id=0"])
                .output()
                .ok()?;
            let mib: u64 = String::from_utf8_lossy(&out.stdout).trim().parse().ok()?;
            Some((mib * 1024 * 1024, "free GPU memory (nvidia-smi)".into()))
        }
        BackendKind::Wgpu | BackendKind::Vulkan => None,
    }
}

fn peak_host_rss() -> Option<u64> {
    let text = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = text.lines().find(|l| l.starts_with("VmHWM:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

struct Cli<'a> {
    writer: Option<BackgroundWriter>,
    device: &'a Device,
    kind: BackendKind,
    tty: bool,
    quiet: bool,
    stage_start: Instant,
    step_start: Instant,
    units: usize,
    times: Vec<(Stage, f64)>,
    /// Peak pool reservation per stage (the pool is trimmed when a model is released).
    stage_peaks: Vec<(Stage, u64)>,
    stage_peak: u64,
}

impl Cli<'_> {
    /// `SANA_MEMORY_TRACE=1`: the pool and the driver's view of device memory at each stage's
    /// end (the driver's also counts the CUDA context, libraries' kernels and workspaces).
    fn trace_memory(&self, at: &str) {
        if std::env::var("SANA_MEMORY_TRACE").as_deref() != Ok("1") {
            return;
        }
        let pool = self.device.memory_pool_usage();
        let driver = sana_video_core::kernels::driver_memory_used(self.device);
        eprintln!(
            "memory trace, end of {at}: pool in use {}, reserved {}, stage peak {}; device used (driver) {}",
            pool.as_ref().map_or("n/a".into(), |u| format!("{:.2} GB", gb(u.bytes_in_use))),
            pool.as_ref().map_or("n/a".into(), |u| format!("{:.2} GB", gb(u.bytes_reserved))),
            format!("{:.2} GB", gb(self.stage_peak)),
            driver.map_or("n/a".into(), |b| format!("{:.2} GB", gb(b)))
        );
        for line in device::pool_pages(self.device) {
            eprintln!("  {line}");
        }
    }

    fn sample_memory(&mut self) {
        if self.kind != BackendKind::Cpu {
            if let Some(u) = self.device.memory_pool_usage() {
                self.stage_peak = self.stage_peak.max(u.bytes_reserved);
            }
        }
    }
}

impl Events for Cli<'_> {
    fn stage(&mut self, stage: Stage, units: usize) {
        self.stage_peak = 0;
        self.sample_memory();
        self.stage_start = Instant::now();
        self.step_start = Instant::now();
        self.units = units;
        if !self.quiet && units == 0 {
            eprintln!("{} …", stage.name());
        }
    }

    fn advance(&mut self, done: usize) {
        self.sample_memory();
        if done == 1 {
            self.trace_memory("the first step or frame");
        }
        if self.quiet {
            return;
        }
        let elapsed = self.stage_start.elapsed().as_secs_f64();
        let per = elapsed / done.max(1) as f64;
        let eta = per * (self.units.saturating_sub(done)) as f64;
        let last = self.step_start.elapsed().as_secs_f64();
        self.step_start = Instant::now();
        let width = 30;
        let filled = (done * width) / self.units.max(1);
        let bar: String = "#".repeat(filled.min(width)) + &".".repeat(width - filled.min(width));
        let line = format!(
            "  [{bar}] {done}/{} last {last:.2} s, mean {per:.2} s, elapsed {elapsed:.1} s, ETA {:.0}:{:02.0}",
            self.units,
            (eta / 60.0).floor(),
            eta % 60.0
        );
        if self.tty {
            eprint!("\r{line}");
            if done >= self.units {
                eprintln!();
            }
        } else {
            eprintln!("{line}");
        }
    }

    fn stage_done(&mut self, stage: Stage) {
        self.sample_memory();
        self.trace_memory(stage.name());
        let t = self.stage_start.elapsed().as_secs_f64();
        self.times.push((stage, t));
        self.stage_peaks.push((stage, self.stage_peak));
        if !self.quiet && self.units == 0 {
            eprintln!("{} done in {t:.2} s", stage.name());
        }
    }

    fn warn(&mut self, msg: &str) {
        eprintln!("warning: {msg}");
    }

    fn frames(&mut self, frames: Frames) -> sana_video_core::Result<()> {
        let w = self.writer.as_mut().ok_or(Error::Interrupted)?;
        w.push(frames.data, frames.count).map_err(Error::Input)
    }

    fn cancelled(&self) -> bool {
        INTERRUPTED.load(Ordering::SeqCst)
    }

    fn chunk(&mut self, c: ChunkInfo) {
        if !self.quiet {
            let fps = c.video_frames as f64 / c.seconds.max(1e-9);
            let split = match c.dit_seconds {
                Some(d) => format!(" [DiT {d:.2} s, decode and write {:.2} s]", (c.seconds - d).max(0.0)),
                None => String::new(),
            };
            let line = format!(
                "chunk {}/{}: {} latent frames -> {} frames in {:.2} s ({fps:.1} frames/s){split}, prompt {}",
                c.index + 1,
                c.total,
                c.latent_frames,
                c.video_frames,
                c.seconds,
                c.prompt_index + 1
            );
            if self.tty {
                eprint!("\r{line}\n");
            } else {
                eprintln!("{line}");
            }
        }
    }
}

fn load_image(path: &str, size: (usize, usize)) -> Result<Image, String> {
    let img = image::ImageReader::open(path)
        .map_err(|e| format!("--image {path}: {e}"))?
        .with_guessed_format()
        .map_err(|e| format!("--image {path}: {e}"))?
        .decode()
        .map_err(|e| format!("--image {path}: cannot decode: {e}"))?
        .to_rgb8();
    let (h, w) = size;
    let img = if (img.height() as usize, img.width() as usize) == (h, w) {
        img
    } else {
        // diffusers resizes straight to the target size (PIL Lanczos; ours is image's Lanczos3).
        image::imageops::resize(&img, w as u32, h as u32, image::imageops::FilterType::Lanczos3)
    };
    Ok(Image { height: h, width: w, rgb: img.as_raw().iter().map(|&v| v as f32 / 255.0).collect() })
}

fn load_noise(path: &str) -> Result<(Vec<f32>, Vec<usize>), String> {
    let w = Weights::open_files(&FsSource, &[path.to_string()]).map_err(|e| format!("--init-noise {path}: {e}"))?;
    if w.meta("latents").is_none() {
        return Err(format!("--init-noise {path}: has no tensor `latents`"));
    }
    w.read_f32("latents").map_err(|e| format!("--init-noise {path}: {e}"))
}

/// `--chunk-frames` and `--cached-blocks` (-1: every finished chunk) over the model's
/// defaults (`generate` and `evaluate`).
pub(crate) fn chunking(args: &Args, defaults: &ModelDefaults) -> Result<(usize, Option<usize>), String> {
    let cached_blocks = match parse::<i64>(args, "cached-blocks", "a whole number (-1: all)")? {
        None => defaults.cached_blocks,
        Some(-1) => None,
        Some(k) if k >= 1 => Some(k as usize),
        Some(k) => return Err(format!("--cached-blocks {k}: expected -1 (all finished chunks) or at least 1")),
    };
    let chunk_frames = parse(args, "chunk-frames", "a whole number of latent frames")?.or(defaults.chunk_frames).unwrap_or(longlive::CHUNK_FRAMES);
    Ok((chunk_frames, cached_blocks))
}

/// Without `--model`, a video longer than the built-in model's 17 frames, or any LongSANA
/// flag, goes to the built-in causal model. Unparsable values are left for the checks below.
fn wants_long(args: &Args) -> bool {
    const LONG_FLAGS: [&str; 5] = ["chunk-frames", "cached-blocks", "prompt-schedule", "save-state", "resume"];
    let fps = args.get("fps").and_then(|v| v.parse::<f64>().ok()).unwrap_or(16.0);
    let frames = args.get("frames").and_then(|v| v.parse::<f64>().ok()).or_else(|| args.get("seconds").and_then(|v| v.parse::<f64>().ok()).map(|s| s * fps + 1.0));
    args.get("image").is_none() && (LONG_FLAGS.iter().any(|f| args.get(f).is_some()) || frames.is_some_and(|f| f > 17.5))
}

pub fn run(argv: &[String]) -> Result<(), String> {
    let argv: Vec<String> = argv.iter().map(|a| if a == "-o" { "--output".to_string() } else { a.clone() }).collect();
    let args = Args::parse(&argv, VALUED, SWITCHES)?;
    if let Some(p) = args.positional.first() {
        return Err(format!("unexpected argument `{p}` (the prompt goes after --prompt)"));
    }
    let (source, model_dir) = builtin::resolve(args.get("model").or_else(|| wants_long(&args).then_some(builtin::LONG_NAME)))?;
    let defaults = builtin::defaults(source, &model_dir)?;
    if args.get("model").is_none() && model_dir == builtin::LONG_NAME && !args.flag("quiet") {
        eprintln!("using {}: the built-in model's block-causal variant, for videos longer than 17 frames", builtin::LONG_NAME);
    }
    let long = pipelines::long::is_block_causal(source, &model_dir).map_err(|e| e.to_string())?;
    if long {
        // LongLive fixes these; accepting them silently would mislead.
        for flag in ["steps", "cfg-scale", "sampler", "negative-prompt", "init-noise", "vae-tile-size", "vae-tile-overlap"] {
            if args.get(flag).is_some() {
                return Err(format!(
                    "--{flag} does not apply to LongSANA ({model_dir} is block-causal: 4 LongLive steps per chunk, no guidance, seeded noise per chunk)"
                ));
            }
        }
        if args.flag("vae-tiling") {
            return Err("--vae-tiling does not apply to LongSANA (chunks are decoded frame by frame)".into());
        }
        if args.get("resolution-binning") == Some("on") {
            return Err("--resolution-binning on does not apply to LongSANA (it generates at the asked size)".into());
        }
        if args.get("prompt").is_some() && args.get("prompt-schedule").is_some() {
            return Err("--prompt and --prompt-schedule exclude each other (the schedule's first line is the opening prompt)".into());
        }
        if args.get("seed").is_some() && args.get("resume").is_some() {
            return Err("--seed and --resume exclude each other (a resumed video keeps the seed saved in its state)".into());
        }
    }
    if !long {
        for flag in ["cached-blocks", "chunk-frames", "prompt-schedule", "save-state", "resume"] {
            if args.get(flag).is_some() {
                return Err(format!("--{flag} is for LongSANA (block-causal) checkpoints; {model_dir} is bidirectional"));
            }
        }
    }
    let prompt_schedule = match args.get("prompt-schedule") {
        Some(p) => {
            let text = std::fs::read_to_string(p).map_err(|e| format!("--prompt-schedule {p}: {e}"))?;
            pipelines::long::parse_prompt_schedule(&text, p).map_err(|e| e.to_string())?
        }
        None => Vec::new(),
    };
    let prompt = match (args.get("prompt"), prompt_schedule.first()) {
        (Some(p), _) => p.to_string(),
        (None, Some((_, p))) => p.clone(),
        (None, None) => args.require("prompt")?.to_string(),
    };
    let output = args.require("output")?.to_string();
    let format = Format::of(&output)?;

    let fps: u32 = parse(&args, "fps", "a whole number of frames per second")?.unwrap_or(16);
    if fps == 0 || fps > 240 {
        return Err(format!("--fps {fps}: expected 1 to 240"));
    }
    let frames = match (parse::<usize>(&args, "frames", "a whole number")?, parse::<f64>(&args, "seconds", "a number of seconds")?) {
        (Some(_), Some(_)) => return Err("--frames and --seconds exclude each other".into()),
        (Some(f), None) => f,
        // A resumed LongSANA video continues without the first frame a new video starts with.
        (None, Some(s)) if s > 0.0 && s.is_finite() => (s * fps as f64).round() as usize + usize::from(args.get("resume").is_none()),
        (None, Some(s)) => return Err(format!("--seconds {s}: must be positive")),
        // A resumed video continues by 5 s unless told (4k frames, not 1 + 4k).
        (None, None) if args.get("resume").is_some() => 80,
        (None, None) => defaults.frames,
    };
    let steps: usize = parse(&args, "steps", "a whole number")?.unwrap_or(defaults.steps);
    let cfg_scale: f32 = parse(&args, "cfg-scale", "a number")?.unwrap_or(defaults.cfg_scale);
    let seed: u64 = parse(&args, "seed", "a whole number ≥ 0")?.unwrap_or(42);
    let sampler = args.get("sampler").map(SamplerKind::parse).transpose().map_err(|e| e.to_string())?;
    let motion_score: Option<u32> = parse(&args, "motion-score", "a whole number ≥ 0")?.or(defaults.motion_score);
    let instruction = Instruction::parse(args.get("instruction").unwrap_or("video")).map_err(|e| e.to_string())?;
    let binning_arg = match args.get("resolution-binning").unwrap_or("auto") {
        "on" => Some(true),
        "off" => Some(false),
        "auto" => None,
        other => return Err(format!("--resolution-binning {other}: expected on, off or auto")),
    };
    let tiling = if args.flag("vae-tiling") {
        let d = Tiling::default();
        Some(Tiling {
            tile: parse(&args, "vae-tile-size", "pixels")?.unwrap_or(d.tile),
            overlap: parse(&args, "vae-tile-overlap", "pixels")?.unwrap_or(d.overlap),
        })
    } else {
        if args.get("vae-tile-size").is_some() || args.get("vae-tile-overlap").is_some() {
            return Err("--vae-tile-size / --vae-tile-overlap need --vae-tiling".into());
        }
        None
    };
    let max_memory: Option<f64> = parse(&args, "max-memory", "gigabytes")?;
    let negative = args.get("negative-prompt").unwrap_or(defaults.negative_prompt).to_string();

    let binning = binning_arg.unwrap_or(defaults.binning);
    let height: usize = parse(&args, "height", "pixels")?.unwrap_or(defaults.height);
    let width: usize = parse(&args, "width", "pixels")?.unwrap_or(defaults.width);

    // Backend and dtypes (bf16 by default on CUDA, f32 elsewhere).
    let backend_kind = match args.get("backend") {
        Some(b) => Some(BackendKind::parse(b).map_err(|e| e.to_string())?),
        None => None,
    };
    let dtype_for = |name: &str, default: DType| -> Result<DType, String> {
        match args.get(name) {
            Some(d) => device::parse_dtype(d).map_err(|e| e.to_string()),
            None => Ok(default),
        }
    };
    let init_noise = args.get("init-noise").map(load_noise).transpose()?;

    let mut req = Request {
        prompt: prompt.clone(),
        negative_prompt: negative.clone(),
        prompt_options: PromptOptions { instruction, lowercase: !args.flag("no-lowercase"), motion_score, ..Default::default() },
        height,
        width,
        frames,
        steps,
        cfg_scale,
        seed,
        sampler,
        resolution_binning: binning,
        image: None,
        init_noise,
        dtype: DType::F32,
        vae_dtype: dtype_for("vae-dtype", DType::F32)?,
        vae_tiling: tiling,
        keep_resident: args.flag("keep-resident"),
        ..Default::default()
    };
    let long_opts = if long {
        let (chunk_frames, cached_blocks) = chunking(&args, &defaults)?;
        if args.get("image").is_some() {
            return Err("--image: image-to-video is not available for LongSANA checkpoints".into());
        }
        Some(LongOptions {
            chunk_frames,
            cached_blocks,
            prompt_schedule,
            fps,
            resume: args.get("resume").map(str::to_string),
            save_state: args.get("save-state").map(str::to_string),
            keep_latents: format == Format::Safetensors,
        })
    } else {
        None
    };
    let plan_for = |req: &Request| match &long_opts {
        Some(o) => pipelines::long::plan_long(source, &model_dir, req, o),
        None => pipelines::plan(source, &model_dir, req),
    };
    // A first plan (f32) validates sizes before the device opens.
    let first = plan_for(&req).map_err(|e| e.to_string())?;
    video::check_output(&output, format, first.out_size.0, first.out_size.1)?;
    if let Some(path) = args.get("image") {
        req.image = Some(load_image(path, first.gen_size)?);
    }

    let (kind, device) = match backend_kind {
        Some(k) => (k, device::create(k).map_err(|e| e.to_string())?),
        None => device::best_available().map_err(|e| e.to_string())?,
    };
    req.dtype = dtype_for("dtype", if kind == BackendKind::Cuda { DType::BF16 } else { DType::F32 })?;
    req.vae_convs_in_place = sana_video_core::kernels::conv::available(&device);
    // Probes cuBLASLt's FP8 GEMM once on CUDA (a plan, no product); false elsewhere, and
    // where FP8 weights are dequantised at load (`SANA_FP8_RESIDENT=0`).
    use sana_video_core::nn;
    req.fp8_tensor_core_activations = kind == BackendKind::Cuda && nn::fp8_resident() && nn::fp8_activations(&device) && nn::fp8_tensor_cores(&device);
    req.fused_kernels = sana_video_core::kernels::is_cube_device(&device);
    let plan = plan_for(&req).map_err(|e| e.to_string())?;
    let quiet = args.flag("quiet");
    if let (false, Some(o)) = (quiet, &long_opts) {
        eprintln!(
            "LongSANA: {} frames at {}x{} in chunks of {} latent frames ({} tokens each), 4 LongLive steps + 1 state pass per chunk, {}, seed {}, {} {:?}{}",
            req.frames,
            plan.out_size.1,
            plan.out_size.0,
            o.chunk_frames,
            plan.tokens,
            o.cached_blocks.map_or("attending to all earlier chunks".to_string(), |k| format!("attending to the last {k} chunks")),
            seed,
            device::name(kind),
            req.dtype,
            o.resume.as_deref().map_or(String::new(), |r| format!(", continuing {r}"))
        );
        eprintln!("memory plan: {}", plan.memory);
    } else if !quiet {
        eprintln!(
            "{}: {} frames at {}x{} (generated at {}x{}, latents {:?}, {} tokens), {} steps of {}, cfg {}, seed {}, {} {:?}",
            if req.image.is_some() { "image-to-video" } else { "text-to-video" },
            plan.frames,
            plan.out_size.1,
            plan.out_size.0,
            plan.gen_size.1,
            plan.gen_size.0,
            plan.latent_shape,
            plan.tokens,
            steps,
            plan.sampler.name(),
            cfg_scale,
            seed,
            device::name(kind),
            req.dtype
        );
        eprintln!("memory plan: {}", plan.memory);
    }
    let avail = available_memory(kind, max_memory);
    req.pool_presize = match std::env::var("SANA_POOL_PRESIZE").as_deref() {
        Ok("1") | Ok("on") => true,
        Ok("0") | Ok("off") => false,
        // Without it the driver holds about 1.7x the plan's peak for a moment in the first
        // step (retired pool pages: 12.1 GB for the FP8 480p clip's 7.3 GB plan, H200); with
        // it the denoise is about 5% slower. On where that moment might not fit.
        Err(_) | Ok("") | Ok("auto") => avail.as_ref().is_none_or(|(a, _)| (*a as f64) < 1.7 * plan.memory.peak() as f64),
        Ok(other) => return Err(format!("SANA_POOL_PRESIZE={other}: expected auto, on or off")),
    };
    if let Some((avail, mem_source)) = avail {
        let peak = plan.memory.peak();
        if peak > avail {
            return Err(refusal(source, &model_dir, &req, peak, avail, &mem_source));
        }
    } else if !quiet {
        eprintln!("note: {} does not report free memory; pass --max-memory GB to have the plan checked", device::name(kind));
    }

    install_interrupt();
    let mut metadata = vec![
        ("prompt".to_string(), prompt),
        ("negative_prompt".to_string(), negative),
        ("seed".to_string(), seed.to_string()),
        ("steps".to_string(), steps.to_string()),
        ("cfg_scale".to_string(), cfg_scale.to_string()),
        ("sampler".to_string(), plan.sampler.name().to_string()),
        ("size".to_string(), format!("{}x{}", plan.out_size.1, plan.out_size.0)),
        ("frames".to_string(), plan.frames.to_string()),
        ("fps".to_string(), fps.to_string()),
        ("model".to_string(), model_dir.clone()),
        ("software".to_string(), format!("sana-video {}", env!("CARGO_PKG_VERSION"))),
    ];
    if let Some(o) = &long_opts {
        // LongLive's own settings replace the bidirectional sampler's.
        let drop = ["negative_prompt", "steps", "cfg_scale", "sampler", "frames"];
        metadata.retain(|(k, _)| !drop.contains(&k.as_str()));
        metadata.push(("sampler".into(), format!("longlive (4 steps per chunk of {} latent frames, cfg 1)", o.chunk_frames)));
        metadata.push(("frames".into(), req.frames.to_string()));
        if !o.prompt_schedule.is_empty() {
            let sched: Vec<String> = o.prompt_schedule.iter().map(|(t, p)| format!("{t} {p}")).collect();
            metadata.push(("prompt_schedule".into(), sched.join(" | ")));
        }
        if let Some(k) = o.cached_blocks {
            metadata.push(("cached_blocks".into(), k.to_string()));
        }
        if let Some(r) = &o.resume {
            metadata.retain(|(k, _)| k != "seed");
            metadata.push(("resumed_from".into(), r.clone()));
        }
    }
    let writer = BackgroundWriter::start(VideoWriter::create(&output, format, plan.out_size.0, plan.out_size.1, fps, metadata, long_opts.is_some())?)?;
    let mut cli = Cli {
        writer: Some(writer),
        device: &device,
        kind,
        tty: std::io::stderr().is_terminal(),
        quiet,
        stage_start: Instant::now(),
        step_start: Instant::now(),
        units: 0,
        times: Vec::new(),
        stage_peaks: Vec::new(),
        stage_peak: 0,
    };
    let start = Instant::now();
    let result = match &long_opts {
        Some(o) => pipelines::long::run_long(source, &plan, &req, o, &device, &mut cli),
        None => pipelines::run(source, &plan, &req, &device, &mut cli),
    };
    let generated = match result {
        Ok(g) => g,
        Err(Error::Interrupted) => {
            drop(cli.writer.take());
            eprintln!("interrupted: no output written");
            std::process::exit(130);
        }
        Err(e) => return Err(e.to_string()),
    };
    let writer = cli.writer.take().ok_or("internal: writer missing")?;
    writer.finish(&generated.latents, &generated.latent_shape)?;
    let total = start.elapsed().as_secs_f64();
    if !quiet {
        let parts: Vec<String> = cli.times.iter().map(|(s, t)| format!("{} {t:.2} s", s.name())).collect();
        eprintln!("time: {total:.2} s total ({})", parts.join(", "));
        let mem = match kind {
            BackendKind::Cpu => peak_host_rss().map(|b| format!("peak process memory {:.2} GB", gb(b))),
            _ => {
                let per: Vec<String> = cli
                    .stage_peaks
                    .iter()
                    .filter(|(_, b)| *b > 0)
                    .map(|(s, b)| format!("{} {:.2}", s.name(), gb(*b)))
                    .collect();
                Some(format!("peak device memory reserved {:.2} GB (per stage, GB: {})", gb(cli.stage_peaks.iter().map(|(_, b)| *b).max().unwrap_or(0)), per.join(", ")))
            }
        };
        if let Some(m) = mem {
            eprintln!("memory: {m} (plan {:.2} GB)", gb(plan.memory.peak()));
        }
        if let Some(q) = sana_video_core::nn::quantised_layers_summary() {
            // W8A8 runs on FP8 tensor cores where the device has them, emulated elsewhere.
            let how = if q.contains("W8A8") && !sana_video_core::nn::fp8_tensor_cores(&device) { " (W8A8 emulated)" } else { "" };
            eprintln!("quantised weights: {q} layers{how}");
        }
        eprintln!("wrote {output} ({} frames, {}x{}, {fps} fps)", generated.frames, plan.out_size.1, plan.out_size.0);
    }
    Ok(())
}

/// The refusal when the plan does not fit, with alternatives that do.
fn refusal(files: &dyn FileSource, model_dir: &str, req: &Request, peak: u64, avail: u64, source: &str) -> String {
    let fits = |r: &Request| pipelines::plan(files, model_dir, r).map(|p| p.memory.peak() <= avail).unwrap_or(false);
    let mut ideas = Vec::new();
    if req.dtype == DType::F32 {
        let mut r = req.clone();
        r.dtype = DType::BF16;
        if fits(&r) {
            ideas.push("--dtype bf16 (or f16)".to_string());
        }
    }
    if req.vae_dtype == DType::F32 {
        // The decode is usually the peak; in bf16 it takes about half (BENCHMARKS.md).
        let mut r = req.clone();
        r.vae_dtype = DType::BF16;
        if fits(&r) {
            ideas.push("--vae-dtype bf16".to_string());
        }
    }
    // FP8 weights (half of bf16's, W8A8's smaller activations where the GPU has FP8 tensor
    // cores), with and without a bf16 VAE.
    let mut r = req.clone();
    r.plan_fp8_dit = true;
    let quantise = format!("FP8 weights (sana-video quantize --format fp8 --model {model_dir} --output NEW_DIR, then --model NEW_DIR)");
    let fp8_dit_helps = pipelines::plan(files, model_dir, &r).is_ok_and(|p| p.memory.peak() < peak);
    if fp8_dit_helps && fits(&r) {
        ideas.push(quantise.clone());
    } else if fp8_dit_helps && req.vae_dtype == DType::F32 {
        r.vae_dtype = DType::BF16;
        if fits(&r) {
            ideas.push(format!("{quantise} with --vae-dtype bf16"));
        }
    }
    if req.vae_tiling.is_none() {
        let mut r = req.clone();
        r.vae_tiling = Some(Tiling::default());
        if fits(&r) {
            ideas.push("--vae-tiling".to_string());
        }
    }
    let mut f = req.frames;
    while f > 1 {
        f = if f > 5 { ((f - 1) / 2 / 4) * 4 + 1 } else { 1 };
        let mut r = req.clone();
        r.frames = f;
        if fits(&r) {
            ideas.push(format!("--frames {f}"));
            break;
        }
    }
    let mut r = req.clone();
    r.resolution_binning = false;
    for (h, w) in [(480, 832), (384, 640), (256, 448), (192, 320)] {
        r.height = h;
        r.width = w;
        if h * w < req.height * req.width && fits(&r) {
            ideas.push(format!("--height {h} --width {w} --resolution-binning off"));
            break;
        }
    }
    format!(
        "this request needs about {:.2} GB but {source} is {:.2} GB; {}",
        gb(peak),
        gb(avail),
        if ideas.is_empty() { "no smaller setting found that fits".to_string() } else { format!("would fit: {}", ideas.join("; ")) }
    )
}
