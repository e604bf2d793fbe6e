//! VAE parity against diffusers 0.42.1 (`AutoencoderKLWan`, `AutoencoderKLLTX2Video`,
//! float64 reference; tools/make_vae_fixtures.py): decode and encode within 1e-5 relative
//! L2 in f32, on the CPU backend and on wgpu; for Wan, streaming one frame at a time and in
//! irregular groups gives the whole-sequence frames.

use burn::tensor::{DType, Tensor};
use sana_video_core::device;
use sana_video_core::io::safetensors::{tensor_from_f32, Weights};
use sana_video_core::io::FsSource;
use sana_video_core::models::vae::wan::AutoencoderKLWan;
use sana_video_core::models::vae::Vae;
use sana_video_tests::{backends, fixtures, rel_l2};

const TOLERANCE: f64 = 1e-5;

fn read(dir: &str, file: &str, name: &str) -> (Vec<f32>, Vec<usize>) {
    Weights::open_files(&FsSource, &[format!("{dir}/{file}")]).unwrap().read_f32(name).unwrap()
}

fn run_case(case: &str) {
    let dir = fixtures().join("vae").join(case).to_string_lossy().to_string();
    let (z, zs) = read(&dir, "decode_inputs.safetensors", "latents");
    let (want, want_shape) = read(&dir, "decode_outputs.safetensors", "sample");
    let (x, xs) = read(&dir, "encode_inputs.safetensors", "sample");
    let (want_mean, mean_shape) = read(&dir, "encode_outputs.safetensors", "latent_mean");
    for (kind, device) in backends() {
        let (vae, unexpected) = AutoencoderKLWan::load(&FsSource, &format!("{dir}/vae"), &device, DType::F32).unwrap();
        assert!(unexpected.is_empty(), "unexpected tensors: {unexpected:?}");
        let name = device::name(kind);

        let latents: Tensor<5> = tensor_from_f32(z.clone(), zs.clone(), &device, DType::F32);
        let out = vae.decode(latents.clone()).unwrap();
        assert_eq!(out.dims().to_vec(), want_shape, "{case}: decoded shape");
        let got = out.into_data().try_to_vec::<f32>().unwrap();
        let (rel, max_abs) = rel_l2(&got, &want);
        println!("{case} decode on {name}: rel L2 {rel:.3e}, max abs {max_abs:.3e}");
        assert!(rel <= TOLERANCE, "{case} decode on {name}: rel L2 {rel:.3e}");

        // Streaming: one latent frame per push (the reference's order), and irregular
        // groups (2, 1, 2, ...), both equal to the whole-sequence pass above.
        let t = zs[2];
        for groups in [vec![1; t], vec![2, 1, 2, 1, 2, 1]] {
            let mut stream = vae.decode_stream();
            let (mut parts, mut i) = (Vec::new(), 0);
            for g in groups {
                if i >= t {
                    break;
                }
                let n = g.min(t - i);
                let frames = stream.push(latents.clone().narrow(2, i, n)).unwrap();
                assert_eq!(frames.dims()[2], if i == 0 { 1 + 4 * (n - 1) } else { 4 * n }, "{case}: frames per push");
                parts.push(frames);
                i += n;
            }
            let streamed = Tensor::cat(parts, 2).into_data().try_to_vec::<f32>().unwrap();
            let (rel_s, max_s) = rel_l2(&streamed, &got);
            println!("{case} streamed on {name}: rel L2 to whole {rel_s:.3e}, max abs {max_s:.3e}");
            assert!(rel_s <= TOLERANCE, "{case} on {name}: streaming differs from whole ({rel_s:.3e})");
        }

        let video: Tensor<5> = tensor_from_f32(x.clone(), xs.clone(), &device, DType::F32);
        let mean = vae.encode_mean(video).unwrap();
        assert_eq!(mean.dims().to_vec(), mean_shape, "{case}: latent shape");
        let got = mean.into_data().try_to_vec::<f32>().unwrap();
        let (rel, max_abs) = rel_l2(&got, &want_mean);
        println!("{case} encode on {name}: rel L2 {rel:.3e}, max abs {max_abs:.3e}");
        assert!(rel <= TOLERANCE, "{case} encode on {name}: rel L2 {rel:.3e}");
    }
}

#[test]
fn wan_three_latent_frames_non_square() {
    run_case("wan_t3_3x5");
}

#[test]
fn wan_single_frame_batch2_bf16_weights() {
    run_case("wan_t1_b2_bf16");
}

#[test]
fn unseen_wan_five_frames_decoder_base_dim() {
    run_case("unseen_wan_t5");
}

/// LTX-2: whole-sequence decode and encode through the `Vae` front (class from config).
fn run_ltx_case(case: &str) {
    let dir = fixtures().join("vae").join(case).to_string_lossy().to_string();
    let (z, zs) = read(&dir, "decode_inputs.safetensors", "latents");
    let (want, want_shape) = read(&dir, "decode_outputs.safetensors", "sample");
    let (x, xs) = read(&dir, "encode_inputs.safetensors", "sample");
    let (want_mean, mean_shape) = read(&dir, "encode_outputs.safetensors", "latent_mean");
    for (kind, device) in backends() {
        let (vae, unexpected) = Vae::load(&FsSource, &format!("{dir}/vae"), &device, DType::F32).unwrap();
        assert!(matches!(vae, Vae::Ltx2(_)) && unexpected.is_empty(), "{unexpected:?}");
        let name = device::name(kind);
        let out = vae.decode(tensor_from_f32(z.clone(), zs.clone(), &device, DType::F32)).unwrap();
        assert_eq!(out.dims().to_vec(), want_shape, "{case}: decoded shape");
        let (rel, max_abs) = rel_l2(&out.into_data().try_to_vec::<f32>().unwrap(), &want);
        println!("{case} decode on {name}: rel L2 {rel:.3e}, max abs {max_abs:.3e}");
        assert!(rel <= TOLERANCE, "{case} decode on {name}: rel L2 {rel:.3e}");
        let mean = vae.encode_mean(tensor_from_f32(x.clone(), xs.clone(), &device, DType::F32)).unwrap();
        assert_eq!(mean.dims().to_vec(), mean_shape, "{case}: latent shape");
        let (rel, max_abs) = rel_l2(&mean.into_data().try_to_vec::<f32>().unwrap(), &want_mean);
        println!("{case} encode on {name}: rel L2 {rel:.3e}, max abs {max_abs:.3e}");
        assert!(rel <= TOLERANCE, "{case} encode on {name}: rel L2 {rel:.3e}");
    }
}

#[test]
fn ltx2_two_latent_frames_reflect_non_causal() {
    run_ltx_case("ltx_t2_2x3");
}

#[test]
fn ltx2_single_frame_batch2_bf16_patch4() {
    run_ltx_case("ltx_t1_b2_bf16");
}

#[test]
fn unseen_ltx2_three_frames_causal_decoder() {
    run_ltx_case("unseen_ltx_t3_causal");
}
