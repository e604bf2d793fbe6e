//! Weight quantisation: the codecs against PyTorch / torchao bits, ComfyUI float8_e4m3fn
//! checkpoints against diffusers on their dequantised weights, and our own FP8 / NVFP4
//! files (`quantize_weights`) loading back within bounds. Fixtures:
//! `tools/make_quant_fixtures.py` (tests/fixtures/quant).

use burn::tensor::{DType, Tensor};
use sana_video_core::device;
use sana_video_core::io::safetensors::Weights;
use sana_video_core::io::FsSource;
use sana_video_core::quant::{self, Format};
use sana_video_tests::{backends, fixtures, rel_l2};

fn codecs() -> Weights {
    let p = fixtures().join("quant/codecs.safetensors");
    Weights::open_files(&FsSource, &[p.to_string_lossy().to_string()]).unwrap()
}

fn bytes(w: &Weights, name: &str) -> Vec<u8> {
    w.stored(name).unwrap().0
}

#[test]
fn fp8_encoding_matches_pytorch_bit_for_bit() {
    let w = codecs();
    let (x, _) = w.read_f32("fp8_in").unwrap();
    let codes = bytes(&w, "fp8_codes");
    let mismatches: Vec<(f32, u8, u8)> =
        x.iter().zip(&codes).map(|(&v, &c)| (v, quant::f32_to_e4m3(v), c)).filter(|(_, ours, theirs)| ours != theirs).collect();
    assert!(mismatches.is_empty(), "{} of {} differ, first: {:?}", mismatches.len(), x.len(), &mismatches[..mismatches.len().min(5)]);
    for &c in &codes {
        assert_eq!(quant::f32_to_e4m3(quant::e4m3_to_f32(c)), c);
    }
}

#[test]
fn nvfp4_matches_the_reference_recipe_bit_for_bit() {
    let w = codecs();
    let (values, shape) = w.read_f32("nvfp4_w").unwrap();
    let (packed, blocks, global) = quant::quantize_nvfp4(&values, shape[0], shape[1]);
    assert_eq!(global, w.read_f32("nvfp4_global").unwrap().0[0], "global scale");
    assert_eq!(blocks, bytes(&w, "nvfp4_blocks"), "block scales");
    assert_eq!(packed, bytes(&w, "nvfp4_packed"), "packed values");
    // Dequantised, the matrix is close: e2m1 has one mantissa bit.
    let back = quant::dequantize_nvfp4(&packed, &blocks, global, shape[0], shape[1]);
    let (rel, _) = rel_l2(&back, &values);
    println!("nvfp4 round trip: rel L2 {rel:.3e}");
    assert!(rel < 0.12, "nvfp4 round trip rel {rel}");
}

/// A ComfyUI float8_e4m3fn checkpoint (header metadata for some layers, `comfy_quant`
/// records for others, scalar scales) runs like diffusers on its dequantised weights.
#[test]
fn comfyui_fp8_checkpoint_matches_diffusers() {
    // Against the dequantised weights: W8A16 (CUDA would run W8A8, see `w8a8.rs`).
    sana_video_core::nn::set_fp8_activations(false);
    let dir = fixtures().join("quant/comfy_fp8/transformer").to_string_lossy().to_string();
    let outputs = Weights::open_files(&FsSource, &[fixtures().join("quant/comfy_fp8/outputs.safetensors").to_string_lossy().to_string()]).unwrap();
    let (expected, _) = outputs.read_f32("sample").unwrap();
    for (kind, device) in backends() {
        let (got, unexpected) = sana_video_tests::dit_mask_case_output(&dir, &device);
        assert!(unexpected.is_empty(), "scales and records must count as expected: {unexpected:?}");
        let (rel, max_abs) = rel_l2(&got, &expected);
        println!("comfy fp8 on {}: rel L2 {rel:.3e}, max abs {max_abs:.3e}", device::name(kind));
        assert!(rel <= 1e-5, "{}: rel L2 {rel:.3e}", device::name(kind));
    }
}

/// A ComfyUI NVFP4 checkpoint made by comfy-kitchen's own quantiser (high nibble first,
/// block scales in cuBLAS's blocked layout, 1x1 convs stored 2-D) runs like diffusers on
/// the weights comfy-kitchen's dequantiser gives, with the weights held as NVFP4.
#[test]
fn comfyui_nvfp4_checkpoint_matches_comfy_kitchen() {
    let dir = fixtures().join("quant/comfy_nvfp4/transformer").to_string_lossy().to_string();
    let w = Weights::open_dir(&FsSource, &dir, "diffusion_pytorch_model").unwrap();
    let conv = w.quant_info("transformer_blocks.0.ff.conv_inverted.weight").unwrap().expect("quantised");
    assert_eq!((conv.format, conv.layout, conv.shape.len()), (Format::Nvfp4, quant::Layout::Comfy, 2), "{conv:?}");
    let outputs = Weights::open_files(&FsSource, &[fixtures().join("quant/comfy_nvfp4/outputs.safetensors").to_string_lossy().to_string()]).unwrap();
    let (expected, _) = outputs.read_f32("sample").unwrap();
    for (kind, device) in backends() {
        let (got, unexpected) = sana_video_tests::dit_mask_case_output(&dir, &device);
        assert!(unexpected.is_empty(), "scales and records must count as expected: {unexpected:?}");
        let (rel, max_abs) = rel_l2(&got, &expected);
        println!("comfy nvfp4 on {}: rel L2 {rel:.3e}, max abs {max_abs:.3e}", device::name(kind));
        assert!(rel <= 1e-5, "{}: rel L2 {rel:.3e}", device::name(kind));
    }
}

/// Our FP8 and NVFP4 files of the same DiT: every linear and 1x1-conv weight but the first
/// and last layers quantised, loaded back (dequantised) and run against the f32 fixture.
#[test]
fn own_fp8_and_nvfp4_files_load_back_within_bounds() {
    // W8A16 and W4A16, whatever the device (CUDA would run FP8 weights W8A8: `w8a8.rs`).
    sana_video_core::nn::set_fp8_activations(false);
    sana_video_core::nn::set_nvfp4_activations(false);
    let case = fixtures().join("dit/p122_b2_mask");
    let src = case.join("transformer").to_string_lossy().to_string();
    let w = Weights::open_dir(&FsSource, &src, "diffusion_pytorch_model").unwrap();
    let outputs = Weights::open_files(&FsSource, &[case.join("outputs.safetensors").to_string_lossy().to_string()]).unwrap();
    let (expected, _) = outputs.read_f32("sample").unwrap();
    let device = backends().remove(0).1;
    // (format, bound on the output's rel L2 against f32): measured 2.9% and 9.0% on this
    // random DiT (FP8 keeps 3 mantissa bits, e2m1 one: per-weight errors of that order).
    for (format, bound) in [(Format::Fp8, 0.04), (Format::Nvfp4, 0.12)] {
        let (bytes, sum) = quant::quantize_weights(&w, format).unwrap();
        assert!(sum.quantised >= 20 && sum.bytes_out < sum.bytes_in, "{format:?}: {sum:?}");
        let dir = sana_video_tests::scratch(&format!("quant-{}", format.name()));
        std::fs::copy(case.join("transformer/config.json"), dir.join("config.json")).unwrap();
        std::fs::write(dir.join("diffusion_pytorch_model.safetensors"), bytes).unwrap();
        let q = Weights::open_dir(&FsSource, &dir.to_string_lossy(), "diffusion_pytorch_model").unwrap();
        let info = q.quant_info("transformer_blocks.0.ff.conv_inverted.weight").unwrap().expect("quantised");
        assert_eq!((info.format, info.shape.clone()), (format, w.meta("transformer_blocks.0.ff.conv_inverted.weight").unwrap().shape));
        assert!(q.quant_info("patch_embedding.weight").unwrap().is_none(), "the first layer stays precise");
        // Quantising again is refused.
        assert!(quant::quantize_weights(&q, format).is_err());
        let (got, unexpected) = sana_video_tests::dit_mask_case_output(&dir.to_string_lossy(), &device);
        assert!(unexpected.is_empty(), "{unexpected:?}");
        let (rel, _) = rel_l2(&got, &expected);
        println!("{format:?}: DiT output rel L2 {rel:.3e} against f32 ({} tensors, {} -> {} bytes)", sum.quantised, sum.bytes_in, sum.bytes_out);
        assert!(rel < bound, "{format:?}: rel L2 {rel:.3e} >= {bound}");
    }
}

/// FP8 weights stay FP8 on the device (one byte a weight, dequantised just before each
/// product) and give exactly what dequantising at load gives: the same file written back
/// dense in f32 by the host dequantiser runs to the identical output, on every backend.
#[test]
fn fp8_weights_stay_fp8_on_the_device_and_match_dequantised_ones() {
    resident_weights_match_dequantised_ones(Format::Fp8, 3);
}

/// NVFP4 likewise: resident as codes (eight e2m1 and the block codes per i32 pair), bit for
/// bit the weights and DiT output of the same file dequantised at load, at under a sixth of
/// f32's bytes.
#[test]
fn nvfp4_weights_stay_nvfp4_on_the_device_and_match_dequantised_ones() {
    resident_weights_match_dequantised_ones(Format::Nvfp4, 6);
}

/// Quantises the DiT fixture to `format`, writes the same weights back dense through the
/// host dequantiser, and compares a resident layer and the whole DiT output on every backend.
fn resident_weights_match_dequantised_ones(format: Format, smaller: usize) {
    // The same products as the dequantised weights': W8A16 and W4A16 (CUDA would run FP8
    // weights W8A8, see `w8a8.rs`).
    sana_video_core::nn::set_fp8_activations(false);
    sana_video_core::nn::set_nvfp4_activations(false);
    let case = fixtures().join("dit/p122_b2_mask");
    let w = Weights::open_dir(&FsSource, &case.join("transformer").to_string_lossy(), "diffusion_pytorch_model").unwrap();
    let (bytes, _) = quant::quantize_weights(&w, format).unwrap();
    let tag = format.name();
    let resident = sana_video_tests::scratch(&format!("{tag}-resident"));
    let dense = sana_video_tests::scratch(&format!("{tag}-dequantised"));
    for dir in [&resident, &dense] {
        std::fs::copy(case.join("transformer/config.json"), dir.join("config.json")).unwrap();
    }
    std::fs::write(resident.join("diffusion_pytorch_model.safetensors"), bytes).unwrap();
    let q = Weights::open_dir(&FsSource, &resident.to_string_lossy(), "diffusion_pytorch_model").unwrap();
    let tensors: Vec<(String, Vec<f32>, Vec<usize>)> = q
        .names()
        .into_iter()
        .filter(|n| !n.ends_with("_scale") && !n.ends_with("_scale_2"))
        .map(|n| {
            let (v, s) = q.read_f32(&n).unwrap();
            (n, v, s)
        })
        .collect();
    let refs: Vec<(&str, &[f32], &[usize])> = tensors.iter().map(|(n, v, s)| (n.as_str(), v.as_slice(), s.as_slice())).collect();
    std::fs::write(dense.join("diffusion_pytorch_model.safetensors"), sana_video_core::io::safetensors::serialize_f32(&refs).unwrap()).unwrap();
    let is_resident = |l: &sana_video_core::nn::Linear| if format == Format::Fp8 { l.is_fp8_resident() } else { l.is_nvfp4_resident() };
    for (kind, device) in backends() {
        // The resident form is what a quantised layer loads as.
        let name = "transformer_blocks.0.ff.conv_inverted";
        let lin = sana_video_core::nn::Linear::load(&q, name, false, &device, DType::F32).unwrap();
        let d = Weights::open_dir(&FsSource, &dense.to_string_lossy(), "diffusion_pytorch_model").unwrap();
        let full = sana_video_core::nn::Linear::load(&d, name, false, &device, DType::F32).unwrap();
        assert!(is_resident(&lin) && !full.is_fp8_resident() && !full.is_nvfp4_resident(), "{tag}: {name} is not resident");
        assert!(lin.weight_bytes() * smaller < full.weight_bytes(), "{tag}: {} vs {} bytes", lin.weight_bytes(), full.weight_bytes());
        let (a, b) = (lin.weight_t().into_data().try_to_vec::<f32>().unwrap(), full.weight_t().into_data().try_to_vec::<f32>().unwrap());
        assert!(a == b, "{} {tag}: the dequantised weights differ", device::name(kind));
        // The temporal (3, 1) conv, its taps side by side: FP8 keeps it as codes too (NVFP4
        // leaves it dense), with the same values.
        let taps = "transformer_blocks.0.ff.conv_temp.weight";
        let lin = sana_video_core::nn::Linear::load_taps(&q, taps, &device, DType::F32).unwrap();
        let full = sana_video_core::nn::Linear::load_taps(&d, taps, &device, DType::F32).unwrap();
        assert_eq!(lin.is_fp8_resident(), format == Format::Fp8, "{tag}: {taps} resident");
        let values = |l: &sana_video_core::nn::Linear| l.weight_t().into_data().try_to_vec::<f32>().unwrap();
        assert!(values(&lin) == values(&full), "{} {tag}: the temporal conv's dequantised taps differ", device::name(kind));
        let (got, unexpected) = sana_video_tests::dit_mask_case_output(&resident.to_string_lossy(), &device);
        assert!(unexpected.is_empty(), "{unexpected:?}");
        let (want, _) = sana_video_tests::dit_mask_case_output(&dense.to_string_lossy(), &device);
        let (rel, max_abs) = rel_l2(&got, &want);
        println!("{tag} resident vs dequantised at load on {}: rel L2 {rel:.3e}, max abs {max_abs:.3e}", device::name(kind));
        assert!(max_abs == 0.0, "{} {tag}: rel L2 {rel:.3e}, max abs {max_abs:.3e}", device::name(kind));
    }
}

/// The activation quantiser's e4m3 rounding (integer RNE on the f32 bits, as its kernel does
/// it) gives PyTorch's `.to(torch.float8_e4m3fn)` codes on the fixture's values.
#[test]
fn activation_fp8_rounding_matches_pytorch_bit_for_bit() {
    use sana_video_core::kernels::act_quant::e4m3_rne;
    let w = codecs();
    let (x, _) = w.read_f32("fp8_in").unwrap();
    let codes = bytes(&w, "fp8_codes");
    let mismatches: Vec<(f32, u8, u8)> = x.iter().zip(&codes).map(|(&v, &c)| (v, e4m3_rne(v), c)).filter(|(_, ours, theirs)| ours != theirs).collect();
    assert!(mismatches.is_empty(), "{} of {} differ, first: {:?}", mismatches.len(), x.len(), &mismatches[..mismatches.len().min(5)]);
}

/// Per-token FP8 quantisation of activations (the W8A8 building block): the kernel on CubeCL
/// devices and the host reference give the host encoder's codes and scales bit for bit, in
/// each storage dtype the device has; the scales are powers of two, and each decoded value is
/// within half an e4m3 step of the input.
#[test]
fn activation_quantiser_matches_host_bit_for_bit() {
    use burn::tensor::FloatDType;
    use sana_video_core::kernels::act_quant::{encode_rows, quantize_fp8_rows};
    use sana_video_core::kernels::Impl;
    let (rows, cols) = (7usize, 2240usize);
    let mut x: Vec<f32> = (0..rows * cols).map(|i| (((i * 7919) % 2003) as f32 / 1001.0 - 1.0) * (1.0 + (i % 13) as f32)).collect();
    // Row 1 all zeros; row 2 tiny; row 3 huge; row 4 has exact e4m3 midpoints after scaling.
    x[cols..2 * cols].iter_mut().for_each(|v| *v = 0.0);
    x[2 * cols..3 * cols].iter_mut().for_each(|v| *v *= 1e-6);
    x[3 * cols..4 * cols].iter_mut().for_each(|v| *v *= 3e3); // still finite in f16
    x[4 * cols] = 448.0;
    for (k, v) in x[4 * cols + 1..5 * cols].iter_mut().enumerate() {
        *v = 1.0 + (2 * (k % 8) + 1) as f32 / 16.0; // halfway between 1 + m/8 and 1 + (m+1)/8
    }
    for (kind, device) in backends() {
        for &dtype in storage_dtypes(kind, &device) {
            let t = Tensor::<2>::from_data(burn::tensor::TensorData::new(x.clone(), [rows, cols]), &device).cast(dtype);
            let stored = t.clone().cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
            let (want_codes, want_scales) = encode_rows(&stored, rows, cols);
            for which in [Impl::Auto, Impl::Reference] {
                let (codes, scales) = quantize_fp8_rows(t.clone(), which);
                assert_eq!(codes.dims(), [rows, cols / 4]);
                let codes = codes.into_data().try_to_vec::<i32>().unwrap();
                let scales = scales.into_data().try_to_vec::<f32>().unwrap();
                let bad = codes.iter().zip(&want_codes).filter(|(a, b)| a != b).count();
                assert_eq!(bad, 0, "{} {which:?} {dtype:?}: {bad} of {} code words differ", device::name(kind), codes.len());
                assert_eq!(scales, want_scales, "{} {which:?} {dtype:?}: scales", device::name(kind));
                println!("{} {which:?} {dtype:?}: {} code words and {rows} scales equal to the host's", device::name(kind), codes.len());
            }
            assert_eq!(want_scales[1], 0.0, "an all-zero row has scale 0");
            for (r, &s) in want_scales.iter().enumerate() {
                assert!(s == 0.0 || s == 2f32.powi(s.log2().round() as i32), "row {r}: scale {s} is not a power of two");
                for c in 0..cols {
                    let code = (want_codes[(r * cols + c) / 4] as u32 >> (8 * (c % 4))) as u8;
                    let (v, got) = (stored[r * cols + c], quant::e4m3_to_f32(code) * s);
                    // Half a step: 2^-4 relative in e4m3's normal range, 2^-10 · s below it.
                    let tol = (v.abs() / 16.0).max(s * 2f32.powi(-10)) * 1.0001;
                    assert!((got - v).abs() <= tol, "row {r} col {c}: {v} decoded as {got}");
                }
            }
        }
    }
}

/// NVFP4 quantisation of activations (the W4A4 building block): the kernel on CubeCL devices
/// and the host reference give the host encoder's codes, scale words (row-major and
/// cuBLASLt's tiled layout, 130 rows so the padding tile shows) and globals bit for bit in
/// each storage dtype the device has, and the emulation's values (`fake_quantize_rows`) are
/// the host's decoded codes exactly. Blocks include zeros, tiny values, a block at its scale's
/// exact limit with every e2m1 midpoint (ties to even) and a 1000-fold outlier.
#[test]
fn activation_nvfp4_quantiser_matches_host_bit_for_bit() {
    use burn::tensor::FloatDType;
    use sana_video_core::kernels::nvfp4::{self, decode_rows, encode_rows, fake_quantize_rows, quantize_rows, ScaleLayout};
    use sana_video_core::kernels::Impl;
    let (rows, cols) = (130usize, 192usize);
    let mut x: Vec<f32> = (0..rows * cols).map(|i| (((i * 7919) % 2003) as f32 / 1001.0 - 1.0) * (1.0 + (i % 13) as f32)).collect();
    x[5] = 1000.0;
    let g = 2f32.powi(nvfp4::global_exponent(1000.0).unwrap());
    x[cols..2 * cols].iter_mut().for_each(|v| *v = 0.0);
    x[2 * cols..3 * cols].iter_mut().for_each(|v| *v *= 1e-4);
    let ties = [6.0f32, 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0, -0.25, -0.75, -1.25, -1.75, -2.5, -3.5, -5.0, 0.0];
    for (k, v) in x[3 * cols..4 * cols].iter_mut().enumerate() {
        *v = ties[k % 16] * g;
    }
    for (kind, device) in backends() {
        for &dtype in storage_dtypes(kind, &device) {
            let name = device::name(kind);
            let t = Tensor::<2>::from_data(burn::tensor::TensorData::new(x.clone(), [rows, cols]), &device).cast(dtype);
            let stored = t.clone().cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
            for layout in [ScaleLayout::RowMajor, ScaleLayout::Tiled] {
                let want = encode_rows(&stored, rows, cols, layout, 0.375);
                for which in [Impl::Auto, Impl::Reference] {
                    let (codes, scales, globals) = quantize_rows(t.clone(), layout, 0.375, which);
                    assert_eq!(codes.dims(), [rows, cols / 8]);
                    let codes = codes.into_data().try_to_vec::<i32>().unwrap();
                    let scales = scales.into_data().try_to_vec::<i32>().unwrap();
                    let globals = globals.into_data().try_to_vec::<f32>().unwrap();
                    let bad = codes.iter().zip(&want.codes).filter(|(a, b)| a != b).count();
                    assert_eq!(bad, 0, "{name} {which:?} {dtype:?} {layout:?}: {bad} of {} code words differ", codes.len());
                    assert_eq!(scales, want.scales, "{name} {which:?} {dtype:?} {layout:?}: scale words");
                    assert_eq!(globals, want.globals.to_vec(), "{name} {which:?} {dtype:?}: globals");
                }
                println!("{name} {dtype:?} {layout:?}: codes, {} scale words and globals equal to the host's", want.scales.len());
            }
            let want = encode_rows(&stored, rows, cols, ScaleLayout::RowMajor, 1.0);
            assert_eq!(want.globals[0], g, "the outlier sets the global scale");
            let decoded = decode_rows(&want, rows, cols, ScaleLayout::RowMajor);
            // The tie row decodes to the even neighbours: 0.25 -> 0, 0.75 -> 1, 1.25 -> 1, 1.75 -> 2, 2.5 -> 2, 3.5 -> 4, 5 -> 4.
            let even = [6.0f32, 0.0, 1.0, 1.0, 2.0, 2.0, 4.0, 4.0, 0.0, -1.0, -1.0, -2.0, -2.0, -4.0, -4.0, 0.0];
            for k in 0..cols {
                assert_eq!(decoded[3 * cols + k], even[k % 16] * g, "tie row, column {k}");
            }
            assert!(decoded[cols..2 * cols].iter().all(|v| *v == 0.0), "the zero row decodes to zeros");
            for which in [Impl::Auto, Impl::Reference] {
                let y = fake_quantize_rows(t.clone(), which);
                assert_eq!((y.dims(), y.dtype()), ([rows, cols], t.dtype()));
                let y = y.cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                let bad = y.iter().zip(&decoded).filter(|(a, b)| a != b).count();
                assert_eq!(bad, 0, "{name} {which:?} {dtype:?}: {bad} of {} fake-quantised values differ from the host's", y.len());
            }
        }
    }
}

/// W4A4 products (`kernels::nvfp4::linear`): NVFP4 activations times an NVFP4 weight (our
/// quantiser's codes, `quant::quantize_nvfp4`), plus a bias, against a float64 host product
/// of the host encoder's activation values and the weight's decoded values, on every backend
/// and result dtype; `Impl::Auto` (FP4 tensor cores where the device has them, else the
/// kernels behind the tensor-op path) and the reference. Bound: f32 accumulation (1e-5)
/// plus one rounding to the result dtype.
#[test]
fn nvfp4_w4a4_product_matches_host() {
    use burn::tensor::{FloatDType, TensorData};
    use sana_video_core::kernels::nvfp4::{self, decode_rows, encode_rows, ScaleLayout};
    use sana_video_core::kernels::Impl;
    for (kind, device) in backends() {
        let name = device::name(kind);
        let native = nvfp4::tensor_cores(&device);
        for (m, n, k) in [(5usize, 32usize, 64usize), (130, 96, 192)] {
            let x: Vec<f32> = sana_video_tests::random_vec(m * k, 40 + m as u64).iter().enumerate().map(|(i, v)| v * if i % 61 == 0 { 40.0 } else { 1.0 }).collect();
            let wv = sana_video_tests::random_vec(n * k, 50 + n as u64);
            let (codes, blocks, global) = quant::quantize_nvfp4(&wv, n, k);
            let w_hat = quant::dequantize_nvfp4(&codes, &blocks, global, n, k);
            let bias = sana_video_tests::random_vec(n, 60);
            let w = nvfp4::Weight::new(&codes, &blocks, global, n, k, &device);
            // bf16 where the device has it (CUDA); f32 everywhere.
            let bf16 = sana_video_core::kernels::is_cube_device(&device) && kind.has_bf16();
            for dtype in [DType::F32, DType::BF16].into_iter().filter(|d| *d == DType::F32 || bf16) {
                let xt = Tensor::<2>::from_data(TensorData::new(x.clone(), [m, k]), &device).cast(FloatDType::from(dtype));
                let stored = xt.clone().cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                let x_hat = decode_rows(&encode_rows(&stored, m, k, ScaleLayout::RowMajor, 1.0), m, k, ScaleLayout::RowMajor);
                let bt = Tensor::<1>::from_data(TensorData::new(bias.clone(), [n]), &device).cast(FloatDType::from(dtype));
                let b_stored = bt.clone().cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                let want: Vec<f32> = (0..m * n)
                    .map(|j| {
                        let (r, c) = (j / n, j % n);
                        ((0..k).map(|i| x_hat[r * k + i] as f64 * w_hat[c * k + i] as f64).sum::<f64>() + b_stored[c] as f64) as f32
                    })
                    .collect();
                let rounding = if dtype == DType::F32 { 0.0 } else { 2f64.powi(-8) };
                for which in [Impl::Auto, Impl::Reference] {
                    let y = nvfp4::linear(xt.clone(), &w, Some(&bt), dtype, which);
                    assert_eq!((y.dims(), y.dtype()), ([m, n], dtype), "{name}");
                    let y = y.cast(FloatDType::F32).into_data().try_to_vec::<f32>().unwrap();
                    let (rel, max) = rel_l2(&y, &want);
                    let on_cores = native && which == Impl::Auto;
                    let bound = rounding + 1e-5;
                    println!("{name} {dtype:?} [{m}, {k}]·[{k}, {n}] {which:?}{}: rel L2 {rel:.2e} (max abs {max:.2e}, bound {bound:.1e})", if on_cores { " (FP4 tensor cores)" } else { "" });
                    assert!(rel < bound, "{name} {dtype:?} [{m},{k},{n}] {which:?}: rel {rel:.3e} >= {bound:.1e}");
                }
            }
        }
    }
}

/// The storage dtypes a backend's quantisers take: f32 on the CPU backend, f16 too on wgpu,
/// bf16 too on CUDA.
fn storage_dtypes(kind: device::BackendKind, device: &burn::tensor::Device) -> &'static [burn::tensor::FloatDType] {
    use burn::tensor::FloatDType;
    match kind {
        _ if !sana_video_core::kernels::is_cube_device(device) => &[FloatDType::F32],
        _ if !kind.has_bf16() => &[FloatDType::F32, FloatDType::F16],
        _ => &[FloatDType::F32, FloatDType::F16, FloatDType::BF16],
    }
}

/// The memory plan's FP8 estimate for an unquantised DiT (`Request::plan_fp8_dit`, what a
/// memory refusal suggests) equals the plan of the same model after its DiT is quantised
/// (`quant::quantize_weights`, what `sana-video quantize --format fp8` writes), and is smaller
/// than the unquantised plan; a model already FP8 plans the same either way.
#[test]
fn fp8_plan_estimate_matches_the_quantised_model() {
    use sana_video_core::pipelines::{plan, Request};
    let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../builtin-model");
    let dir = std::env::temp_dir().join(format!("sana-fp8-plan-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    for entry in ["model_index.json", "scheduler", "text_encoder", "tokenizer", "transformer", "vae"] {
        let from = src.join(entry);
        if from.is_dir() {
            std::fs::create_dir_all(dir.join(entry)).unwrap();
            for f in std::fs::read_dir(&from).unwrap() {
                let f = f.unwrap().path();
                std::fs::copy(&f, dir.join(entry).join(f.file_name().unwrap())).unwrap();
            }
        } else if from.exists() {
            std::fs::copy(&from, dir.join(entry)).unwrap();
        }
    }
    let tdir = dir.join("transformer");
    let w = Weights::open_dir(&FsSource, tdir.to_str().unwrap(), "diffusion_pytorch_model").unwrap();
    let (bytes, summary) = quant::quantize_weights(&w, Format::Fp8).unwrap();
    assert!(summary.quantised > 0);
    std::fs::write(tdir.join("diffusion_pytorch_model.safetensors"), bytes).unwrap();
    let req = Request {
        prompt: "a small red circle moves slowly to the left on a black background".into(),
        height: 128,
        width: 128,
        frames: 17,
        steps: 4,
        resolution_binning: false,
        ..Default::default()
    };
    let transformer = |model: &std::path::Path, plan_fp8_dit: bool| {
        let p = plan(&FsSource, model.to_str().unwrap(), &Request { plan_fp8_dit, ..req.clone() }).unwrap();
        p.memory.stages.iter().find(|s| s.name == "transformer").map(|s| s.weights).unwrap()
    };
    let (dense, estimate, quantised) = (transformer(&src, false), transformer(&src, true), transformer(&dir, false));
    println!("transformer weights planned: dense {dense} B, FP8 estimate {estimate} B, FP8 file {quantised} B");
    assert_eq!(estimate, quantised, "the FP8 estimate differs from the quantised model's plan");
    assert!(estimate < dense / 2, "FP8 should take under half of f32's weight bytes: {estimate} against {dense}");
    assert_eq!(transformer(&dir, true), quantised, "an FP8 model plans the same with the estimate asked");
    let _ = std::fs::remove_dir_all(&dir);
}
