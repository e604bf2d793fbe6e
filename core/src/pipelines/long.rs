//! LongSANA generation (MODEL-SPEC §5, §8.7): the video is made chunk by chunk, each chunk
//! denoised by the LongLive sampler against the constant-size [`LongState`] of all earlier
//! chunks, then committed to the state by one clean t = 0 pass.

use burn::tensor::{DType, Device, Tensor};

use crate::io::safetensors::tensor_from_f32;
use crate::models::dit::{LongState, SanaVideoTransformer3DModel, Timesteps};
use crate::samplers::{longlive, noise};
use crate::{Error, Result};

/// The conditioning of one chunk: prompt embeddings `[1, L, C]` and their mask.
pub struct ChunkText<'a> {
    pub embeds: &'a Tensor<3>,
    pub mask: &'a [f32],
}

/// Denoises one chunk of `shape` `[1, C, F, H, W]` at the state's position with the LongLive
/// steps `timesteps`. `draw(k)` returns the k-th noise of this chunk (k = 0: the initial
/// latents, k ≥ 1: the re-noising before step k). Returns the clean chunk x̂₀ (f32).
pub fn denoise_chunk(
    dit: &SanaVideoTransformer3DModel,
    state: &LongState,
    text: &ChunkText<'_>,
    timesteps: &[f32],
    mut draw: impl FnMut(usize) -> Result<Tensor<5>>,
    mut after_step: impl FnMut(usize),
) -> Result<Tensor<5>> {
    if timesteps.is_empty() {
        return Err(Error::Input("LongLive needs at least one timestep".into()));
    }
    let c_lat = dit.config.in_channels;
    let mut x = draw(0)?;
    for (k, &t) in timesteps.iter().enumerate() {
        let b = x.dims()[0];
        let (v, _) = dit.forward_chunk(x.clone(), text.embeds.clone(), &Timesteps::PerSample(vec![t; b]), Some(text.mask), state, false)?;
        let v = crate::nn::to_f32(v);
        let v = if dit.config.out_channels == 2 * c_lat { v.narrow(1, 0, c_lat) } else { v };
        let x0 = longlive::predict_x0(x, v, t);
        after_step(k);
        match timesteps.get(k + 1) {
            Some(&next) => x = longlive::renoise(x0, draw(k + 1)?, next),
            None => return Ok(x0),
        }
    }
    unreachable!("the loop returns at its last timestep")
}

/// Commits a clean chunk to the state: one forward at t = 0 that records each layer's
/// contribution (its prediction is discarded).
pub fn commit_chunk(dit: &SanaVideoTransformer3DModel, state: &mut LongState, x0: Tensor<5>, text: &ChunkText<'_>) -> Result<()> {
    let [b, _, f, _, _] = x0.dims();
    let x0 = crate::nn::to_dtype(x0, dit.dtype);
    let (_, updates) = dit.forward_chunk(x0, text.embeds.clone(), &Timesteps::PerSample(vec![0.0; b]), Some(text.mask), state, true)?;
    let updates = updates.ok_or_else(|| Error::Device("the t = 0 pass recorded no state".into()))?;
    state.commit(updates, f)
}

/// Seeded noise of chunk `chunk` (absolute index), draw `k`, `[1, C, F, H, W]`.
pub fn seeded_draw(seed: u64, chunk: usize, k: usize, shape: [usize; 5], device: &Device) -> Tensor<5> {
    let n: usize = shape.iter().product();
    tensor_from_f32(noise::gaussian(seed, noise::stream_long(chunk, k), 0, n), shape.to_vec(), device, DType::F32)
}
