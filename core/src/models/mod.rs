//! The model families of SANA-Video: the Linear DiT (`dit/`) and the Gemma-2 text encoder
//! with SANA's prompt handling (`text_encoder/`); the VAEs (`vae/`) join them in a later issue.

pub mod dit;
pub mod text_encoder;
