//! The model families of SANA-Video. Only the DiT exists so far; the text encoder
//! (`text_encoder/`) and the VAEs (`vae/`) join it in later issues.

pub mod dit;
