//! SANA-Video inference engine: the library behind the `sana-video` CLI and the web demo.
//!
//! Data flow (one folder each): `io` (files, safetensors read whole, mapped or by byte
//! ranges, diffusers folders) → `models::text_encoder` (Gemma-2 and SANA's prompt handling)
//! → `models::dit` (the Linear DiT) with `samplers` (flow DPM-Solver++, Euler, UniPC) →
//! `models::vae` (Wan2.1, LTX-2) — orchestrated by `pipelines` (plan, then `run_async`).
//! `device` is the only place that names backends; `eval` scores generated clips.
//!
//! ```text
//! sana-video generate --prompt "a large red circle moves slowly to the left" -o clip.mp4
//! ```

pub mod device;
pub mod error;
pub mod eval;
pub mod inspect;
pub mod io;
pub mod models;
pub mod nn;
mod par;
pub mod pipelines;
pub mod profile;
pub mod quant;
pub mod samplers;

pub use error::{Error, Result};
pub use sana_video_kernels as kernels;
