//! The video autoencoders (MODEL-SPEC §7): `wan/` (Wan2.1, `AutoencoderKLWan`: the 480p
//! and LongSANA checkpoints). The LTX-2 VAE of the 720p checkpoint joins it next.

pub mod wan;
