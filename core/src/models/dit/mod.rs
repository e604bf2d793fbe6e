//! The SANA-Video Linear DiT, `SanaVideoTransformer3DModel` (MODEL-SPEC §3, §4):
//! patch embedding, AdaLN-single timestep modulation, caption projection, N blocks of
//! ReLU linear attention + cross-attention + GLU Mix-FFN, modulated output head.
//!
//! ```text
//! sana-video debug transformer --model tests/fixtures/dit/p122_b2_mask/transformer \
//!     --inputs tests/fixtures/dit/p122_b2_mask/inputs.safetensors --output out.safetensors
//! ```

pub mod block;
pub mod config;
pub mod long;
pub mod rope;
pub mod timestep;

use burn::tensor::{DType, Device, Tensor, TensorData};

pub use block::{Block, LayerState, LayerUpdate};
pub use long::LongState;
pub use config::{DitConfig, DitKind};

use crate::io::safetensors::{tensor_from_f32, Weights};
use crate::io::{diffusers, join, FileSource};
use crate::kernels::Impl;
use crate::nn::{gelu_tanh, silu, to_dtype, Linear};
use crate::{Error, Result};

/// Timesteps on the 0–1000 scale: one per sample (`[B]`) or one per token (`[B, N]`).
#[derive(Clone, Debug)]
pub enum Timesteps {
    PerSample(Vec<f32>),
    PerToken(Vec<f32>),
}

pub struct TimeEmbed {
    pub linear_1: Linear,
    pub linear_2: Linear,
    pub linear: Linear,
}

pub struct CaptionProjection {
    pub linear_1: Linear,
    pub linear_2: Linear,
}

pub struct SanaVideoTransformer3DModel {
    pub config: DitConfig,
    pub dtype: DType,
    pub device: Device,
    /// Conv3d with kernel = stride = patch, as a matrix `[C·pt·ph·pw, D]`.
    pub patch_embedding: Linear,
    pub time_embed: TimeEmbed,
    pub caption_projection: CaptionProjection,
    pub caption_norm: Tensor<1>,
    pub transformer_blocks: Vec<Block>,
    pub scale_shift_table: Tensor<2>,
    pub proj_out: Linear,
    /// Which implementation the fused ops use (kernels where available by default).
    pub kernels: Impl,
    /// The last RoPE tables on the device, keyed by (grid, first frame): every step of a
    /// video, and all five forwards of a LongSANA chunk, share them.
    rope_cache: std::sync::Mutex<Option<RopeTables>>,
}

struct RopeTables {
    key: ([usize; 3], usize),
    cos: Tensor<2>,
    sin: Tensor<2>,
}

/// What a loaded DiT found in its files, for `inspect` and warnings.
pub struct LoadReport {
    pub weights_location: String,
    pub unexpected: Vec<String>,
}

/// How many leading caption tokens the cross-attention needs: up to the last one any sample
/// keeps. Prompts are padded to 300 tokens of which tens are real, and a key masked out gets
/// the additive bias -10000, so its weight `exp(logit - 10000 - max)` is exactly 0 in f32
/// (the same in the reference) whenever the logits are far below 4900 in magnitude: keys
/// padded in every sample change no output, and dropping them saves their share of the
/// cross-attention (logits, softmax, probabilities times values). A sample with no key kept
/// attends uniformly to all L keys, so then none is dropped.
pub fn caption_tokens_needed(mask: &[f32], b: usize, l: usize) -> usize {
    if b == 0 || l == 0 || mask.len() != b * l {
        return l;
    }
    let mut needed = 0;
    for row in mask.chunks(l) {
        match row.iter().rposition(|&k| k != 0.0) {
            Some(last) => needed = needed.max(last + 1),
            None => return l,
        }
    }
    needed
}

impl SanaVideoTransformer3DModel {
    /// Reads and validates `config.json` of a transformer folder.
    pub fn read_config(source: &dyn FileSource, dir: &str) -> Result<DitConfig> {
        let path = join(dir, "config.json");
        DitConfig::from_json(&source.read_string(&path)?, &path)
    }

    /// Loads a diffusers `transformer/` folder (or a pipeline folder holding one).
    /// Every tensor is checked for presence and shape before anything is loaded.
    pub fn load(source: &dyn FileSource, dir: &str, device: &Device, dtype: DType) -> Result<(Self, LoadReport)> {
        let dir = diffusers::component_dir(source, dir, "transformer")?;
        let config = Self::read_config(source, &dir)?;
        let weights = Weights::open_dir(source, &dir, "diffusion_pytorch_model")?;
        let unexpected = weights.check(&config.expected_tensors())?;
        let model = Self::from_weights(config, &weights, device, dtype)?;
        Ok((model, LoadReport { weights_location: weights.location(), unexpected }))
    }

    pub fn from_weights(config: DitConfig, w: &Weights, device: &Device, dtype: DType) -> Result<Self> {
        let lin = |p: &str| Linear::load(w, p, true, device, dtype);
        let transformer_blocks =
            (0..config.layers).map(|i| Block::load(w, &config, i, device, dtype)).collect::<Result<Vec<_>>>()?;
        Ok(SanaVideoTransformer3DModel {
            patch_embedding: lin("patch_embedding")?,
            time_embed: TimeEmbed {
                linear_1: lin("time_embed.emb.timestep_embedder.linear_1")?,
                linear_2: lin("time_embed.emb.timestep_embedder.linear_2")?,
                linear: lin("time_embed.linear")?,
            },
            caption_projection: CaptionProjection {
                linear_1: lin("caption_projection.linear_1")?,
                linear_2: lin("caption_projection.linear_2")?,
            },
            caption_norm: w.load::<1>("caption_norm.weight", device, dtype)?,
            transformer_blocks,
            scale_shift_table: w.load::<2>("scale_shift_table", device, dtype)?,
            proj_out: lin("proj_out")?,
            config,
            dtype,
            device: device.clone(),
            kernels: Impl::Auto,
            rope_cache: std::sync::Mutex::new(None),
        })
    }

    /// RoPE tables for `grid` with frames numbered from `frame_offset`, from the cache when
    /// the last forward used the same ones.
    fn rope_tables(&self, grid: [usize; 3], frame_offset: usize) -> (Tensor<2>, Tensor<2>) {
        let key = (grid, frame_offset);
        // A poisoned lock only means another thread panicked mid-update: rebuild the entry.
        let mut cache = self.rope_cache.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = cache.as_ref().filter(|t| t.key == key) {
            return (t.cos.clone(), t.sin.clone());
        }
        let (cos, sin) = rope::table_tensors(self.config.head_dim, grid, frame_offset, &self.device);
        *cache = Some(RopeTables { key, cos: cos.clone(), sin: sin.clone() });
        (cos, sin)
    }

    /// Token grid (F', H', W') for latents `[.., F, H, W]`, refusing sizes the patch does not divide.
    pub fn token_grid(&self, frames: usize, height: usize, width: usize) -> Result<[usize; 3]> {
        let [pt, ph, pw] = self.config.patch_size;
        for (what, size, p) in [("frame count", frames, pt), ("height", height, ph), ("width", width, pw)] {
            if size == 0 || size % p != 0 {
                return Err(Error::Input(format!(
                    "latent {what} {size} is not a positive multiple of the patch size {p} (patch_size {:?})",
                    self.config.patch_size
                )));
            }
        }
        Ok([frames / pt, height / ph, width / pw])
    }

    /// The forward pass. `hidden_states` `[B, C, F, H, W]`, `encoder_hidden_states`
    /// `[B, L, caption_channels]`, `encoder_attention_mask` `[B·L]` (1 keep, 0 pad).
    /// Returns the velocity `[B, C_out, F, H, W]` in the model dtype.
    pub fn forward(
        &self,
        hidden_states: Tensor<5>,
        encoder_hidden_states: Tensor<3>,
        timestep: &Timesteps,
        encoder_attention_mask: Option<&[f32]>,
    ) -> Result<Tensor<5>> {
        if self.config.kind == DitKind::BlockCausal {
            return Err(Error::Input(
                "this transformer is block-causal (SanaVideoCausalTransformer3DModel, LongSANA): run it chunk by chunk \
                 with a LongState (forward_chunk), not as one bidirectional pass"
                    .into(),
            ));
        }
        Ok(self.forward_impl(hidden_states, encoder_hidden_states, timestep, encoder_attention_mask, None)?.0)
    }

    /// LongSANA (MODEL-SPEC §5): the forward of one chunk `[B, C, F, H, W]` whose first latent
    /// frame is `state.frames_done` of the video. Attention is bidirectional inside the chunk
    /// and reads `state` for all earlier chunks; RoPE uses absolute frame positions. With
    /// `record` (the clean t = 0 pass), also returns each layer's contribution, for
    /// [`LongState::commit`]. Works for either config class (the weights are the same).
    pub fn forward_chunk(
        &self,
        hidden_states: Tensor<5>,
        encoder_hidden_states: Tensor<3>,
        timestep: &Timesteps,
        encoder_attention_mask: Option<&[f32]>,
        state: &LongState,
        record: bool,
    ) -> Result<(Tensor<5>, Option<Vec<LayerUpdate>>)> {
        state.check(self, hidden_states.dims())?;
        self.forward_impl(hidden_states, encoder_hidden_states, timestep, encoder_attention_mask, Some((state, record)))
    }

    fn forward_impl(
        &self,
        hidden_states: Tensor<5>,
        encoder_hidden_states: Tensor<3>,
        timestep: &Timesteps,
        encoder_attention_mask: Option<&[f32]>,
        long: Option<(&LongState, bool)>,
    ) -> Result<(Tensor<5>, Option<Vec<LayerUpdate>>)> {
        let cfg = &self.config;
        let [b, c, f, h, w] = hidden_states.dims();
        if c != cfg.in_channels {
            return Err(Error::Input(format!(
                "hidden_states has {c} channels, the transformer expects {} ([B, {}, F, H, W])",
                cfg.in_channels, cfg.in_channels
            )));
        }
        let [eb, l, ec] = encoder_hidden_states.dims();
        if eb != b || ec != cfg.caption_channels || l == 0 {
            return Err(Error::Input(format!(
                "encoder_hidden_states has shape [{eb}, {l}, {ec}], expected [{b}, L, {}]",
                cfg.caption_channels
            )));
        }
        let grid = self.token_grid(f, h, w)?;
        let n = grid.iter().product::<usize>();
        let (t_values, t_len) = match timestep {
            Timesteps::PerSample(v) if v.len() == b => (v.as_slice(), 1),
            Timesteps::PerToken(v) if v.len() == b * n => (v.as_slice(), n),
            Timesteps::PerSample(v) => {
                return Err(Error::Input(format!("timestep has {} values, expected [B] = [{b}]", v.len())))
            }
            Timesteps::PerToken(v) => {
                return Err(Error::Input(format!("timestep has {} values, expected [B, N] = [{b}, {n}]", v.len())))
            }
        };
        if let Some(m) = encoder_attention_mask {
            if m.len() != b * l {
                return Err(Error::Input(format!("encoder_attention_mask has {} values, expected [B, L] = [{b}, {l}]", m.len())));
            }
        }
        let device = &self.device;
        let dtype = self.dtype;
        let d = cfg.dim;
        let [pt, ph, pw] = cfg.patch_size;
        let [gf, gh, gw] = grid;

        // RoPE tables for this grid (f32, shared by all blocks).
        // Absolute frame positions: a LongSANA chunk starts where the state ends.
        let frame_offset = long.map_or(0, |(st, _)| st.frames_done / pt);
        let (rope_cos, rope_sin) = self.rope_tables(grid, frame_offset);

        // Patch embedding: [B, C, F', pt, H', ph, W', pw] -> [B, F', H', W', C, pt, ph, pw] -> tokens.
        let x = to_dtype(hidden_states, dtype)
            .reshape([b, c, gf, pt, gh, ph, gw, pw])
            .permute([0, 2, 4, 6, 1, 3, 5, 7])
            .reshape([b * n, c * pt * ph * pw]);
        let x = self.patch_embedding.forward(x).reshape([b, n, d]);

        // Timestep embedding: sinusoid (host, f32) -> MLP -> temb [B, T, D], t6 [B, T, 6, D].
        // Per-token timesteps take few distinct values (image-to-video: two), so the MLP runs
        // once per distinct value and rows are gathered back per token.
        let (unique, index) = timestep::distinct(t_values);
        let sinus = timestep::sinusoid(&unique);
        let sinus: Tensor<2> = tensor_from_f32(sinus, vec![unique.len(), timestep::CHANNELS], device, dtype);
        let temb = self.time_embed.linear_2.forward(silu(self.time_embed.linear_1.forward(sinus)));
        let t6 = self.time_embed.linear.forward(silu(temb.clone()));
        let gather = |x: Tensor<2>| -> Tensor<2> {
            if unique.len() == t_values.len() {
                x
            } else {
                let idx = Tensor::<1, burn::tensor::Int>::from_data(TensorData::new(index.clone(), [index.len()]), device);
                x.select(0, idx)
            }
        };
        let t6 = gather(t6).reshape([b, t_len, 6, d]);
        let temb = gather(temb).reshape([b, t_len, d]);

        // Caption tokens that are padding in every sample are dropped (see `caption_tokens_needed`).
        let keep = encoder_attention_mask.map_or(l, |m| caption_tokens_needed(m, b, l));
        let (encoder_hidden_states, mask, l) = match encoder_attention_mask {
            Some(m) if keep < l => {
                let kept: Vec<f32> = m.chunks(l).flat_map(|row| row[..keep].iter().copied()).collect();
                (encoder_hidden_states.narrow(1, 0, keep), Some(kept), keep)
            }
            m => (encoder_hidden_states, m.map(|m| m.to_vec()), l),
        };

        // Caption: Linear -> GELU(tanh) -> Linear -> RMSNorm(eps 1e-5).
        let y = to_dtype(encoder_hidden_states, dtype);
        let y = self.caption_projection.linear_2.forward(gelu_tanh(self.caption_projection.linear_1.forward(y)));
        let caption = crate::kernels::norm::rms_norm(y, &self.caption_norm, 1e-5, self.kernels);

        let caption_bias = mask.as_deref().map(|m| {
            let bias: Vec<f32> = m.iter().map(|&k| (1.0 - k) * -10000.0).collect();
            Tensor::<4>::from_data(TensorData::new(bias, [b, 1, 1, l]), device)
        });

        let ctx = block::BlockContext {
            t6: &t6,
            caption: &caption,
            caption_bias: caption_bias.as_ref(),
            rope_cos: &rope_cos,
            rope_sin: &rope_sin,
            grid,
            kernels: self.kernels,
        };
        crate::profile::mark(device, "embed (patch, time, caption)");
        let mut x = x;
        let mut updates = Vec::new();
        for (i, blk) in self.transformer_blocks.iter().enumerate() {
            x = match long {
                None => blk.forward(x, &ctx, cfg),
                Some((st, record)) => {
                    let (y, up) = blk.forward_chunk(x, &ctx, cfg, &st.layers[i], record);
                    updates.extend(up);
                    y
                }
            };
        }

        // Output head: LayerNorm, (shift, scale) = table + temb, proj_out, unpatchify.
        let table = self.scale_shift_table.clone();
        let shift = table.clone().narrow(0, 0, 1).reshape([1, 1, d]) + temb.clone();
        let scale = table.narrow(0, 1, 1).reshape([1, 1, d]) + temb;
        let x = crate::kernels::norm::layer_norm_modulate(x, scale, shift, 1e-6, self.kernels);
        let co = cfg.out_channels;
        let x = self
            .proj_out
            .forward(x)
            .reshape([b, gf, gh, gw, pt, ph, pw, co])
            .permute([0, 7, 1, 4, 2, 5, 3, 6])
            .reshape([b, co, f, h, w]);
        crate::profile::mark(device, "head");
        let recorded = matches!(long, Some((_, true)));
        Ok((x, if recorded { Some(updates) } else { None }))
    }
}


#[cfg(test)]
mod tests {
    use super::caption_tokens_needed;

    #[test]
    fn caption_keeps_up_to_the_last_token_any_sample_keeps() {
        // Right padding: the longest prompt decides.
        assert_eq!(caption_tokens_needed(&[1., 1., 0., 0., 1., 1., 1., 0.], 2, 4), 3);
        // A kept token after a gap keeps the gap too (its keys are masked, weight zero).
        assert_eq!(caption_tokens_needed(&[1., 0., 0., 1., 0., 0.], 2, 3), 1);
        assert_eq!(caption_tokens_needed(&[1., 0., 1., 0., 0., 0.], 1, 6), 3);
        // Nothing to drop.
        assert_eq!(caption_tokens_needed(&[1., 1., 1.], 1, 3), 3);
        // A sample with every key masked attends to all of them uniformly: keep all.
        assert_eq!(caption_tokens_needed(&[1., 0., 0., 0., 0., 0.], 2, 3), 3);
        // A mask of the wrong length is refused earlier; here it changes nothing.
        assert_eq!(caption_tokens_needed(&[1., 0.], 2, 3), 3);
    }
}
