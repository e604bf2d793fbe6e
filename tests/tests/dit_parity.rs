//! DiT parity against diffusers 0.42.1 (float64 reference, tools/make_dit_fixtures.py):
//! relative L2 error at most 1e-5 in f32, on the CPU backend and on wgpu.

use burn::tensor::{DType, Tensor};
use sana_video_core::device;
use sana_video_core::io::safetensors::{tensor_from_f32, Weights};
use sana_video_core::io::FsSource;
use sana_video_core::kernels::Impl;
use sana_video_core::models::dit::{SanaVideoTransformer3DModel, Timesteps};
use sana_video_tests::{backends, fixtures, rel_l2};

const TOLERANCE: f64 = 1e-5;

fn run_case(case: &str, kernels: Impl) {
    let dir = fixtures().join("dit").join(case);
    let dir_s = dir.to_string_lossy().to_string();
    let inputs = Weights::open_files(&FsSource, &[format!("{dir_s}/inputs.safetensors")]).unwrap();
    let outputs = Weights::open_files(&FsSource, &[format!("{dir_s}/outputs.safetensors")]).unwrap();
    let (expected, expected_shape) = outputs.read_f32("sample").unwrap();
    for (kind, device) in backends() {
        let (mut model, report) =
            SanaVideoTransformer3DModel::load(&FsSource, &format!("{dir_s}/transformer"), &device, DType::F32).unwrap();
        assert!(report.unexpected.is_empty(), "unexpected tensors: {:?}", report.unexpected);
        model.kernels = kernels;
        let (x, xs) = inputs.read_f32("hidden_states").unwrap();
        let (y, ys) = inputs.read_f32("encoder_hidden_states").unwrap();
        let (t, ts) = inputs.read_f32("timestep").unwrap();
        let mask = inputs.meta("encoder_attention_mask").map(|_| inputs.read_f32("encoder_attention_mask").unwrap().0);
        let timestep = if ts.len() == 1 { Timesteps::PerSample(t) } else { Timesteps::PerToken(t) };
        let x: Tensor<5> = tensor_from_f32(x, xs, &device, DType::F32);
        let y: Tensor<3> = tensor_from_f32(y, ys, &device, DType::F32);
        let out = model.forward(x, y, &timestep, mask.as_deref()).unwrap();
        assert_eq!(out.dims().to_vec(), expected_shape, "{case}: output shape");
        let actual = out.into_data().try_to_vec::<f32>().unwrap();
        let (rel, max_abs) = rel_l2(&actual, &expected);
        println!("{case} on {} ({kernels:?}): rel L2 {rel:.3e}, max abs {max_abs:.3e}", device::name(kind));
        assert!(rel <= TOLERANCE, "{case} on {}: rel L2 {rel:.3e} > {TOLERANCE:e} (max abs {max_abs:.3e})", device::name(kind));
    }
}

#[test]
fn p122_batch2_text_padding() {
    run_case("p122_b2_mask", Impl::Auto);
}

#[test]
fn p111_per_token_timesteps_bf16_weights() {
    run_case("p111_pertoken_bf16", Impl::Auto);
}

#[test]
fn p122_single_frame_sharded_f16_weights() {
    run_case("p122_single_frame_sharded", Impl::Auto);
}

#[test]
fn unseen_p122_wide_attention_bias() {
    run_case("unseen_p122_wide", Impl::Auto);
}

#[test]
fn unseen_p111_per_token() {
    run_case("unseen_p111_pertoken", Impl::Auto);
}

/// The plain tensor-op reference of the fused ops gives the same answer end to end.
#[test]
fn p122_batch2_reference_kernels() {
    run_case("p122_b2_mask", Impl::Reference);
}
