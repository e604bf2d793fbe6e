//! Narrowing a device's advertised features to what the LLVM backend lowers.

use cubecl_core::ir::DeviceProperties;

/// The GPU target whose LLVM lowering a device's features would be narrowed for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GpuTarget {
    /// NVIDIA PTX.
    Nvptx,
}

/// In the real crate this removes from `props` what the LLVM backend cannot lower (most matrix
/// forms, TMA, clusters, async copies, complex types, some atomics), so that kernels pick
/// algorithms the LLVM backend can compile.
///
/// Here it deliberately leaves `props` unchanged:
///
/// - cubecl-cuda calls it only when its default backend is LLVM, that is when its `cpp`
///   feature is off. With `cpp` on (this project's configuration) it is never called, and the
///   CUDA C++ backend must keep every feature the runtime advertised, TMA and `mma` included.
/// - With `cpp` off, this shim's LLVM backend compiles nothing at all (see
///   [`PlironCompiler`](crate::PlironCompiler)), so narrowing the features would not make any
///   kernel work: every compilation fails with an error that names the fix.
pub fn restrict_features(props: &mut DeviceProperties, target: GpuTarget) {
    let _ = (props, target);
}
