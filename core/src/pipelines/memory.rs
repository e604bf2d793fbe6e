//! The memory plan: before anything loads, the peak device memory of each stage (weights
//! from the safetensors headers, activations from the shapes), so a request that cannot fit
//! is refused at once with the numbers and what would fit.
//!
//! Activation models (bytes; B batch incl. CFG, N tokens, D width, F FFN width, e element
//! size), fitted to what this engine measured (BENCHMARKS.md): DiT `f·B·N·(8D + 5F)·e`
//! (residual, modulated copies, q/k/v, the GLU's 2F input, depthwise output and gate, with
//! the temporaries and pool slack seen) plus the f32 velocity, f = 1 for 16-bit activations
//! (480p, 81 frames, bf16 with CFG: 6.02 GB of activations reserved while denoising on an
//! H200, 2026-11-29, against the model's 6.75) and f = 0.72 for W8A8 with FP8 weights, whose
//! GEMM inputs are 8-bit (4.36 GB measured, 2026-11-29 session 4, against 4.86). The factor
//! was 3 when the fused kernels did not exist (24.7 GB on an H100, 2026-11-27), which the
//! CPU backend's tensor-op references keep, and 1.5 until these fits, which made the plan
//! refuse the FP8 480p clip on an 8 GiB card where it runs (7.3 GB nvidia-smi peak). FP8/NVFP4 weights count their stored bytes;
//! Gemma-2 `B·L·(6H + 3I)·4`; Wan and LTX-2 decoders `K·P·C₀·e` with P output pixels per
//! decoded frame (or tile), C₀ the widest full-resolution channel count and K = 280
//! (cached frames, the 4x temporal upsampling, tap-GEMM temporaries and pool slack), or
//! where cuDNN runs the convs in place K = 80 for Wan (its full-resolution tail one frame at
//! a time; f32 decode at 480p 10.6 GB reserved on an H200, 2026-11-29) and 120 for LTX-2
//! (not separately calibrated). They track our implementation, not the
//! arithmetic minimum; issue 9's fused kernels will lower both.

use std::fmt;

#[derive(Clone, Debug)]
pub struct StagePlan {
    pub name: &'static str,
    pub weights: u64,
    pub activations: u64,
}

impl StagePlan {
    pub fn total(&self) -> u64 {
        self.weights + self.activations
    }
}

#[derive(Clone, Debug)]
pub struct MemoryPlan {
    pub stages: Vec<StagePlan>,
    /// Stages resident together (`--keep-resident`) instead of one after another.
    pub resident: bool,
}

pub fn gb(bytes: u64) -> f64 {
    bytes as f64 / 1e9
}

impl MemoryPlan {
    /// The peak: the largest stage, or all weights plus the largest activations when resident.
    pub fn peak(&self) -> u64 {
        if self.resident {
            self.stages.iter().map(|s| s.weights).sum::<u64>() + self.stages.iter().map(|s| s.activations).max().unwrap_or(0)
        } else {
            self.stages.iter().map(|s| s.total()).max().unwrap_or(0)
        }
    }

    pub fn largest(&self) -> Option<&StagePlan> {
        self.stages.iter().max_by_key(|s| s.total())
    }
}

impl fmt::Display for MemoryPlan {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let parts: Vec<String> = self
            .stages
            .iter()
            .map(|s| format!("{} {:.2} GB ({:.2} weights + {:.2} activations)", s.name, gb(s.total()), gb(s.weights), gb(s.activations)))
            .collect();
        write!(
            f,
            "peak {:.2} GB{}: {}",
            gb(self.peak()),
            if self.resident { " (stages resident together)" } else { " (stages one after another)" },
            parts.join("; ")
        )
    }
}

/// Which of the DiT's measured activation models applies.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DitModel {
    /// The CPU backend's tensor-op references (factor 3, measured before the fused kernels).
    Reference,
    /// The fused kernels with 16-bit activations (factor 1).
    Fused,
    /// The fused kernels with FP8 weights whose products take FP8 activations (0.72).
    FusedW8a8,
}

pub fn dit_activations(batch: usize, tokens: usize, dim: usize, ffn: usize, elt: usize, out_channels_per_token: usize, model: DitModel) -> u64 {
    let factor = match model {
        DitModel::Reference => 3.0,
        DitModel::Fused => 1.0,
        DitModel::FusedW8a8 => 0.72,
    };
    let per_token = ((8 * dim + 5 * ffn) * elt) as f64 * factor;
    (batch * tokens) as u64 * (per_token as u64 + (out_channels_per_token * 4) as u64)
}

pub fn text_activations(batch: usize, len: usize, hidden: usize, intermediate: usize) -> u64 {
    (batch * len) as u64 * ((6 * hidden + 3 * intermediate) * 4) as u64
}

/// `in_place`: convs through cuDNN, else tap GEMMs (K = 280, not re-fitted since). Wan's
/// decoder with cuDNN runs its full-resolution tail one frame at a time: K = 80, over the
/// 66 measured (f32 TF32 decode at 480p 10.58 GB reserved, bf16 5.30 GB, weights included;
/// H200, 2026-11-29, fifth harness run); LTX-2 with cuDNN K = 120 (the Wan figure before the
/// frame tail; LTX-2 not separately calibrated).
pub fn decoder_activations(pixels: usize, channels: usize, elt: usize, in_place: bool, wan: bool) -> u64 {
    let k = match (in_place, wan) {
        (true, true) => 80,
        (true, false) => 120,
        (false, _) => 280,
    };
    k * pixels as u64 * (channels * elt) as u64
}
