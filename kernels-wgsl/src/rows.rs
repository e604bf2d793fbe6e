//! What the row-wise kernels share (`norm`: one cube per row; `softmax`: several short rows
//! per cube): units striding over a row, f32 reductions through shared memory; and what other
//! kernels borrow from them: rows read where CUDA's pitched layout puts them (`temporal`), a
//! 2-D grid of cubes (`glu_conv`, `linear_attention`).

use burn::tensor::DType;
use burn_cubecl::{cubecl, kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor};
use cubecl::prelude::*;

/// The sum (or, with `max`, the maximum) of each unit's `v` over its group of `group`
/// consecutive units (a power of two dividing the cube's `units` = CUBE_DIM; a row of the
/// softmax, or the whole cube), in every unit of the group, in tree order. Every unit of the
/// cube must call it. Its own shared array per call: a `&mut Shared` parameter fails CubeCL
/// 0.11's IR verification.
#[cube]
pub fn group_reduce(v: f32, group: usize, #[comptime] units: usize, #[comptime] max: bool) -> f32 {
    let mut shared = Shared::<[f32]>::new_slice(units);
    let tid = UNIT_POS as usize;
    let lane = tid % group;
    shared[tid] = v;
    sync_cube();
    // A runtime value: a `let mut` from a constant stays comptime and cannot be updated in
    // the loop.
    let mut stride = group / 2;
    while stride > 0 {
        if lane < stride {
            let (a, b) = (shared[tid], shared[tid + stride]);
            shared[tid] = if max { f32::max(a, b) } else { a + b };
        }
        sync_cube();
        stride /= 2;
    }
    shared[tid - lane]
}

/// [`group_reduce`] over the whole cube.
#[cube]
fn cube_reduce(v: f32, #[comptime] units: usize, #[comptime] max: bool) -> f32 {
    group_reduce(v, CUBE_DIM as usize, units, max)
}

#[cube]
pub fn cube_sum(v: f32, #[comptime] units: usize) -> f32 {
    cube_reduce(v, units, false)
}

#[cube]
pub fn cube_max(v: f32, #[comptime] units: usize) -> f32 {
    cube_reduce(v, units, true)
}

/// A launch of one cube of `units` units per row of `x` (any rank, viewed as `rows` rows of
/// `d` values, `x_stride` apart), the output contiguous in `x`'s shape and `out_dtype`. Rows
/// that are evenly spaced with unit stride inside (CUDA's pitched allocations pad each row
/// to 256 bytes) are read where they are; any other layout is copied to contiguous first.
/// Over 65,535 rows (WebGPU's limit per dispatch dimension) the cubes form a 2-D grid;
/// kernels return at once for `CUBE_POS >= rows`.
pub struct RowLaunch {
    pub x: CubeTensor,
    pub out: CubeTensor,
    pub d: usize,
    pub rows: usize,
    pub x_stride: usize,
    pub count: CubeCount,
    pub dim: CubeDim,
    pub address: AddressType,
}

pub fn row_launch(x: CubeTensor, units: usize, out_dtype: DType) -> RowLaunch {
    let (x, x_stride) = spaced_rows(x);
    let dims = x.meta.shape().clone();
    let d = dims.last().copied().unwrap_or(1);
    let rows = dims.num_elements() / d.max(1);
    let out = empty_device_contiguous_dtype(x.client.clone(), x.device.clone(), dims, out_dtype);
    let address = [x.required_address_type(), out.required_address_type()].into_iter().max().unwrap_or_default();
    RowLaunch { x, out, d, rows, x_stride, count: cube_grid(rows), dim: CubeDim::new_1d(units as u32), address }
}

impl RowLaunch {
    /// The widest channel vector that divides both a row and the row stride.
    pub fn vector(&self) -> usize {
        crate::vector_width(&self.x, gcd(self.d, self.x_stride))
    }
}

/// `cubes` cubes, one per `CUBE_POS`: a 2-D grid past 65,535 (WebGPU's limit per dispatch
/// dimension), so kernels return at once for `CUBE_POS` past their count.
pub fn cube_grid(cubes: usize) -> CubeCount {
    const MAX_PER_DIM: usize = 65_535;
    // As few rows as fit, each as short as that allows: (65,535, 2) for 81,920 cubes would
    // launch 49,150 that leave at once.
    let gy = cubes.div_ceil(MAX_PER_DIM).max(1);
    let gx = cubes.div_ceil(gy).max(1);
    CubeCount::Static(gx as u32, gy as u32, 1)
}

/// `x` as it is when its rows are evenly spaced with unit stride inside, else a contiguous
/// copy; with the distance between consecutive rows.
pub fn spaced_rows(x: CubeTensor) -> (CubeTensor, usize) {
    match row_stride(&x) {
        Some(stride) => (x, stride),
        None => {
            let x = into_contiguous(x);
            let d = x.meta.shape().last().copied().unwrap_or(1);
            (x, d)
        }
    }
}

/// The distance between consecutive rows of `x` when its rows are evenly spaced with unit
/// stride inside (then row `r` starts at `r·stride`), else `None`.
fn row_stride(x: &CubeTensor) -> Option<usize> {
    if x.meta.tiling != Default::default() {
        return None;
    }
    let shape = x.meta.shape();
    let strides = x.meta.strides();
    let r = shape.num_dims();
    let d = *shape.last()?;
    if d > 1 && strides[r - 1] != 1 {
        return None;
    }
    // Leading dims of size 1 take no step; the others must each step over the next whole.
    let lead: Vec<usize> = (0..r - 1).filter(|&i| shape[i] > 1).collect();
    let Some(&inner) = lead.last() else { return Some(d.max(1)) };
    let stride = strides[inner];
    if stride < d {
        return None;
    }
    let mut expect = stride;
    for &i in lead.iter().rev() {
        if strides[i] != expect {
            return None;
        }
        expect *= shape[i];
    }
    Some(stride)
}

/// The greatest common divisor (a vector width must divide both a row and its stride).
pub fn gcd(a: usize, b: usize) -> usize {
    if b == 0 { a } else { gcd(b, a % b) }
}
