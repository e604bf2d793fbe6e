//! Fused operations of SANA-Video beyond burn's tensor ops.
//!
//! Every op here has two implementations that must agree:
//! * a plain tensor-op **reference** (`*/reference.rs`) that runs on any burn device, and
//! * a **CubeCL kernel** (`*/cube.rs`) compiled by CubeCL to WGSL (wgpu, the browser),
//!   SPIR-V or CUDA, reached through a burn backend extension.
//!
//! The public functions pick the kernel on CubeCL devices and the reference elsewhere
//! (the CPU backend, burn-flex). `tests/` runs both on every compiled backend.

pub mod act_quant;
pub mod channel_norm;
pub mod conv;
#[cfg(feature = "cuda")]
mod cuda_task;
pub mod dequant;
pub mod fp8_gemm;
pub mod glu_conv;
pub mod linear_attention;
pub mod matmul;
pub mod norm;
pub mod nvfp4;
#[cfg(feature = "cube")]
mod rows;
pub mod softmax;
pub mod temporal;
pub mod timeline;

/// A stage mark inside the fused ops, for the engine's profiler (`sana_video_core::profile`
/// installs it); unset, a mark costs one atomic load.
pub static STAGE_MARK: std::sync::OnceLock<fn(&burn::tensor::Device, &'static str)> = std::sync::OnceLock::new();

#[allow(dead_code)]
pub(crate) fn mark(device: &burn::tensor::Device, stage: &'static str) {
    if let Some(f) = STAGE_MARK.get() {
        f(device, stage);
    }
}

/// WebGPU's guaranteed workgroup limits (`maxComputeWorkgroupStorageSize`,
/// `maxComputeInvocationsPerWorkgroup`), which our kernels stay within on every backend.
#[allow(dead_code)]
pub(crate) const WEBGPU_SHARED_BYTES: usize = 16 * 1024;
#[allow(dead_code)]
pub(crate) const WEBGPU_MAX_UNITS: usize = 256;

/// Which implementation an op should use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Impl {
    /// The CubeCL kernel where the device is a CubeCL device, else the reference.
    Auto,
    /// Always the plain tensor-op reference.
    Reference,
}

/// Whether `device` runs CubeCL kernels (wgpu, CUDA); the CPU backend uses the references.
pub fn is_cube_device(device: &burn::tensor::Device) -> bool {
    #[cfg(feature = "cube")]
    {
        matches!(device.as_dispatch(), burn::backend::DispatchDevice::Cube(_))
    }
    #[cfg(not(feature = "cube"))]
    {
        let _ = device;
        false
    }
}

/// The largest single buffer `device` can allocate where the graphics API caps it: wgpu
/// (WGSL or SPIR-V) binds storage buffers up to a limit, which CubeCL's pool applies
/// (2,147,483,644 bytes on an H200's Vulkan driver, 128 MiB on lavapipe and WebGPU's default).
/// `None` on CUDA and the CPU, which allocate what memory holds.
pub fn max_buffer_bytes(device: &burn::tensor::Device) -> Option<u64> {
    #[cfg(feature = "cube")]
    if !is_cuda_device(device) {
        if let burn::backend::DispatchDevice::Cube(d) = device.as_dispatch() {
            return Some(d.client().properties().memory.max_page_size);
        }
    }
    let _ = device;
    None
}

/// Turns on CubeCL's on-disk cache of compiled kernels (CUDA builds), before the first
/// device is opened: without it every process compiles each kernel again, several seconds
/// of a `generate` run (the first denoising step, the prompt's encoder, the decode).
/// The rest of CubeCL's configuration is read as CubeCL reads it (`cubecl.toml` up from the
/// working directory, its environment variables). The cache lives in the user's cache
/// folder (`~/.cache/cubecl`), or in `target/environment` under a Cargo workspace.
/// `SANA_KERNEL_CACHE=0` leaves it off. Returns whether it is on; `false` also when
/// CubeCL's configuration was already fixed by an earlier call.
#[cfg(feature = "cuda")]
pub fn enable_kernel_cache() -> bool {
    use cubecl_runtime::config::{CubeClRuntimeConfig, RuntimeConfig};
    if matches!(std::env::var("SANA_KERNEL_CACHE").as_deref(), Ok("0") | Ok("off") | Ok("false")) {
        return false;
    }
    let mut config = CubeClRuntimeConfig::from_current_dir().override_from_env();
    config.compilation.cache = true;
    CubeClRuntimeConfig::try_set(config)
}

/// Whether `device` is a CUDA device (where cuBLASLt runs).
pub fn is_cuda_device(device: &burn::tensor::Device) -> bool {
    #[cfg(feature = "cuda")]
    {
        cuda_device(device).is_some()
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = device;
        false
    }
}

/// `device`'s CubeCL CUDA device, if it is one.
#[cfg(feature = "cuda")]
pub(crate) fn cuda_device(device: &burn::tensor::Device) -> Option<burn_cubecl::cubecl::cuda::CudaDevice> {
    match device.as_dispatch() {
        burn::backend::DispatchDevice::Cube(burn_cubecl::cubecl::Device::Cuda(d)) => Some(d.clone()),
        _ => None,
    }
}

/// The float dtypes our kernels write, indexed by the small code that crosses a backend
/// extension's dispatch (`dtype_code`).
#[cfg(feature = "cube")]
pub(crate) const DTYPES: [burn::tensor::DType; 3] = [burn::tensor::DType::F32, burn::tensor::DType::F16, burn::tensor::DType::BF16];

/// The code of `dtype` in [`DTYPES`]; panics on another dtype (the public functions check).
#[cfg(feature = "cube")]
pub(crate) fn dtype_code(dtype: burn::tensor::DType) -> u8 {
    match DTYPES.iter().position(|&d| d == dtype) {
        Some(i) => i as u8,
        None => panic!("kernel: unsupported output dtype {dtype:?} (f32, f16 or bf16)"),
    }
}

/// The CubeCL element type of a float dtype our kernels take (f32, f16, bf16).
#[cfg(feature = "cube")]
pub(crate) fn elem_type(dtype: burn::tensor::DType) -> burn_cubecl::cubecl::ir::ElemType {
    use burn::tensor::DType;
    use burn_cubecl::cubecl::ir::{ElemType, FloatKind};
    match dtype {
        DType::F32 => ElemType::Float(FloatKind::F32),
        DType::F16 => ElemType::Float(FloatKind::F16),
        DType::BF16 => ElemType::Float(FloatKind::BF16),
        other => panic!("kernel: unsupported dtype {other:?} (f32, f16 or bf16)"),
    }
}

/// The widest channel vector `t`'s device reads well for its dtype that divides `channels` (1
/// at worst): the vector width of the memory-bound kernels (norm, GLU conv, temporal combine).
#[cfg(feature = "cube")]
pub(crate) fn vector_width(t: &burn_cubecl::tensor::CubeTensor, channels: usize) -> usize {
    t.client.io_optimized_vector_sizes(t.dtype.size()).filter(|&v| v > 0 && channels % v == 0).max().unwrap_or(1)
}

/// Bytes in use on `device` as the CUDA driver sees them (what `nvidia-smi` shows for all
/// processes: total minus free), or `None` off CUDA. Unlike the pool's reservation this
/// counts the context, library workspaces and loaded kernels too.
pub fn driver_memory_used(device: &burn::tensor::Device) -> Option<u64> {
    #[cfg(feature = "cuda")]
    {
        use cubecl_common::device::Device as _;
        let dev = cuda_device(device)?;
        let handle = cubecl_common::device_handle::DeviceHandle::<cuda_task::CudaServer>::new(dev.to_id());
        // On the device thread, whose context is current.
        let (free, total) = handle.submit_blocking(|_server: &mut cuda_task::CudaServer| cudarc::driver::result::mem_get_info().ok()).ok()??;
        Some((total - free) as u64)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = device;
        None
    }
}
