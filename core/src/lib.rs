//! SANA-Video inference engine: the library behind the `sana-video` CLI and the web demo.
//!
//! Data flow (one folder each): `io` (files, safetensors, diffusers folders) →
//! `models::dit` (the Linear DiT) → … (text encoder, VAEs, samplers and pipelines
//! arrive with later issues). `device` is the only place that names backends.
//!
//! ```text
//! sana-video debug transformer --model tests/fixtures/dit/p122_b2_mask/transformer \
//!     --inputs tests/fixtures/dit/p122_b2_mask/inputs.safetensors --output /tmp/out.safetensors
//! ```

pub mod device;
pub mod error;
pub mod eval;
pub mod inspect;
pub mod io;
pub mod models;
pub mod nn;
pub mod pipelines;
pub mod samplers;

pub use error::{Error, Result};
pub use sana_video_kernels as kernels;
