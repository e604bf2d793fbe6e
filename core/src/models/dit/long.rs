//! LongSANA's constant-size state (MODEL-SPEC §5.2, §5.3): per layer the running sums
//! `S = Σ v ⊗ R(pos)·φ(k)` and `z = Σ φ(k)` over every token of the finished chunks, and the
//! FFN's cached last frame. The reference code keeps a list of per-chunk sums and re-adds them
//! before every chunk (memory grows with length); a running sum is the same number for the
//! full prefix and stays O(1). Only a window (`--cached-blocks K`) needs the last K chunks'
//! contributions, so only then are they kept.

use std::collections::VecDeque;

use super::block::{LayerState, LayerUpdate};
use super::SanaVideoTransformer3DModel;
use crate::kernels::linear_attention::KvSums;
use crate::{Error, Result};

#[derive(Clone, Debug)]
pub struct LongState {
    pub layers: Vec<LayerState>,
    /// Latent frames already committed: the absolute position of the next chunk.
    pub frames_done: usize,
    pub chunks_done: usize,
    /// `Some(K)`: attend to the last K finished chunks only; `None`: all of them.
    pub window: Option<usize>,
    /// With a window: each kept chunk's per-layer sums, oldest first.
    history: VecDeque<Vec<KvSums>>,
}

impl LongState {
    /// An empty state for a model of `layers` blocks (the first chunk sees no context).
    pub fn new(layers: usize, window: Option<usize>) -> Result<LongState> {
        if window == Some(0) {
            return Err(Error::Input("--cached-blocks 0: the window must hold at least one chunk (or -1 for all)".into()));
        }
        Ok(LongState { layers: vec![LayerState::default(); layers], frames_done: 0, chunks_done: 0, window, history: VecDeque::new() })
    }

    /// Refuses a chunk the state cannot continue (other model width or batch, other frame size).
    pub fn check(&self, dit: &SanaVideoTransformer3DModel, dims: [usize; 5]) -> Result<()> {
        if self.layers.len() != dit.transformer_blocks.len() {
            return Err(Error::Input(format!(
                "the LongSANA state has {} layers, the transformer {}",
                self.layers.len(),
                dit.transformer_blocks.len()
            )));
        }
        let [b, _, _, h, w] = dims;
        let [_, ph, pw] = dit.config.patch_size;
        let tokens = (h / ph.max(1)) * (w / pw.max(1));
        if let Some(prev) = self.layers.first().and_then(|l| l.last_frame.as_ref()) {
            let [pb, pn, pd] = prev.dims();
            if pb != b || pn != tokens || pd != dit.config.dim {
                return Err(Error::Input(format!(
                    "the LongSANA state was made for batch {pb} and {pn} tokens per frame of width {pd}; \
                     this chunk has batch {b}, {tokens} tokens per frame, width {}",
                    dit.config.dim
                )));
            }
        }
        Ok(())
    }

    /// Adds a finished chunk of `frames` latent frames (the updates of its clean t = 0 pass).
    pub fn commit(&mut self, updates: Vec<LayerUpdate>, frames: usize) -> Result<()> {
        if updates.len() != self.layers.len() {
            return Err(Error::Input(format!("{} layer updates for a state of {} layers", updates.len(), self.layers.len())));
        }
        match self.window {
            None => {
                for (layer, up) in self.layers.iter_mut().zip(updates) {
                    layer.sums = Some(match layer.sums.take() {
                        Some(s) => s.add(up.sums),
                        None => up.sums,
                    });
                    layer.last_frame = Some(up.last_frame);
                }
            }
            Some(k) => {
                let mut sums = Vec::with_capacity(updates.len());
                for (layer, up) in self.layers.iter_mut().zip(updates) {
                    sums.push(up.sums);
                    layer.last_frame = Some(up.last_frame);
                }
                self.history.push_back(sums);
                while self.history.len() > k {
                    self.history.pop_front();
                }
                // Re-add the window (K additions per layer) rather than subtract the dropped
                // chunk, so no rounding drift accumulates over a long video.
                for (i, layer) in self.layers.iter_mut().enumerate() {
                    let mut it = self.history.iter().map(|c| c[i].clone());
                    let first = it.next();
                    layer.sums = first.map(|f| it.fold(f, |acc, s| acc.add(s)));
                }
            }
        }
        self.frames_done += frames;
        self.chunks_done += 1;
        Ok(())
    }

    /// The per-chunk sums a window keeps (oldest first), for saving the state.
    pub fn window_history(&self) -> &VecDeque<Vec<KvSums>> {
        &self.history
    }

    /// Rebuilds a windowed state's history (loading a saved state).
    pub fn set_window_history(&mut self, history: VecDeque<Vec<KvSums>>) {
        self.history = history;
    }
}
