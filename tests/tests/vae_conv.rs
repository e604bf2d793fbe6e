//! The VAEs' convolution (`models/vae/conv.rs`) as tap GEMMs and as `Auto` picks it (cuDNN
//! on CUDA where it loads, tap GEMMs on wgpu) against its plain reference, burn's `conv3d`,
//! on every backend: kernels 3x3x3, 3x1x1, 1x1x1 and 2-D 3x3 / 1x1, temporal stride 1 and 2,
//! spatial padding 0 and 1, odd sizes. On CUDA the tap GEMMs read the input in place
//! (cuBLASLt) at temporal stride 1 and copy slabs at stride 2.

use burn::tensor::{DType, Tensor};
use sana_video_core::device;
use sana_video_core::io::safetensors::{serialize_f32, tensor_from_f32, Weights};
use sana_video_core::io::MemorySource;
use sana_video_core::models::vae::conv::{set_default_impl, Conv3d, ConvImpl};
use sana_video_tests::{backends, random_vec, rel_l2};

fn weights(shape: &[usize], seed: u64) -> Weights {
    let n: usize = shape.iter().product();
    let w = random_vec(n, seed);
    let b = random_vec(shape[0], seed + 1);
    let bytes = serialize_f32(&[("c.weight", &w, shape), ("c.bias", &b, &[shape[0]])]).unwrap();
    let mut src = MemorySource::default();
    src.insert("w.safetensors", bytes);
    Weights::open_files(&src, &["w.safetensors".to_string()]).unwrap()
}

#[test]
fn tap_gemm_conv_matches_burn_conv3d() {
    let cases: [(&[usize], [usize; 5], usize, usize); 7] = [
        (&[6, 5, 3, 3, 3], [2, 5, 5, 7, 6], 1, 1),
        (&[4, 3, 3, 3, 3], [1, 3, 3, 4, 9], 1, 0),
        (&[8, 8, 3, 1, 1], [1, 8, 6, 3, 5], 1, 0),
        (&[5, 5, 3, 1, 1], [1, 5, 5, 4, 4], 2, 0),
        (&[7, 3, 1, 1, 1], [2, 3, 2, 3, 3], 1, 0),
        (&[4, 6, 3, 3], [3, 6, 1, 5, 7], 1, 1),
        (&[9, 4, 1, 1], [2, 4, 1, 6, 5], 1, 0),
    ];
    for (kind, device) in backends() {
        for (i, (wshape, xshape, stride_t, pad)) in cases.iter().enumerate() {
            let w = weights(wshape, 10 + i as u64);
            let n: usize = xshape.iter().product();
            let load = |which: ConvImpl| {
                set_default_impl(which);
                let mut conv = Conv3d::load(&w, "c", &device, DType::F32).unwrap();
                set_default_impl(ConvImpl::Auto);
                // Exact f32 products here; TF32 is `tap_gemms_match_reference` (kernels.rs).
                conv.tf32 = false;
                conv
            };
            let x: Tensor<5> = tensor_from_f32(random_vec(n, 100 + i as u64), xshape.to_vec(), &device, DType::F32);
            let want = load(ConvImpl::Reference).forward(x.clone(), *stride_t, *pad);
            let want = want.into_data().try_to_vec::<f32>().unwrap();
            // Auto: cuDNN on CUDA (where it loads), tap GEMMs on wgpu, the reference on the CPU.
            for which in [ConvImpl::TapGemm, ConvImpl::Auto] {
                let got = load(which).forward(x.clone(), *stride_t, *pad);
                let (kt, kh, kw) = if wshape.len() == 5 {
                    (wshape[2], wshape[3], wshape[4])
                } else {
                    (1, wshape[2], wshape[3])
                };
                let want_dims = [
                    xshape[0],
                    wshape[0],
                    (xshape[2] - kt) / stride_t + 1,
                    xshape[3] + 2 * pad - kh + 1,
                    xshape[4] + 2 * pad - kw + 1,
                ];
                assert_eq!(got.dims(), want_dims, "case {i} {which:?}: shape");
                let (rel, max_abs) = rel_l2(&got.into_data().try_to_vec::<f32>().unwrap(), &want);
                println!("{} case {i} {which:?}: rel L2 {rel:.2e}", device::name(kind));
                assert!(
                    rel <= 1e-6,
                    "case {i} {which:?} on {}: rel L2 {rel:e} (max abs {max_abs:e})",
                    device::name(kind)
                );
            }
        }
    }
}

/// The reduced-precision convs a GPU VAE runs: f32 on TF32 tensor cores (the CUDA default for
/// f32 VAEs) and bf16 weights and activations, each against burn's exact-f32 `conv3d` on the
/// same (rounded) operands. Bounds from the roundings: TF32 rounds both operands to 10
/// mantissa bits (each product within 2^-10 relative); bf16 rounds the conv's output and the
/// bias sum to 8 bits (2^-9 each, 2^-8 together), f16 to 11 (2^-10 together). On CUDA `Auto`
/// is cuDNN (graph API), on wgpu the tap GEMMs (TF32 does not apply there: exact; f16, as
/// WGSL has no bf16), on the CPU the reference itself.
#[test]
fn tf32_and_bf16_convs_within_their_rounding() {
    let cases: [(&[usize], [usize; 5], usize, usize); 4] = [
        (&[6, 5, 3, 3, 3], [2, 5, 5, 7, 6], 1, 1),
        (&[8, 8, 3, 1, 1], [1, 8, 6, 3, 5], 1, 0),
        (&[5, 5, 3, 1, 1], [1, 5, 5, 4, 4], 2, 0),
        (&[7, 3, 1, 1, 1], [2, 3, 2, 3, 3], 1, 0),
    ];
    for (kind, device) in backends() {
        for (i, (wshape, xshape, stride_t, pad)) in cases.iter().enumerate() {
            let w = weights(wshape, 40 + i as u64);
            let n: usize = xshape.iter().product();
            let x: Tensor<5> = tensor_from_f32(random_vec(n, 140 + i as u64), xshape.to_vec(), &device, DType::F32);
            let opts = burn::tensor::ops::ConvOptions::new([*stride_t, 1, 1], [0, *pad, *pad], [1, 1, 1], 1);
            let exact = |x: Tensor<5>, conv: &Conv3d| -> Vec<f32> {
                let f32_ = burn::tensor::FloatDType::F32;
                burn::tensor::module::conv3d(x.cast(f32_), conv.weight.clone().cast(f32_), Some(conv.bias.clone().cast(f32_)), opts.clone())
                    .into_data()
                    .convert::<f32>()
                    .try_to_vec::<f32>()
                    .unwrap()
            };
            // TF32.
            set_default_impl(ConvImpl::Auto);
            let mut conv = Conv3d::load(&w, "c", &device, DType::F32).unwrap();
            conv.tf32 = true;
            let want = exact(x.clone(), &conv);
            let got = conv.forward(x.clone(), *stride_t, *pad).into_data().try_to_vec::<f32>().unwrap();
            let (rel, max_abs) = rel_l2(&got, &want);
            println!("{} case {i} TF32: rel L2 {rel:.2e}", device::name(kind));
            assert!(rel <= 2f64.powi(-10), "case {i} TF32 on {}: rel L2 {rel:e} (max abs {max_abs:e})", device::name(kind));
            // 16-bit weights and activations.
            let (half, bound) = if !kind.has_bf16() {
                (burn::tensor::FloatDType::F16, 2f64.powi(-10))
            } else {
                (burn::tensor::FloatDType::BF16, 2f64.powi(-8))
            };
            let conv = Conv3d::load(&w, "c", &device, DType::from(half)).unwrap();
            let x16 = x.cast(half);
            let want = exact(x16.clone(), &conv);
            let got = conv.forward(x16, *stride_t, *pad).into_data().convert::<f32>().try_to_vec::<f32>().unwrap();
            let (rel, max_abs) = rel_l2(&got, &want);
            println!("{} case {i} {half:?}: rel L2 {rel:.2e}", device::name(kind));
            assert!(rel <= bound, "case {i} {half:?} on {}: rel L2 {rel:e} (max abs {max_abs:e})", device::name(kind));
        }
    }
}
