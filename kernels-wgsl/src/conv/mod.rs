//! 3-D convolutions for the VAEs through cuDNN on CUDA devices.
//!
//! The VAEs hold activations as `[B, C, T, H, W]`, cuDNN's NCDHW layout, so a conv is one
//! cuDNN call on the tensors as they are: no channels-last copy, no padding copy, its own
//! implicit-GEMM kernels on tensor cores (what PyTorch, hence the reference, runs). The
//! conv is planned through cuDNN's graph API (`graph.rs`, the engines PyTorch reaches through
//! cudnn-frontend), or its legacy API where the graph API declines or `SANA_CUDNN_API=legacy`
//! asks. f32 convs run exact (no tensor-core, FFT or Winograd engine; legacy:
//! `CUDNN_FMA_MATH`) or on TF32 tensor cores (PyTorch's default for convs); f16/bf16 ones
//! accumulate in f32. cuDNN is loaded at run time
//! (`libcudnn.so` on the library path); where it is missing or declines a problem,
//! [`conv3d`] returns `None` and the caller takes its own path (`models/vae/conv.rs`).
//!
//! The reference is burn's `conv3d` (`tests/tests/vae_conv.rs` and `kernels.rs` compare).

#[cfg(feature = "cuda")]
mod cube;
#[cfg(feature = "cuda")]
pub mod cudnn;
#[cfg(feature = "cuda")]
mod graph;

use burn::tensor::Tensor;

/// `x` `[B, C, T, H, W]` convolved with `weight` `[O, C, kt, kh, kw]` (no bias), temporal
/// stride `stride_t`, spatial stride 1 and `pad` zeros on each spatial side; `tf32`: f32
/// operands on TF32 tensor cores. `None` where cuDNN does not run it (not a CUDA device, no
/// cuDNN, a declined problem).
pub fn conv3d(x: &Tensor<5>, weight: &Tensor<5>, stride_t: usize, pad: usize, tf32: bool) -> Option<Tensor<5>> {
    #[cfg(feature = "cuda")]
    if crate::is_cuda_device(&x.device()) {
        return cube::conv3d(x.clone(), weight.clone(), stride_t, pad, tf32);
    }
    let _ = (x, weight, stride_t, pad, tf32);
    None
}

/// Whether cuDNN loads on `device` (a CUDA device with `libcudnn` on the library path).
pub fn available(device: &burn::tensor::Device) -> bool {
    #[cfg(feature = "cuda")]
    if let Some(d) = crate::cuda_device(device) {
        return cudnn::available(&d);
    }
    let _ = device;
    false
}
