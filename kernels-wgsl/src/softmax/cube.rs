//! The CubeCL kernel of the fused attention softmax, in f32: each query row's max over its
//! `L` keys, the sum of exponentials, then one write per probability in the output dtype.
//! Rows are short (the caption's real tokens after trimming: tens at 480p with a short
//! prompt, at most 300), so a cube of [`UNITS`] units takes `UNITS / U` rows, `U` units a
//! row (`units_per_row`: about eight keys a unit): one cube of 64 units per row left most
//! units idle through two shared-memory reductions for rows of tens of keys.

use burn::backend::{backend_extension, tensor::FloatTensor, Backend, Dispatch};
use burn::tensor::{DType, Tensor as BTensor};
use burn_cubecl::{cubecl, kernel::into_contiguous, tensor::CubeTensor, CubeBackend};
use cubecl::ir::ElemType;

use crate::{dtype_code, elem_type, DTYPES};
use crate::rows::{cube_grid, group_reduce, row_launch, RowLaunch};
use cubecl::prelude::*;

/// Units per cube.
const UNITS: usize = crate::WEBGPU_MAX_UNITS;

/// Units per row for rows of `l` keys: a power of two, about eight keys a unit, 1 to 64.
pub fn units_per_row(l: usize) -> usize {
    l.div_ceil(8).next_power_of_two().clamp(1, 64)
}

/// Key `at` of a row, scaled and masked (`bias` at `bat` when `has_bias` is 1): read in each
/// of the kernel's three passes.
#[cube]
fn logit(x: &Tensor<f32>, bias: &Tensor<f32>, at: usize, bat: usize, scale: f32, has_bias: u32) -> f32 {
    let mut v = x[at] * scale;
    if has_bias == 1 {
        v += bias[bat];
    }
    v
}

/// `x`: `rows` rows of `l` f32 logits, `xs` apart; `out` the same rows contiguous; `bias`
/// `[R / rows_per_bias, L]` f32 when `has_bias` is 1 (else one unused value). Row
/// `CUBE_POS · (UNITS / upr) + UNIT_POS / upr`, its keys strided over `upr` units.
#[cube(launch, address_type = "dynamic")]
#[allow(clippy::too_many_arguments)]
fn attention_probs_kernel<F: Float>(
    x: &Tensor<f32>,
    bias: &Tensor<f32>,
    out: &mut Tensor<F>,
    rows: u32,
    l: u32,
    xs: u32,
    scale: f32,
    rows_per_bias: u32,
    has_bias: u32,
    upr: u32,
    #[define(F)] _dtype: ElemType,
) {
    let upr = upr as usize;
    let per_cube = UNITS / upr;
    // Whole cubes past the last row leave at once; in the last cube, units past it stay for
    // the reductions.
    if CUBE_POS * per_cube >= rows as usize {
        terminate!();
    }
    let tid = UNIT_POS as usize;
    let lane = tid % upr;
    let row = CUBE_POS * per_cube + tid / upr;
    let live = row < rows as usize;
    let l = l as usize;
    let base = row * xs as usize;
    let obase = row * l;
    let bbase = (row / rows_per_bias as usize) * l;
    let mut m = f32::new(-3.0e38);
    if live {
        let mut i = lane;
        while i < l {
            let v = logit(x, bias, base + i, bbase + i, scale, has_bias);
            m = f32::max(m, v);
            i += upr;
        }
    }
    let max = group_reduce(m, upr, UNITS, true);
    let mut s = 0.0f32;
    if live {
        let mut j = lane;
        while j < l {
            let v = logit(x, bias, base + j, bbase + j, scale, has_bias);
            s += f32::exp(v - max);
            j += upr;
        }
    }
    let inv = 1.0f32 / group_reduce(s, upr, UNITS, false);
    if live {
        let mut k = lane;
        while k < l {
            let v = logit(x, bias, base + k, bbase + k, scale, has_bias);
            out[obase + k] = F::cast_from(f32::exp(v - max) * inv);
            k += upr;
        }
    }
}

/// The CubeCL half of the backend trait: the same body serves WGSL, SPIR-V and CUDA.
#[backend_extension(Cube)]
pub trait SoftmaxKernels: Backend {
    /// `dtype`: 0 f32, 1 f16, 2 bf16 (an integer crosses the extension's dispatch);
    /// `rows_per_bias` 0 means no bias (`bias` unused).
    fn attention_probs(logits: FloatTensor<Self>, bias: FloatTensor<Self>, scale: f32, rows_per_bias: usize, dtype: u8) -> FloatTensor<Self>;
}

impl SoftmaxKernels for CubeBackend {
    fn attention_probs(logits: CubeTensor, bias: CubeTensor, scale: f32, rows_per_bias: usize, dtype: u8) -> CubeTensor {
        let dtype = DTYPES[dtype as usize];
        assert!(logits.dtype == DType::F32 && bias.dtype == DType::F32, "attention_probs: f32 logits and bias");
        let RowLaunch { x, out, d, rows, x_stride, dim, address, .. } = row_launch(logits, UNITS, dtype);
        let upr = units_per_row(d);
        let bias = into_contiguous(bias);
        let client = x.client.clone();
        attention_probs_kernel::launch(
            &client,
            cube_grid(rows.div_ceil(UNITS / upr)),
            dim,
            address,
            x.into_tensor_arg(),
            bias.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            rows as u32,
            d as u32,
            x_stride as u32,
            scale,
            rows_per_bias.max(1) as u32,
            (rows_per_bias > 0) as u32,
            upr as u32,
            elem_type(dtype),
        );
        out
    }
}

pub fn attention_probs(logits: BTensor<4>, scale: f64, bias: Option<&BTensor<4>>, dtype: DType) -> BTensor<4> {
    let [_, h, n, _] = logits.dims();
    let code = dtype_code(dtype);
    // No bias: a one-value stand-in the kernel never reads.
    let (bias, rows_per_bias) = match bias {
        Some(b) => (b.clone(), h * n),
        None => (BTensor::<4>::zeros([1, 1, 1, 1], (&logits.device(), DType::F32)), 0),
    };
    BTensor::from_dispatch(<Dispatch as SoftmaxKernels>::attention_probs(logits.into_dispatch(), bias.into_dispatch(), scale as f32, rows_per_bias, code))
}
