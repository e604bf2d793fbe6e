//! The cuDNN conv as a backend extension (CUDA devices only; see `cudnn.rs`).

use burn::backend::{backend_extension, tensor::FloatTensor, Backend, Dispatch};
use burn::tensor::Tensor as BTensor;
use burn_cubecl::{kernel::into_contiguous, tensor::CubeTensor, CubeBackend};

#[backend_extension(Cube)]
pub trait CudnnConv: Backend {
    fn cudnn_conv3d(x: FloatTensor<Self>, weight: FloatTensor<Self>, stride_t: usize, pad: usize, tf32: bool) -> Option<FloatTensor<Self>>;
}

impl CudnnConv for CubeBackend {
    fn cudnn_conv3d(x: CubeTensor, weight: CubeTensor, stride_t: usize, pad: usize, tf32: bool) -> Option<CubeTensor> {
        super::cudnn::conv3d(&into_contiguous(x), &into_contiguous(weight), stride_t, pad, tf32)
    }
}

pub fn conv3d(x: BTensor<5>, weight: BTensor<5>, stride_t: usize, pad: usize, tf32: bool) -> Option<BTensor<5>> {
    <Dispatch as CudnnConv>::cudnn_conv3d(x.into_dispatch(), weight.into_dispatch(), stride_t, pad, tf32).map(BTensor::from_dispatch)
}
