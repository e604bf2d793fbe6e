//! The CubeCL kernel of the temporal-conv combine: one thread per output vector of channels,
//! f32 sums.

use burn::backend::{backend_extension, tensor::FloatTensor, Backend, Dispatch};
use burn::tensor::Tensor as BTensor;
use burn_cubecl::{cubecl, kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeBackend};
use cubecl::ir::ElemType;

use crate::elem_type;
use crate::rows::{gcd, spaced_rows};
use cubecl::{calculate_cube_count_elemwise, prelude::*};

/// `s` `[B, F, T, D]` (rows `ss` apart), `p` `[B, F, T, 3D]` (rows `sp` apart), `left0`
/// `[B, T, D]` when `has_left` is 1, `out` contiguous, all in vectors of `N` channels
/// (`dv = D / N`; strides in vectors too): one thread per output vector.
#[cube(launch, address_type = "dynamic")]
fn temporal_combine_kernel<F: Float, N: Size>(
    s: &Tensor<Vector<F, N>>,
    p: &Tensor<Vector<F, N>>,
    left0: &Tensor<Vector<F, N>>,
    out: &mut Tensor<Vector<F, N>>,
    frames: u32,
    tokens: u32,
    dv: u32,
    ss: u32,
    sp: u32,
    has_left: u32,
    #[define(F)] _dtype: ElemType,
) {
    if ABSOLUTE_POS >= out.len() {
        terminate!();
    }
    let (frames, t, d) = (frames as usize, tokens as usize, dv as usize);
    let c = ABSOLUTE_POS % d;
    let row = ABSOLUTE_POS / d;
    let tok = row % t;
    let bf = row / t;
    let fr = bf % frames;
    let bb = bf / frames;
    // Row (b, f, tok) of p starts at row·sp; a frame step is T·sp.
    let base = row * sp as usize;
    let step = t * sp as usize;
    let mut acc = Vector::<f32, N>::cast_from(s[row * ss as usize + c]) + Vector::<f32, N>::cast_from(p[base + d + c]);
    if fr > 0 {
        acc += Vector::<f32, N>::cast_from(p[base - step + c]);
    } else if has_left == 1 {
        acc += Vector::<f32, N>::cast_from(left0[(bb * t + tok) * d + c]);
    }
    if fr + 1 < frames {
        acc += Vector::<f32, N>::cast_from(p[base + step + 2 * d + c]);
    }
    out[ABSOLUTE_POS] = Vector::<F, N>::cast_from(acc);
}

/// The CubeCL half of the backend trait: the same body serves WGSL, SPIR-V and CUDA.
#[backend_extension(Cube)]
pub trait TemporalKernels: Backend {
    /// `has_left` false: `left0` is an unused stand-in.
    fn temporal_combine(s: FloatTensor<Self>, p: FloatTensor<Self>, left0: FloatTensor<Self>, has_left: bool) -> FloatTensor<Self>;
}

impl TemporalKernels for CubeBackend {
    fn temporal_combine(s: CubeTensor, p: CubeTensor, left0: CubeTensor, has_left: bool) -> CubeTensor {
        let dtype = s.dtype;
        // s and p are read where their rows are (CUDA pitches them); left0 is one small frame.
        let ((s, ss), (p, sp), left0) = (spaced_rows(s), spaced_rows(p), into_contiguous(left0));
        let client = s.client.clone();
        let out = empty_device_contiguous_dtype(client.clone(), s.device.clone(), s.meta.shape().clone(), dtype);
        let dims = s.meta.shape().clone();
        let (frames, tokens, d) = (dims[1], dims[2], dims[3]);
        let vector = crate::vector_width(&s, gcd(gcd(d, ss), sp));
        let n = dims.num_elements() / vector;
        let cube_dim = CubeDim::new(&client, n);
        let cube_count = calculate_cube_count_elemwise(&client, n, cube_dim);
        let address = [s.required_address_type(), p.required_address_type(), out.required_address_type()].into_iter().max().unwrap_or_default();
        temporal_combine_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            address,
            vector,
            s.into_tensor_arg(),
            p.into_tensor_arg(),
            left0.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            frames as u32,
            tokens as u32,
            (d / vector) as u32,
            (ss / vector) as u32,
            (sp / vector) as u32,
            has_left as u32,
            elem_type(dtype),
        );
        out
    }
}

pub fn temporal_combine(s: BTensor<4>, p: BTensor<4>, left0: Option<BTensor<3>>) -> BTensor<4> {
    let has_left = left0.is_some();
    let dtype = s.dtype();
    // No left frame: a one-row stand-in the kernel never reads (one row, so it holds a whole
    // vector of channels: WebGPU checks a binding's size against the vector type).
    let d = s.dims()[3];
    let left0 = left0.unwrap_or_else(|| BTensor::<3>::zeros([1, 1, d], (&s.device(), dtype)));
    BTensor::from_dispatch(<Dispatch as TemporalKernels>::temporal_combine(s.into_dispatch(), p.into_dispatch(), left0.into_dispatch(), has_left))
}
