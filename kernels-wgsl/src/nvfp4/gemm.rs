//! W4A4 products on FP4 tensor cores (sm_100 / sm_120) through cuBLASLt's block-scaled GEMM
//! (`matmul::cublas::nvfp4_linear`). The activations are quantised by `super::quantize_rows`
//! straight into cuBLASLt's tiled scale layout, their global scale times the weight's
//! written on the device as the GEMM's alpha, so nothing waits for the host.

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use burn::backend::{backend_extension, tensor::FloatTensor, tensor::IntTensor, Backend, Dispatch};
use burn::tensor::{DType, FloatDType, Tensor as BTensor, TensorData};
use burn_cubecl::{cubecl, kernel::into_contiguous, tensor::CubeTensor, CubeBackend};
use cubecl::cuda::CudaDevice;

use super::{ScaleLayout, Weight};
use crate::matmul::cublas::{nvfp4_linear, nvfp4_plan_status, Fp8Problem};
use crate::{cuda_device, dtype_code, Impl, DTYPES};

/// Whether `device` runs W4A4 products on FP4 tensor cores: probed once per device (a plan
/// and a small product against the host, [`self_test`]); the reason is printed when not.
pub fn tensor_cores(device: &burn::tensor::Device) -> bool {
    static PROBED: OnceLock<Mutex<HashMap<usize, bool>>> = OnceLock::new();
    let Some(dev) = cuda_device(device) else { return false };
    let probed = PROBED.get_or_init(Default::default);
    if let Some(&found) = probed.lock().ok().as_ref().and_then(|p| p.get(&dev.index)) {
        return found;
    }
    let found = match self_test(device, &dev) {
        Ok(()) => true,
        Err(e) => {
            eprintln!("note: FP4 tensor-core GEMMs unavailable on CUDA device {} ({e}); NVFP4 weights run W4A16 (or emulated W4A4)", dev.index);
            false
        }
    };
    if let Ok(mut p) = probed.lock() {
        p.insert(dev.index, found);
    }
    found
}

/// A 48x64x128 product with a bf16 result (what the DiT's layers ask for) whose activations
/// are exact in NVFP4 (e2m1 values, every block with a 6 in it, so scales come out as powers
/// of two) with a weight of cycling codes and scales, against the host's product of the same
/// values. A transposed operand, a scale read from the wrong tile or a wrong alpha gives
/// wrong numbers.
fn self_test(device: &burn::tensor::Device, dev: &CudaDevice) -> Result<(), String> {
    let (m, n, k) = (48usize, 64usize, 128usize);
    let xv: Vec<f32> = (0..m * k)
        .map(|i| if i % 16 == (i / k) % 16 { if i % 3 == 0 { -6.0 } else { 6.0 } } else { super::E2M1[(i * 7 + i / k) % 8] * if i % 5 == 0 { -1.0 } else { 1.0 } })
        .collect();
    let codes: Vec<u8> = (0..n * k / 2).map(|i| ((i * 37 + 11) % 256) as u8).collect();
    // Scale codes from 0x30 (0.5) to 0x40 (2) and the global 0.75.
    let blocks: Vec<u8> = (0..n * k / 16).map(|i| 0x30 + (i * 5 % 17) as u8).collect();
    let w = Weight::new(&codes, &blocks, 0.75, n, k, device);
    let wv: Vec<f32> = (0..n * k)
        .map(|i| {
            let nib = (codes[i / 2] >> (4 * (i % 2))) & 15;
            let v = super::E2M1[(nib & 7) as usize] * super::e4m3_value(blocks[i / 16] as u32) * 0.75;
            if nib & 8 != 0 {
                -v
            } else {
                v
            }
        })
        .collect();
    let x = BTensor::<2>::from_data(TensorData::new(xv.clone(), [m, k]), (device, DType::F32)).cast(FloatDType::BF16);
    // Not `linear`: that asks `tensor_cores`, which is being decided here.
    let y = product(&dev, &x, &w, None, DType::BF16).map_err(|e| format!("the product was refused: {e}"))?;
    let got = y.cast(FloatDType::F32).try_into_data().map_err(|e| format!("the product failed: {e:?}"))?;
    let got = got.try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
    for j in 0..m * n {
        let (r, c) = (j / n, j % n);
        let want: f32 = (0..k).map(|i| xv[r * k + i] * wv[c * k + i]).sum();
        // One bf16 rounding of an f32 sum of exact products: 2^-9 relative.
        if (got[j] - want).abs() > 4e-3 * want.abs().max(1.0) {
            return Err(format!("wrong value at [{r}, {c}] of a {m}x{n}x{k} product: {} against {want} from the host", got[j]));
        }
    }
    Ok(())
}

#[backend_extension(Cube)]
pub trait Nvfp4GemmKernels: Backend {
    /// `has_bias` false: `bias` is an unused stand-in. `dtype`: 0 f32, 1 f16, 2 bf16.
    #[allow(clippy::too_many_arguments)]
    fn nvfp4_product(
        x_codes: IntTensor<Self>,
        x_scales: IntTensor<Self>,
        globals: FloatTensor<Self>,
        w_codes: IntTensor<Self>,
        w_scales: IntTensor<Self>,
        bias: FloatTensor<Self>,
        has_bias: bool,
        dtype: u8,
    ) -> Option<FloatTensor<Self>>;
}

impl Nvfp4GemmKernels for CubeBackend {
    fn nvfp4_product(
        x_codes: CubeTensor,
        x_scales: CubeTensor,
        globals: CubeTensor,
        w_codes: CubeTensor,
        w_scales: CubeTensor,
        bias: CubeTensor,
        has_bias: bool,
        dtype: u8,
    ) -> Option<CubeTensor> {
        let dtype = DTYPES[dtype as usize];
        let (x_codes, w_codes) = (into_contiguous(x_codes), into_contiguous(w_codes));
        nvfp4_linear(&x_codes, &x_scales, &globals, &w_codes, &w_scales, has_bias.then_some(&bias), dtype)
    }
}

/// The FP4 tensor-core product, or `None` where it does not run (not CUDA, no FP4 tensor
/// cores, no plan for this shape: the caller runs the reference). The bias goes into the
/// epilogue for f16/bf16 results and is added after an f32 one.
pub fn linear(x: &BTensor<2>, w: &Weight, bias: Option<&BTensor<1>>, dtype: DType) -> Option<BTensor<2>> {
    let dev = cuda_device(&x.device())?;
    if !tensor_cores(&x.device()) {
        return None;
    }
    product(&dev, x, w, bias, dtype).ok()
}

/// The product on FP4 tensor cores without asking [`tensor_cores`] (the probe uses it), or
/// why cuBLASLt would not take it.
fn product(dev: &CudaDevice, x: &BTensor<2>, w: &Weight, bias: Option<&BTensor<1>>, dtype: DType) -> Result<BTensor<2>, String> {
    let ([m, k], [n, _]) = (x.dims(), w.codes.dims());
    if !DTYPES.contains(&dtype) {
        return Err(format!("{dtype:?} results are not taken"));
    }
    let epilogue_bias = bias.filter(|b| dtype != DType::F32 && b.dtype() == dtype);
    let problem = Fp8Problem { m, n, k, ld_x: k, ld_w: k, out_dtype: dtype_code(dtype), bias: epilogue_bias.is_some(), fast_accum: false };
    nvfp4_plan_status(dev, problem)?;
    let (x_codes, x_scales, globals) = super::quantize_rows(x.clone(), ScaleLayout::Tiled, w.global, Impl::Auto);
    let stand_in = globals.clone();
    let y = <Dispatch as Nvfp4GemmKernels>::nvfp4_product(
        x_codes.into_dispatch(),
        x_scales.into_dispatch(),
        globals.into_dispatch(),
        w.codes.clone().into_dispatch(),
        w.scales_tiled.clone().into_dispatch(),
        epilogue_bias.cloned().unwrap_or(stand_in).into_dispatch(),
        epilogue_bias.is_some(),
        dtype_code(dtype),
    )
    .map(BTensor::<2>::from_dispatch)
    .ok_or_else(|| format!("cuBLASLt did not take the operands of {problem:?}"))?;
    Ok(match (bias, epilogue_bias) {
        (Some(b), None) => y + b.clone().cast(FloatDType::from(dtype)).reshape([1, n]),
        _ => y,
    })
}

