//! The LLVM compile path's types, with compilation disabled.

pub mod lowered_features;

use crate::{nvptx::ptx_version::PtxVersion, target::LlvmTarget};
use cubecl_core::environment::backtrace::BackTrace;
use cubecl_core::ir::nvidia::SmArch;
use cubecl_runtime::{
    compiler::{CompilationError, Compiler},
    kernel::{BufferIOAttr, KernelDefinition},
};

/// Why every compilation through this crate fails, and what to do about it.
const DISABLED: &str = "the LLVM (pliron) CUDA backend is not part of this build: `cubecl-llvm` \
     is a local shim without LLVM (see cuda-backend/cubecl-llvm-shim). Compile CUDA kernels with \
     NVRTC instead by enabling cubecl-cuda's `cpp` feature (cubecl's `cuda-cpp`)";

/// The LLVM backend's compiler. Here its [`Compiler::compile`] always fails.
#[derive(Clone, Debug, Default)]
pub struct PlironCompiler {
    /// The target code would be emitted for.
    pub target: LlvmTarget,
}

/// Stands in for the AMDGPU architecture type of the real crate's [`PlironOptions::arch`],
/// which this shim does not provide. It has no values, so that field is always `None`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoGfxArch {}

/// Options of the LLVM backend: the fields cubecl-cuda sets. cubecl-cuda builds this with
/// `..Default::default()`, so fields it does not name need not exist here.
#[derive(Clone, Debug, Default)]
pub struct PlironOptions {
    /// AMDGPU architecture; never set for CUDA.
    pub arch: Option<NoGfxArch>,
    /// The device's compute capability.
    pub sm_arch: Option<SmArch>,
    /// PTX version to emit.
    pub ptx_version: Option<PtxVersion>,
    /// Whether scalars and metadata are passed in the kernel parameter block.
    pub grid_constants: bool,
}

/// A compiled PTX module, as cubecl-cuda reads it. Never produced by this shim, but its fields
/// are what cubecl-cuda's loader and cache use, so they keep their meaning.
#[derive(Clone, Debug)]
pub struct NvptxModule {
    /// PTX text, NUL-terminated.
    pub ptx: Vec<core::ffi::c_char>,
    /// Name of the kernel entry point.
    pub entrypoint: String,
    /// Human-readable IR, for logs and `Display`.
    pub ir: String,
    /// Dynamic shared memory the launch reserves, in bytes.
    pub shared_memory_size: usize,
    /// How each buffer binding is accessed, in binding order.
    pub io: Vec<BufferIOAttr>,
}

/// What the LLVM backend would produce.
#[derive(Clone, Debug)]
pub enum PlironArtifact {
    /// PTX for the CUDA driver.
    NvptxCode(NvptxModule),
}

impl core::fmt::Display for PlironArtifact {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        match self {
            PlironArtifact::NvptxCode(module) => f.write_str(&module.ir),
        }
    }
}

impl Compiler for PlironCompiler {
    type Representation = PlironArtifact;
    type CompilationOptions = PlironOptions;

    /// Always an error: this crate contains no LLVM.
    fn compile(
        &mut self,
        _kernel: KernelDefinition,
        _options: &Self::CompilationOptions,
    ) -> Result<Self::Representation, CompilationError> {
        Err(CompilationError::Generic {
            reason: DISABLED.to_string(),
            backtrace: BackTrace::capture(),
        })
    }

    fn buffer_io(repr: &Self::Representation) -> Option<Vec<BufferIOAttr>> {
        match repr {
            PlironArtifact::NvptxCode(module) => Some(module.io.clone()),
        }
    }

    fn extension(&self) -> &'static str {
        match self.target {
            LlvmTarget::Nvptx => "ll",
        }
    }

    fn lang_tag(&self) -> &'static str {
        match self.target {
            LlvmTarget::Nvptx => "llvm",
        }
    }
}
