//! `sana-video evaluate`: generates a clip for every prompt x seed and scores it with the
//! motion evaluator (core/src/eval: objects found by colour, tracked, their motion checked).
//! Prints one line per clip and a JSON summary; `--report FILE` keeps every verdict.
//! A block-causal (LongSANA) model generates its long video chunk by chunk, and every
//! 17-frame window (starting each second) is scored as a clip of its own: the summary then
//! also says, per window, how many objects kept their colour and their motion.

use std::time::Instant;

use burn::tensor::DType;
use serde_json::json;
use sana_video_core::device;
use sana_video_core::eval::{score_clip, Clip, Summary};
use sana_video_core::io as sio;
use sana_video_core::pipelines::long::LongOptions;
use sana_video_core::pipelines::{self, Events, Frames, Request};
use sana_video_core::samplers::SamplerKind;

use crate::args::{parse, Args};
use crate::builtin;

const VALUED: &[&str] = &[
    "model", "prompts", "seeds", "steps", "cfg-scale", "frames", "sampler", "backend", "dtype", "report", "negative-prompt",
    "chunk-frames", "cached-blocks",
];
const SWITCHES: &[&str] = &["quiet"];
/// Long videos are scored in windows of the built-in model's clip length, one per second.
const WINDOW: usize = 17;
const WINDOW_STEP: usize = 16;

/// Collects the decoded frames as [T, H, W, 3] values in [0, 255], rounded as an 8-bit video
/// file would store them.
#[derive(Default)]
struct Collect {
    data: Vec<f32>,
    frames: usize,
    size: (usize, usize),
}

impl Events for Collect {
    fn frames(&mut self, f: Frames) -> sana_video_core::Result<()> {
        self.data.extend(f.data.iter().map(|v| (v.clamp(0.0, 1.0) * 255.0).round()));
        self.frames += f.count;
        self.size = (f.height, f.width);
        Ok(())
    }
}

pub fn run(argv: &[String]) -> Result<(), String> {
    let args = Args::parse(argv, VALUED, SWITCHES)?;
    if let Some(p) = args.positional.first() {
        return Err(format!("unexpected argument `{p}`"));
    }
    let (source, model_dir) = builtin::resolve(args.get("model"))?;
    let defaults = builtin::defaults(source, &model_dir)?;
    let prompts_path = args.require("prompts")?;
    let text = std::fs::read_to_string(prompts_path).map_err(|e| format!("--prompts {prompts_path}: {e}"))?;
    let prompts: Vec<String> =
        text.lines().map(str::trim).filter(|l| !l.is_empty() && !l.starts_with('#')).map(str::to_string).collect();
    if prompts.is_empty() {
        return Err(format!("--prompts {prompts_path}: no prompts (one per line; # starts a comment)"));
    }
    // Every prompt must be one the evaluator can judge, before any generation starts.
    for (i, p) in prompts.iter().enumerate() {
        sana_video_core::eval::parse_prompt(p).map_err(|e| format!("--prompts {prompts_path}: line {}: {e}", i + 1))?;
    }
    let seeds: Vec<u64> = args
        .get("seeds")
        .unwrap_or("1,2,3")
        .split(',')
        .map(|s| s.trim().parse::<u64>().map_err(|_| format!("--seeds: `{s}` is not a whole number")))
        .collect::<Result<_, _>>()?;
    let steps: usize = parse(&args, "steps", "a whole number")?.unwrap_or(defaults.steps);
    let cfg_scale: f32 = parse(&args, "cfg-scale", "a number")?.unwrap_or(defaults.cfg_scale);
    let frames: usize = parse(&args, "frames", "a whole number")?.unwrap_or(defaults.frames);
    let sampler = args.get("sampler").map(SamplerKind::parse).transpose().map_err(|e| e.to_string())?;
    let negative = args.get("negative-prompt").unwrap_or(defaults.negative_prompt).to_string();
    let quiet = args.flag("quiet");

    let (kind, device) = crate::debug::open_device(&args)?;
    let dtype = match args.get("dtype") {
        Some(d) => device::parse_dtype(d).map_err(|e| e.to_string())?,
        None => DType::F32,
    };
    let mut req = Request {
        negative_prompt: negative,
        height: defaults.height,
        width: defaults.width,
        frames,
        steps,
        cfg_scale,
        sampler,
        resolution_binning: defaults.binning,
        dtype,
        ..Default::default()
    };
    let long = pipelines::long::is_block_causal(source, &model_dir).map_err(|e| e.to_string())?;
    if long {
        for flag in ["steps", "cfg-scale", "sampler", "negative-prompt"] {
            if args.get(flag).is_some() {
                return Err(format!("--{flag} does not apply to LongSANA ({model_dir} is block-causal: 4 LongLive steps per chunk, no guidance)"));
            }
        }
    }
    if !long {
        for flag in ["chunk-frames", "cached-blocks"] {
            if args.get(flag).is_some() {
                return Err(format!("--{flag} is for LongSANA (block-causal) checkpoints; {model_dir} is bidirectional"));
            }
        }
    }
    let (chunk_frames, cached_blocks) = crate::generate::chunking(&args, &defaults)?;
    let long_opts = long.then(|| LongOptions {
        chunk_frames,
        cached_blocks,
        prompt_schedule: Vec::new(),
        fps: 16,
        resume: None,
        save_state: None,
        keep_latents: false,
    });
    let plan = match &long_opts {
        Some(o) => pipelines::long::plan_long(source, &model_dir, &req, o),
        None => pipelines::plan(source, &model_dir, &req),
    }
    .map_err(|e| e.to_string())?;
    if long && plan.frames < WINDOW {
        return Err(format!("--frames {}: a block-causal model is scored in {WINDOW}-frame windows; ask for at least {WINDOW} frames", plan.frames));
    }
    if !quiet {
        let sampling = match &long_opts {
            Some(o) => format!(
                "LongLive, chunks of {} latent frames, {}",
                o.chunk_frames,
                o.cached_blocks.map_or("attending to all earlier chunks".into(), |k| format!("attending to the last {k}"))
            ),
            None => format!("{steps} steps of {}, cfg {cfg_scale}", plan.sampler.name()),
        };
        eprintln!(
            "evaluating {model_dir}: {} prompts x {} seeds, {} frames at {}x{}, {sampling}, {} {:?}",
            prompts.len(),
            seeds.len(),
            plan.frames,
            plan.out_size.1,
            plan.out_size.0,
            device::name(kind),
            dtype
        );
    }
    let mut total = Summary::default();
    // Per window start (long videos): objects found, objects moving as asked, objects.
    let mut windows: Vec<(usize, usize, usize)> = Vec::new();
    let mut report = Vec::new();
    let start = Instant::now();
    let n = prompts.len() * seeds.len();
    for (i, (prompt, seed)) in prompts.iter().flat_map(|p| seeds.iter().map(move |s| (p, *s))).enumerate() {
        req.prompt = prompt.clone();
        req.seed = seed;
        let mut out = Collect::default();
        match &long_opts {
            Some(o) => pipelines::long::run_long(source, &plan, &req, o, &device, &mut out).map(|_| ()),
            None => pipelines::run(source, &plan, &req, &device, &mut out).map(|_| ()),
        }
        .map_err(|e| format!("prompt `{prompt}`, seed {seed}: {e}"))?;
        let px = out.size.0 * out.size.1 * 3;
        let starts: Vec<usize> = if long { (0..).step_by(WINDOW_STEP).take_while(|s| s + WINDOW <= out.frames).collect() } else { vec![0] };
        let mut scores = Vec::new();
        let mut per_window = Vec::new();
        for (k, &s0) in starts.iter().enumerate() {
            let len = if long { WINDOW } else { out.frames };
            let clip = Clip { data: &out.data[s0 * px..(s0 + len) * px], frames: len, height: out.size.0, width: out.size.1 };
            let sc = score_clip(&clip, prompt).map_err(|e| e.to_string())?;
            let (f, m) = (sc.iter().filter(|s| s.found).count(), sc.iter().filter(|s| s.motion_ok == Some(true)).count());
            if windows.len() <= k {
                windows.push((0, 0, 0));
            }
            windows[k].0 += f;
            windows[k].1 += m;
            windows[k].2 += sc.len();
            per_window.push(format!("{f}/{}", sc.len()));
            scores.extend(sc);
        }
        total.add(&scores);
        let found = scores.iter().filter(|s| s.found).count();
        let moved = scores.iter().filter(|s| s.motion_ok == Some(true)).count();
        if !quiet {
            let detail = if long { format!(" (colour per second: {})", per_window.join(" ")) } else { String::new() };
            eprintln!("[{}/{n}] seed {seed}: colour {found}/{} motion {moved}/{found}{detail}  {prompt}", i + 1, scores.len());
        }
        let objects: Vec<serde_json::Value> = scores
            .iter()
            .map(|s| {
                json!({
                    "colour": s.object.colour, "shape": s.object.shape, "motion": s.object.motion,
                    "found": s.found, "motion_ok": s.motion_ok, "consistency": s.consistency,
                })
            })
            .collect();
        report.push(json!({ "prompt": prompt, "seed": seed, "objects": objects }));
    }
    let seconds = start.elapsed().as_secs_f64();
    let summary = json!({
        "model": model_dir, "backend": device::name(kind), "clips": n, "prompts": prompts.len(),
        "seeds": seeds, "steps": steps, "cfg_scale": cfg_scale, "frames": plan.frames,
        "objects": total.objects, "colour_accuracy": total.colour_accuracy(),
        "motion_accuracy": total.motion_accuracy(), "consistency": total.consistency(), "seconds": seconds,
    });
    let mut summary = summary;
    if let (Some(o), Some(m)) = (&long_opts, summary.as_object_mut()) {
        m.remove("steps");
        m.remove("cfg_scale");
        m.insert("sampler".into(), json!("longlive"));
        m.insert("chunk_frames".into(), json!(o.chunk_frames));
        m.insert("cached_blocks".into(), json!(o.cached_blocks));
    }
    if long {
        summary["windows"] = json!(windows
            .iter()
            .enumerate()
            .map(|(k, (f, m, o))| json!({
                "start_frame": k * WINDOW_STEP, "objects": o,
                "colour_accuracy": *f as f64 / (*o).max(1) as f64, "motion_accuracy": *m as f64 / (*f).max(1) as f64,
            }))
            .collect::<Vec<_>>());
    }
    if let Some(path) = args.get("report") {
        let body = serde_json::to_string_pretty(&json!({ "summary": summary, "clips": report })).map_err(|e| e.to_string())?;
        sio::write_atomic(path, body.as_bytes()).map_err(|e| e.to_string())?;
    }
    println!("{summary}");
    Ok(())
}
