//! W8A8 products on CUDA through cuBLASLt's FP8 GEMM (`matmul::cublas::fp8_linear`).

use std::collections::HashMap;
use std::sync::{Mutex, OnceLock};

use burn::backend::{backend_extension, tensor::FloatTensor, tensor::IntTensor, Backend, Dispatch};
use burn::tensor::{DType, Int, Tensor as BTensor};
use burn_cubecl::{cubecl, kernel::into_contiguous, tensor::CubeTensor, CubeBackend};
use cubecl::cuda::CudaDevice;

use crate::matmul::cublas::{fp8_linear, fp8_plannable, Fp8Problem};
use crate::{dtype_code, DTYPES};

fn cuda_device(device: &burn::tensor::Device) -> Option<CudaDevice> {
    match device.as_dispatch() {
        burn::backend::DispatchDevice::Cube(cubecl::Device::Cuda(d)) => Some(d.clone()),
        _ => None,
    }
}

/// One probe per device: a small FP8 product with bias, planned by cuBLASLt or not.
pub fn tensor_cores(device: &burn::tensor::Device) -> bool {
    static PROBED: OnceLock<Mutex<HashMap<usize, bool>>> = OnceLock::new();
    let Some(dev) = cuda_device(device) else { return false };
    let probed = PROBED.get_or_init(Default::default);
    if let Some(&ok) = probed.lock().ok().as_ref().and_then(|p| p.get(&dev.index)) {
        return ok;
    }
    let ok = fp8_plannable(&dev, Fp8Problem { m: 64, n: 64, k: 64, ld_x: 64, ld_w: 64, out_dtype: dtype_code(DType::BF16), bias: true });
    if let Ok(mut p) = probed.lock() {
        p.insert(dev.index, ok);
    }
    ok
}

#[backend_extension(Cube)]
pub trait Fp8GemmKernels: Backend {
    /// `has_bias` false: `bias` is an unused stand-in. `dtype`: 0 f32, 1 f16, 2 bf16.
    fn fp8_product(x_codes: IntTensor<Self>, x_scale: FloatTensor<Self>, w_codes: IntTensor<Self>, w_scale: FloatTensor<Self>, bias: FloatTensor<Self>, has_bias: bool, dtype: u8) -> FloatTensor<Self>;
}

impl Fp8GemmKernels for CubeBackend {
    fn fp8_product(x_codes: CubeTensor, x_scale: CubeTensor, w_codes: CubeTensor, w_scale: CubeTensor, bias: CubeTensor, has_bias: bool, dtype: u8) -> CubeTensor {
        let dtype = DTYPES[dtype as usize];
        // Row-major codes with unit column stride are taken as they are (pitched rows too).
        let (x_codes, w_codes) = (into_contiguous(x_codes), into_contiguous(w_codes));
        // `product` below planned this problem before calling; only a plan evicted and then
        // refused on the second asking could end here.
        fp8_linear(&x_codes, &x_scale, &w_codes, &w_scale, has_bias.then_some(&bias), dtype)
            .unwrap_or_else(|| panic!("cuBLASLt FP8 GEMM planned earlier could not be enqueued ({:?} · {:?})", x_codes.meta.shape(), w_codes.meta.shape()))
    }
}

/// The cuBLASLt product, or `None` where it does not run (not CUDA, no plan, or operands
/// not in the layouts it reads: the caller then runs the reference). The bias goes into the
/// GEMM's epilogue for f16/bf16 results, and is added in f32 after an f32 one (cuBLASLt's
/// FP8 epilogue takes a 16-bit bias only).
pub fn product(x_codes: &BTensor<2, Int>, x_scale: &BTensor<1>, w_codes: &BTensor<2, Int>, w_scale: &BTensor<1>, bias: Option<&BTensor<1>>, dtype: DType) -> Option<BTensor<2>> {
    let dev = cuda_device(&x_codes.device())?;
    let ([m, kq], [n, _]) = (x_codes.dims(), w_codes.dims());
    let epilogue_bias = bias.filter(|_| dtype != DType::F32);
    if !DTYPES.contains(&dtype) || epilogue_bias.is_some_and(|b| b.dtype() != dtype) || !tensor_cores(&x_codes.device()) {
        return None;
    }
    let problem = Fp8Problem { m, n, k: 4 * kq, ld_x: 4 * kq, ld_w: 4 * kq, out_dtype: dtype_code(dtype), bias: epilogue_bias.is_some() };
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
    ));
    Some(match bias {
        Some(b) if dtype == DType::F32 => y + b.clone().cast(burn::tensor::FloatDType::F32).reshape([1, n]),
        _ => y,
    })
}
