//! NVFP4 quantisation of activations: the activation half of W4A4 products (issue 9), for
//! the FP4 tensor cores of sm_100 / sm_120 (cuBLASLt's block-scaled GEMM,
//! `matmul::cublas::nvfp4_linear`) and, with the same values, emulated everywhere else
//! ([`fake_quantize_rows`]: quantise and dequantise, then an ordinary GEMM).
//!
//! NVIDIA's format: e2m1 codes (magnitudes 0, 0.5, 1, 1.5, 2, 3, 4, 6 and a sign), one e4m3
//! scale per 16 consecutive values of a row, one f32 scale for the tensor:
//!
//! ```text
//! x̂[r, k] = e2m1(code[r, k]) · e4m3(scale[r, k/16]) · g
//! ```
//!
//! How the scales are chosen here (division-free, so the CUDA kernel, WGSL and the host give
//! the same codes bit for bit, as the FP8 activations do):
//! - `g = 2^e`, the smallest power of two with `amax(x) <= 6 · 448 · g` ([`global_exponent`]);
//! - a block's scale is the smallest e4m3 value `s` with `amax(block) <= 6 · s · g`
//!   ([`block_scale_code`]: rounded up, so no code saturates; NVIDIA's weight recipe rounds
//!   `amax / 6` to nearest and clips, as our weight quantiser does);
//! - codes round `|x| / (s · g)` to the nearest e2m1 magnitude, ties to the even code, by
//!   comparing `|x|` with the midpoints times `s · g`: those products have at most seven
//!   significant bits, so they and the comparisons are exact in f32 ([`e2m1_index`]).
//!   (One exception: a GPU that flushes f32 subnormals, as WGSL and SPIR-V may, treats a
//!   block whose largest value is below 2^-126 as zeros; CUDA does not flush here.)
//!
//! Codes are packed eight to an i32 along the row, first value in the lowest nibble (the
//! `[M, K/2]` byte matrix cuBLASLt reads). Scale codes are packed four to an i32 (one word
//! per 64 values of a row), either row-major `[M, K/64]` ([`ScaleLayout::RowMajor`]) or in
//! cuBLASLt's tiled layout for block scales ([`ScaleLayout::Tiled`], [`tiled_word`]).
//! `K` must be a multiple of 64 (the DiT's 2240, 2304 and 6720 are).

#[cfg(feature = "cube")]
pub mod cube;
#[cfg(feature = "cuda")]
pub mod gemm;
pub mod reference;

use burn::tensor::{DType, Int, Tensor, TensorData};

use crate::Impl;

/// Values per e4m3 block scale.
pub const BLOCK: usize = 16;
/// Values per packed scale word (four blocks).
pub const GROUP: usize = 64;
/// e2m1's magnitudes by code (the low three bits).
pub const E2M1: [f32; 8] = [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 6.0];
/// Midpoints between consecutive e2m1 magnitudes.
const MIDPOINTS: [f32; 7] = [0.25, 0.75, 1.25, 1.75, 2.5, 3.5, 5.0];
/// e4m3's largest finite code (448).
pub const E4M3_MAX_CODE: u32 = 0x7E;

/// Where the scale words go.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ScaleLayout {
    /// `[M, K/64]` row-major.
    RowMajor,
    /// cuBLASLt's block-scale layout (`CUBLASLT_MATMUL_MATRIX_SCALE_VEC16_UE4M3`): tiles of
    /// 128 rows by 4 blocks (one word per row), rows padded to 128 with zero scales.
    Tiled,
}

/// Words of the scale buffer for `rows` rows of `groups` words.
pub fn scale_words(rows: usize, groups: usize, layout: ScaleLayout) -> usize {
    match layout {
        ScaleLayout::RowMajor => rows * groups,
        ScaleLayout::Tiled => rows.div_ceil(128) * 128 * groups,
    }
}

/// The tiled index of row `r`'s scale word `q` (blocks `4q .. 4q + 3`): tile `(r / 128, q)`
/// of 128 words in row-major tile order, and in it row `r % 128 = 32a + b` at word `4b + a`
/// (cuBLAS's "1D block scaling factors layout"; its four bytes are the four blocks in order).
pub fn tiled_word(r: usize, q: usize, groups: usize) -> usize {
    ((r / 128) * groups + q) * 128 + (r % 32) * 4 + (r % 128) / 32
}

/// The exponent `e` of the global scale `g = 2^e` for a tensor whose largest magnitude is
/// `amax`; `None` for zeros (or values below 2^-100, quantised to zero).
pub fn global_exponent(amax: f32) -> Option<i32> {
    if !(amax >= 2f32.powi(-100)) {
        return None;
    }
    let bits = amax.min(f32::MAX).to_bits();
    let e = ((bits >> 23) & 0xFF) as i32 - 127;
    // 6 · 448 = 2688 = 1.3125 · 2^11: one more binade when the mantissa is above 1.3125.
    let over = (bits & 0x7F_FFFF) > 0x28_0000;
    Some(e - 11 + over as i32)
}

/// The value of the non-negative e4m3 code `c` (0 ..= 0x7E).
pub fn e4m3_value(c: u32) -> f32 {
    if c < 8 {
        c as f32 * 2f32.powi(-9)
    } else {
        (8 + (c & 7)) as f32 * 2f32.powi((c >> 3) as i32 - 10)
    }
}

/// The smallest e4m3 code whose value is at least `t` (`t >= 0`, finite), at most 0x7E.
fn e4m3_ceil_code(t: f32) -> u32 {
    let bits = t.to_bits();
    let expb = bits >> 23;
    let mant = bits & 0x7F_FFFF;
    let code = if expb >= 121 {
        // t >= 2^-6: three mantissa bits rounded up, a carry moving to the next binade.
        let (mut e, mut m) = (expb - 120, (mant + (1 << 20) - 1) >> 20);
        if m == 8 {
            e += 1;
            m = 0;
        }
        if e > 15 {
            E4M3_MAX_CODE
        } else {
            e * 8 + m
        }
    } else if expb == 0 {
        (mant > 0) as u32
    } else {
        // Multiples of 2^-9: (1.mant · 2^(expb - 127)) / 2^-9, rounded up.
        let s = 141 - expb;
        if s >= 32 {
            1
        } else {
            ((mant | 0x80_0000) as u64 + (1u64 << s) - 1).wrapping_shr(s) as u32
        }
    };
    code.min(E4M3_MAX_CODE)
}

/// The scale code of a block whose largest magnitude is `amax_b`, under `g = 2^e`: the
/// smallest e4m3 `s` with `amax_b <= 6 · s · g` (an estimate of `amax_b / (6g)` rounded up,
/// then corrected by one code with exact products).
pub fn block_scale_code(amax_b: f32, e: i32) -> u32 {
    if !(amax_b > 0.0) {
        return 0;
    }
    let g = 2f32.powi(e);
    let fits = |c: u32| 6.0 * e4m3_value(c) * g >= amax_b;
    let c = e4m3_ceil_code(amax_b * 2f32.powi(-e) * (1.0 / 6.0));
    if !fits(c) {
        (c + 1).min(E4M3_MAX_CODE)
    } else if c > 0 && fits(c - 1) {
        c - 1
    } else {
        c
    }
}

/// The e2m1 magnitude index (0..8) of `a = |x|` under the block's scale `v = s · g`: the
/// count of midpoints below `a`, a tie going to the even index.
pub fn e2m1_index(a: f32, v: f32) -> u32 {
    if v == 0.0 {
        return 0;
    }
    MIDPOINTS.iter().enumerate().map(|(i, m)| (a > m * v || (a == m * v && i % 2 == 1)) as u32).sum()
}

/// Codes, scale words and globals of one quantised matrix (host form).
pub struct Encoded {
    /// `[M, K/8]`, eight e2m1 codes per word.
    pub codes: Vec<i32>,
    /// [`scale_words`] words in the asked layout.
    pub scales: Vec<i32>,
    /// `g`, `g · weight_global` (cuBLASLt's alpha) and 0 (its beta).
    pub globals: [f32; 3],
}

/// Host encoder of `values` `[rows, cols]` (`cols` a multiple of 64).
pub fn encode_rows(values: &[f32], rows: usize, cols: usize, layout: ScaleLayout, weight_global: f32) -> Encoded {
    assert!(cols % GROUP == 0 && values.len() == rows * cols, "nvfp4 encode_rows: {} values for [{rows}, {cols}]", values.len());
    let groups = cols / GROUP;
    let mut codes = vec![0i32; rows * cols / 8];
    let mut scales = vec![0i32; scale_words(rows, groups, layout)];
    let amax = values.iter().fold(0f32, |m, v| m.max(v.abs()));
    let Some(e) = global_exponent(amax) else {
        return Encoded { codes, scales, globals: [0.0, 0.0, 0.0] };
    };
    let g = 2f32.powi(e);
    for r in 0..rows {
        for q in 0..groups {
            let mut word = 0u32;
            for b in 0..GROUP / BLOCK {
                let start = r * cols + q * GROUP + b * BLOCK;
                let block = &values[start..start + BLOCK];
                let c = block_scale_code(block.iter().fold(0f32, |m, v| m.max(v.abs())), e);
                word |= c << (8 * b);
                let v = e4m3_value(c) * g;
                for (half, vals) in block.chunks_exact(8).enumerate() {
                    let w = vals.iter().enumerate().fold(0u32, |w, (i, &x)| w | (((x < 0.0) as u32) << 3 | e2m1_index(x.abs(), v)) << (4 * i));
                    codes[start / 8 + half] = w as i32;
                }
            }
            let at = match layout {
                ScaleLayout::RowMajor => r * groups + q,
                ScaleLayout::Tiled => tiled_word(r, q, groups),
            };
            scales[at] = word as i32;
        }
    }
    Encoded { codes, scales, globals: [g, g * weight_global, 0.0] }
}

/// The values the codes stand for (`x̂`), host side: what [`fake_quantize_rows`] returns.
pub fn decode_rows(enc: &Encoded, rows: usize, cols: usize, layout: ScaleLayout) -> Vec<f32> {
    let groups = cols / GROUP;
    (0..rows * cols)
        .map(|i| {
            let (r, k) = (i / cols, i % cols);
            let at = match layout {
                ScaleLayout::RowMajor => r * groups + k / GROUP,
                ScaleLayout::Tiled => tiled_word(r, k / GROUP, groups),
            };
            let c = (enc.scales[at] as u32 >> (8 * ((k % GROUP) / BLOCK))) & 0xFF;
            let nib = (enc.codes[i / 8] as u32 >> (4 * (i % 8))) & 0xF;
            let v = E2M1[(nib & 7) as usize] * e4m3_value(c) * enc.globals[0];
            if nib & 8 != 0 {
                -v
            } else {
                v
            }
        })
        .collect()
}

/// `(codes [M, K/8] i32, scale words [scale_words] i32, globals [3] f32)` of `x` `[M, K]`
/// (any float dtype, `K` a multiple of 64); `weight_global` only enters `globals[1]`.
pub fn quantize_rows(x: Tensor<2>, layout: ScaleLayout, weight_global: f32, which: Impl) -> (Tensor<2, Int>, Tensor<1, Int>, Tensor<1>) {
    let [_, k] = x.dims();
    assert!(k % GROUP == 0, "nvfp4 quantize_rows: row length {k} is not a multiple of {GROUP}");
    if which == Impl::Auto && crate::is_cube_device(&x.device()) {
        #[cfg(feature = "cube")]
        return cube::quantize_rows(x, layout, weight_global);
    }
    reference::quantize_rows(x, layout, weight_global)
}

/// `x̂` of `x` `[M, K]` in `x`'s dtype: NVFP4-quantised activations as values, for the
/// emulated W4A4 product (the same codes as [`quantize_rows`]).
pub fn fake_quantize_rows(x: Tensor<2>, which: Impl) -> Tensor<2> {
    let [_, k] = x.dims();
    assert!(k % GROUP == 0, "nvfp4 fake_quantize_rows: row length {k} is not a multiple of {GROUP}");
    if which == Impl::Auto && crate::is_cube_device(&x.device()) {
        #[cfg(feature = "cube")]
        return cube::fake_quantize_rows(x);
    }
    reference::fake_quantize_rows(x)
}

/// An NVFP4 weight for W4A4 products ([`linear`]): the `[N, K]` e2m1 codes row-major, eight
/// per i32 along `K` (the byte matrix FP4 tensor cores read, "TN"), the block scale codes in
/// cuBLASLt's tiled layout and row-major (`[N, K/64]` words, for the tensor-op path), and
/// the global scale.
#[derive(Clone, Debug)]
pub struct Weight {
    pub codes: Tensor<2, Int>,
    pub scales_tiled: Tensor<1, Int>,
    pub scales_rows: Tensor<2, Int>,
    pub global: f32,
}

impl Weight {
    /// From a file's layout: `codes` `[n, k/2]` bytes (two codes a byte, even index low),
    /// `blocks` `[n, k/16]` e4m3 codes, `global` f32; `k` a multiple of 64.
    pub fn new(codes: &[u8], blocks: &[u8], global: f32, n: usize, k: usize, device: &burn::tensor::Device) -> Weight {
        assert!(k % GROUP == 0 && codes.len() == n * k / 2 && blocks.len() == n * k / BLOCK, "nvfp4 Weight: {} codes and {} blocks for [{n}, {k}]", codes.len(), blocks.len());
        let words = |b: &[u8]| -> Vec<i32> { b.chunks_exact(4).map(|c| i32::from_le_bytes([c[0], c[1], c[2], c[3]])).collect() };
        let groups = k / GROUP;
        let rows = words(blocks);
        let mut tiled = vec![0i32; scale_words(n, groups, ScaleLayout::Tiled)];
        for r in 0..n {
            for q in 0..groups {
                tiled[tiled_word(r, q, groups)] = rows[r * groups + q];
            }
        }
        let int = |v: Vec<i32>, shape: Vec<usize>| Tensor::<2, Int>::from_data(TensorData::new(v, shape), (device, DType::I32));
        let t = tiled.len();
        Weight {
            codes: int(words(codes), vec![n, k / 8]),
            scales_tiled: Tensor::<1, Int>::from_data(TensorData::new(tiled, [t]), (device, DType::I32)),
            scales_rows: int(rows, vec![n, groups]),
            global,
        }
    }

    /// Device bytes held.
    pub fn bytes(&self) -> usize {
        (self.codes.shape().num_elements() + self.scales_tiled.shape().num_elements() + self.scales_rows.shape().num_elements()) * 4
    }
}

/// W4A4: `x` `[M, K]` quantised to NVFP4 ([`quantize_rows`]) times `w`, plus `bias`, as
/// `[M, N]` in `dtype`. On FP4 tensor cores (cuBLASLt on sm_100 / sm_120, [`tensor_cores`])
/// one block-scaled GEMM with f32 accumulation; elsewhere, and as the reference, the same
/// quantised values in tensor ops (`reference::linear`).
pub fn linear(x: Tensor<2>, w: &Weight, bias: Option<&Tensor<1>>, dtype: DType, which: Impl) -> Tensor<2> {
    let ([_, k], [n, k8]) = (x.dims(), w.codes.dims());
    assert_eq!(k, 8 * k8, "nvfp4 linear: input [.., {k}] and weight codes [{n}, {k8}] differ in K");
    #[cfg(feature = "cuda")]
    if which == Impl::Auto {
        if let Some(y) = gemm::linear(&x, w, bias, dtype) {
            return y;
        }
    }
    reference::linear(x, w, bias, dtype, which)
}

/// Whether W4A4 products run on FP4 tensor cores on `device` (probed once per device: a
/// plan and a small product checked against the host; CUDA sm_100 / sm_120 only).
pub fn tensor_cores(device: &burn::tensor::Device) -> bool {
    #[cfg(feature = "cuda")]
    {
        gemm::tensor_cores(device)
    }
    #[cfg(not(feature = "cuda"))]
    {
        let _ = device;
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn global_is_the_smallest_power_of_two_that_fits() {
        for amax in [1e-20f32, 0.01, 1.0, 1.3125, 1.3125001, 2688.0, 2688.1, 1e30] {
            let e = global_exponent(amax).unwrap();
            assert!(amax <= 2688.0 * 2f32.powi(e), "{amax}: 2^{e} too small");
            assert!(amax > 2688.0 * 2f32.powi(e - 1), "{amax}: 2^{e} not the smallest");
        }
        assert_eq!(global_exponent(0.0), None);
        assert_eq!(global_exponent(f32::NAN), None);
    }

    /// Against a search over all codes, for block maxima across e4m3's range and its codes'
    /// exact values (where rounding up must not move).
    #[test]
    fn block_scale_is_the_smallest_code_that_fits() {
        let brute = |a: f32, e: i32| (0..=E4M3_MAX_CODE).find(|&c| 6.0 * e4m3_value(c) * 2f32.powi(e) >= a).unwrap();
        let mut cases: Vec<f32> = (0..=E4M3_MAX_CODE).map(|c| 6.0 * e4m3_value(c)).collect();
        cases.extend(cases.clone().iter().map(|a| a * (1.0 + 1e-6)));
        cases.extend((0..2000).map(|i| 2688.0 * (0.993f32).powi(i)));
        for e in [-20, -3, 0, 5] {
            for &a in &cases {
                let a = a * 2f32.powi(e);
                if a > 0.0 && a <= 2688.0 * 2f32.powi(e) {
                    assert_eq!(block_scale_code(a, e), brute(a, e), "amax {a:e}, g 2^{e}");
                }
            }
        }
        assert_eq!(block_scale_code(0.0, 0), 0);
    }

    #[test]
    fn e2m1_rounds_to_nearest_ties_to_even() {
        for (i, &m) in E2M1.iter().enumerate() {
            assert_eq!(e2m1_index(m, 1.0), i as u32);
            assert_eq!(e2m1_index(m * 0.375, 0.375), i as u32);
        }
        for (i, &mid) in MIDPOINTS.iter().enumerate() {
            let even = if i % 2 == 0 { i } else { i + 1 } as u32;
            assert_eq!(e2m1_index(mid, 1.0), even, "midpoint {mid}");
            assert_eq!(e2m1_index(mid * 1.001, 1.0), i as u32 + 1);
            assert_eq!(e2m1_index(mid * 0.999, 1.0), i as u32);
        }
        assert_eq!(e2m1_index(7.0, 1.0), 7);
        assert_eq!(e2m1_index(0.0, 0.0), 0);
    }

    /// The tiled layout is a permutation of the padded row-major one, and matches the
    /// reference formula (cuBLAS docs / PyTorch's `to_blocked`) written out as reshapes.
    #[test]
    fn tiled_layout_is_cublas_block_scale_layout() {
        let (rows, groups) = (300, 3);
        let mut seen = vec![false; scale_words(rows, groups, ScaleLayout::Tiled)];
        for r in 0..rows {
            for q in 0..groups {
                // to_blocked: view [rb, 128, cb, 4] -> permute [rb, cb, 128, 4] -> [.., 4, 32, 4]
                // -> transpose(1, 2) -> byte (b, a, c) at b·16 + a·4 + c, words of 4 bytes.
                let (rb, rr) = (r / 128, r % 128);
                let (a, b) = (rr / 32, rr % 32);
                let byte = (rb * groups + q) * 512 + b * 16 + a * 4;
                assert_eq!(tiled_word(r, q, groups) * 4, byte);
                assert!(!std::mem::replace(&mut seen[byte / 4], true));
            }
        }
    }

    /// Decoded values are within half an e2m1 step of the input (relative to the block's
    /// scale) and both layouts decode alike.
    #[test]
    fn encode_decode_round_trip() {
        let (rows, cols) = (5, 128);
        let values: Vec<f32> = (0..rows * cols).map(|i| ((i * 7919 % 1000) as f32 / 100.0 - 5.0) * if i % 97 == 0 { 300.0 } else { 1.0 }).collect();
        let a = encode_rows(&values, rows, cols, ScaleLayout::RowMajor, 0.5);
        let b = encode_rows(&values, rows, cols, ScaleLayout::Tiled, 0.5);
        assert_eq!(a.codes, b.codes);
        assert_eq!(a.globals[1], a.globals[0] * 0.5);
        let (da, db) = (decode_rows(&a, rows, cols, ScaleLayout::RowMajor), decode_rows(&b, rows, cols, ScaleLayout::Tiled));
        assert_eq!(da, db);
        for (blk, (x, y)) in values.chunks(BLOCK).zip(da.chunks(BLOCK)).enumerate() {
            let amax = x.iter().fold(0f32, |m, v| m.max(v.abs()));
            for (u, v) in x.iter().zip(y) {
                // Steps are at most 2 · scale, scale <= amax / 6 · (1 + 2^-3) rounded up.
                assert!((u - v).abs() <= amax / 6.0 * 1.125 * 1.0001, "block {blk}: {u} -> {v}");
            }
        }
    }
}
