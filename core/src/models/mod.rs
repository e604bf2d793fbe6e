//! The model families of SANA-Video: the Linear DiT (`dit/`), the Gemma-2 text encoder
//! with SANA's prompt handling (`text_encoder/`) and the video autoencoders (`vae/`).

pub mod dit;
pub mod text_encoder;
pub mod vae;
