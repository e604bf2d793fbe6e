//! CubeCL kernel of the fused channel RMS norm: one unit per vector of `N` consecutive
//! positions of one sample, looping over the channels (`S` apart, so a warp's loads are
//! contiguous), f32 arithmetic whatever the storage dtype.

use burn::backend::{backend_extension, tensor::FloatTensor, Backend, Dispatch};
use burn::tensor::{DType, Tensor as BTensor};
use burn_cubecl::{cubecl, kernel::into_contiguous, ops::numeric::empty_device_contiguous_dtype, tensor::CubeTensor, CubeBackend};
use cubecl::ir::ElemType;

use crate::elem_type;
use cubecl::{calculate_cube_count_elemwise, prelude::*};

#[cube(launch, address_type = "dynamic")]
fn rms_norm_channels_kernel<F: Float, N: Size>(
    x: &Tensor<Vector<F, N>>,
    scale: &Tensor<f32>,
    out: &mut Tensor<Vector<F, N>>,
    units: u32,
    channels: u32,
    sv: u32,
    #[comptime] silu: bool,
    #[define(F)] _dtype: ElemType,
) {
    if ABSOLUTE_POS >= units as usize {
        terminate!();
    }
    let (c, sv) = (channels as usize, sv as usize);
    let b = ABSOLUTE_POS / sv;
    let base = b * c * sv + ABSOLUTE_POS % sv;
    let mut sq = Vector::<f32, N>::new(0.0);
    for ch in 0..c {
        let v = Vector::<f32, N>::cast_from(x[base + ch * sv]);
        sq += v * v;
    }
    let norm = max(Vector::sqrt(sq), Vector::<f32, N>::new(1e-12));
    let one = Vector::<f32, N>::new(1.0);
    for ch in 0..c {
        let mut y = Vector::<f32, N>::cast_from(x[base + ch * sv]) / norm * Vector::<f32, N>::new(scale[ch]);
        if silu {
            y = y / (one + Vector::exp(-y));
        }
        out[base + ch * sv] = Vector::<F, N>::cast_from(y);
    }
}

/// The CubeCL half of the backend trait: the same body serves WGSL, SPIR-V and CUDA.
#[backend_extension(Cube)]
pub trait ChannelNormKernels: Backend {
    fn rms_norm_channels(x: FloatTensor<Self>, scale: FloatTensor<Self>, silu: bool) -> FloatTensor<Self>;
}

impl ChannelNormKernels for CubeBackend {
    fn rms_norm_channels(x: CubeTensor, scale: CubeTensor, silu: bool) -> CubeTensor {
        let dtype = x.dtype;
        assert!(scale.dtype == DType::F32, "rms_norm_channels: scale must be f32");
        let (x, scale) = (into_contiguous(x), into_contiguous(scale));
        let shape = x.meta.shape().clone();
        let (b, c) = (shape[0], shape[1]);
        let s = shape.num_elements() / (b * c).max(1);
        let client = x.client.clone();
        let out = empty_device_contiguous_dtype(client.clone(), x.device.clone(), shape, dtype);
        if b * c * s == 0 {
            return out;
        }
        // Vectors run along the positions, so they must divide S.
        let vector = crate::vector_width(&x, s);
        let units = b * (s / vector);
        let cube_dim = CubeDim::new(&client, units);
        let cube_count = calculate_cube_count_elemwise(&client, units, cube_dim);
        let address = [x.required_address_type(), out.required_address_type()].into_iter().max().unwrap_or_default();
        rms_norm_channels_kernel::launch(
            &client,
            cube_count,
            cube_dim,
            address,
            vector,
            x.into_tensor_arg(),
            scale.into_tensor_arg(),
            out.clone().into_tensor_arg(),
            units as u32,
            c as u32,
            (s / vector) as u32,
            silu,
            elem_type(dtype),
        );
        out
    }
}

pub fn rms_norm_channels<const D: usize>(x: BTensor<D>, scale: BTensor<1>, silu: bool) -> BTensor<D> {
    BTensor::from_dispatch(<Dispatch as ChannelNormKernels>::rms_norm_channels(x.into_dispatch(), scale.into_dispatch(), silu))
}
