//! Matrix products that keep f32 exact.
//!
//! burn's default CubeCL matmul runs f32 problems on tensor cores as TF32 where the device
//! has them (CUDA, Vulkan with cooperative matrices), about 1e-3 relative error per
//! product. With `--dtype f32` we promise f32 numerics (parity 1e-5 with the float64
//! reference), so f32 products on CubeCL devices go through cubek's unit (non-tensor-core)
//! routine instead. f16/bf16 products keep burn's default (tensor cores).
//!
//! The reference is burn's own `Tensor::matmul`, exact on the CPU backend.

#[cfg(feature = "cube")]
pub mod cube;
#[cfg(feature = "cuda")]
pub mod cublas;
#[cfg(feature = "cube")]
pub use cube::{matmul_half_routine, DEFAULT_HALF_ROUTINE, HALF_ROUTINES};

#[cfg(feature = "cube")]
use burn::tensor::DType;
use burn::tensor::Tensor;

use crate::Impl;

/// `a · b` of f16/bf16 operands with f32 accumulation and an f32 result (what flash
/// attention does for its logits): tensor cores without rounding the products' sum to the
/// operands' 8- or 11-bit mantissa. f32 operands go to [`matmul`].
pub fn matmul_to_f32<const D: usize>(a: Tensor<D>, b: Tensor<D>, which: Impl) -> Tensor<D> {
    use burn::tensor::FloatDType;
    if a.dtype() == burn::tensor::DType::F32 && b.dtype() == burn::tensor::DType::F32 {
        return matmul(a, b, which);
    }
    #[cfg(feature = "cube")]
    if which == Impl::Auto && crate::is_cube_device(&a.device()) {
        return cube::matmul_to_f32(a, b);
    }
    // Reference: the operands are exact in f32, so this differs only in summation order.
    matmul(a.cast(FloatDType::F32), b.cast(FloatDType::F32), which)
}

/// `a · b` accumulated in f32 and rounded once to `a`'s dtype: what [`matmul_to_f32`]
/// then a cast gives, without writing and re-reading the f32 product on CubeCL devices
/// (their half-precision GEMMs round from the f32 accumulators).
pub fn matmul_rounded<const D: usize>(a: Tensor<D>, b: Tensor<D>, which: Impl) -> Tensor<D> {
    let dtype = a.dtype();
    #[cfg(feature = "cube")]
    if which == Impl::Auto && a.dtype() == b.dtype() && matches!(dtype, DType::F16 | DType::BF16) && crate::is_cube_device(&a.device()) {
        return cube::matmul_half(a, b, false);
    }
    let out = matmul_to_f32(a, b, which);
    if out.dtype() == dtype {
        out
    } else {
        out.cast(burn::tensor::FloatDType::from(dtype))
    }
}

/// [`matmul_rounded`] of per-head operands `[B, H, M, K] · [B, H, K, N]`, returned with the
/// heads merged, `[B, M, H, N]`: row-major on CubeCL devices (on CUDA the GEMM writes that
/// layout itself), a view on the reference path.
pub fn matmul_rounded_merge_heads(a: Tensor<4>, b: Tensor<4>, which: Impl) -> Tensor<4> {
    #[cfg(feature = "cube")]
    if which == Impl::Auto && a.dtype() == b.dtype() && matches!(a.dtype(), DType::F16 | DType::BF16) && crate::is_cube_device(&a.device()) {
        return cube::matmul_half_heads_merged(a, b);
    }
    matmul_rounded(a, b, which).swap_dims(1, 2)
}

/// [`matmul`] of f32 operands for a result that is rounded to f16/bf16 afterwards (the
/// linear attention's sums in a 16-bit model): on CUDA TF32 tensor cores (operands rounded to
/// 10 explicit mantissa bits, 2^-11 relative, against the 2^-8 or 2^-11 of the final rounding;
/// f32 accumulation), elsewhere exactly [`matmul`]. The reference is exact f32.
pub fn matmul_fast_f32<const D: usize>(a: Tensor<D>, b: Tensor<D>, which: Impl) -> Tensor<D> {
    #[cfg(feature = "cube")]
    if which == Impl::Auto && a.dtype() == DType::F32 && b.dtype() == DType::F32 && crate::is_cube_device(&a.device()) {
        return cube::matmul_f32_fast(a, b);
    }
    matmul(a, b, which)
}

/// The row offsets of a `kt x kh x kw` kernel's taps over a channels-last grid flattened
/// from `[.., hp, wp, C]` (padded height and width): tap `(a, b, k)` reads row
/// `r + (a·hp + b)·wp + k` for output row `r`. In `(a, b, k)` order, as the weight slabs.
pub fn tap_offsets(kernel: [usize; 3], hp: usize, wp: usize) -> Vec<usize> {
    let [kt, kh, kw] = kernel;
    let mut offsets = Vec::with_capacity(kt * kh * kw);
    for a in 0..kt {
        for b in 0..kh {
            for k in 0..kw {
                offsets.push((a * hp + b) * wp + k);
            }
        }
    }
    offsets
}

/// A stride-1 convolution over a flattened, padded, channels-last grid as one GEMM per tap:
/// `out[r] = Σ_i x[r + offset_i] · w_i` for `r < m`, `x` `[R, C]`, `w` `[taps·C, O]` (tap `i`'s
/// `[C, O]` slab at rows `i·C`), offsets from [`tap_offsets`]. Returns an f32 `[R, O]` (taps accumulate there, so 16-bit operands are never rounded per tap); rows from `m`
/// on are unspecified (the caller keeps only the rows of valid outputs, which all lie below
/// `m`). On CUDA the taps read `x` in place and accumulate in cuBLASLt (`tf32`: f32 operands
/// on TF32 tensor cores); `None` elsewhere, where callers use [`tap_gemms_reference`] or
/// their own path.
pub fn tap_gemms(x: Tensor<2>, w: Tensor<2>, kernel: [usize; 3], hp: usize, wp: usize, m: usize, tf32: bool, which: Impl) -> Option<Tensor<2>> {
    #[cfg(feature = "cube")]
    if which == Impl::Auto && crate::is_cube_device(&x.device()) {
        return cube::tap_gemms(x, w, kernel, hp, wp, m, tf32);
    }
    let _ = (x, w, kernel, hp, wp, m, tf32, which);
    None
}

/// [`tap_gemms`] in plain tensor ops: each tap's rows narrowed and multiplied through
/// [`matmul`], summed; the rows from `m` on are zeros.
pub fn tap_gemms_reference(x: Tensor<2>, w: Tensor<2>, kernel: [usize; 3], hp: usize, wp: usize, m: usize) -> Tensor<2> {
    let [rows, c] = x.dims();
    let o = w.dims()[1];
    let mut acc: Option<Tensor<2>> = None;
    for (i, off) in tap_offsets(kernel, hp, wp).into_iter().enumerate() {
        let y = matmul(x.clone().narrow(0, off, m), w.clone().narrow(0, i * c, c), Impl::Auto);
        acc = Some(match acc {
            Some(s) => s + y,
            None => y,
        });
    }
    let acc = acc.expect("a kernel has at least one tap");
    if m == rows {
        return acc;
    }
    let tail = Tensor::zeros([rows - m, o], (&acc.device(), acc.dtype()));
    Tensor::cat(vec![acc, tail], 0)
}

/// A linear layer's product `x · w (+ bias)`, `x` `[M, K]`, `w` `[K, N]`, `bias` `[N]`, all
/// in one dtype. For f16/bf16 on CUDA the bias is added in cuBLASLt's epilogue, to the f32
/// sums before their one rounding (no pass over the result; what PyTorch's `F.linear` does
/// there); elsewhere, and as the reference, the product is rounded to the dtype, then the bias
/// added (a second rounding). `SANA_BIAS_EPILOGUE=0` keeps the separate addition on CUDA too
/// (for comparisons).
pub fn linear(x: Tensor<2>, w: Tensor<2>, bias: Option<Tensor<1>>, which: Impl) -> Tensor<2> {
    if let Some(b) = &bias {
        if which == Impl::Auto && bias_epilogue() {
            if let Some(y) = linear_bias_epilogue(x.clone(), w.clone(), b.clone()) {
                return y;
            }
        }
    }
    let y = matmul(x, w, which);
    match bias {
        Some(b) => y + b.unsqueeze::<2>(),
        None => y,
    }
}

/// [`linear`]'s epilogue path alone, whatever `SANA_BIAS_EPILOGUE` says: `None` where it
/// does not run (not a CUDA device, not f16/bf16, or cuBLASLt declines). For tests.
pub fn linear_bias_epilogue(x: Tensor<2>, w: Tensor<2>, bias: Tensor<1>) -> Option<Tensor<2>> {
    #[cfg(feature = "cube")]
    if x.dtype() == w.dtype() && x.dtype() == bias.dtype() && matches!(x.dtype(), DType::F16 | DType::BF16) && crate::is_cube_device(&x.device()) {
        return cube::linear_half_bias(x, w, bias);
    }
    let _ = (x, w, bias);
    None
}

/// Whether [`linear`] may add biases in the GEMM's epilogue (`SANA_BIAS_EPILOGUE=0`: no).
fn bias_epilogue() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| !matches!(std::env::var("SANA_BIAS_EPILOGUE").as_deref(), Ok("0") | Ok("off")))
}

/// `a · b` for same-rank tensors with equal batch dims (`[.., M, K] · [.., K, N]`).
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>, which: Impl) -> Tensor<D> {
    #[cfg(feature = "cube")]
    if which == Impl::Auto && a.dtype() == DType::F32 && b.dtype() == DType::F32 && crate::is_cube_device(&a.device()) {
        return cube::matmul_f32(a, b);
    }
    #[cfg(feature = "cube")]
    if which == Impl::Auto && a.dtype() == b.dtype() && matches!(a.dtype(), DType::F16 | DType::BF16) && crate::is_cube_device(&a.device()) {
        return cube::matmul_half(a, b, false);
    }
    let _ = which;
    a.matmul(b)
}
