//! LongLive's few-step sampler for LongSANA (MODEL-SPEC §5.4, §8.7): per chunk, four
//! evaluations at t = [1000, 960, 889, 727], each predicting x̂₀ = x − σ·v and re-noising it
//! with fresh noise to the next σ (not an ODE step); the last x̂₀ is the chunk. Then one
//! forward on the clean chunk at t = 0 updates the state (the caller's job).
//!
//! σ = t / 1000 exactly (the diffusers draft's convention; the official sampler's table lookup
//! differs by < 2e-4 and feeds bf16-rounded timesteps to the network).

use burn::tensor::Tensor;

use crate::{Error, Result};

/// The released denoising timesteps (the configs' terminal 0 stripped).
pub const TIMESTEPS: [f32; 4] = [1000.0, 960.0, 889.0, 727.0];

/// LongSANA's chunk: 10 latent frames (40 video frames, 2.5 s at 16 fps).
pub const CHUNK_FRAMES: usize = 10;

/// Chunk lengths for `latent_frames` frames in chunks of `chunk`: the first absorbs the
/// remainder (`T mod chunk`), e.g. 41 → [11, 10, 10, 10]; fewer than `chunk` → one chunk.
pub fn chunk_sizes(latent_frames: usize, chunk: usize) -> Result<Vec<usize>> {
    if chunk == 0 {
        return Err(Error::Input("--chunk-frames 0: a chunk needs at least one latent frame".into()));
    }
    if latent_frames == 0 {
        return Err(Error::Input("no latent frames to generate".into()));
    }
    let n = latent_frames / chunk;
    let r = latent_frames % chunk;
    if n == 0 {
        return Ok(vec![r]);
    }
    let mut v = vec![chunk; n];
    v[0] += r;
    Ok(v)
}

/// σ of a timestep on the 0–1000 scale.
pub fn sigma(t: f32) -> f32 {
    t / 1000.0
}

/// x̂₀ from the velocity prediction at timestep `t`: `x − σ·v`.
pub fn predict_x0(x: Tensor<5>, v: Tensor<5>, t: f32) -> Tensor<5> {
    x - v * sigma(t)
}

/// Re-noises x̂₀ to timestep `t`: `(1 − σ)·x̂₀ + σ·ε`.
pub fn renoise(x0: Tensor<5>, noise: Tensor<5>, t: f32) -> Tensor<5> {
    let s = sigma(t);
    x0 * (1.0 - s) + noise * s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_follow_the_reference_segmentation() {
        // MODEL-SPEC §5.1's examples.
        assert_eq!(chunk_sizes(241, 10).unwrap(), [vec![11], vec![10; 23]].concat());
        assert_eq!(chunk_sizes(81, 10).unwrap(), [vec![11], vec![10; 7]].concat());
        assert_eq!(chunk_sizes(41, 10).unwrap(), vec![11, 10, 10, 10]);
        assert_eq!(chunk_sizes(5, 10).unwrap(), vec![5]);
        assert_eq!(chunk_sizes(20, 10).unwrap(), vec![10, 10]);
        assert!(chunk_sizes(5, 0).is_err());
        assert!(chunk_sizes(0, 10).is_err());
    }
}
