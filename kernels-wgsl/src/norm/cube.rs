//! CubeCL kernels of the fused normalisations: one cube of [`THREADS`] units per row, each
//! unit striding over the row's `D` values; f32 sums reduced through shared memory (mean,
//! then the centred variance for LayerNorm, in two passes for the same accuracy as the
//! reference's), then one write per value.

use burn::backend::{backend_extension, tensor::FloatTensor, Backend, Dispatch};
use burn::tensor::Tensor as BTensor;
use burn_cubecl::{cubecl, kernel::into_contiguous, tensor::CubeTensor, CubeBackend};
use cubecl::ir::ElemType;

use crate::elem_type;
use crate::rows::{cube_sum, row_launch, RowLaunch};
use cubecl::prelude::*;

/// Units per row: WebGPU's default limit on a workgroup, and enough to stream a 2,240-value row.
const THREADS: usize = 256;

/// The sum of a vector's lanes.
#[cube]
fn lanes_sum<N: Size>(v: Vector<f32, N>) -> f32 {
    let mut total = 0.0f32;
    #[unroll]
    for l in 0..v.vector_size() {
        total += v.extract(l);
    }
    total
}

/// `x`: `rows` rows of `dv` vectors of `N` channels, `xs` vectors apart; `out` the same rows
/// contiguous; `scale`/`shift` `[B·T, D]` with row `r` of sample `r / n` using row
/// `(r / n)·t + (r mod n) mod t`.
#[cube(launch, address_type = "dynamic")]
fn layer_norm_modulate_kernel<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    scale: &Tensor<Vector<F, N>>,
    shift: &Tensor<Vector<F, N>>,
    out: &mut Tensor<Vector<F, N>>,
    rows: u32,
    dv: u32,
    xs: u32,
    n: u32,
    t: u32,
    eps: f32,
    #[define(F)] _dtype: ElemType,
) {
    let d = dv as usize;
    let row = CUBE_POS;
    if row >= rows as usize {
        terminate!();
    }
    let tid = UNIT_POS as usize;
    let per_sample = n as usize;
    let rows_t = t as usize;
    let base = row * xs as usize;
    let obase = row * d;
    let srow = (row / per_sample) * rows_t + (row % per_sample) % rows_t;
    let sbase = srow * d;
    let width = f32::cast_from(d * x[base].vector_size());
    let mut sum = Vector::<f32, N>::new(0.0);
    let mut i = tid;
    while i < d {
        sum += Vector::<f32, N>::cast_from(x[base + i]);
        i += THREADS;
    }
    let mean = cube_sum(lanes_sum::<N>(sum), THREADS) / width;
    let m = Vector::<f32, N>::new(mean);
    let mut sq = Vector::<f32, N>::new(0.0);
    let mut j = tid;
    while j < d {
        let c = Vector::<f32, N>::cast_from(x[base + j]) - m;
        sq += c * c;
        j += THREADS;
    }
    let var = cube_sum(lanes_sum::<N>(sq), THREADS) / width;
    let inv = Vector::<f32, N>::new(1.0f32 / f32::sqrt(var + eps));
    let one = Vector::<f32, N>::new(1.0);
    let mut k = tid;
    while k < d {
        let y = (Vector::<f32, N>::cast_from(x[base + k]) - m) * inv;
        out[obase + k] = Vector::<F, N>::cast_from(y * (one + Vector::<f32, N>::cast_from(scale[sbase + k])) + Vector::<f32, N>::cast_from(shift[sbase + k]));
        k += THREADS;
    }
}

#[cube(launch, address_type = "dynamic")]
fn rms_norm_kernel<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    weight: &Tensor<Vector<F, N>>,
    out: &mut Tensor<Vector<F, N>>,
    rows: u32,
    dv: u32,
    xs: u32,
    eps: f32,
    #[define(F)] _dtype: ElemType,
) {
    let d = dv as usize;
    if CUBE_POS >= rows as usize {
        terminate!();
    }
    let base = CUBE_POS * xs as usize;
    let obase = CUBE_POS * d;
    let tid = UNIT_POS as usize;
    let width = f32::cast_from(d * x[base].vector_size());
    let mut sq = Vector::<f32, N>::new(0.0);
    let mut i = tid;
    while i < d {
        let v = Vector::<f32, N>::cast_from(x[base + i]);
        sq += v * v;
        i += THREADS;
    }
    let ms = cube_sum(lanes_sum::<N>(sq), THREADS) / width;
    let inv = Vector::<f32, N>::new(1.0f32 / f32::sqrt(ms + eps));
    let mut k = tid;
    while k < d {
        out[obase + k] = Vector::<F, N>::cast_from(Vector::<f32, N>::cast_from(x[base + k]) * inv * Vector::<f32, N>::cast_from(weight[k]));
        k += THREADS;
    }
}

/// The CubeCL half of the backend trait: the same body serves WGSL, SPIR-V and CUDA.
#[backend_extension(Cube)]
pub trait NormKernels: Backend {
    fn layer_norm_modulate(x: FloatTensor<Self>, scale: FloatTensor<Self>, shift: FloatTensor<Self>, n: usize, t: usize, eps: f32) -> FloatTensor<Self>;
    fn rms_norm(x: FloatTensor<Self>, weight: FloatTensor<Self>, eps: f32) -> FloatTensor<Self>;
}

impl NormKernels for CubeBackend {
    fn layer_norm_modulate(x: CubeTensor, scale: CubeTensor, shift: CubeTensor, n: usize, t: usize, eps: f32) -> CubeTensor {
        let dtype = x.dtype;
        let launch = row_launch(x, THREADS, dtype);
        let vector = launch.vector();
        let RowLaunch { x, out, d, rows, x_stride, count, dim, address } = launch;
        let client = x.client.clone();
        layer_norm_modulate_kernel::launch(
            &client,
            count,
            dim,
            address,
            vector,
            x.into_tensor_arg(),
            into_contiguous(scale).into_tensor_arg(),
            into_contiguous(shift).into_tensor_arg(),
            out.clone().into_tensor_arg(),
            rows as u32,
            (d / vector) as u32,
            (x_stride / vector) as u32,
            n as u32,
            t as u32,
            eps,
            elem_type(dtype),
        );
        out
    }

    fn rms_norm(x: CubeTensor, weight: CubeTensor, eps: f32) -> CubeTensor {
        let dtype = x.dtype;
        let launch = row_launch(x, THREADS, dtype);
        let vector = launch.vector();
        let RowLaunch { x, out, d, rows, x_stride, count, dim, address } = launch;
        let client = x.client.clone();
        let weight = into_contiguous(weight);
        rms_norm_kernel::launch(
            &client,
            count,
            dim,
            address,
            vector,
            x.into_tensor_arg(),
            weight.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            rows as u32,
            (d / vector) as u32,
            (x_stride / vector) as u32,
            eps,
            elem_type(dtype),
        );
        out
    }
}

pub fn layer_norm_modulate(x: BTensor<3>, scale: BTensor<3>, shift: BTensor<3>, eps: f64) -> BTensor<3> {
    let [_, n, _] = x.dims();
    let t = scale.dims()[1];
    BTensor::from_dispatch(<Dispatch as NormKernels>::layer_norm_modulate(x.into_dispatch(), scale.into_dispatch(), shift.into_dispatch(), n, t, eps as f32))
}

pub fn rms_norm<const D: usize>(x: BTensor<D>, weight: BTensor<1>, eps: f64) -> BTensor<D> {
    BTensor::from_dispatch(<Dispatch as NormKernels>::rms_norm(x.into_dispatch(), weight.into_dispatch(), eps as f32))
}
