//! The CubeCL kernel of the fused attention softmax: one cube of [`UNITS`] units per query
//! row (its `L` keys: 300 caption tokens at full size), in f32: the row's max, the sum of
//! exponentials, then one write per probability in the output dtype.

use burn::backend::{backend_extension, tensor::FloatTensor, Backend, Dispatch};
use burn::tensor::{DType, Tensor as BTensor};
use burn_cubecl::{cubecl, kernel::into_contiguous, tensor::CubeTensor, CubeBackend};
use cubecl::ir::ElemType;

use crate::{dtype_code, elem_type, DTYPES};
use crate::rows::{cube_max, cube_sum, row_launch, RowLaunch};
use cubecl::prelude::*;

/// Units per row: rows are short (hundreds of keys), so fewer units and reduction steps.
const UNITS: usize = 64;

/// `x`: `rows` rows of `l` f32 logits, `xs` apart; `out` the same rows contiguous; `bias`
/// `[R / rows_per_bias, L]` f32 when `has_bias` is 1 (else one unused value).
#[cube(launch, address_type = "dynamic")]
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
    #[define(F)] _dtype: ElemType,
) {
    let row = CUBE_POS;
    if row >= rows as usize {
        terminate!();
    }
    let l = l as usize;
    let tid = UNIT_POS as usize;
    let base = row * xs as usize;
    let obase = row * l;
    let bbase = (row / rows_per_bias as usize) * l;
    let mut m = f32::new(-3.0e38);
    let mut i = tid;
    while i < l {
        let mut v = x[base + i] * scale;
        if has_bias == 1 {
            v += bias[bbase + i];
        }
        m = f32::max(m, v);
        i += UNITS;
    }
    let max = cube_max(m, UNITS);
    let mut s = 0.0f32;
    let mut j = tid;
    while j < l {
        let mut v = x[base + j] * scale;
        if has_bias == 1 {
            v += bias[bbase + j];
        }
        s += f32::exp(v - max);
        j += UNITS;
    }
    let inv = 1.0f32 / cube_sum(s, UNITS);
    let mut k = tid;
    while k < l {
        let mut v = x[base + k] * scale;
        if has_bias == 1 {
            v += bias[bbase + k];
        }
        out[obase + k] = F::cast_from(f32::exp(v - max) * inv);
        k += UNITS;
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
        let RowLaunch { x, out, d, rows, x_stride, count, dim, address } = row_launch(logits, UNITS, dtype);
        let bias = into_contiguous(bias);
        let client = x.client.clone();
        attention_probs_kernel::launch(
            &client,
            count,
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
