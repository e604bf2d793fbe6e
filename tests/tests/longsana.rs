//! LongSANA parity (issue 8) against tools/make_longsana_fixtures.py (float64 PyTorch,
//! written from MODEL-SPEC §5 with a dense block-causal mask, no running sums):
//! (a) chunked inference with the state equals one block-masked pass, also with a window;
//! (b) the LongLive loop equals the reference loop with every noise draw injected.
//! Relative L2 at most 1e-5 in f32, on the CPU backend and on wgpu, kernels and references.

use burn::tensor::{DType, Tensor};
use sana_video_core::device;
use sana_video_core::io::safetensors::{tensor_from_f32, Weights};
use sana_video_core::io::FsSource;
use sana_video_core::kernels::Impl;
use sana_video_core::models::dit::{LongState, SanaVideoTransformer3DModel, Timesteps};
use sana_video_core::pipelines::long::{commit_chunk, denoise_chunk, ChunkText};
use sana_video_core::samplers::longlive;
use sana_video_tests::{backends, fixtures, rel_l2};

const TOLERANCE: f64 = 1e-5;

fn dir() -> String {
    fixtures().join("longsana").to_string_lossy().to_string()
}

fn open(name: &str) -> Weights {
    Weights::open_files(&FsSource, &[format!("{}/{name}", dir())]).unwrap()
}

fn chunks() -> (usize, Vec<usize>) {
    let cases: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(format!("{}/cases.json", dir())).unwrap()).unwrap();
    let chunk = cases["chunk_frames"].as_u64().unwrap() as usize;
    let frames = cases["frames"].as_u64().unwrap() as usize;
    let sizes = longlive::chunk_sizes(frames, chunk).unwrap();
    let expected: Vec<usize> = cases["chunks"].as_array().unwrap().iter().map(|v| v.as_u64().unwrap() as usize).collect();
    assert_eq!(sizes, expected, "our chunking differs from the reference's");
    (chunk, sizes)
}

fn to_vec<const D: usize>(t: Tensor<D>) -> Vec<f32> {
    t.into_data().convert::<f32>().try_to_vec::<f32>().unwrap()
}

fn check(what: &str, actual: &[f32], expected: &[f32]) {
    let (rel, max_abs) = rel_l2(actual, expected);
    println!("{what}: rel L2 {rel:.3e}, max abs {max_abs:.3e}");
    assert!(rel <= TOLERANCE, "{what}: rel L2 {rel:.3e} > {TOLERANCE:e} (max abs {max_abs:.3e})");
}

fn chunked_forward(window: Option<usize>, expected_name: &str, kernels: Impl) {
    let (_, sizes) = chunks();
    let f = open("forward.safetensors");
    let (x, xs) = f.read_f32("hidden_states").unwrap();
    let (y, ys) = f.read_f32("encoder_hidden_states").unwrap();
    let (mask, _) = f.read_f32("encoder_attention_mask").unwrap();
    let (t_noisy, _) = f.read_f32("timestep").unwrap();
    let (expected, es) = f.read_f32(expected_name).unwrap();
    for (kind, device) in backends() {
        let (mut dit, _) = SanaVideoTransformer3DModel::load(&FsSource, &format!("{}/model", dir()), &device, DType::F32).unwrap();
        dit.kernels = kernels;
        let x: Tensor<5> = tensor_from_f32(x.clone(), xs.clone(), &device, DType::F32);
        let y: Tensor<3> = tensor_from_f32(y.clone(), ys.clone(), &device, DType::F32);
        let b = xs[0];
        let mut state = LongState::new(dit.transformer_blocks.len(), window).unwrap();
        let mut outs = Vec::new();
        let mut start = 0;
        for (j, &n) in sizes.iter().enumerate() {
            let chunk = x.clone().narrow(2, start, n);
            let last = j + 1 == sizes.len();
            // Earlier chunks: the clean t = 0 pass that commits the state; the last: noisy, read-only.
            let ts = if last { Timesteps::PerSample(t_noisy.clone()) } else { Timesteps::PerSample(vec![0.0; b]) };
            let (out, updates) = dit.forward_chunk(chunk, y.clone(), &ts, Some(&mask), &state, !last).unwrap();
            outs.push(out);
            if let Some(u) = updates {
                state.commit(u, n).unwrap();
            }
            start += n;
        }
        assert_eq!(state.frames_done, sizes[..sizes.len() - 1].iter().sum::<usize>());
        let out = Tensor::cat(outs, 2);
        assert_eq!(out.dims().to_vec(), es);
        check(&format!("{expected_name} on {} ({kernels:?})", device::name(kind)), &to_vec(out), &expected);
    }
}

#[test]
fn chunked_state_equals_block_masked_pass() {
    chunked_forward(None, "sample", Impl::Auto);
}

#[test]
fn chunked_state_equals_block_masked_pass_reference_kernels() {
    chunked_forward(None, "sample", Impl::Reference);
}

#[test]
fn window_of_one_chunk_equals_windowed_mask() {
    chunked_forward(Some(1), "sample_window1", Impl::Auto);
}

#[test]
fn longlive_loop_equals_reference_loop() {
    let (_, sizes) = chunks();
    let f = open("loop.safetensors");
    let (y, ys) = f.read_f32("encoder_hidden_states").unwrap();
    let (mask, _) = f.read_f32("encoder_attention_mask").unwrap();
    let (expected, es) = f.read_f32("latents").unwrap();
    for (kind, device) in backends() {
        let (dit, _) = SanaVideoTransformer3DModel::load(&FsSource, &format!("{}/model", dir()), &device, DType::F32).unwrap();
        let y: Tensor<3> = tensor_from_f32(y.clone(), ys.clone(), &device, DType::F32);
        let text = ChunkText { embeds: &y, mask: &mask };
        let mut state = LongState::new(dit.transformer_blocks.len(), None).unwrap();
        let mut outs = Vec::new();
        for (j, _) in sizes.iter().enumerate() {
            let draw = |k: usize| {
                let (v, s) = f.read_f32(&format!("noise_{j}_{k}")).unwrap();
                Ok(tensor_from_f32::<5>(v, s, &device, DType::F32))
            };
            let x0 = denoise_chunk(&dit, &state, &text, &longlive::TIMESTEPS, draw, |_| {}).unwrap();
            commit_chunk(&dit, &mut state, x0.clone(), &text).unwrap();
            outs.push(x0);
        }
        let out = Tensor::cat(outs, 2);
        assert_eq!(out.dims().to_vec(), es);
        check(&format!("LongLive loop on {}", device::name(kind)), &to_vec(out), &expected);
    }
}

/// The memory plan of a LongSANA run does not grow with the video's length (one chunk's
/// activations plus the state), on the built-in model's folder declared block-causal.
#[test]
fn memory_plan_is_independent_of_length() {
    use sana_video_core::pipelines::long::{plan_long, LongOptions};
    use sana_video_core::pipelines::Request;
    let dir = sana_video_tests::scratch("long-plan");
    let model = dir.join("model");
    sana_video_tests::copy_dir(&fixtures().join("../../builtin-model"), &model);
    let cfg = model.join("transformer/config.json");
    let text = std::fs::read_to_string(&cfg).unwrap().replace("\"SanaVideoTransformer3DModel\"", "\"SanaVideoCausalTransformer3DModel\"");
    std::fs::write(&cfg, text).unwrap();
    let opts = LongOptions {
        chunk_frames: longlive::CHUNK_FRAMES,
        cached_blocks: None,
        prompt_schedule: Vec::new(),
        fps: 16,
        resume: None,
        save_state: None,
        keep_latents: false,
    };
    let plan = |frames: usize| {
        let req = Request { frames, ..a_request() };
        plan_long(&FsSource, model.to_str().unwrap(), &req, &opts).unwrap()
    };
    // 10 s, 60 s and 5 min at 16 fps.
    let (a, b, c) = (plan(161), plan(961), plan(4801));
    assert_eq!(a.memory.peak(), b.memory.peak());
    assert_eq!(a.memory.peak(), c.memory.peak());
    assert_eq!(a.tokens, 11 * 8 * 8, "the largest chunk (11 latent frames) of 8x8 tokens");
    // A bidirectional checkpoint is refused by name.
    let bidir = sana_video_tests::scratch("long-plan-bidir");
    sana_video_tests::copy_dir(&fixtures().join("../../builtin-model"), &bidir);
    let req = Request { frames: 17, ..a_request() };
    let err = plan_long(&FsSource, bidir.to_str().unwrap(), &req, &opts).unwrap_err().to_string();
    assert!(err.contains("block-causal"), "{err}");
}

fn a_request() -> sana_video_core::pipelines::Request {
    sana_video_core::pipelines::Request {
        prompt: "a small red circle moves slowly to the left on a black background".into(),
        height: 128,
        width: 128,
        frames: 17,
        steps: 4,
        cfg_scale: 1.0,
        resolution_binning: false,
        ..Default::default()
    }
}
