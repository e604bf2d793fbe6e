//! NVPTX-specific items cubecl-cuda reads even when it compiles through NVRTC.

pub mod ptx_version;
