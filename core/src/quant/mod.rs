//! Weight quantisation formats: FP8 (e4m3) and NVFP4 (e2m1 values, an e4m3 scale per 16
//! values, one f32 scale per tensor), their bit-exact host codecs, and the on-disk layouts
//! that `sana-video quantize` writes and the loader reads.
//!
//! On disk (safetensors, one quantised `X.weight` each):
//!
//! | format | `X.weight` | `X.weight_scale` | `X.weight_scale_2` |
//! |---|---|---|---|
//! | FP8, ours | F8_E4M3, the original shape | F32 `[out]`: one scale per output channel | — |
//! | FP8, ComfyUI (`float8_e4m3fn`) | F8_E4M3 | F32 scalar: one per tensor | — |
//! | NVFP4, ours | U8 `[out, in/2]`: value `2i` in the low nibble, `2i+1` in the high one | F8_E4M3 `[out, in/16]`, row-major | F32 scalar |
//! | NVFP4, ComfyUI (`nvfp4`, comfy-kitchen) | U8 `[out, in/2]`: value `2i` in the high nibble | F8_E4M3 in cuBLAS's blocked layout, `[⌈out/128⌉·128, ⌈in/64⌉·4]` | F32 scalar |
//!
//! The file's `__metadata__` names the layout: ours under [`METADATA_KEY`] (also the
//! logical shape of NVFP4 tensors, e.g. `[out, in, 1, 1]` for a 1x1 conv), ComfyUI's under
//! `_quantization_metadata` (or per-layer `X.comfy_quant` tensors). ComfyUI's NVFP4 is
//! converted to ours when read ([`Layout::Comfy`]): nibbles swapped, block scales unswizzled
//! from cuBLAS's 128x4 tiles ([`unswizzle_block_scales`]). Its values are stored padded to
//! multiples of 16; a padded weight does not match the model's shape and is refused there.
//!
//! Linear weights stay packed on the device and are dequantised just before each product
//! (`nn::Linear`, W8A16 / W4A16 numerics on every backend; the files are 2x / 3.6x smaller
//! than bf16); other quantised tensors are dequantised on the host when loaded.

use std::collections::HashMap;

pub mod convert;
pub use convert::{quantize_weights, Summary};

/// `__metadata__` key of our layout: JSON `{"format": "sana-video-quant-1", "layers":
/// {"X.weight": {"format": "fp8" | "nvfp4", "shape": [..]}}}`.
pub const METADATA_KEY: &str = "sana_video_quantization";
pub const LAYOUT_VERSION: &str = "sana-video-quant-1";
/// Largest finite e4m3 magnitude (the `fn` variant: no infinities).
pub const E4M3_MAX: f32 = 448.0;
/// Largest e2m1 magnitude.
pub const E2M1_MAX: f32 = 6.0;
/// NVFP4 values per block scale.
pub const NVFP4_BLOCK: usize = 16;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Fp8,
    Nvfp4,
}

impl Format {
    pub fn parse(s: &str) -> Option<Format> {
        match s {
            "fp8" | "float8_e4m3fn" => Some(Format::Fp8),
            "nvfp4" => Some(Format::Nvfp4),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Format::Fp8 => "fp8",
            Format::Nvfp4 => "nvfp4",
        }
    }
}

/// Whose on-disk layout a quantised tensor uses (the table in the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Layout {
    Ours,
    /// ComfyUI's: FP8 as ours with a per-tensor scale; NVFP4 high-nibble-first with
    /// blocked (swizzled) scales, always 2-D.
    Comfy,
}

/// How one stored tensor is quantised, from the file's metadata or its dtypes.
#[derive(Clone, Debug, PartialEq)]
pub struct QuantInfo {
    pub format: Format,
    /// The dequantised tensor's shape.
    pub shape: Vec<usize>,
    pub layout: Layout,
}

impl QuantInfo {
    /// The tensor as the `[rows, cols]` matrix it is quantised as: rows the first dimension
    /// (output channels), cols the rest.
    pub fn rows_cols(&self) -> (usize, usize) {
        (self.shape.first().copied().unwrap_or(1), self.shape.iter().skip(1).product())
    }
}

/// Decodes an e4m3fn byte (bias 7, 3 mantissa bits, `S.1111.111` is NaN).
pub fn e4m3_to_f32(b: u8) -> f32 {
    let sign = if b & 0x80 != 0 { -1.0 } else { 1.0 };
    let e = ((b >> 3) & 0x0F) as i32;
    let m = (b & 0x07) as f32;
    if e == 15 && b & 0x07 == 7 {
        return f32::NAN;
    }
    let mag = if e == 0 { m * 2f32.powi(-9) } else { (1.0 + m / 8.0) * 2f32.powi(e - 7) };
    sign * mag
}

/// Encodes to e4m3fn, rounding to nearest (ties to even) and saturating at ±448, as
/// PyTorch's `.to(torch.float8_e4m3fn)` does for values inside the range.
pub fn f32_to_e4m3(x: f32) -> u8 {
    if x.is_nan() {
        return 0x7F;
    }
    let sign = if x.is_sign_negative() { 0x80u8 } else { 0 };
    let a = (x.abs() as f64).min(E4M3_MAX as f64);
    let min_normal = 2f64.powi(-6);
    let code = if a < min_normal {
        // Subnormals are multiples of 2^-9; rounding up to 8 lands exactly on the smallest
        // normal, whose code is also 8.
        (a / 2f64.powi(-9)).round_ties_even() as u8
    } else {
        let mut e = a.log2().floor() as i32;
        // log2 can be off by one ulp at exact powers of two.
        if 2f64.powi(e) > a {
            e -= 1;
        } else if 2f64.powi(e + 1) <= a {
            e += 1;
        }
        let mut r = (a / 2f64.powi(e - 3)).round_ties_even() as u32; // in [8, 16]
        if r == 16 {
            e += 1;
            r = 8;
        }
        let biased = (e + 7) as u32;
        if biased > 15 || (biased == 15 && r - 8 == 7) {
            0x7E // 448
        } else {
            ((biased << 3) | (r - 8)) as u8
        }
    };
    sign | code
}

const E2M1_VALUES: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];

/// Decodes a 4-bit e2m1 code (bit 3 is the sign).
pub fn e2m1_to_f32(code: u8) -> f32 {
    let v = E2M1_VALUES[(code & 7) as usize];
    if code & 8 != 0 {
        -v
    } else {
        v
    }
}

/// Encodes to e2m1: nearest value, ties to the even mantissa, saturating at ±6.
pub fn f32_to_e2m1(x: f32) -> u8 {
    let sign = if x.is_sign_negative() { 8u8 } else { 0 };
    let a = x.abs();
    if a.is_nan() {
        return 0;
    }
    // Midpoints between consecutive values; at a tie the code with an even mantissa
    // (0.0, 1.0, 2.0, 4.0 among the pairs) wins.
    let code = match a {
        a if a <= 0.25 => 0,
        a if a < 0.75 => 1,
        a if a <= 1.25 => 2,
        a if a < 1.75 => 3,
        a if a <= 2.5 => 4,
        a if a < 3.5 => 5,
        a if a <= 5.0 => 6,
        _ => 7,
    };
    sign | code
}

/// FP8 with one scale per row (output channel) of a `[rows, cols]` matrix: codes and scales
/// (`row amax / 448`; 1 for an all-zero row).
pub fn quantize_fp8_rows(values: &[f32], rows: usize, cols: usize) -> (Vec<u8>, Vec<f32>) {
    let scales: Vec<f32> = (0..rows)
        .map(|r| {
            let amax = values[r * cols..(r + 1) * cols].iter().fold(0f32, |m, v| m.max(v.abs()));
            if amax > 0.0 { amax / E4M3_MAX } else { 1.0 }
        })
        .collect();
    // The encoding is the slow part (a 2B model: minutes on one core): rows split over the cores.
    let mut codes = vec![0u8; rows * cols];
    crate::par::par_fill(&mut codes, cols, 1 << 20, |start, part| {
        for (i, c) in part.iter_mut().enumerate() {
            *c = f32_to_e4m3(values[start + i] / scales[(start + i) / cols]);
        }
    });
    (codes, scales)
}

/// Dequantises FP8 codes of a `[rows, cols]` matrix with one scale (per tensor) or `rows`
/// scales (per output channel).
pub fn dequantize_fp8(codes: &[u8], scales: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let lut: Vec<f32> = (0..=255u8).map(e4m3_to_f32).collect();
    let mut out = Vec::with_capacity(codes.len());
    for r in 0..rows {
        let s = if scales.len() == 1 { scales[0] } else { scales[r] };
        out.extend(codes[r * cols..(r + 1) * cols].iter().map(|&c| lut[c as usize] * s));
    }
    out
}

/// NVFP4 of a `[rows, cols]` matrix (`cols` a multiple of 16), NVIDIA's two-level recipe:
/// a global scale `amax / (448·6)`, per 16-value block an e4m3 scale of
/// `block amax / (6·global)`, values rounded to e2m1 against the decoded block scale.
/// Returns (packed codes `[rows, cols/2]`, block scale codes `[rows, cols/16]`, global).
pub fn quantize_nvfp4(values: &[f32], rows: usize, cols: usize) -> (Vec<u8>, Vec<u8>, f32) {
    assert!(cols % NVFP4_BLOCK == 0, "nvfp4: {cols} columns is not a multiple of {NVFP4_BLOCK}");
    let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    let global = if amax > 0.0 { amax / (E4M3_MAX * E2M1_MAX) } else { 1.0 };
    // Block scales, then the codes two to a byte; both split over the cores (the encoders are
    // the slow part). Each byte's two values lie in one block (16 is even).
    let mut blocks = vec![0u8; rows * cols / NVFP4_BLOCK];
    crate::par::par_fill(&mut blocks, 1, 1 << 16, |start, part| {
        for (i, code) in part.iter_mut().enumerate() {
            let block = &values[(start + i) * NVFP4_BLOCK..(start + i + 1) * NVFP4_BLOCK];
            let bmax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            *code = f32_to_e4m3(bmax / (E2M1_MAX * global));
        }
    });
    let mut packed = vec![0u8; rows * cols / 2];
    crate::par::par_fill(&mut packed, NVFP4_BLOCK / 2, 1 << 19, |start, part| {
        for (i, byte) in part.iter_mut().enumerate() {
            let idx = 2 * (start + i);
            let scale = e4m3_to_f32(blocks[idx / NVFP4_BLOCK]) * global;
            let q = |v: f32| if scale > 0.0 { f32_to_e2m1(v / scale) } else { 0 };
            *byte = q(values[idx]) | (q(values[idx + 1]) << 4);
        }
    });
    (packed, blocks, global)
}

/// Inverse of [`quantize_nvfp4`].
pub fn dequantize_nvfp4(packed: &[u8], blocks: &[u8], global: f32, rows: usize, cols: usize) -> Vec<f32> {
    let mut out = Vec::with_capacity(rows * cols);
    for idx in 0..rows * cols {
        let byte = packed[idx / 2];
        let code = if idx % 2 == 0 { byte & 0x0F } else { byte >> 4 };
        out.push(e2m1_to_f32(code) * e4m3_to_f32(blocks[idx / NVFP4_BLOCK]) * global);
    }
    out
}

/// The `[rows, cols/16]` row-major block scales of a matrix from cuBLAS's blocked layout
/// (ComfyUI's NVFP4 `weight_scale`): the scale matrix padded to `[⌈rows/128⌉·128,
/// ⌈cols/16/4⌉·4]` and stored in tiles of 128 rows x 4 columns, each tile as 32 runs of 16
/// bytes where row `r` of the tile and column `c` sit at `(r mod 32)·16 + (r / 32)·4 + c`.
/// `None` if `blocked` is not that padded size.
pub fn unswizzle_block_scales(blocked: &[u8], rows: usize, block_cols: usize) -> Option<Vec<u8>> {
    let (row_tiles, col_tiles) = (rows.div_ceil(128), block_cols.div_ceil(4));
    if blocked.len() != row_tiles * 128 * col_tiles * 4 {
        return None;
    }
    let mut out = Vec::with_capacity(rows * block_cols);
    for r in 0..rows {
        let (rt, ri) = (r / 128, r % 128);
        for c in 0..block_cols {
            let tile = rt * col_tiles + c / 4;
            out.push(blocked[(tile * 32 + ri % 32) * 16 + (ri / 32) * 4 + c % 4]);
        }
    }
    Some(out)
}

/// Our layout's `__metadata__` entry for a set of quantised tensors.
pub fn layout_metadata(layers: &[(String, Format, Vec<usize>)]) -> String {
    let layers: serde_json::Map<String, serde_json::Value> = layers
        .iter()
        .map(|(name, f, shape)| (name.clone(), serde_json::json!({ "format": f.name(), "shape": shape })))
        .collect();
    serde_json::json!({ "format": LAYOUT_VERSION, "layers": layers }).to_string()
}

/// The formats ComfyUI names that this build reads.
pub fn comfy_format(name: &str) -> Option<Format> {
    match name {
        "float8_e4m3fn" => Some(Format::Fp8),
        "nvfp4" => Some(Format::Nvfp4),
        _ => None,
    }
}

/// Reads the quantised layers a file's `__metadata__` declares: ours, or ComfyUI's
/// `_quantization_metadata`. `Err` names what is not supported.
pub fn layers_from_metadata(meta: &HashMap<String, String>, file: &str) -> Result<HashMap<String, (Format, Option<Vec<usize>>, Layout)>, String> {
    let mut out = HashMap::new();
    if let Some(text) = meta.get(METADATA_KEY) {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("{file}: `{METADATA_KEY}` metadata is not JSON: {e}"))?;
        let version = v.get("format").and_then(|f| f.as_str()).unwrap_or("");
        if version != LAYOUT_VERSION {
            return Err(format!("{file}: quantisation layout `{version}` is not supported (this build reads {LAYOUT_VERSION})"));
        }
        for (name, l) in v.get("layers").and_then(|l| l.as_object()).into_iter().flatten() {
            let fmt = l.get("format").and_then(|f| f.as_str()).unwrap_or("");
            let format = Format::parse(fmt).ok_or_else(|| format!("{file}: `{name}` has unknown quantisation format `{fmt}`"))?;
            let shape = l.get("shape").and_then(|s| s.as_array()).map(|a| a.iter().filter_map(|d| d.as_u64().map(|d| d as usize)).collect());
            out.insert(name.clone(), (format, shape, Layout::Ours));
        }
    }
    if let Some(text) = meta.get("_quantization_metadata") {
        let v: serde_json::Value = serde_json::from_str(text).map_err(|e| format!("{file}: `_quantization_metadata` is not JSON: {e}"))?;
        for (layer, l) in v.get("layers").and_then(|l| l.as_object()).into_iter().flatten() {
            let fmt = l.get("format").and_then(|f| f.as_str()).unwrap_or("");
            let format = comfy_format(fmt).ok_or_else(|| {
                format!(
                    "{file}: layer `{layer}` uses ComfyUI quantisation `{fmt}`; this build reads ComfyUI's float8_e4m3fn and nvfp4 \
                     (and its own fp8/nvfp4 files from `sana-video quantize`)"
                )
            })?;
            out.insert(format!("{layer}.weight"), (format, None, Layout::Comfy));
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The quantisers split their work over the cores for large matrices: the same codes as
    /// one pass over the values (this size gives several parts even on two cores).
    #[test]
    fn quantisers_split_over_cores_give_the_one_pass_codes() {
        let (rows, cols) = (2048, 2048);
        let mut state = 0x9E37_79B9_7F4A_7C15u64;
        let values: Vec<f32> = (0..rows * cols)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                ((state >> 40) as f32 / (1u64 << 24) as f32 - 0.5) * 3.0
            })
            .collect();
        let (codes, scales) = quantize_fp8_rows(&values, rows, cols);
        for r in (0..rows).step_by(97) {
            let row = &values[r * cols..(r + 1) * cols];
            let amax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
            assert_eq!(scales[r], amax / E4M3_MAX);
            for (c, &v) in row.iter().enumerate() {
                assert_eq!(codes[r * cols + c], f32_to_e4m3(v / scales[r]), "fp8 [{r}, {c}]");
            }
        }
        let (packed, blocks, global) = quantize_nvfp4(&values, rows, cols);
        for (bi, block) in values.chunks_exact(NVFP4_BLOCK).enumerate().step_by(61) {
            let bmax = block.iter().fold(0f32, |m, v| m.max(v.abs()));
            let code = f32_to_e4m3(bmax / (E2M1_MAX * global));
            assert_eq!(blocks[bi], code, "nvfp4 block {bi}");
            let scale = e4m3_to_f32(code) * global;
            for (j, &v) in block.iter().enumerate() {
                let idx = bi * NVFP4_BLOCK + j;
                let q = if scale > 0.0 { f32_to_e2m1(v / scale) } else { 0 };
                assert_eq!((packed[idx / 2] >> (4 * (idx % 2))) & 0xF, q, "nvfp4 value {idx}");
            }
        }
    }

    #[test]
    fn e4m3_codes_round_trip() {
        for b in 0..=255u8 {
            let v = e4m3_to_f32(b);
            if v.is_nan() {
                assert!(b & 0x7F == 0x7F);
                continue;
            }
            // -0 encodes as 0x80.
            assert_eq!(f32_to_e4m3(v), b, "code {b:#04x} = {v}");
        }
        assert_eq!(e4m3_to_f32(0x7E), 448.0);
        assert_eq!(e4m3_to_f32(0x01), 2f32.powi(-9));
        assert_eq!(f32_to_e4m3(1000.0), 0x7E);
    }

    #[test]
    fn e2m1_codes_round_trip_and_ties() {
        for c in 0..16u8 {
            let v = e2m1_to_f32(c);
            if c == 8 {
                continue; // -0
            }
            assert_eq!(f32_to_e2m1(v), c);
        }
        assert_eq!(e2m1_to_f32(f32_to_e2m1(1.25)), 1.0);
        assert_eq!(e2m1_to_f32(f32_to_e2m1(1.75)), 2.0);
        assert_eq!(e2m1_to_f32(f32_to_e2m1(5.0)), 4.0);
        assert_eq!(e2m1_to_f32(f32_to_e2m1(-9.0)), -6.0);
    }

    #[test]
    fn nvfp4_round_trip_error_is_bounded() {
        let (rows, cols) = (8, 64);
        let values: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 1000) as f32 / 500.0 - 1.0) * (1 + i % 5) as f32).collect();
        let (p, b, g) = quantize_nvfp4(&values, rows, cols);
        let back = dequantize_nvfp4(&p, &b, g, rows, cols);
        let err: f32 = values.iter().zip(&back).map(|(a, b)| (a - b).powi(2)).sum::<f32>().sqrt();
        let norm: f32 = values.iter().map(|a| a * a).sum::<f32>().sqrt();
        assert!(err / norm < 0.15, "nvfp4 rel error {}", err / norm);
    }
}
