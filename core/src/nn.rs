//! Small building blocks shared by the models: linear layers with pre-transposed weights,
//! norms with f32 statistics, activations.

use burn::tensor::{activation, DType, Device, FloatDType, Tensor};

use crate::io::safetensors::Weights;
use crate::Result;

/// `y = x·Wᵀ + b`, the weight stored transposed (`[in, out]`) once at load.
#[derive(Clone, Debug)]
pub struct Linear {
    pub weight_t: Tensor<2>,
    pub bias: Option<Tensor<1>>,
}

impl Linear {
    /// Loads `{prefix}.weight` (`[out, in]`, or a 1x1 conv `[out, in, 1, 1]`) and, if asked, `{prefix}.bias`.
    pub fn load(w: &Weights, prefix: &str, bias: bool, device: &Device, dtype: DType) -> Result<Linear> {
        let name = format!("{prefix}.weight");
        let (values, shape) = w.read_f32(&name)?;
        let (out, inp) = (shape[0], shape[1..].iter().product::<usize>());
        let weight_t = crate::io::safetensors::tensor_from_f32(transpose_host(&values, out, inp), vec![inp, out], device, dtype);
        let bias = if bias { Some(w.load::<1>(&format!("{prefix}.bias"), device, dtype)?) } else { None };
        Ok(Linear { weight_t, bias })
    }

    pub fn forward<const D: usize>(&self, x: Tensor<D>) -> Tensor<D> {
        let dims = x.dims();
        let inp = dims[D - 1];
        let rows = x.shape().num_elements() / inp.max(1);
        let [_, out] = self.weight_t.dims();
        let mut y = matmul(x.reshape([rows, inp]), self.weight_t.clone());
        if let Some(b) = &self.bias {
            y = y + b.clone().unsqueeze::<2>();
        }
        let mut out_dims = dims;
        out_dims[D - 1] = out;
        y.reshape(out_dims)
    }
}

/// Matrix product that stays IEEE f32 for f32 operands on every backend (no TF32 on tensor
/// cores; `kernels::matmul`), and uses burn's fastest routine for f16/bf16.
pub fn matmul<const D: usize>(a: Tensor<D>, b: Tensor<D>) -> Tensor<D> {
    crate::kernels::matmul::matmul(a, b, crate::kernels::Impl::Auto)
}

/// Transposes a row-major `[rows, cols]` matrix on the host (once, at load), so every
/// backend's matmul sees a contiguous `[in, out]` weight instead of a strided view.
pub fn transpose_host(v: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; v.len()];
    for r in 0..rows {
        for c in 0..cols {
            t[c * rows + r] = v[r * cols + c];
        }
    }
    t
}

/// The tensor in f32 (no-op when it already is).
pub fn to_f32<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    if x.dtype() == DType::F32 { x } else { x.cast(FloatDType::F32) }
}

/// The tensor in `dtype` (no-op when it already is).
pub fn to_dtype<const D: usize>(x: Tensor<D>, dtype: DType) -> Tensor<D> {
    if x.dtype() == dtype { x } else { x.cast(FloatDType::from(dtype)) }
}

/// LayerNorm over the last axis without affine parameters; statistics in f32.
pub fn layer_norm<const D: usize>(x: Tensor<D>, eps: f64) -> Tensor<D> {
    let dtype = x.dtype();
    let x = to_f32(x);
    let mean = x.clone().mean_dim(D - 1);
    let centered = x - mean;
    let var = centered.clone().square().mean_dim(D - 1);
    to_dtype(centered / (var + eps).sqrt(), dtype)
}

/// RMSNorm over the last axis with a learned weight; statistics in f32.
pub fn rms_norm<const D: usize>(x: Tensor<D>, weight: &Tensor<1>, eps: f64) -> Tensor<D> {
    let dtype = x.dtype();
    let x = to_f32(x);
    let ms = x.clone().square().mean_dim(D - 1);
    let y = to_dtype(x / (ms + eps).sqrt(), dtype);
    y * weight.clone().unsqueeze::<D>()
}

/// GELU with the tanh approximation (PyTorch `approximate="tanh"`).
pub fn gelu_tanh<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    let c = (2.0f64 / std::f64::consts::PI).sqrt();
    let inner = (x.clone() + x.clone().powi_scalar(3) * 0.044715) * c;
    x.clone() * (inner.tanh() + 1.0) * 0.5
}

pub fn silu<const D: usize>(x: Tensor<D>) -> Tensor<D> {
    activation::silu(x)
}
