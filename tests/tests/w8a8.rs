//! W8A8 emulation (issue 9): FP8-resident weights with per-token FP8 activations. Its own
//! test binary because the switch (`nn::set_fp8_activations`) is process-wide.

use sana_video_core::device;
use sana_video_core::io::safetensors::Weights;
use sana_video_core::io::FsSource;
use sana_video_core::quant::{self, Format};
use sana_video_tests::{backends, fixtures, rel_l2};

/// The DiT fixture with FP8 weights, run W8A16 (activations as they are) and W8A8 (per-token
/// FP8 activations) on every backend, against the f32 reference output. W8A8 adds the
/// activations' rounding (3 mantissa bits, like the weights') to the weights' error.
#[test]
fn w8a8_emulation_stays_within_bounds_on_every_backend() {
    let case = fixtures().join("dit/p122_b2_mask");
    let w = Weights::open_dir(&FsSource, &case.join("transformer").to_string_lossy(), "diffusion_pytorch_model").unwrap();
    let outputs = Weights::open_files(&FsSource, &[case.join("outputs.safetensors").to_string_lossy().to_string()]).unwrap();
    let (expected, _) = outputs.read_f32("sample").unwrap();
    let (bytes, _) = quant::quantize_weights(&w, Format::Fp8).unwrap();
    let dir = sana_video_tests::scratch("w8a8");
    std::fs::copy(case.join("transformer/config.json"), dir.join("config.json")).unwrap();
    std::fs::write(dir.join("diffusion_pytorch_model.safetensors"), bytes).unwrap();
    let dir = dir.to_string_lossy().to_string();
    let mut w8a8_runs = Vec::new();
    for (kind, device) in backends() {
        sana_video_core::nn::set_fp8_activations(false);
        let w8a16 = sana_video_tests::dit_mask_case_output(&dir, &device).0;
        sana_video_core::nn::set_fp8_activations(true);
        let w8a8 = sana_video_tests::dit_mask_case_output(&dir, &device).0;
        let w = Weights::open_dir(&FsSource, &dir, "diffusion_pytorch_model").unwrap();
        let taps = sana_video_core::nn::Linear::load_taps(&w, "transformer_blocks.0.ff.conv_temp.weight", &device, burn::tensor::DType::F32).unwrap();
        assert!(taps.is_fp8_resident(), "{}: the temporal conv is not FP8 on the device", device::name(kind));
        sana_video_core::nn::set_fp8_activations(false);
        let (r16, _) = rel_l2(&w8a16, &expected);
        let (r8, _) = rel_l2(&w8a8, &expected);
        let (between, _) = rel_l2(&w8a8, &w8a16);
        println!("{}: DiT output rel L2 against f32: W8A16 {r16:.3e}, W8A8 {r8:.3e} (W8A8 against W8A16 {between:.3e})", device::name(kind));
        assert!(r16 < 0.04, "{}: W8A16 rel {r16:.3e}", device::name(kind));
        assert!(r8 < BOUND, "{}: W8A8 rel {r8:.3e} >= {BOUND}", device::name(kind));
        assert!(between > 1e-4, "{}: the switch changed nothing", device::name(kind));
        w8a8_runs.push((kind, device.clone(), w8a8, r8));
    }
    // Same codes on every backend (the quantiser is bit-exact); the emulation differs only in
    // summation order, FP8 tensor cores also in their accumulator's width.
    if let [(ka, _, a, ra), rest @ ..] = &w8a8_runs[..] {
        for (kb, device, b, rb) in rest {
            let native = sana_video_core::nn::fp8_tensor_cores(device);
            let bound = if native { CROSS_TENSOR_CORES } else { CROSS_BACKEND };
            let (rel, _) = rel_l2(b, a);
            println!("W8A8 {}{} against {}: rel L2 {rel:.3e} (bound {bound:.0e})", device::name(*kb), if native { " (FP8 tensor cores)" } else { "" }, device::name(*ka));
            assert!(rel < bound, "W8A8 {} against {}: rel {rel:.3e}", device::name(*kb), device::name(*ka));
            // The tensor cores' differences must not cost accuracy: their error against f32
            // stays that of the emulation (measured 3.370e-2 against 3.361e-2 on an H200).
            if native {
                assert!(*rb <= ra * 1.05, "W8A8 on FP8 tensor cores: rel {rb:.3e} against f32, the emulation's {ra:.3e}");
            }
        }
    }
}

/// Bound on W8A8's output error against f32 on this random DiT: measured 3.36% (W8A16:
/// 2.92%, bounded at 0.04 in `quant.rs`), on the CPU backend and lavapipe alike.
const BOUND: f64 = 0.045;
/// Bound on W8A8 across backends: the quantiser's codes are bit-exact everywhere, so only the
/// f32 summation order differs (measured 1.7e-7 between the CPU backend and lavapipe).
const CROSS_BACKEND: f64 = 1e-5;
/// The same against cuBLASLt's FP8 GEMM on Hopper, whose tensor cores accumulate in fewer bits
/// than f32 (`kernels.rs`, `FP8_TENSOR_CORE_BOUND`): each product differs from the emulation's
/// by ε ≈ 2e-4 relative (measured on an H200 in cuBLASLt's precise accumulation; at this DiT's
/// widths the fast default gives the same outputs: 3.387e-2 against f32 in both modes), and every next W8A8 layer rounds its input to
/// e4m3 again, so a small fraction of those codes (≈ 2ε/s) land one e4m3 step s ≈ 0.09
/// (relative) away: about sqrt(2·ε·s) ≈ 6e-3 relative per layer input, not the f32 summation
/// order's 1e-7. Measured 3.0e-3 at the output of this DiT (H200); the test also holds the
/// accuracy against f32 to the emulation's.
const CROSS_TENSOR_CORES: f64 = 1e-2;
