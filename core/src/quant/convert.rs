//! Quantising a component's weights into our layout (the bytes of one safetensors file).

use std::collections::HashMap;

use safetensors::{tensor::TensorView, Dtype};

use super::{layout_metadata, quantize_fp8_rows, quantize_nvfp4, Format, METADATA_KEY, NVFP4_BLOCK};
use crate::io::safetensors::Weights;
use crate::{Error, Result};

/// Kept in full precision: the layers that touch the input and output (small, and the most
/// sensitive), the timestep/caption embedders, and embedding tables.
pub fn keep_precise(name: &str) -> bool {
    ["patch_embedding", "proj_out", "time_embed", "caption_projection", "embed_tokens", "scale_shift_table"]
        .iter()
        .any(|p| name.contains(p))
}

/// `[out, in]` or a 1x1 conv `[out, in, 1, 1]`: the matrix `(rows, cols)` to quantise.
pub fn matrix_of(name: &str, shape: &[usize]) -> Option<(usize, usize)> {
    if !name.ends_with(".weight") || keep_precise(name) {
        return None;
    }
    match shape {
        [o, i] if *i >= 16 => Some((*o, *i)),
        [o, i, 1, 1] if *i >= 16 => Some((*o, *i)),
        _ => None,
    }
}

/// What FP8 quantises: [`matrix_of`]'s matrices, and also wider convs `[out, in, kh, kw]`
/// (the DiT's temporal (3, 1) conv) as `(out, in·kh·kw)`. Per-output-channel scales do not
/// care how a row's values are ordered; NVFP4's 16-value blocks would have to run along the
/// GEMM's `in` within one tap, which the stored `(in, kh, kw)` order interleaves, so NVFP4
/// leaves such convs as they are.
pub fn fp8_matrix_of(name: &str, shape: &[usize]) -> Option<(usize, usize)> {
    matrix_of(name, shape).or_else(|| match shape {
        [o, i, kh, kw] if *i >= 16 && name.ends_with(".weight") && !keep_precise(name) => Some((*o, i * kh * kw)),
        _ => None,
    })
}

#[derive(Clone, Copy, Debug, Default)]
pub struct Summary {
    /// Tensors quantised, and linear weights left as they were.
    pub quantised: usize,
    pub kept: usize,
    /// Tensor bytes before and after.
    pub bytes_in: u64,
    pub bytes_out: u64,
}

/// All tensors of `w`, the linear and 1x1-conv weights ([`matrix_of`]; for FP8 also the
/// wider convs, [`fp8_matrix_of`]) quantised to `format` (NVFP4 needs 16 | in-features;
/// others stay), the rest copied as stored.
pub fn quantize_weights(w: &Weights, format: Format) -> Result<(Vec<u8>, Summary)> {
    let mut sum = Summary::default();
    let mut tensors: Vec<(String, Dtype, Vec<usize>, Vec<u8>)> = Vec::new();
    let mut layers = Vec::new();
    for name in w.names() {
        if w.quant_info(&name)?.is_some() {
            return Err(Error::Input(format!("{}: `{name}` is already quantised", w.location())));
        }
        let (bytes, dtype, shape) = w.stored(&name)?;
        sum.bytes_in += bytes.len() as u64;
        let float = matches!(dtype, Dtype::F32 | Dtype::F16 | Dtype::BF16 | Dtype::F64);
        let target = match format {
            Format::Fp8 => fp8_matrix_of(&name, &shape),
            Format::Nvfp4 => matrix_of(&name, &shape).filter(|&(_, cols)| cols % NVFP4_BLOCK == 0),
        }
        .filter(|_| float);
        let Some((rows, cols)) = target else {
            if float && name.ends_with(".weight") && shape.len() >= 2 {
                sum.kept += 1;
            }
            tensors.push((name, dtype, shape, bytes));
            continue;
        };
        let (values, _) = w.read_f32(&name)?;
        match format {
            Format::Fp8 => {
                let (codes, scales) = quantize_fp8_rows(&values, rows, cols);
                tensors.push((format!("{name}_scale"), Dtype::F32, vec![rows], bytemuck::cast_slice(&scales).to_vec()));
                tensors.push((name.clone(), Dtype::F8_E4M3, shape.clone(), codes));
            }
            Format::Nvfp4 => {
                let (packed, blocks, global) = quantize_nvfp4(&values, rows, cols);
                tensors.push((format!("{name}_scale"), Dtype::F8_E4M3, vec![rows, cols / NVFP4_BLOCK], blocks));
                tensors.push((format!("{name}_scale_2"), Dtype::F32, vec![], global.to_le_bytes().to_vec()));
                tensors.push((name.clone(), Dtype::U8, vec![rows, cols / 2], packed));
            }
        }
        layers.push((name, format, shape));
        sum.quantised += 1;
    }
    let views = tensors
        .iter()
        .map(|(n, d, s, b)| TensorView::new(*d, s.clone(), b).map(|v| (n.clone(), v)).map_err(|e| Error::Input(format!("`{n}`: {e}"))))
        .collect::<Result<Vec<_>>>()?;
    let meta: HashMap<String, String> = HashMap::from([(METADATA_KEY.to_string(), layout_metadata(&layers))]);
    let bytes = safetensors::serialize(views, Some(meta)).map_err(|e| Error::Input(format!("cannot serialise: {e}")))?;
    sum.bytes_out = tensors.iter().map(|t| t.3.len() as u64).sum();
    Ok((bytes, sum))
}
