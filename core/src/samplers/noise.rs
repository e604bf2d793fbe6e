//! Reproducible Gaussian noise: the same seed gives the same bits on the CPU, wgpu, CUDA
//! and in the browser, because the values are computed on the host by this code alone.
//!
//! Definition (stable; changing it changes every seeded video):
//! * Philox4x32-10 (Salmon et al., SC'11; Random123's constants), key `(seed mod 2³², seed >> 32)`,
//!   counter `(block mod 2³², block >> 32, stream, 0)`.
//! * Element `k` of a tensor (row-major) uses block `k / 4`, lane `k % 4`; the four words
//!   `w0..w3` of a block become two Box–Muller pairs: `(w0, w1)` → lanes 0, 1 and
//!   `(w2, w3)` → lanes 2, 3, with `u = (w + 0.5)·2⁻³²` (never 0 or 1),
//!   `r = sqrt(−2 ln u_a)`, `θ = 2π·u_b`, lanes `r·cos θ`, `r·sin θ`, computed in f64 with the
//!   pure-Rust `libm` and rounded to f32.
//! * `stream` separates independent draws of one seed (0: initial latents; later issues use
//!   others, e.g. LongSANA's per-chunk re-noising).
//!
//! Element `k` depends only on `(seed, stream, k)`, so any slice can be drawn on its own.

const M0: u32 = 0xD251_1F53;
const M1: u32 = 0xCD9E_8D57;
const W0: u32 = 0x9E37_79B9;
const W1: u32 = 0xBB67_AE85;

/// Philox4x32 with 10 rounds.
pub fn philox4x32_10(counter: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let mut c = counter;
    let mut k = key;
    for round in 0..10 {
        if round > 0 {
            k[0] = k[0].wrapping_add(W0);
            k[1] = k[1].wrapping_add(W1);
        }
        let p0 = (M0 as u64) * (c[0] as u64);
        let p1 = (M1 as u64) * (c[2] as u64);
        let (hi0, lo0) = ((p0 >> 32) as u32, p0 as u32);
        let (hi1, lo1) = ((p1 >> 32) as u32, p1 as u32);
        c = [hi1 ^ c[1] ^ k[0], lo1, hi0 ^ c[3] ^ k[1], lo0];
    }
    c
}

fn unit(w: u32) -> f64 {
    (w as f64 + 0.5) * (1.0 / 4_294_967_296.0)
}

fn box_muller(a: u32, b: u32) -> (f32, f32) {
    let r = libm::sqrt(-2.0 * libm::log(unit(a)));
    let theta = 2.0 * std::f64::consts::PI * unit(b);
    ((r * libm::cos(theta)) as f32, (r * libm::sin(theta)) as f32)
}

/// Stream ids in use.
pub const STREAM_INITIAL_LATENTS: u32 = 0;

/// LongSANA: draw `k` (0: the chunk's initial noise, 1..: re-noising) of chunk `chunk` (absolute
/// index in the video) has its own stream, so a resumed video draws what an uninterrupted one would.
pub fn stream_long(chunk: usize, draw: usize) -> u32 {
    1 + 4 * chunk as u32 + draw as u32
}

/// Values per thread below which [`gaussian`] stays on one thread.
const PER_THREAD_MIN: usize = 1 << 16;

/// `len` standard normal values: elements `offset .. offset + len` of the stream. Split over
/// the host's cores where it has threads (every element depends only on its index, so any
/// split gives the same bits): a LongSANA chunk at 480p draws ~1M values per forward, 15.6 ms
/// on one core of the 2-core build machine (release) and 8.2 ms on both, while the GPU waits.
pub fn gaussian(seed: u64, stream: u32, offset: u64, len: usize) -> Vec<f32> {
    let mut out = vec![0f32; len];
    crate::par::par_fill(&mut out, 1, PER_THREAD_MIN, |start, part| fill(seed, stream, offset + start as u64, part));
    out
}

/// Elements `offset .. offset + out.len()` of the stream, into `out`.
fn fill(seed: u64, stream: u32, offset: u64, out: &mut [f32]) {
    let key = [seed as u32, (seed >> 32) as u32];
    let end = offset + out.len() as u64;
    let mut k = offset;
    let mut at = 0;
    while k < end {
        let block = k / 4;
        let w = philox4x32_10([block as u32, (block >> 32) as u32, stream, 0], key);
        let (z0, z1) = box_muller(w[0], w[1]);
        let (z2, z3) = box_muller(w[2], w[3]);
        let lanes = [z0, z1, z2, z3];
        let first = (k % 4) as usize;
        let last = ((end - block * 4).min(4)) as usize;
        out[at..at + last - first].copy_from_slice(&lanes[first..last]);
        at += last - first;
        k = (block + 1) * 4;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The threaded draw gives the bits of one sequential pass, at any offset.
    #[test]
    fn threaded_draw_equals_sequential() {
        for (offset, len) in [(0u64, 4 * PER_THREAD_MIN + 3), (3, 3 * PER_THREAD_MIN + 1), (1 << 33, 10)] {
            let mut seq = vec![0f32; len];
            fill(42, 7, offset, &mut seq);
            let got = gaussian(42, 7, offset, len);
            assert!(got.iter().zip(&seq).all(|(a, b)| a.to_bits() == b.to_bits()), "offset {offset} len {len}");
        }
    }

    #[test]
    fn philox_known_answers() {
        // Random123 kat_vectors, philox4x32 10 rounds.
        assert_eq!(philox4x32_10([0; 4], [0; 2]), [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8]);
        assert_eq!(
            philox4x32_10([u32::MAX; 4], [u32::MAX; 2]),
            [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd]
        );
        assert_eq!(
            philox4x32_10([0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344], [0xa4093822, 0x299f31d0]),
            [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1]
        );
    }

    #[test]
    fn slices_agree_with_the_whole_draw() {
        let all = gaussian(42, 0, 0, 103);
        for (off, len) in [(0usize, 1usize), (1, 6), (3, 9), (97, 6), (50, 0)] {
            assert_eq!(gaussian(42, 0, off as u64, len), all[off..off + len].to_vec());
        }
        assert_ne!(gaussian(43, 0, 0, 8), all[..8].to_vec());
        assert_ne!(gaussian(42, 1, 0, 8), all[..8].to_vec());
    }

    #[test]
    fn moments_are_standard_normal() {
        let v = gaussian(7, 0, 0, 1 << 18);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        let kurt = v.iter().map(|&x| (x as f64 - mean).powi(4)).sum::<f64>() / n / (var * var);
        // 4 standard errors for n = 2^18: mean 0.0078, variance 0.011, kurtosis 0.038.
        assert!(mean.abs() < 0.008, "mean {mean}");
        assert!((var - 1.0).abs() < 0.012, "variance {var}");
        assert!((kurt - 3.0).abs() < 0.04, "kurtosis {kurt}");
    }
}
