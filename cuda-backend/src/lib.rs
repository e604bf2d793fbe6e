//! CUDA wiring for the SANA-Video engine, compiled only with the `cuda` feature of the
//! `sana-video` binary (and of `sana-video-core`), so default builds need no CUDA.
//!
//! burn's CUDA backend is CubeCL's CUDA runtime. Its default compiler in 0.11 goes through
//! LLVM, whose build downloads a prebuilt LLVM; we select the NVRTC (CUDA C++) compiler with
//! cubecl-cuda's `cpp` feature and replace the LLVM crate by `cubecl-llvm-shim/`. The model
//! and kernels are the same code as on wgpu: the `LinearAttentionKernels` CubeCL kernels are
//! compiled to CUDA C++ here.
//!
//! Runtime needs (the GPU machine): `libcuda.so.1` (driver) and `libnvrtc.so.13`; set
//! `LD_LIBRARY_PATH=/usr/local/cuda/lib64` and `CUDA_PATH=/usr/local/cuda` where the toolkit
//! is not on the default library path. cudarc's bindings are pinned to CUDA 13.0 by
//! `CUDARC_CUDA_VERSION=13000` in `.cargo/config.toml`.

use burn::tensor::Device;

/// The CUDA device with this index. Panics inside burn when no driver is present: callers go
/// through `sana_video_core::device::create`, which turns that into an error.
pub fn device(index: usize) -> Device {
    Device::cuda(index)
}
