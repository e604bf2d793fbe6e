//! The CubeCL kernels of the NVFP4 activation quantisation: the tensor's largest magnitude by
//! burn's reduction, then one unit per 64 values of a row (one scale word) with the host
//! encoder's integer algorithm (`super::encode_rows`).

use burn::backend::{backend_extension, tensor::FloatTensor, tensor::IntTensor, Backend, Dispatch};
use burn::tensor::{DType, Int, Shape, Tensor as BTensor};
use burn_cubecl::{
    cubecl,
    kernel::into_contiguous,
    ops::numeric::{empty_device_contiguous_dtype, zeros_client},
    tensor::CubeTensor,
    CubeBackend,
};
use cubecl::ir::ElemType;

use super::ScaleLayout;
use crate::elem_type;
use cubecl::{calculate_cube_count_elemwise, prelude::*};

/// `(g, 1/g)` for the tensor maximum `amax` (`super::global_exponent`); `(0, 0)` for zeros.
#[cube]
fn global_scale(amax: f32) -> (f32, f32) {
    let mut g = 0.0f32;
    let mut inv = 0.0f32;
    // 2^-100, and NaN fails the comparison.
    if amax >= 7.888_609e-31 {
        let bits = u32::reinterpret(f32::min(amax, 3.402_823_5e38));
        let mut biased = (bits >> 23) - 11;
        if (bits & 0x7F_FFFF) > 0x28_0000 {
            biased += 1;
        }
        g = f32::reinterpret(biased << 23);
        inv = f32::reinterpret((254 - biased) << 23);
    }
    (g, inv)
}

/// `super::e4m3_value`.
#[cube]
fn e4m3_value(c: u32) -> f32 {
    let mut v = f32::cast_from(c) * 0.001_953_125; // 2^-9
    if c >= 8 {
        v = f32::cast_from(8 + (c & 7)) * f32::reinterpret(((c >> 3) + 117) << 23);
    }
    v
}

/// `super::e4m3_ceil_code`.
#[cube]
fn e4m3_ceil_code(t: f32) -> u32 {
    let bits = u32::reinterpret(t);
    let expb = bits >> 23;
    let mant = bits & 0x7F_FFFF;
    let mut code = 0u32;
    if expb >= 121 {
        let mut e = expb - 120;
        let mut m = (mant + 0xF_FFFF) >> 20;
        if m == 8 {
            e += 1;
            m = 0;
        }
        code = e * 8 + m;
        if e > 15 {
            code = 0x7E;
        }
    } else if expb == 0 {
        if mant > 0 {
            code = 1;
        }
    } else {
        let s = 141 - expb;
        code = 1;
        if s < 24 {
            // (1.mant · 2^23) < 2^24, plus 2^s - 1 < 2^24: no overflow for s < 24.
            code = ((mant | 0x80_0000) + (1u32 << s) - 1) >> s;
        }
    }
    u32::min(code, 0x7E)
}

/// `super::block_scale_code` with `g` and `1/g` given.
#[cube]
fn block_scale_code(amax_b: f32, g: f32, inv: f32) -> u32 {
    let mut c = 0u32;
    if amax_b > 0.0 && g > 0.0 {
        c = e4m3_ceil_code(amax_b * inv * 0.166_666_67);
        if 6.0 * e4m3_value(c) * g < amax_b {
            c = u32::min(c + 1, 0x7E);
        } else if c > 0 {
            if 6.0 * e4m3_value(c - 1) * g >= amax_b {
                c -= 1;
            }
        }
    }
    c
}

/// `super::e2m1_index`, with the sign: the code's nibble.
#[cube]
fn e2m1_nibble(x: f32, v: f32) -> u32 {
    let a = f32::abs(x);
    let mut idx = 0u32;
    if v > 0.0 {
        // Midpoints 0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5 (times v); ties go up from odd i.
        if a > 0.25 * v {
            idx += 1;
        }
        if a >= 0.75 * v {
            idx += 1;
        }
        if a > 1.25 * v {
            idx += 1;
        }
        if a >= 1.75 * v {
            idx += 1;
        }
        if a > 2.5 * v {
            idx += 1;
        }
        if a >= 3.5 * v {
            idx += 1;
        }
        if a > 5.0 * v {
            idx += 1;
        }
    }
    // No sign without a scale: the host encoder writes zero codes when the tensor's global
    // scale is zero (a block's scale is zero only when its values are all zero).
    let mut sign = 0u32;
    if x < 0.0 && v > 0.0 {
        sign = 8;
    }
    sign | idx
}

/// e2m1's magnitude of a three-bit index.
#[cube]
fn e2m1_value(idx: u32) -> f32 {
    let mut v = f32::cast_from(idx) * 0.5;
    if idx >= 4 {
        v = f32::cast_from(idx - 2);
        if idx == 7 {
            v = 6.0;
        }
    }
    v
}

/// The scale code of the 16-value block at `o` (its largest magnitude through
/// [`block_scale_code`]).
#[cube]
fn block_code<F: Float>(x: &Tensor<F>, o: usize, g: f32, inv: f32) -> u32 {
    let mut m = 0.0f32;
    #[unroll]
    for i in 0..16usize {
        m = f32::max(m, f32::abs(f32::cast_from(x[o + i])));
    }
    block_scale_code(m, g, inv)
}

/// One unit per 64 values (`unit = row · groups + q`): four blocks' scales into one word,
/// their codes into eight. `globals`: `[g, g · weight_global, 0]`.
#[cube(launch, address_type = "dynamic")]
fn quantize_kernel<F: Float>(
    x: &Tensor<F>,
    amax: &Tensor<f32>,
    codes: &mut Tensor<i32>,
    scales: &mut Tensor<i32>,
    globals: &mut Tensor<f32>,
    rows: u32,
    groups: u32,
    weight_global: f32,
    #[comptime] tiled: bool,
    #[define(F)] _dtype: ElemType,
) {
    let unit = ABSOLUTE_POS;
    let g_words = groups as usize;
    if unit >= rows as usize * g_words {
        terminate!();
    }
    let (g, inv) = global_scale(amax[0]);
    if unit == 0 {
        globals[0] = g;
        globals[1] = g * weight_global;
        globals[2] = 0.0;
    }
    let mut word = 0u32;
    #[unroll]
    for b in 0..4usize {
        let o = unit * 64 + b * 16;
        let c = block_code(x, o, g, inv);
        word |= c << (8 * b as u32);
        let v = e4m3_value(c) * g;
        #[unroll]
        for h in 0..2usize {
            let mut w = 0u32;
            #[unroll]
            for i in 0..8usize {
                w |= e2m1_nibble(f32::cast_from(x[o + h * 8 + i]), v) << (4 * i as u32);
            }
            codes[unit * 8 + b * 2 + h] = i32::reinterpret(w);
        }
    }
    let mut at = unit;
    if tiled {
        let row = unit / g_words;
        let q = unit % g_words;
        at = ((row / 128) * g_words + q) * 128 + (row % 32) * 4 + (row % 128) / 32;
    }
    scales[at] = i32::reinterpret(word);
}

/// The same units, writing the values the codes stand for.
#[cube(launch, address_type = "dynamic")]
fn fake_quantize_kernel<F: Float>(x: &Tensor<F>, amax: &Tensor<f32>, out: &mut Tensor<F>, units: u32, #[define(F)] _dtype: ElemType) {
    let unit = ABSOLUTE_POS;
    if unit >= units as usize {
        terminate!();
    }
    let (g, inv) = global_scale(amax[0]);
    #[unroll]
    for b in 0..4usize {
        let o = unit * 64 + b * 16;
        let v = e4m3_value(block_code(x, o, g, inv)) * g;
        #[unroll]
        for i in 0..16usize {
            let nib = e2m1_nibble(f32::cast_from(x[o + i]), v);
            let mut y = e2m1_value(nib & 7) * v;
            if nib >= 8 {
                y = -y;
            }
            out[o + i] = F::cast_from(y);
        }
    }
}

/// The CubeCL half of the backend trait: the same body serves WGSL, SPIR-V and CUDA.
#[backend_extension(Cube)]
pub trait Nvfp4Kernels: Backend {
    fn nvfp4_quantize_rows(x: FloatTensor<Self>, amax: FloatTensor<Self>, tiled: bool, weight_global: f32) -> (IntTensor<Self>, IntTensor<Self>, FloatTensor<Self>);
    fn nvfp4_fake_quantize_rows(x: FloatTensor<Self>, amax: FloatTensor<Self>) -> FloatTensor<Self>;
}

impl Nvfp4Kernels for CubeBackend {
    fn nvfp4_quantize_rows(x: CubeTensor, amax: CubeTensor, tiled: bool, weight_global: f32) -> (CubeTensor, CubeTensor, CubeTensor) {
        let (x, amax) = (into_contiguous(x), into_contiguous(amax));
        let dims = x.meta.shape().clone();
        let (rows, cols) = (dims[0], dims[1]);
        let groups = cols / super::GROUP;
        let client = x.client.clone();
        let layout = if tiled { ScaleLayout::Tiled } else { ScaleLayout::RowMajor };
        let words = super::scale_words(rows, groups, layout);
        let codes = empty_device_contiguous_dtype(client.clone(), x.device.clone(), Shape::new([rows, cols / 8]), DType::I32);
        // Padding rows of the tiled layout keep zero scales.
        let scales = if words > rows * groups {
            zeros_client(client.clone(), x.device.clone(), Shape::new([words]), DType::I32)
        } else {
            empty_device_contiguous_dtype(client.clone(), x.device.clone(), Shape::new([words]), DType::I32)
        };
        let globals = empty_device_contiguous_dtype(client.clone(), x.device.clone(), Shape::new([3]), DType::F32);
        let units = rows * groups;
        let cube_dim = CubeDim::new(&client, units);
        let address = [x.required_address_type(), codes.required_address_type()].into_iter().max().unwrap_or_default();
        let dtype = x.dtype;
        quantize_kernel::launch(
            &client,
            calculate_cube_count_elemwise(&client, units, cube_dim),
            cube_dim,
            address,
            x.into_tensor_arg(),
            amax.into_tensor_arg(),
            codes.clone().into_tensor_arg(),
            scales.clone().into_tensor_arg(),
            globals.clone().into_tensor_arg(),
            rows as u32,
            groups as u32,
            weight_global,
            tiled,
            elem_type(dtype),
        );
        (codes, scales, globals)
    }

    fn nvfp4_fake_quantize_rows(x: CubeTensor, amax: CubeTensor) -> CubeTensor {
        let (x, amax) = (into_contiguous(x), into_contiguous(amax));
        let dims = x.meta.shape().clone();
        let client = x.client.clone();
        let out = empty_device_contiguous_dtype(client.clone(), x.device.clone(), dims.clone(), x.dtype);
        let units = dims.num_elements() / super::GROUP;
        let cube_dim = CubeDim::new(&client, units);
        let address = [x.required_address_type(), out.required_address_type()].into_iter().max().unwrap_or_default();
        let dtype = x.dtype;
        fake_quantize_kernel::launch(
            &client,
            calculate_cube_count_elemwise(&client, units, cube_dim),
            cube_dim,
            address,
            x.into_tensor_arg(),
            amax.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            units as u32,
            elem_type(dtype),
        );
        out
    }
}

/// The tensor's largest magnitude as a one-element f32 tensor on its device.
fn amax_of(x: &BTensor<2>) -> BTensor<1> {
    let m = x.clone().abs().max();
    if m.dtype() == DType::F32 {
        m
    } else {
        m.cast(burn::tensor::FloatDType::F32)
    }
}

pub fn quantize_rows(x: BTensor<2>, layout: ScaleLayout, weight_global: f32) -> (BTensor<2, Int>, BTensor<1, Int>, BTensor<1>) {
    let amax = amax_of(&x);
    let (codes, scales, globals) =
        <Dispatch as Nvfp4Kernels>::nvfp4_quantize_rows(x.into_dispatch(), amax.into_dispatch(), layout == ScaleLayout::Tiled, weight_global);
    (BTensor::from_dispatch(codes), BTensor::from_dispatch(scales), BTensor::from_dispatch(globals))
}

pub fn fake_quantize_rows(x: BTensor<2>) -> BTensor<2> {
    let amax = amax_of(&x);
    BTensor::from_dispatch(<Dispatch as Nvfp4Kernels>::nvfp4_fake_quantize_rows(x.into_dispatch(), amax.into_dispatch()))
}
