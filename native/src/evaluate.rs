//! `sana-video evaluate`: generates a clip for every prompt x seed and scores it with the
//! motion evaluator (core/src/eval: objects found by colour, tracked, their motion checked).
//! Prints one line per clip and a JSON summary; `--report FILE` keeps every verdict.

use std::time::Instant;

use burn::tensor::DType;
use serde_json::json;
use sana_video_core::device;
use sana_video_core::eval::{score_clip, Clip, Summary};
use sana_video_core::io as sio;
use sana_video_core::models::text_encoder::PromptOptions;
use sana_video_core::pipelines::{self, Events, Frames, Request};
use sana_video_core::samplers::SamplerKind;

use crate::args::{parse, Args};
use crate::builtin;

const VALUED: &[&str] = &["model", "prompts", "seeds", "steps", "cfg-scale", "frames", "sampler", "backend", "dtype", "report", "negative-prompt"];
const SWITCHES: &[&str] = &["quiet"];

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
    let cfg_scale: f32 = parse(&args, "cfg-scale", "a number")?.unwrap_or(6.0);
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
        prompt: String::new(),
        negative_prompt: negative,
        prompt_options: PromptOptions::default(),
        height: defaults.height,
        width: defaults.width,
        frames,
        steps,
        cfg_scale,
        seed: 0,
        sampler,
        resolution_binning: defaults.binning,
        image: None,
        init_noise: None,
        dtype,
        vae_dtype: DType::F32,
        vae_tiling: None,
        keep_resident: false,
    };
    let plan = pipelines::plan(source, &model_dir, &req).map_err(|e| e.to_string())?;
    if !quiet {
        eprintln!(
            "evaluating {model_dir}: {} prompts x {} seeds, {} frames at {}x{}, {steps} steps of {}, cfg {cfg_scale}, {} {:?}",
            prompts.len(),
            seeds.len(),
            plan.frames,
            plan.out_size.1,
            plan.out_size.0,
            plan.sampler.name(),
            device::name(kind),
            dtype
        );
    }
    let mut total = Summary::default();
    let mut report = Vec::new();
    let start = Instant::now();
    let n = prompts.len() * seeds.len();
    for (i, (prompt, seed)) in prompts.iter().flat_map(|p| seeds.iter().map(move |s| (p, *s))).enumerate() {
        req.prompt = prompt.clone();
        req.seed = seed;
        let mut out = Collect::default();
        pipelines::run(source, &plan, &req, &device, &mut out).map_err(|e| format!("prompt `{prompt}`, seed {seed}: {e}"))?;
        let clip = Clip { data: &out.data, frames: out.frames, height: out.size.0, width: out.size.1 };
        let scores = score_clip(&clip, prompt).map_err(|e| e.to_string())?;
        total.add(&scores);
        let found = scores.iter().filter(|s| s.found).count();
        let moved = scores.iter().filter(|s| s.motion_ok == Some(true)).count();
        if !quiet {
            eprintln!("[{}/{n}] seed {seed}: colour {found}/{} motion {moved}/{found}  {prompt}", i + 1, scores.len());
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
    if let Some(path) = args.get("report") {
        let body = serde_json::to_string_pretty(&json!({ "summary": summary, "clips": report })).map_err(|e| e.to_string())?;
        sio::write_atomic(path, body.as_bytes()).map_err(|e| e.to_string())?;
    }
    println!("{summary}");
    Ok(())
}
