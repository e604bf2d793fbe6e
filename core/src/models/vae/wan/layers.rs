//! Building blocks of the Wan2.1 VAE, channel-first `[B, C, T, H, W]` like the reference,
//! each causal conv carrying its streaming cache explicitly (MODEL-SPEC §7.1).
//!
//! Streaming rule (diffusers' `feat_cache`): a causal 3x3x3 conv keeps the last two input
//! frames of the previous chunk and left-pads the next chunk with them (zeros where fewer
//! exist). That makes chunked processing identical to running over the whole sequence with
//! two zero frames on the left, whatever the chunk sizes.

use burn::tensor::module::conv2d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{activation, DType, Device, Tensor};

use crate::io::safetensors::Weights;
use crate::models::vae::conv::Conv3d;
use crate::nn::{matmul, to_dtype, to_f32};
use crate::Result;

/// Conv3d whose temporal padding is all on the left (`2·p_t` frames), spatial padding symmetric.
pub struct CausalConv3d {
    pub conv: Conv3d,
    pub kernel_t: usize,
    pub stride_t: usize,
    pub pad_t: usize,
    pub pad_hw: usize,
}

impl CausalConv3d {
    pub fn load(w: &Weights, p: &str, stride_t: usize, pad: [usize; 2], device: &Device, dtype: DType) -> Result<Self> {
        let conv = Conv3d::load(w, p, device, dtype)?;
        let kernel_t = conv.kernel[0];
        Ok(CausalConv3d { conv, kernel_t, stride_t, pad_t: pad[0], pad_hw: pad[1] })
    }

    /// Convolves `x` with `cache` (earlier frames) in front; zero frames make up the rest
    /// of the `2·pad_t` left context.
    pub fn forward(&self, x: Tensor<5>, cache: Option<&Tensor<5>>) -> Tensor<5> {
        let mut parts = Vec::new();
        let mut left = 2 * self.pad_t;
        if left > 0 {
            if let Some(c) = cache {
                let n = c.dims()[2].min(left);
                left -= n;
                let t = c.dims()[2];
                parts.push(c.clone().narrow(2, t - n, n));
            }
            if left > 0 {
                let [b, ch, _, h, w] = x.dims();
                parts.insert(0, Tensor::zeros([b, ch, left, h, w], (&x.device(), x.dtype())));
            }
        }
        let x = if parts.is_empty() {
            x
        } else {
            parts.push(x);
            Tensor::cat(parts, 2)
        };
        self.conv.forward(x, self.stride_t, self.pad_hw)
    }
}

/// diffusers' cache update: the last two frames of this chunk's input, with the previous
/// cache's last frame in front when the chunk has a single frame.
pub fn next_cache(x: &Tensor<5>, prev: Option<&Tensor<5>>) -> Tensor<5> {
    let t = x.dims()[2];
    let last = x.clone().narrow(2, t.saturating_sub(2), t.min(2));
    match prev {
        Some(p) if t < 2 => {
            let pt = p.dims()[2];
            Tensor::cat(vec![p.clone().narrow(2, pt - 1, 1), last], 2)
        }
        _ => last,
    }
}

/// A causal 3x3x3 conv together with its cache slot.
pub fn cached(conv: &CausalConv3d, x: Tensor<5>, slot: &mut Option<Tensor<5>>) -> Tensor<5> {
    let new = next_cache(&x, slot.as_ref());
    let y = conv.forward(x, slot.as_ref());
    *slot = Some(new);
    y
}

/// Channel RMS norm: `x / max(‖x‖₂ over channels, 1e-12) · √C · γ` (statistics in f32).
pub struct RmsNorm {
    /// `√C · γ`, shaped to broadcast over `[B, C, ...]`.
    pub scale: Tensor<1>,
}

impl RmsNorm {
    pub fn load(w: &Weights, name: &str, device: &Device) -> Result<Self> {
        let (g, shape) = w.read_f32(name)?;
        let c = shape[0] as f32;
        let s: Vec<f32> = g.into_iter().map(|v| v * c.sqrt()).collect();
        let n = s.len();
        Ok(RmsNorm { scale: crate::io::safetensors::tensor_from_f32(s, vec![n], device, DType::F32) })
    }

    /// Normalises over axis 1 of a rank-`D` tensor.
    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.forward_act(x, false)
    }

    /// `SiLU(norm(x))`, fused (`kernels::channel_norm`).
    pub fn forward_silu<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        self.forward_act(x, true)
    }

    fn forward_act<const D: usize>(&self, x: Tensor<D>, silu: bool) -> Tensor<D> {
        let device = x.device();
        crate::profile::mark(&device, "vae: other ops");
        let y = crate::kernels::channel_norm::rms_norm_channels(x, &self.scale, silu, crate::kernels::Impl::Auto);
        crate::profile::mark(&device, "vae: RMS norms");
        y
    }
}

pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    activation::silu(x)
}

/// `[B, C, T, H, W]` → `[B·T, C, H, W]` (frames as a batch of images).
pub fn frames(x: Tensor<5>) -> Tensor<4> {
    let [b, c, t, h, w] = x.dims();
    x.swap_dims(1, 2).reshape([b * t, c, h, w])
}

/// `[B·T, C, H, W]` → `[B, C, T, H, W]`.
pub fn unframes(x: Tensor<4>, b: usize) -> Tensor<5> {
    let [bt, c, h, w] = x.dims();
    x.reshape([b, bt / b, c, h, w]).swap_dims(1, 2)
}

/// Conv2d with weight `[out, in, k, k]`: tap GEMMs at stride 1, burn's `conv2d` for the
/// encoder's stride-2 downsamplers.
pub struct Conv2d {
    pub conv: Conv3d,
}

impl Conv2d {
    pub fn load(w: &Weights, p: &str, device: &Device, dtype: DType) -> Result<Self> {
        Ok(Conv2d { conv: Conv3d::load(w, p, device, dtype)? })
    }

    pub fn forward(&self, x: Tensor<4>, stride: usize, pad: usize) -> Tensor<4> {
        if stride == 1 {
            return self.conv.forward_2d(x, pad);
        }
        let [o, c, _, kh, kw] = self.conv.weight.dims();
        let weight = self.conv.weight.clone().reshape([o, c, kh, kw]);
        conv2d(x, weight, Some(self.conv.bias.clone()), ConvOptions::new([stride, stride], [pad, pad], [1, 1], 1))
    }
}

pub struct ResidualBlock {
    pub norm1: RmsNorm,
    pub conv1: CausalConv3d,
    pub norm2: RmsNorm,
    pub conv2: CausalConv3d,
    pub conv_shortcut: Option<CausalConv3d>,
}

impl ResidualBlock {
    pub fn load(w: &Weights, p: &str, device: &Device, dtype: DType) -> Result<Self> {
        let conv = |n: &str, pad| CausalConv3d::load(w, &format!("{p}.{n}"), 1, pad, device, dtype);
        Ok(ResidualBlock {
            norm1: RmsNorm::load(w, &format!("{p}.norm1.gamma"), device)?,
            conv1: conv("conv1", [1, 1])?,
            norm2: RmsNorm::load(w, &format!("{p}.norm2.gamma"), device)?,
            conv2: conv("conv2", [1, 1])?,
            conv_shortcut: if w.meta(&format!("{p}.conv_shortcut.weight")).is_some() {
                Some(conv("conv_shortcut", [0, 0])?)
            } else {
                None
            },
        })
    }

    /// Uses two cache slots (conv1, conv2).
    pub fn forward(&self, x: Tensor<5>, cache: &mut [Option<Tensor<5>>]) -> Tensor<5> {
        let h = match &self.conv_shortcut {
            Some(c) => c.forward(x.clone(), None),
            None => x.clone(),
        };
        let y = self.norm1.forward_silu(x);
        let y = cached(&self.conv1, y, &mut cache[0]);
        let y = self.norm2.forward_silu(y);
        let y = cached(&self.conv2, y, &mut cache[1]);
        y + h
    }
}

/// Elements per attention score chunk (see `AttentionBlock::forward`).
const SCORE_BUDGET: usize = 16 << 20;

/// Single-head softmax self-attention over the positions of each frame.
pub struct AttentionBlock {
    pub norm: RmsNorm,
    pub to_qkv: Conv2d,
    pub proj: Conv2d,
}

impl AttentionBlock {
    pub fn load(w: &Weights, p: &str, device: &Device, dtype: DType) -> Result<Self> {
        Ok(AttentionBlock {
            norm: RmsNorm::load(w, &format!("{p}.norm.gamma"), device)?,
            to_qkv: Conv2d::load(w, &format!("{p}.to_qkv"), device, dtype)?,
            proj: Conv2d::load(w, &format!("{p}.proj"), device, dtype)?,
        })
    }

    pub fn forward(&self, x: Tensor<5>) -> Tensor<5> {
        let device = x.device();
        crate::profile::mark(&device, "vae: other ops");
        let y = self.forward_unmarked(x);
        crate::profile::mark(&device, "vae: attention");
        y
    }

    fn forward_unmarked(&self, x: Tensor<5>) -> Tensor<5> {
        let [b, c, _, h, w] = x.dims();
        let f = self.norm.forward(frames(x.clone()));
        let n = f.dims()[0];
        let qkv = self.to_qkv.forward(f, 1, 0).reshape([n, 3 * c, h * w]).swap_dims(1, 2); // [N, HW, 3C]
        let q = qkv.clone().narrow(2, 0, c);
        let k = qkv.clone().narrow(2, c, c);
        let v = qkv.narrow(2, 2 * c, c);
        // Query rows in chunks so no score matrix exceeds 16 Mi elements (64 MiB in f32):
        // at 480p the whole [6240, 6240] matrix is larger than the 128 MiB storage-buffer
        // limit of WebGPU and of Mesa's lavapipe. Softmax is per row, so this is exact.
        let hw = h * w;
        let rows = (SCORE_BUDGET / hw.max(1)).clamp(1, hw.max(1));
        let kt = k.swap_dims(1, 2);
        let mut outs = Vec::new();
        let mut r0 = 0;
        while r0 < hw {
            let r = rows.min(hw - r0);
            let s = to_f32(matmul(q.clone().narrow(1, r0, r), kt.clone())) * (1.0 / (c as f64).sqrt());
            let p = to_dtype(activation::softmax(s, 2), v.dtype());
            outs.push(matmul(p, v.clone()));
            r0 += r;
        }
        let o = if outs.len() == 1 { outs.pop().expect("one chunk") } else { Tensor::cat(outs, 1) };
        let o = o.swap_dims(1, 2).reshape([n, c, h, w]);
        unframes(self.proj.forward(o, 1, 0), b) + x
    }
}

/// Nearest-neighbour 2x upsampling of `[N, C, H, W]` (= PyTorch's `nearest-exact` at 2x).
pub fn upsample_nearest2x(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    x.reshape([n, c, h, 1, w, 1]).expand([n, c, h, 2, w, 2]).reshape([n, c, 2 * h, 2 * w])
}

/// Zero-pads `[N, C, H, W]` by one row at the bottom and one column on the right.
pub fn pad_bottom_right(x: Tensor<4>) -> Tensor<4> {
    let [n, c, h, w] = x.dims();
    let (dev, dt) = (x.device(), x.dtype());
    let x = Tensor::cat(vec![x, Tensor::zeros([n, c, h, 1], (&dev, dt))], 3);
    Tensor::cat(vec![x, Tensor::zeros([n, c, 1, w + 1], (&dev, dt))], 2)
}

/// State of an upsample3d's temporal conv across chunks.
#[derive(Clone)]
pub enum TimeCache {
    /// Nothing seen yet: the next (first) chunk bypasses the temporal conv.
    Fresh,
    /// The first chunk passed; the temporal conv starts from zeros.
    Started,
    Frames(Tensor<5>),
}

pub enum ResampleMode {
    Up2d,
    Up3d(CausalConv3d),
    Down2d,
    Down3d(CausalConv3d),
}

pub struct Resample {
    pub mode: ResampleMode,
    /// `resample.1`: the spatial conv.
    pub conv: Conv2d,
}

impl Resample {
    /// Decoder upsamplers (`temporal` picks upsample3d).
    pub fn load_up(w: &Weights, p: &str, temporal: bool, device: &Device, dtype: DType) -> Result<Self> {
        let mode = if temporal {
            ResampleMode::Up3d(CausalConv3d::load(w, &format!("{p}.time_conv"), 1, [1, 0], device, dtype)?)
        } else {
            ResampleMode::Up2d
        };
        Ok(Resample { mode, conv: Conv2d::load(w, &format!("{p}.resample.1"), device, dtype)? })
    }

    /// Encoder downsamplers (`temporal` picks downsample3d).
    pub fn load_down(w: &Weights, p: &str, temporal: bool, device: &Device, dtype: DType) -> Result<Self> {
        let mode = if temporal {
            ResampleMode::Down3d(CausalConv3d::load(w, &format!("{p}.time_conv"), 2, [0, 0], device, dtype)?)
        } else {
            ResampleMode::Down2d
        };
        Ok(Resample { mode, conv: Conv2d::load(w, &format!("{p}.resample.1"), device, dtype)? })
    }

    pub fn forward(&self, x: Tensor<5>, state: &mut TimeCache) -> Tensor<5> {
        let device = x.device();
        crate::profile::mark(&device, "vae: other ops");
        let y = self.forward_unmarked(x, state);
        crate::profile::mark(&device, "vae: resampling");
        y
    }

    fn forward_unmarked(&self, x: Tensor<5>, state: &mut TimeCache) -> Tensor<5> {
        let [b, _, _, _, _] = x.dims();
        let x = match (&self.mode, &*state) {
            (ResampleMode::Up3d(_), TimeCache::Fresh) => {
                *state = TimeCache::Started;
                x
            }
            (ResampleMode::Up3d(tc), _) => {
                let prev = match &*state {
                    TimeCache::Frames(f) => Some(f.clone()),
                    _ => None,
                };
                // Cache: last two frames; a lone frame gets the previous last frame (or a
                // zero frame right after the first chunk) in front.
                let t = x.dims()[2];
                let mut new = x.clone().narrow(2, t.saturating_sub(2), t.min(2));
                if t < 2 {
                    let front = match &prev {
                        Some(p) => p.clone().narrow(2, p.dims()[2] - 1, 1),
                        None => new.clone().zeros_like(),
                    };
                    new = Tensor::cat(vec![front, new], 2);
                }
                let y = tc.forward(x, prev.as_ref());
                *state = TimeCache::Frames(new);
                // [B, 2C, t, H, W] -> frames interleaved: 2i from channels [0, C), 2i+1 from [C, 2C).
                let [b, c2, t, h, w] = y.dims();
                let c = c2 / 2;
                y.reshape([b, 2, c, t, h, w]).permute([0, 2, 3, 1, 4, 5]).reshape([b, c, 2 * t, h, w])
            }
            _ => x,
        };
        let f = frames(x);
        let f = match &self.mode {
            ResampleMode::Up2d | ResampleMode::Up3d(_) => self.conv.forward(upsample_nearest2x(f), 1, 1),
            ResampleMode::Down2d | ResampleMode::Down3d(_) => self.conv.forward(pad_bottom_right(f), 2, 0),
        };
        let x = unframes(f, b);
        match &self.mode {
            ResampleMode::Down3d(tc) => match &*state {
                TimeCache::Fresh | TimeCache::Started => {
                    *state = TimeCache::Frames(x.clone());
                    x
                }
                TimeCache::Frames(prev) => {
                    let t = x.dims()[2];
                    let pt = prev.dims()[2];
                    let new = x.clone().narrow(2, t - 1, 1);
                    let y = tc.forward(Tensor::cat(vec![prev.clone().narrow(2, pt - 1, 1), x], 2), None);
                    *state = TimeCache::Frames(new);
                    y
                }
            },
            _ => x,
        }
    }
}
