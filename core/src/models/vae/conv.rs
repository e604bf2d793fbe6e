//! 3-D convolution as a sum of GEMMs over channels-last tokens ("tap GEMMs").
//!
//! burn 0.22's generic `conv3d` on CubeCL (its memory-conservative direct kernel, as
//! autotune is off in our build) made the Wan decoder 9–14x slower than PyTorch on the
//! H100. Here a `kt x kh x kw` kernel becomes `kt·kh` matrix products: for each temporal
//! and vertical tap the `kw` horizontally shifted views are concatenated along channels
//! (`[N, kw·C]`) and multiplied by that tap's `[kw·C, O]` weight slab. Memory stays at one
//! `[N, kw·C]` slab plus the `[N, O]` accumulator (no `[N, 27·C]` im2col), the products go
//! through `nn::matmul` (exact f32 on GPUs, tensor cores for f16/bf16), and the result is
//! bit-for-bit a sum of the same products a direct conv computes, up to summation order.
//! The reference is burn's `conv3d` (tests compare both).

use burn::tensor::module::conv3d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Tensor};

use crate::io::safetensors::{tensor_from_f32, Weights};
use crate::nn::matmul;
use crate::Result;

/// Which implementation a conv uses. `Auto`: tap GEMMs on GPUs (CubeCL devices), burn's
/// `conv3d` on the CPU backend, where it measured faster (BENCHMARKS.md).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ConvImpl {
    Auto,
    TapGemm,
    Reference,
}

static DEFAULT_IMPL: std::sync::atomic::AtomicU8 = std::sync::atomic::AtomicU8::new(0);

/// The implementation convs loaded from now on use (benchmarks and tests compare them).
pub fn set_default_impl(which: ConvImpl) {
    let v = match which {
        ConvImpl::Auto => 0,
        ConvImpl::TapGemm => 1,
        ConvImpl::Reference => 2,
    };
    DEFAULT_IMPL.store(v, std::sync::atomic::Ordering::Relaxed);
}

pub fn default_impl() -> ConvImpl {
    match DEFAULT_IMPL.load(std::sync::atomic::Ordering::Relaxed) {
        1 => ConvImpl::TapGemm,
        2 => ConvImpl::Reference,
        _ => ConvImpl::Auto,
    }
}

pub struct Conv3d {
    /// `[O, C, kt, kh, kw]`, for the reference path.
    pub weight: Tensor<5>,
    /// Per `(t, h)` tap: `[kw·C, O]`.
    pub taps: Vec<Tensor<2>>,
    pub bias: Tensor<1>,
    pub kernel: [usize; 3],
    pub channels: [usize; 2],
    pub which: ConvImpl,
}

impl Conv3d {
    /// Loads `{prefix}.weight` (`[O, C, kt, kh, kw]`, or a 2-D conv's `[O, C, kh, kw]`) and
    /// `{prefix}.bias`.
    pub fn load(w: &Weights, prefix: &str, device: &Device, dtype: DType) -> Result<Self> {
        let name = format!("{prefix}.weight");
        let (v, shape) = w.read_f32(&name)?;
        let (o, c, kt, kh, kw) = match shape[..] {
            [o, c, kt, kh, kw] => (o, c, kt, kh, kw),
            [o, c, kh, kw] => (o, c, 1, kh, kw),
            _ => {
                let file = w.meta(&name).map(|m| m.file).unwrap_or_default();
                return Err(crate::Error::tensor(file, name, format!("has shape {shape:?}; expected a conv weight")));
            }
        };
        let mut taps = Vec::with_capacity(kt * kh);
        for a in 0..kt {
            for b in 0..kh {
                let mut slab = vec![0f32; kw * c * o];
                for k in 0..kw {
                    for ci in 0..c {
                        for oi in 0..o {
                            slab[(k * c + ci) * o + oi] = v[(((oi * c + ci) * kt + a) * kh + b) * kw + k];
                        }
                    }
                }
                taps.push(tensor_from_f32(slab, vec![kw * c, o], device, dtype));
            }
        }
        Ok(Conv3d {
            weight: tensor_from_f32(v, vec![o, c, kt, kh, kw], device, dtype),
            taps,
            bias: w.load(&format!("{prefix}.bias"), device, dtype)?,
            kernel: [kt, kh, kw],
            channels: [c, o],
            which: default_impl(),
        })
    }

    /// Convolves `[B, C, T, H, W]` (already padded in time) with stride `stride_t` in time,
    /// 1 in space, and `pad` zeros on each spatial side.
    pub fn forward(&self, x: Tensor<5>, stride_t: usize, pad: usize) -> Tensor<5> {
        let reference = match self.which {
            ConvImpl::Reference => true,
            ConvImpl::TapGemm => false,
            ConvImpl::Auto => !crate::kernels::is_cube_device(&x.device()),
        };
        if reference {
            let opts = ConvOptions::new([stride_t, 1, 1], [0, pad, pad], [1, 1, 1], 1);
            return conv3d(x, self.weight.clone(), Some(self.bias.clone()), opts);
        }
        let [kt, kh, kw] = self.kernel;
        let [c, o] = self.channels;
        let [b, _, t, h, w] = x.dims();
        let mut xl = x.permute([0, 2, 3, 4, 1]); // [B, T, H, W, C]
        if pad > 0 {
            let (dev, dt) = (xl.device(), xl.dtype());
            let zh = Tensor::zeros([b, t, pad, w, c], (&dev, dt));
            xl = Tensor::cat(vec![zh.clone(), xl, zh], 2);
            let zw = Tensor::zeros([b, t, h + 2 * pad, pad, c], (&dev, dt));
            xl = Tensor::cat(vec![zw.clone(), xl, zw], 3);
        }
        let (to, ho, wo) = ((t - kt) / stride_t + 1, h + 2 * pad - kh + 1, w + 2 * pad - kw + 1);
        let n = b * to * ho * wo;
        let mut acc: Option<Tensor<2>> = None;
        for a in 0..kt {
            let frames = if stride_t == 1 {
                xl.clone().narrow(1, a, to)
            } else {
                Tensor::cat((0..to).map(|i| xl.clone().narrow(1, a + i * stride_t, 1)).collect(), 1)
            };
            for bb in 0..kh {
                let rows = frames.clone().narrow(2, bb, ho);
                let cols = if kw == 1 {
                    rows.narrow(3, 0, wo)
                } else {
                    Tensor::cat((0..kw).map(|k| rows.clone().narrow(3, k, wo)).collect(), 4)
                };
                let y = matmul(cols.reshape([n, kw * c]), self.taps[a * kh + bb].clone());
                acc = Some(match acc {
                    Some(s) => s + y,
                    None => y,
                });
            }
        }
        let y = acc.expect("kernel has at least one tap") + self.bias.clone().unsqueeze::<2>();
        y.reshape([b, to, ho, wo, o]).permute([0, 4, 1, 2, 3])
    }

    /// A 2-D conv (stride 1) over `[N, C, H, W]` through the same path.
    pub fn forward_2d(&self, x: Tensor<4>, pad: usize) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let y = self.forward(x.reshape([n, c, 1, h, w]), 1, pad);
        let [_, o, _, ho, wo] = y.dims();
        y.reshape([n, o, ho, wo])
    }
}
