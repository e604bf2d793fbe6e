//! The CubeCL kernel of the per-token FP8 quantisation: one cube per row, the row's largest
//! magnitude reduced over the cube, then each unit encodes groups of four values into one
//! i32, with the host encoder's integer algorithm (`super::e4m3_rne`).

use burn::backend::{backend_extension, tensor::FloatTensor, tensor::IntTensor, Backend, Dispatch};
use burn::tensor::{DType, Int, Shape, Tensor as BTensor};
use burn_cubecl::{cubecl, kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeBackend};
use cubecl::ir::ElemType;

use crate::elem_type;
use crate::rows::{cube_grid, cube_max};
use cubecl::prelude::*;

/// Units per row.
const UNITS: usize = 256;

/// `v >> s` rounded to nearest, ties to even (`1 <= s <= 24`).
#[cube]
fn rne_shift(v: u32, s: u32) -> u32 {
    let keep = v >> s;
    let rem = v & ((1u32 << s) - 1);
    let half = 1u32 << (s - 1);
    let mut up = 0u32;
    if rem > half || (rem == half && (keep & 1) == 1) {
        up = 1;
    }
    keep + up
}

/// e4m3fn code of `q` (`super::e4m3_rne`).
#[cube]
fn e4m3_code(q: f32) -> u32 {
    let bits = u32::reinterpret(q);
    let a = bits & 0x7FFF_FFFF;
    let mut out = 0x7Fu32;
    if a <= 0x7F80_0000 {
        let expb = a >> 23;
        let mant = (a & 0x7F_FFFF) | 0x80_0000;
        let mut code = 0u32;
        if expb < 121 {
            // Below e4m3's smallest normal (2^-6): multiples of 2^-9.
            let s = 141 - expb;
            if s <= 24 {
                code = rne_shift(mant, s);
            }
        } else {
            let mut r = rne_shift(mant, 20);
            let mut e = expb;
            if r == 16 {
                e += 1;
                r = 8;
            }
            let biased = e - 120;
            if biased > 15 || (biased == 15 && r == 15) {
                code = 0x7E;
            } else {
                code = (biased << 3) | (r - 8);
            }
        }
        out = ((bits >> 31) << 7) | u32::min(code, 0x7E);
    }
    out
}

/// `x`: `rows` contiguous rows of `groups` vectors of four values (`N` is 4 at the launch); `codes` `[rows, groups]`,
/// `scales` `[rows]`. Each unit reads whole vectors (8 bytes of bf16) and encodes one into one
/// i32: the first version read single values, four times the load instructions, and its
/// encoding loop's reads of four consecutive values per unit were strided across the warp.
#[cube(launch, address_type = "dynamic")]
fn quantize_fp8_rows_kernel<F: Float, N: Size>(x: &Tensor<Vector<F, N>>, codes: &mut Tensor<i32>, scales: &mut Tensor<f32>, rows: u32, groups: u32, #[define(F)] _dtype: ElemType) {
    let row = CUBE_POS;
    if row >= rows as usize {
        terminate!();
    }
    let g = groups as usize;
    let base = row * g;
    let tid = UNIT_POS as usize;
    let mut m = 0.0f32;
    let mut i = tid;
    while i < g {
        let v = Vector::<f32, N>::cast_from(x[base + i]);
        #[unroll]
        for k in 0..4usize {
            m = f32::max(m, f32::abs(v.extract(k)));
        }
        i += UNITS;
    }
    let absmax = cube_max(m, UNITS);
    // The smallest power of two 2^e with absmax <= 448 · 2^e, as biased exponents.
    let mut scale = 0.0f32;
    let mut inv = 0.0f32;
    if absmax >= 7.888_609e-31 {
        let bits = u32::reinterpret(f32::min(absmax, 3.402_823_5e38));
        let mut ebias = (bits >> 23) - 8;
        if (bits & 0x7F_FFFF) > 0x60_0000 {
            ebias += 1;
        }
        scale = f32::reinterpret(ebias << 23);
        inv = f32::reinterpret((254 - ebias) << 23);
    }
    if tid == 0 {
        scales[row] = scale;
    }
    let mut j = tid;
    while j < g {
        let v = Vector::<f32, N>::cast_from(x[base + j]);
        let mut word = 0u32;
        #[unroll]
        for k in 0..4usize {
            word |= e4m3_code(v.extract(k) * inv) << (8 * k as u32);
        }
        codes[base + j] = i32::reinterpret(word);
        j += UNITS;
    }
}

/// The CubeCL half of the backend trait: the same body serves WGSL, SPIR-V and CUDA.
#[backend_extension(Cube)]
pub trait ActQuantKernels: Backend {
    /// `(codes [M, K/4] i32, scales [M] f32)` of `x` `[M, K]`.
    fn quantize_fp8_rows(x: FloatTensor<Self>) -> (IntTensor<Self>, FloatTensor<Self>);
}

impl ActQuantKernels for CubeBackend {
    fn quantize_fp8_rows(x: CubeTensor) -> (CubeTensor, CubeTensor) {
        let x = into_contiguous(x);
        let dims = x.meta.shape().clone();
        let (rows, cols) = (dims[0], dims[1]);
        // The kernel reads vectors of four values (launched with vector size 4 below).
        assert!(cols % 4 == 0, "quantize_fp8_rows: row length {cols} is not a multiple of 4");
        let client = x.client.clone();
        let codes = empty_device_contiguous_dtype(client.clone(), x.device.clone(), Shape::new([rows, cols / 4]), DType::I32);
        let scales = empty_device_contiguous_dtype(client.clone(), x.device.clone(), Shape::new([rows]), DType::F32);
        let address = [x.required_address_type(), codes.required_address_type()].into_iter().max().unwrap_or_default();
        let dtype = x.dtype;
        quantize_fp8_rows_kernel::launch(
            &client,
            cube_grid(rows),
            CubeDim::new_1d(UNITS as u32),
            address,
            4,
            x.into_tensor_arg(),
            codes.clone().into_tensor_arg(),
            scales.clone().into_tensor_arg(),
            rows as u32,
            (cols / 4) as u32,
            elem_type(dtype),
        );
        (codes, scales)
    }
}

pub fn quantize_fp8_rows(x: BTensor<2>) -> (BTensor<2, Int>, BTensor<1>) {
    let (codes, scales) = <Dispatch as ActQuantKernels>::quantize_fp8_rows(x.into_dispatch());
    (BTensor::from_dispatch(codes), BTensor::from_dispatch(scales))
}
