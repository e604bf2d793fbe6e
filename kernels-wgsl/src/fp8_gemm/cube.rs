//! W8A8 products on CUDA through cuBLASLt's FP8 GEMM (`matmul::cublas::fp8_linear`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use burn::backend::{backend_extension, tensor::FloatTensor, tensor::IntTensor, Backend, Dispatch};
use burn::tensor::{DType, Int, Tensor as BTensor};
use burn_cubecl::{cubecl, kernel::into_contiguous, tensor::CubeTensor, CubeBackend};
use cubecl::cuda::CudaDevice;

use crate::matmul::cublas::{fp8_fast_accumulation, fp8_linear, fp8_plan_status, fp8_plannable, Fp8Problem};
use crate::{cuda_device, dtype_code, DTYPES};

/// What the probe found on one device: FP8 tensor cores, and whether cuBLASLt adds the bias
/// in their epilogue (else it is added after, like an f32 result's).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Support {
    tensor_cores: bool,
    epilogue_bias: bool,
}

/// One probe per device: small FP8 products, with the bias in the epilogue and without,
/// planned and run (see [`self_test`]); the reason is printed when one fails.
fn support(device: &burn::tensor::Device) -> Support {
    static PROBED: OnceLock<Mutex<HashMap<usize, Support>>> = OnceLock::new();
    let none = Support { tensor_cores: false, epilogue_bias: false };
    let Some(dev) = cuda_device(device) else { return none };
    let probed = PROBED.get_or_init(Default::default);
    if let Some(&found) = probed.lock().ok().as_ref().and_then(|p| p.get(&dev.index)) {
        return found;
    }
    let found = match self_test(device, &dev, true) {
        Ok(()) => Support { tensor_cores: true, epilogue_bias: true },
        Err(with_bias) => match self_test(device, &dev, false) {
            Ok(()) => {
                eprintln!("note: cuBLASLt's FP8 GEMM on CUDA device {} cannot add the bias in its epilogue ({with_bias}); it is added after", dev.index);
                Support { tensor_cores: true, epilogue_bias: false }
            }
            Err(without) => {
                eprintln!(
                    "note: FP8 tensor-core GEMMs unavailable on CUDA device {} (with a bias: {with_bias}; without: {without}); W8A8 runs emulated",
                    dev.index
                );
                none
            }
        },
    };
    if let Ok(mut p) = probed.lock() {
        p.insert(dev.index, found);
    }
    found
}

/// Whether W8A8 products run on FP8 tensor cores on `device` (probed once per device).
pub fn tensor_cores(device: &burn::tensor::Device) -> bool {
    support(device).tensor_cores
}

/// A small W8A8 product (with the bias in the epilogue if `bias`) on the device against its
/// value computed on the host. A plan cuBLASLt's heuristic returns can still be refused when
/// enqueued (some scale modes fail only then), and scales applied along the wrong side would
/// give wrong numbers; either keeps that path off for the device. Values are small integers
/// times powers of two, distinct per row and per column, so a transposition or a swapped
/// scale shows.
fn self_test(device: &burn::tensor::Device, dev: &CudaDevice, bias: bool) -> Result<(), String> {
    use burn::tensor::{FloatDType, TensorData};
    use crate::act_quant::e4m3_rne;
    let (m, n, k) = (48usize, 32usize, 64usize);
    let problem = Fp8Problem { m, n, k, ld_x: k, ld_w: k, out_dtype: dtype_code(DType::BF16), bias, fast_accum: fp8_fast_accumulation() };
    fp8_plan_status(dev, problem)?;
    let xv: Vec<f32> = (0..m * k).map(|i| ((i * 7 + i / k) % 9) as f32 - 4.0).collect();
    let wv: Vec<f32> = (0..n * k).map(|i| ((i * 5 + 3 * (i / k)) % 7) as f32 - 3.0).collect();
    let xs: Vec<f32> = (0..m).map(|r| 2f32.powi(r as i32 % 5 - 2)).collect();
    let ws: Vec<f32> = (0..n).map(|c| 0.25 * (1 + c % 6) as f32).collect();
    let bv: Vec<f32> = (0..n).map(|c| if bias { c as f32 - 8.0 } else { 0.0 }).collect();
    let codes = |v: &[f32], rows: usize| {
        let bytes: Vec<u8> = v.iter().map(|&x| e4m3_rne(x)).collect();
        BTensor::<2, Int>::from_data(TensorData::new(super::pack_rows(&bytes, rows, k), [rows, k / 4]), (device, DType::I32))
    };
    let vector = |v: &[f32]| BTensor::<1>::from_data(TensorData::new(v.to_vec(), [v.len()]), (device, DType::F32));
    let y = BTensor::<2>::from_dispatch(<Dispatch as Fp8GemmKernels>::fp8_product(
        codes(&xv, m).into_dispatch(),
        vector(&xs).into_dispatch(),
        codes(&wv, n).into_dispatch(),
        vector(&ws).into_dispatch(),
        vector(&bv).cast(FloatDType::BF16).into_dispatch(),
        bias,
        dtype_code(DType::BF16),
        problem.fast_accum,
    ));
    let got = y.cast(FloatDType::F32).try_into_data().map_err(|e| format!("the product failed: {e:?}"))?;
    let got = got.try_to_vec::<f32>().map_err(|e| format!("{e:?}"))?;
    for j in 0..m * n {
        let (r, c) = (j / n, j % n);
        let dot: f32 = (0..k).map(|i| xv[r * k + i] * wv[c * k + i]).sum();
        let want = xs[r] * ws[c] * dot + bv[c];
        if (got[j] - want).abs() > 1e-2 * want.abs().max(1.0) {
            return Err(format!("wrong value at [{r}, {c}] of a {m}x{n}x{k} product: {} against {want} from the host", got[j]));
        }
    }
    Ok(())
}

#[backend_extension(Cube)]
pub trait Fp8GemmKernels: Backend {
    /// `has_bias` false: `bias` is an unused stand-in. `dtype`: 0 f32, 1 f16, 2 bf16.
    /// `fast_accum`: the accumulation mode the caller planned with.
    #[allow(clippy::too_many_arguments)]
    fn fp8_product(x_codes: IntTensor<Self>, x_scale: FloatTensor<Self>, w_codes: IntTensor<Self>, w_scale: FloatTensor<Self>, bias: FloatTensor<Self>, has_bias: bool, dtype: u8, fast_accum: bool) -> FloatTensor<Self>;
}

impl Fp8GemmKernels for CubeBackend {
    fn fp8_product(x_codes: CubeTensor, x_scale: CubeTensor, w_codes: CubeTensor, w_scale: CubeTensor, bias: CubeTensor, has_bias: bool, dtype: u8, fast_accum: bool) -> CubeTensor {
        let dtype = DTYPES[dtype as usize];
        // Row-major codes with unit column stride are taken as they are (pitched rows too).
        let (x_codes, w_codes) = (into_contiguous(x_codes), into_contiguous(w_codes));
        // `product` below planned this problem before calling; only a plan evicted and then
        // refused on the second asking could end here.
        fp8_linear(&x_codes, &x_scale, &w_codes, &w_scale, has_bias.then_some(&bias), dtype, fast_accum)
            .unwrap_or_else(|| panic!("cuBLASLt FP8 GEMM planned earlier could not be enqueued ({:?} · {:?})", x_codes.meta.shape(), w_codes.meta.shape()))
    }
}

/// The cuBLASLt product, or `None` where it does not run (not CUDA, no plan, or operands
/// not in the layouts it reads: the caller then runs the reference). The bias goes into the
/// GEMM's epilogue for f16/bf16 results, and is added after an f32 one (cuBLASLt's FP8
/// epilogue takes a 16-bit bias only), or after any result where the device's probe found the
/// epilogue refused (a second rounding of a 16-bit result then).
pub fn product(x_codes: &BTensor<2, Int>, x_scale: &BTensor<1>, w_codes: &BTensor<2, Int>, w_scale: &BTensor<1>, bias: Option<&BTensor<1>>, dtype: DType) -> Option<BTensor<2>> {
    let dev = cuda_device(&x_codes.device())?;
    let ([m, kq], [n, _]) = (x_codes.dims(), w_codes.dims());
    let found = support(&x_codes.device());
    let epilogue_bias = bias.filter(|_| dtype != DType::F32 && found.epilogue_bias);
    if !DTYPES.contains(&dtype) || epilogue_bias.is_some_and(|b| b.dtype() != dtype) || !found.tensor_cores {
        return None;
    }
    let problem = Fp8Problem { m, n, k: 4 * kq, ld_x: 4 * kq, ld_w: 4 * kq, out_dtype: dtype_code(dtype), bias: epilogue_bias.is_some(), fast_accum: fp8_fast_accumulation() };
    if !fp8_plannable(&dev, problem) {
        return None;
    }
    let stand_in = x_scale.clone();
    let y = BTensor::<2>::from_dispatch(<Dispatch as Fp8GemmKernels>::fp8_product(
        x_codes.clone().into_dispatch(),
        x_scale.clone().into_dispatch(),
        w_codes.clone().into_dispatch(),
        w_scale.clone().into_dispatch(),
        epilogue_bias.cloned().unwrap_or(stand_in).into_dispatch(),
        epilogue_bias.is_some(),
        dtype_code(dtype),
        problem.fast_accum,
    ));
    Some(match (bias, epilogue_bias) {
        (Some(b), None) => y + b.clone().cast(burn::tensor::FloatDType::from(dtype)).reshape([1, n]),
        _ => y,
    })
}
