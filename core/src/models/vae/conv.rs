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
//! On CUDA the slabs are not copied at all: over the padded channels-last grid flattened to
//! rows, tap `(a, b, k)` of output row `r` is input row `r + (a·Hp + b)·Wp + k`, so each of
//! the `kt·kh·kw` taps is a GEMM reading the input in place at a row offset, accumulated in
//! cuBLASLt (`kernels::matmul::tap_gemms`). Outputs are computed for the whole padded grid
//! (the few that fall off it are dropped), one input copy (permute and pad) and one output
//! copy per conv. With an f32 VAE these GEMMs run on TF32 tensor cores by default, as
//! PyTorch runs the reference's convs (cuDNN's `allow_tf32` defaults to on);
//! `SANA_VAE_TF32=0` keeps them exact.
//!
//! Where cuDNN loads (CUDA), it runs the convs instead (`kernels::conv`): the activations'
//! `[B, C, T, H, W]` layout is its NCDHW, so nothing is copied at all, and its implicit-GEMM
//! kernels are PyTorch's own.
//!
//! The reference is burn's `conv3d` (tests compare both).

use burn::tensor::module::conv3d;
use burn::tensor::ops::ConvOptions;
use burn::tensor::{DType, Device, Tensor};

use crate::io::safetensors::{tensor_from_f32, Weights};
use crate::nn::matmul;
use crate::Result;

/// Which implementation a conv uses. `Auto`: cuDNN on CUDA devices where it loads
/// (`kernels::conv`), else tap GEMMs on GPUs (CubeCL devices), burn's `conv3d` on the CPU
/// backend, where it measured faster (BENCHMARKS.md). `TapGemm` (set before loading) keeps
/// the tap GEMMs on CUDA too.
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

/// Whether f32 VAE convs run on TF32 tensor cores on CUDA (module docs): on unless
/// `SANA_VAE_TF32` is `0`/`off`/`false`.
pub fn vae_tf32(dtype: DType) -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    dtype == DType::F32 && *ON.get_or_init(|| !matches!(std::env::var("SANA_VAE_TF32").as_deref(), Ok("0") | Ok("off") | Ok("false")))
}

pub struct Conv3d {
    /// `[O, C, kt, kh, kw]`, for the reference path.
    pub weight: Tensor<5>,
    /// Per `(t, h)` tap: `[kw·C, O]` (views of `slabs` on CUDA).
    pub taps: Vec<Tensor<2>>,
    /// On CUDA, every `(t, h, w)` tap's `[C, O]` slab stacked: `[kt·kh·kw·C, O]`.
    pub slabs: Option<Tensor<2>>,
    pub bias: Tensor<1>,
    pub kernel: [usize; 3],
    pub channels: [usize; 2],
    pub which: ConvImpl,
    /// f32 products on TF32 tensor cores where the CUDA path runs (see [`vae_tf32`]).
    pub tf32: bool,
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
        // Row `((a·kh + b)·kw + k)·C + ci`, column `oi`: tap (a, b)'s `[kw·C, O]` slab is
        // a contiguous block of rows.
        let mut all = vec![0f32; kt * kh * kw * c * o];
        for a in 0..kt {
            for b in 0..kh {
                for k in 0..kw {
                    for ci in 0..c {
                        for oi in 0..o {
                            all[((((a * kh + b) * kw + k) * c) + ci) * o + oi] = v[(((oi * c + ci) * kt + a) * kh + b) * kw + k];
                        }
                    }
                }
            }
        }
        let slab_len = kw * c;
        // With cuDNN (CUDA devices where it loads) convs need only `weight`, unless tap GEMMs
        // are asked for.
        let cudnn = crate::kernels::conv::available(device) && default_impl() == ConvImpl::Auto;
        let (taps, slabs) = if cudnn {
            (Vec::new(), None)
        } else if crate::kernels::is_cuda_device(device) {
            let slabs = tensor_from_f32(all, vec![kt * kh * slab_len, o], device, dtype);
            ((0..kt * kh).map(|i| slabs.clone().narrow(0, i * slab_len, slab_len)).collect(), Some(slabs))
        } else {
            let taps = all.chunks(slab_len * o).map(|s| tensor_from_f32(s.to_vec(), vec![slab_len, o], device, dtype)).collect();
            (taps, None)
        };
        Ok(Conv3d {
            weight: tensor_from_f32(v, vec![o, c, kt, kh, kw], device, dtype),
            taps,
            slabs,
            bias: w.load(&format!("{prefix}.bias"), device, dtype)?,
            kernel: [kt, kh, kw],
            channels: [c, o],
            which: default_impl(),
            tf32: vae_tf32(dtype),
        })
    }

    /// Convolves `[B, C, T, H, W]` (already padded in time) with stride `stride_t` in time,
    /// 1 in space, and `pad` zeros on each spatial side.
    pub fn forward(&self, x: Tensor<5>, stride_t: usize, pad: usize) -> Tensor<5> {
        let device = x.device();
        // Inputs in another dtype (f32 latents into a bf16 VAE) are cast to the weights'.
        let dtype = self.weight.dtype();
        let x = if x.dtype() != dtype { x.cast(burn::tensor::FloatDType::from(dtype)) } else { x };
        crate::profile::mark(&device, "vae: other ops");
        let y = self.forward_unmarked(x, stride_t, pad);
        crate::profile::mark(&device, "vae: convs");
        y
    }

    fn forward_unmarked(&self, x: Tensor<5>, stride_t: usize, pad: usize) -> Tensor<5> {
        let reference = match self.which {
            ConvImpl::Reference => true,
            ConvImpl::TapGemm => false,
            ConvImpl::Auto => !crate::kernels::is_cube_device(&x.device()),
        };
        if !reference && (self.which == ConvImpl::Auto || self.taps.is_empty()) {
            if let Some(y) = crate::kernels::conv::conv3d(&x, &self.weight, stride_t, pad, self.tf32) {
                return y + self.bias.clone().reshape([1, self.channels[1], 1, 1, 1]);
            }
        }
        if reference || self.taps.is_empty() {
            let opts = ConvOptions::new([stride_t, 1, 1], [0, pad, pad], [1, 1, 1], 1);
            return conv3d(x, self.weight.clone(), Some(self.bias.clone()), opts);
        }
        if let Some(y) = self.forward_in_place(&x, stride_t, pad) {
            return y;
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

    /// The CUDA path (module docs): `None` where it does not apply (no slabs, a temporal
    /// stride, a refused plan).
    fn forward_in_place(&self, x: &Tensor<5>, stride_t: usize, pad: usize) -> Option<Tensor<5>> {
        let slabs = self.slabs.as_ref()?;
        if stride_t != 1 || self.which == ConvImpl::Reference {
            return None;
        }
        let [kt, kh, kw] = self.kernel;
        let [c, o] = self.channels;
        let [b, _, t, h, w] = x.dims();
        let (hp, wp) = (h + 2 * pad, w + 2 * pad);
        if t < kt || hp < kh || wp < kw {
            return None;
        }
        let (to, ho, wo) = (t - kt + 1, hp - kh + 1, wp - kw + 1);
        let (dev, dt) = (x.device(), x.dtype());
        // One copy: channels-last into a zeroed padded grid.
        let xl = x.clone().permute([0, 2, 3, 4, 1]);
        let xl = if pad > 0 { Tensor::zeros([b, t, hp, wp, c], (&dev, dt)).slice_assign([0..b, 0..t, pad..pad + h, pad..pad + w, 0..c], xl) } else { xl };
        let rows = b * t * hp * wp;
        // The last valid output row is `rows - offsets.last() - 1`.
        let m = rows - ((kt - 1) * hp + (kh - 1)) * wp - (kw - 1);
        let y = crate::kernels::matmul::tap_gemms(xl.reshape([rows, c]), slabs.clone(), self.kernel, hp, wp, m, self.tf32, crate::kernels::Impl::Auto)?;
        let mut y = y.reshape([b, t, hp, wp, o]).narrow(1, 0, to).narrow(2, 0, ho).narrow(3, 0, wo);
        if y.dtype() != dt {
            y = y.cast(burn::tensor::FloatDType::from(dt));
        }
        Some((y + self.bias.clone().reshape([1, 1, 1, 1, o])).permute([0, 4, 1, 2, 3]))
    }

    /// A 2-D conv (stride 1) over `[N, C, H, W]` through the same path.
    pub fn forward_2d(&self, x: Tensor<4>, pad: usize) -> Tensor<4> {
        let [n, c, h, w] = x.dims();
        let y = self.forward(x.reshape([n, c, 1, h, w]), 1, pad);
        let [_, o, _, ho, wo] = y.dims();
        y.reshape([n, o, ho, wo])
    }
}
