//! A stand-in for crates.io `cubecl-llvm` 0.11.3 that contains no LLVM.
//!
//! # Why it exists
//!
//! `cubecl-cuda` 0.11.3 depends on `cubecl-llvm` unconditionally (it carries a second CUDA
//! compiler that lowers kernels through pliron and LLVM to PTX). Building the real crate pulls
//! `llvm-sys`, `pliron-llvm` and a build script, `tracel-llvm-bundler`, that downloads a prebuilt
//! LLVM from GitHub, which the build machines of this project cannot reach. This project
//! compiles CUDA kernels with NVRTC (cubecl-cuda's CUDA C++ backend, selected by its `cpp`
//! feature), so the LLVM backend is dead weight.
//!
//! The workspace replaces the crate through `[patch.crates-io]` with this one, which has the
//! same name and version and provides exactly the items `cubecl-cuda` refers to:
//!
//! - [`nvptx::ptx_version::PtxVersion`], with [`PtxVersion::for_driver`](nvptx::ptx_version::PtxVersion::for_driver)
//!   and `Display` (cubecl-cuda keeps it in its compilation options and cache namespace);
//! - [`shared::lowered_features::GpuTarget`] and
//!   [`shared::lowered_features::restrict_features`] (a no-op here, see its docs);
//! - [`PlironCompiler`], [`PlironOptions`], [`PlironArtifact`], [`NvptxModule`] and
//!   [`LlvmTarget`], the types of cubecl-cuda's LLVM compile path. Compiling through them
//!   always returns a [`CompilationError`](cubecl_runtime::compiler::CompilationError).
//!
//! It was written from what cubecl-cuda uses, not copied from the original crate. The CPU JIT
//! and the AMDGPU items of the real crate (used by `cubecl-cpu` and `cubecl-hip`) are not
//! provided: those runtimes do not build against this crate, and this project uses neither.

pub mod nvptx;
pub mod shared;
pub mod target;

pub use shared::{NvptxModule, PlironArtifact, PlironCompiler, PlironOptions};
pub use target::LlvmTarget;
