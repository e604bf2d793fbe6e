//! End to end against diffusers 0.42.1 (tools/make_pipeline_fixtures.py): text-to-video and
//! image-to-video on small random pipelines (Wan and LTX-2 VAEs), each sampler, CFG on and
//! off, motion score, resolution binning, with the same injected noise: final latents within
//! 1e-4 relative L2 and frames within 45 dB PSNR, on every backend. The same for the trained
//! built-in model (builtin-model/, tools/make_builtin_fixtures.py). Also: the seeded noise
//! is identical across backends and runs.

use burn::tensor::DType;
use sana_video_core::io::safetensors::Weights;
use sana_video_core::io::FsSource;
use sana_video_core::device::BackendKind;
use sana_video_core::models::dit::SanaVideoTransformer3DModel;
use sana_video_core::models::text_encoder::{Instruction, PromptOptions};
use sana_video_core::pipelines::{self, Events, Frames, Image, Request};
use sana_video_core::samplers::SamplerKind;
use sana_video_tests::{backends, fixtures, rel_l2};
use serde_json::Value;

#[derive(Default)]
struct Collect {
    frames: Vec<f32>,
    count: usize,
}

impl Events for Collect {
    fn frames(&mut self, f: Frames) -> sana_video_core::Result<()> {
        self.frames.extend_from_slice(&f.data);
        self.count += f.count;
        Ok(())
    }
}

fn psnr(a: &[f32], b: &[f32]) -> f64 {
    assert_eq!(a.len(), b.len(), "frame data length");
    let mse = a.iter().zip(b).map(|(x, y)| ((x - y) as f64).powi(2)).sum::<f64>() / a.len() as f64;
    if mse == 0.0 {
        f64::INFINITY
    } else {
        10.0 * (1.0 / mse).log10()
    }
}

fn request(case: &Value, w: &Weights) -> Request {
    let s = |k: &str| case[k].as_str().unwrap().to_string();
    let u = |k: &str| case[k].as_u64().unwrap() as usize;
    let image = case["image"].as_bool().unwrap().then(|| {
        let (rgb, shape) = w.read_f32("image").unwrap();
        Image { height: shape[0], width: shape[1], rgb: rgb.iter().map(|v| v / 255.0).collect() }
    });
    Request {
        prompt: s("prompt"),
        negative_prompt: s("negative_prompt"),
        prompt_options: PromptOptions {
            instruction: Instruction::Video,
            lowercase: true,
            motion_score: case["motion"].as_u64().map(|m| m as u32),
            ..Default::default()
        },
        height: u("height"),
        width: u("width"),
        frames: u("frames"),
        steps: u("steps"),
        cfg_scale: case["cfg"].as_f64().unwrap() as f32,
        seed: 0,
        sampler: Some(SamplerKind::parse(&s("sampler")).unwrap()),
        resolution_binning: case["binning"].as_bool().unwrap(),
        image,
        init_noise: Some(w.read_f32("init_latents").unwrap()),
        dtype: DType::F32,
        vae_dtype: DType::F32,
        vae_tiling: None,
        keep_resident: false,
        ..Default::default()
    }
}

#[test]
fn pipelines_match_diffusers() {
    run_cases("pipeline");
}

#[test]
fn builtin_model_matches_diffusers() {
    run_cases("builtin");
}

/// Runs every case of fixtures/<set>/cases.json; a case's pipeline folder is `pipeline`
/// inside the set, or `model` relative to the repository root.
fn run_cases(set: &str) {
    let root = fixtures().join(set);
    let repo = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let cases: Value = serde_json::from_str(&std::fs::read_to_string(root.join("cases.json")).unwrap()).unwrap();
    let only = std::env::var("SANA_PIPELINE_CASE").ok();
    for (kind, device) in backends() {
        for case in cases.as_array().unwrap() {
            let name = case["name"].as_str().unwrap();
            if only.as_deref().is_some_and(|o| o != name) {
                continue;
            }
            let path = root.join(format!("{name}.safetensors")).to_string_lossy().to_string();
            let w = Weights::open_files(&FsSource, &[path]).unwrap();
            let req = request(case, &w);
            let dir = match case["model"].as_str() {
                Some(m) => repo.join(m),
                None => root.join(case["pipeline"].as_str().unwrap()),
            }
            .to_string_lossy()
            .to_string();
            let plan = pipelines::plan(&FsSource, &dir, &req).unwrap();
            assert_eq!(plan.gen_size, (case["gen_height"].as_u64().unwrap() as usize, case["gen_width"].as_u64().unwrap() as usize));
            let mut out = Collect::default();
            let g = pipelines::run(&FsSource, &plan, &req, &device, &mut out).unwrap();
            let (want_lat, lat_shape) = w.read_f32("final_latents").unwrap();
            assert_eq!(g.latent_shape.to_vec(), lat_shape, "{name}: latent shape");
            let (lat_err, _) = rel_l2(&g.latents, &want_lat);
            let (want_frames, fshape) = w.read_f32("frames").unwrap();
            assert_eq!(out.count, fshape[0], "{name}: frame count");
            let p = psnr(&out.frames, &want_frames);
            println!("{} {name}: final latents rel L2 {lat_err:.2e}, frames PSNR {p:.1} dB", sana_video_core::device::name(kind));
            assert!(lat_err <= 1e-4, "{name} on {kind:?}: final latents rel L2 {lat_err:.3e} > 1e-4");
            assert!(p >= 45.0, "{name} on {kind:?}: frames PSNR {p:.1} dB < 45");
        }
    }
}

/// The seeded generator draws the same noise everywhere: two runs on one backend give
/// identical frames, and the CPU and wgpu agree within 1e-4.
#[test]
fn seeded_runs_are_reproducible() {
    let root = fixtures().join("pipeline");
    let dir = root.join("wan").to_string_lossy().to_string();
    let req = Request {
        prompt: "a red ball".into(),
        height: 32,
        width: 48,
        frames: 5,
        steps: 3,
        cfg_scale: 3.0,
        seed: 1234,
        resolution_binning: false,
        ..Default::default()
    };
    let plan = pipelines::plan(&FsSource, &dir, &req).unwrap();
    let mut results = Vec::new();
    for (kind, device) in backends() {
        let mut a = Collect::default();
        pipelines::run(&FsSource, &plan, &req, &device, &mut a).unwrap();
        let mut b = Collect::default();
        pipelines::run(&FsSource, &plan, &req, &device, &mut b).unwrap();
        assert!(a.frames == b.frames, "{kind:?}: two runs with one seed differ");
        results.push((kind, a.frames));
    }
    for pair in results.windows(2) {
        let max = pair[0].1.iter().zip(&pair[1].1).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max);
        println!("{:?} vs {:?}: max frame difference {max:.2e}", pair[0].0, pair[1].0);
        assert!(max <= 1e-4, "{:?} vs {:?}: frames differ by {max:.2e}", pair[0].0, pair[1].0);
    }
    let mut other = req.clone();
    other.seed = 1235;
    let (kind, device) = backends().remove(0);
    let mut c = Collect::default();
    pipelines::run(&FsSource, &plan, &other, &device, &mut c).unwrap();
    assert!(c.frames != results[0].1, "{kind:?}: another seed gave the same video");
}

/// A request whose DiT tensors exceed the largest buffer the device allocates (wgpu binds
/// storage buffers up to a limit; lavapipe's is 128 MiB) is refused before any stage starts,
/// naming the flags, while one under the limit starts (cancelled at its first stage).
/// Backends without such a limit (the CPU, CUDA) have nothing to refuse.
#[test]
fn oversized_dit_tensors_are_refused_before_loading() {
    #[derive(Default)]
    struct Stages(Vec<pipelines::Stage>);
    impl Events for Stages {
        fn stage(&mut self, stage: pipelines::Stage, _units: usize) {
            self.0.push(stage);
        }
        fn frames(&mut self, _f: Frames) -> sana_video_core::Result<()> {
            Ok(())
        }
        fn cancelled(&self) -> bool {
            !self.0.is_empty()
        }
    }
    let dir = fixtures().join("pipeline").join("wan").to_string_lossy().to_string();
    let mut limited = 0;
    for (kind, device) in backends() {
        let Some(limit) = sana_video_core::kernels::max_buffer_bytes(&device) else {
            assert!(matches!(kind, BackendKind::Cpu | BackendKind::Cuda), "{kind:?} reports no buffer limit");
            continue;
        };
        limited += 1;
        let mut req = Request { prompt: "a red ball".into(), height: 32, width: 48, frames: 5, steps: 1, cfg_scale: 3.0, dtype: DType::F32, ..Default::default() };
        // Enough latent frames for the GLU input alone (2·ffn f32 values a token, CFG batch
        // of 2) to pass the limit.
        let probe = pipelines::plan(&FsSource, &dir, &req).unwrap();
        let per_frame = (probe.tokens / probe.latent_shape[2]) as u64;
        let dit = SanaVideoTransformer3DModel::read_config(&FsSource, &probe.transformer_dir).unwrap();
        let lat_f = (limit / (2 * per_frame * 2 * dit.ffn_hidden as u64 * 4)) as usize + 2;
        req.frames = 1 + 4 * (lat_f - 1);
        let plan = pipelines::plan(&FsSource, &dir, &req).unwrap();
        let mut events = Stages::default();
        let err = match pipelines::run(&FsSource, &plan, &req, &device, &mut events) {
            Ok(_) => panic!("{kind:?}: {} frames ran, over a {limit}-byte buffer limit", req.frames),
            Err(e) => e.to_string(),
        };
        println!("{kind:?} (largest buffer {limit} bytes): {err}");
        assert!(err.contains("more than the largest buffer") && err.contains("--frames"), "{kind:?}: {err}");
        assert!(events.0.is_empty(), "{kind:?}: stages started before the refusal: {:?}", events.0);
        // Without CFG (one sample) and at 90% of the limit by the largest per-token tensor
        // (GLU input, f32 caption logits at the padded length, f32 linear-attention operands):
        // not refused.
        let caption = req.prompt_options.max_sequence_length as u64;
        let per_token = [2 * dit.ffn_hidden as u64, dit.cross_heads as u64 * caption, dit.dim as u64].into_iter().max().unwrap() * 4;
        let lat_f = (limit * 9 / 10 / (per_frame * per_token)) as usize;
        assert!(lat_f >= 1, "{kind:?}: a {limit}-byte limit leaves no latent frame at this size");
        req.cfg_scale = 1.0;
        req.frames = 1 + 4 * (lat_f - 1);
        let plan = pipelines::plan(&FsSource, &dir, &req).unwrap();
        let mut events = Stages::default();
        match pipelines::run(&FsSource, &plan, &req, &device, &mut events) {
            Err(sana_video_core::Error::Interrupted) => println!("{kind:?}: {} frames without CFG started", req.frames),
            other => panic!("{kind:?}: {} frames without CFG: expected a start, then the cancel: {:?}", req.frames, other.err().map(|e| e.to_string())),
        }
    }
    assert!(limited > 0 || backends().iter().all(|(k, _)| matches!(k, BackendKind::Cpu | BackendKind::Cuda)), "no backend was checked");
}
