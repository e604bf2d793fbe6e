//! Backends and dtypes chosen at run time. The only module that names wgpu or CUDA.

use burn::tensor::{DType, Device};

use crate::{Error, Result};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BackendKind {
    /// burn-flex, pure Rust on the CPU.
    Cpu,
    /// wgpu (Vulkan / Metal / DX12 natively, WebGPU in the browser), WGSL kernels.
    Wgpu,
    /// CUDA through CubeCL (build with `--features cuda`).
    Cuda,
    /// wgpu pinned to Vulkan with SPIR-V kernels: cooperative-matrix (tensor core) GEMMs
    /// where the driver has them (build with `--features vulkan`).
    Vulkan,
}

impl BackendKind {
    pub fn parse(s: &str) -> Result<BackendKind> {
        match s {
            "cpu" => Ok(BackendKind::Cpu),
            "wgpu" => Ok(BackendKind::Wgpu),
            "cuda" => Ok(BackendKind::Cuda),
            "vulkan" => Ok(BackendKind::Vulkan),
            other => Err(Error::Input(format!("--backend {other}: expected cpu, wgpu, vulkan or cuda"))),
        }
    }

    /// Backends compiled into this build, best first.
    pub fn compiled() -> Vec<BackendKind> {
        let mut v = Vec::new();
        if cfg!(feature = "cuda") {
            v.push(BackendKind::Cuda);
        }
        if cfg!(feature = "vulkan") {
            v.push(BackendKind::Vulkan);
        }
        if cfg!(feature = "wgpu") {
            v.push(BackendKind::Wgpu);
        }
        if cfg!(feature = "flex") {
            v.push(BackendKind::Cpu);
        }
        v
    }

    /// Whether bf16 tensors run here: not through wgpu (WGSL has no bf16, nor has CubeCL's
    /// SPIR-V path on wgpu), so those backends compute in f16 or f32.
    pub fn has_bf16(self) -> bool {
        matches!(self, BackendKind::Cpu | BackendKind::Cuda)
    }
}

pub fn parse_dtype(s: &str) -> Result<DType> {
    match s {
        "f32" => Ok(DType::F32),
        "f16" => Ok(DType::F16),
        "bf16" => Ok(DType::BF16),
        other => Err(Error::Input(format!("--dtype {other}: expected f32, f16 or bf16"))),
    }
}

/// Creates the device of a backend; errors (instead of panicking) when it is not compiled
/// in or no adapter can be opened.
pub fn create(kind: BackendKind) -> Result<Device> {
    match kind {
        #[cfg(feature = "flex")]
        BackendKind::Cpu => Ok(Device::flex()),
        // Natively the adapter is probed with a tiny op (blocking read-back); the browser
        // cannot block, so there the web front end initialises the device asynchronously.
        #[cfg(all(feature = "wgpu", not(target_arch = "wasm32")))]
        BackendKind::Wgpu => probe(kind, || {
            let device = Device::wgpu(burn::tensor::DeviceKind::DefaultDevice);
            // With the SPIR-V compiler built in, CubeCL uses it on every Vulkan adapter,
            // plain wgpu devices included.
            #[cfg(feature = "vulkan")]
            return hardware_for_spirv(device);
            #[cfg(not(feature = "vulkan"))]
            Ok(device)
        }),
        #[cfg(all(feature = "wgpu", target_arch = "wasm32"))]
        BackendKind::Wgpu => Ok(Device::wgpu(burn::tensor::DeviceKind::DefaultDevice)),
        #[cfg(feature = "cuda")]
        BackendKind::Cuda => probe(kind, || {
            crate::kernels::enable_kernel_cache();
            Ok(Device::cuda(0))
        }),
        #[cfg(all(feature = "vulkan", not(target_arch = "wasm32")))]
        BackendKind::Vulkan => probe(kind, || hardware_for_spirv(Device::vulkan(burn::tensor::DeviceKind::DefaultDevice))),
        #[allow(unreachable_patterns)]
        other => Err(Error::Device(format!(
            "--backend {}: not compiled into this build (compiled: {})",
            name(other),
            BackendKind::compiled().iter().map(|k| name(*k)).collect::<Vec<_>>().join(", ")
        ))),
    }
}

/// `device`, unless its adapter is a software rasteriser: opening the adapter compiles
/// nothing, the probe's op is the first SPIR-V kernel, and Mesa's lavapipe crashes on
/// CubeCL's SPIR-V (TOOLCHAIN.md), so such adapters are refused before it.
#[cfg(all(feature = "vulkan", not(target_arch = "wasm32")))]
fn hardware_for_spirv(device: Device) -> std::result::Result<Device, String> {
    match software_adapter(&device) {
        Some(adapter) => Err(format!(
            "{adapter} is a software rasteriser, which cannot run the SPIR-V kernels of this build (--features vulkan): \
             use --backend cpu, or wgpu from a build without the vulkan feature"
        )),
        None => Ok(device),
    }
}

pub fn name(kind: BackendKind) -> &'static str {
    match kind {
        BackendKind::Cpu => "cpu",
        BackendKind::Wgpu => "wgpu",
        BackendKind::Cuda => "cuda",
        BackendKind::Vulkan => "vulkan",
    }
}

/// Opens a device and runs a tiny op on it; backends panic when no adapter or driver is
/// present, which we turn into an error naming the backend. Backends may fail on a thread of
/// their own (wgpu's device setup), whose message would otherwise be lost behind the
/// caller's "RecvError": every panic message during the probe goes into the error.
#[allow(dead_code)]
fn probe(kind: BackendKind, make: impl Fn() -> std::result::Result<Device, String> + std::panic::UnwindSafe + Copy) -> Result<Device> {
    use std::sync::{Arc, Mutex};
    let messages: Arc<Mutex<Vec<String>>> = Arc::default();
    let prev = std::panic::take_hook();
    let sink = messages.clone();
    std::panic::set_hook(Box::new(move |info| {
        let msg = info
            .payload()
            .downcast_ref::<String>()
            .cloned()
            .or_else(|| info.payload().downcast_ref::<&str>().map(|s| s.to_string()))
            .unwrap_or_else(|| "no details".into());
        let place = info.location().map(|l| format!(" at {}:{}", l.file(), l.line())).unwrap_or_default();
        if let Ok(mut m) = sink.lock() {
            m.push(format!("{msg}{place}"));
        }
    }));
    let result = std::panic::catch_unwind(move || {
        let device = make()?;
        let t = burn::tensor::Tensor::<1>::from_floats([1.0f32, 2.0], &device);
        let _ = (t * 2.0).into_data();
        Ok(device)
    });
    std::panic::set_hook(prev);
    let refused = |msg: String| Error::Device(format!("--backend {}: no usable device ({msg})", name(kind)));
    match result {
        Ok(opened) => opened.map_err(refused),
        Err(_) => {
            let msg = messages.lock().map(|m| m.join("; ")).unwrap_or_default();
            Err(refused(if msg.is_empty() { "no details".to_string() } else { msg }))
        }
    }
}

/// The adapter's name when it is a software rasteriser (Mesa llvmpipe/lavapipe,
/// SwiftShader): there our CPU backend is faster (BENCHMARKS.md), so it is not preferred.
pub fn software_adapter(device: &Device) -> Option<String> {
    #[cfg(all(feature = "wgpu", not(target_arch = "wasm32")))]
    {
        let name = device.identity()?.name;
        let lower = name.to_ascii_lowercase();
        if ["llvmpipe", "lavapipe", "swiftshader", "softpipe"].iter().any(|s| lower.contains(s)) {
            return Some(name);
        }
    }
    let _ = device;
    None
}

/// The best backend that actually opens on this machine: CUDA, then wgpu on a hardware
/// adapter, then the CPU (a software wgpu adapter only when the CPU backend is not built).
pub fn best_available() -> Result<(BackendKind, Device)> {
    let mut errors = Vec::new();
    let compiled = BackendKind::compiled();
    for kind in compiled.iter().copied() {
        match create(kind) {
            Ok(d) if matches!(kind, BackendKind::Wgpu | BackendKind::Vulkan) && compiled.contains(&BackendKind::Cpu) && software_adapter(&d).is_some() => {
                continue;
            }
            Ok(d) => return Ok((kind, d)),
            Err(e) => errors.push(e.to_string()),
        }
    }
    Err(Error::Device(format!("no backend could be opened: {}", errors.join("; "))))
}

/// The device pool's pages, one line per page size that held pages: how the reservation is
/// carved (pools of smaller pages are those left behind as the page size grew with the
/// largest allocation). Empty where the backend has no pool (the CPU backend).
pub fn pool_pages(device: &Device) -> Vec<String> {
    device
        .memory_pool_report()
        .unwrap_or_default()
        .iter()
        .filter(|p| p.pages_peak > 0)
        .map(|p| {
            format!(
                "pool of {:.1} MB pages: {} now, {} at most (largest allocation {:.1} MB)",
                p.page_size as f64 / 1e6,
                p.pages,
                p.pages_peak,
                p.largest_alloc as f64 / 1e6
            )
        })
        .collect()
}
