//! Per-token FP8 (e4m3) quantisation of activations: the activation half of W8A8 GEMMs
//! (issue 9). Each row `r` of `x` `[M, K]` gets a power-of-two scale `s_r`, the smallest with
//! `max |x_r| <= 448 · s_r` (448: e4m3's largest value), and codes `e4m3(x / s_r)` rounded to
//! nearest, ties to even. A product of such rows with per-channel FP8 weights is then
//!
//! ```text
//! y[r, n] = s_r · w_n · Σ_k e4m3(x[r, k] / s_r) · e4m3(W[n, k] / w_n)
//! ```
//!
//! an FP8 tensor-core GEMM of the codes followed by one scaling pass.
//!
//! Power-of-two scales make `x / s_r` exact (a multiplication by `2^-e`), so every backend
//! (CUDA, WGSL, the host) produces the same codes bit for bit, and no division is needed
//! (WGSL's is only accurate to 2.5 ulp). They leave at most one binade of e4m3's range
//! unused, which per-token scaling can afford.
//!
//! Codes are packed four to an i32 along the row (WGSL has no 8-bit type), first code in the
//! lowest byte: the bytes of the i32 buffer are the `[M, K]` e4m3 matrix in row-major order,
//! as cuBLASLt reads it.
//!
//! The reference is the host encoder below ([`encode_rows`]): RNE of a float into a 3-bit
//! mantissa is bit manipulation that burn's tensor ops have no form for. The kernel uses the
//! same integer algorithm.

#[cfg(feature = "cube")]
pub mod cube;
pub mod reference;

use burn::tensor::{Int, Tensor};

use crate::Impl;

/// e4m3's largest finite value.
pub const E4M3_MAX: f32 = 448.0;

/// `(codes, scales)` of `x` `[M, K]` (any float dtype; `K` a multiple of 4): codes packed
/// `[M, K/4]` i32, scales `[M]` f32 (0 for an all-zero row).
pub fn quantize_fp8_rows(x: Tensor<2>, which: Impl) -> (Tensor<2, Int>, Tensor<1>) {
    let [_, k] = x.dims();
    assert!(k % 4 == 0, "quantize_fp8_rows: row length {k} is not a multiple of 4");
    if which == Impl::Auto && crate::is_cube_device(&x.device()) {
        #[cfg(feature = "cube")]
        return cube::quantize_fp8_rows(x);
    }
    reference::quantize_fp8_rows(x)
}

/// The power-of-two scale of a row whose largest magnitude is `absmax`, as the exponent `e`
/// of `s = 2^e`; `None` for a row of zeros (or of values too small to matter, below 2^-100).
pub fn scale_exponent(absmax: f32) -> Option<i32> {
    if !(absmax >= 2f32.powi(-100)) {
        return None;
    }
    let bits = absmax.min(f32::MAX).to_bits();
    let e = ((bits >> 23) & 0xFF) as i32 - 127;
    // absmax = m · 2^e, 1 <= m < 2, and 448 = 1.75 · 2^8: one more binade when m > 1.75.
    let over = (bits & 0x7F_FFFF) > 0x60_0000;
    Some(e - 8 + over as i32)
}

/// e4m3fn code of `q` (`|q| <= 448`, or saturated there), rounded to nearest, ties to even;
/// NaN gives 0x7F. Integer arithmetic on the f32 bits, as the kernel does it.
pub fn e4m3_rne(q: f32) -> u8 {
    let bits = q.to_bits();
    let sign = ((bits >> 31) << 7) as u8;
    if q.is_nan() {
        return 0x7F;
    }
    let a = bits & 0x7FFF_FFFF;
    let exp = (a >> 23) as i32 - 127;
    let mant = (a & 0x7F_FFFF) | 0x80_0000; // 24 bits with the implicit one
    let code = if exp < -6 {
        // e4m3 subnormals are multiples of 2^-9: the value in those units is mant >> s.
        let s = 14 - exp; // >= 21
        if s > 24 {
            0 // below 2^-10: rounds to zero (2^-10 itself is a tie, to even: zero too)
        } else {
            rne_shift(mant, s as u32)
        }
    } else {
        // Keep 3 mantissa bits; a carry into the fourth moves to the next binade.
        let r = rne_shift(mant, 20); // in [8, 16]
        let (e, r) = if r == 16 { (exp + 1, 8) } else { (exp, r) };
        let biased = (e + 7) as u32;
        if biased > 15 || (biased == 15 && r == 15) {
            0x7E
        } else {
            (biased << 3) | (r - 8)
        }
    };
    sign | code.min(0x7E) as u8
}

/// `v >> s` rounded to nearest, ties to even (`1 <= s <= 24`).
fn rne_shift(v: u32, s: u32) -> u32 {
    let keep = v >> s;
    let rem = v & ((1 << s) - 1);
    let half = 1 << (s - 1);
    keep + (rem > half || (rem == half && keep & 1 == 1)) as u32
}

/// Host encoder: `(codes packed four to an i32, scales)` of `values` `[rows, cols]`.
pub fn encode_rows(values: &[f32], rows: usize, cols: usize) -> (Vec<i32>, Vec<f32>) {
    let mut codes = vec![0i32; rows * cols / 4];
    let mut scales = vec![0f32; rows];
    for r in 0..rows {
        let row = &values[r * cols..(r + 1) * cols];
        let absmax = row.iter().fold(0f32, |m, v| m.max(v.abs()));
        let Some(e) = scale_exponent(absmax) else { continue };
        scales[r] = 2f32.powi(e);
        let inv = 2f32.powi(-e);
        for (g, quad) in row.chunks_exact(4).enumerate() {
            let word = quad.iter().enumerate().fold(0u32, |w, (k, &v)| w | (e4m3_rne(v * inv) as u32) << (8 * k));
            codes[r * cols / 4 + g] = word as i32;
        }
    }
    (codes, scales)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every e4m3 value encodes to its own code; midpoints round to the even neighbour; the
    /// subnormal range and saturation behave as e4m3fn's.
    #[test]
    fn e4m3_rne_is_exact_on_codes_and_ties() {
        let value = |c: u8| -> f32 {
            let e = ((c >> 3) & 0xF) as i32;
            let m = (c & 7) as f32;
            let v = if e == 0 { m * 2f32.powi(-9) } else { (1.0 + m / 8.0) * 2f32.powi(e - 7) };
            if c & 0x80 != 0 { -v } else { v }
        };
        for c in (0u8..=0x7E).chain(0x80..=0xFE) {
            assert_eq!(e4m3_rne(value(c)), c, "code {c:#04x}");
        }
        for c in 0u8..0x7E {
            let mid = (value(c) + value(c + 1)) / 2.0;
            let even = if c % 2 == 0 { c } else { c + 1 };
            assert_eq!(e4m3_rne(mid), even, "midpoint above {c:#04x}");
            assert_eq!(e4m3_rne(mid * (1.0 + 1e-6)), c + 1);
            if mid * (1.0 - 1e-6) > value(c) {
                assert_eq!(e4m3_rne(mid * (1.0 - 1e-6)), c);
            }
        }
        assert_eq!(e4m3_rne(2f32.powi(-10)), 0);
        assert_eq!(e4m3_rne(2f32.powi(-10) * 1.001), 1);
        assert_eq!(e4m3_rne(500.0), 0x7E);
        assert_eq!(e4m3_rne(-448.0), 0xFE);
        assert_eq!(e4m3_rne(f32::NAN), 0x7F);
    }

    #[test]
    fn scales_are_the_smallest_power_of_two_that_fits() {
        for absmax in [1e-30f32, 0.001, 1.0, 1.75, 1.7500001, 3.5, 447.9, 448.0, 448.1, 896.0, 1e30] {
            let e = scale_exponent(absmax).unwrap();
            assert!(absmax <= 448.0 * 2f32.powi(e), "{absmax}: 2^{e} too small");
            assert!(absmax > 448.0 * 2f32.powi(e - 1), "{absmax}: 2^{e} not the smallest");
        }
        assert_eq!(scale_exponent(0.0), None);
        assert_eq!(scale_exponent(f32::NAN), None);
    }
}
