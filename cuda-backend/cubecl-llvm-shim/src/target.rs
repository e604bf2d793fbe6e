//! The code-generation target of the (absent) LLVM backend.

/// Which LLVM target a [`PlironCompiler`](crate::PlironCompiler) would emit code for.
///
/// Only the NVPTX target exists in this shim: it is the one cubecl-cuda constructs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum LlvmTarget {
    /// NVIDIA PTX.
    #[default]
    Nvptx,
}

impl LlvmTarget {
    /// Whether the target runs on a GPU with a hardware launch grid (always, here).
    pub fn is_gpu(self) -> bool {
        true
    }
}
