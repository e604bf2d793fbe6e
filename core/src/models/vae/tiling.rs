//! Spatial tiling for decodes that do not fit: the latent grid is cut into overlapping
//! tiles, each decoded on its own, and the pixel tiles are blended with linear ramps over
//! the overlaps (weights normalised, so every pixel is a convex combination). Off by
//! default; its error against untiled decoding is measured in BENCHMARKS.md.

use burn::tensor::{DType, Tensor};

use crate::io::safetensors::tensor_from_f32;
use crate::{Error, Result};

/// Tile size and overlap in pixels (multiples of the VAE's spatial factor).
#[derive(Clone, Copy, Debug)]
pub struct Tiling {
    pub tile: usize,
    pub overlap: usize,
}

impl Default for Tiling {
    fn default() -> Self {
        Tiling { tile: 256, overlap: 64 }
    }
}

/// Tile starts along one axis of `n` latent positions: tiles of `t`, stride `t - o`, the
/// last one flush with the end.
fn starts(n: usize, t: usize, o: usize) -> Vec<usize> {
    if n <= t {
        return vec![0];
    }
    let stride = t - o;
    let mut v: Vec<usize> = (0..).map(|i| i * stride).take_while(|&s| s + t < n).collect();
    v.push(n - t);
    v.dedup();
    v
}

/// Weight of pixel `i` of a tile of `len` pixels whose sides overlap neighbours by `ramp`
/// pixels (`left`/`right`: whether there is a neighbour on that side).
fn ramp(len: usize, ramp: usize, left: bool, right: bool) -> Vec<f32> {
    (0..len)
        .map(|i| {
            let mut w = 1.0f32;
            if left && i < ramp {
                w = w.min((i as f32 + 0.5) / ramp as f32);
            }
            if right && len - i <= ramp {
                w = w.min(((len - i) as f32 - 0.5) / ramp as f32);
            }
            w
        })
        .collect()
}

/// Decodes `z` `[B, C, T, h, w]` tile by tile with `decode` (which maps a latent tile to its
/// pixels, `factor` pixels per latent position) and blends the results.
pub fn decode_tiled(
    z: Tensor<5>,
    factor: usize,
    tiling: Tiling,
    mut decode: impl FnMut(Tensor<5>) -> Result<Tensor<5>>,
) -> Result<Tensor<5>> {
    if tiling.tile % factor != 0 || tiling.overlap % factor != 0 || tiling.overlap >= tiling.tile || tiling.tile == 0 {
        return Err(Error::Input(format!(
            "--vae-tile-size {} / --vae-tile-overlap {}: both must be multiples of {factor} pixels, with the overlap smaller than the tile",
            tiling.tile, tiling.overlap
        )));
    }
    let [_, _, _, h, w] = z.dims();
    let (t, o) = (tiling.tile / factor, tiling.overlap / factor);
    let (ys, xs) = (starts(h, t, o), starts(w, t, o));
    let device = z.device();
    let mut acc: Option<Tensor<5>> = None;
    let mut wsum: Option<Tensor<5>> = None;
    for (yi, &y0) in ys.iter().enumerate() {
        for (xi, &x0) in xs.iter().enumerate() {
            let (th, tw) = (t.min(h), t.min(w));
            let tile = decode(z.clone().narrow(3, y0, th).narrow(4, x0, tw))?;
            let [b, c, f, ph, pw] = tile.dims();
            // Ramps only where a neighbour overlaps; their length is the actual overlap.
            let oy_prev = if yi > 0 { (ys[yi - 1] + th).saturating_sub(y0) * factor } else { 0 };
            let oy_next = if yi + 1 < ys.len() { (y0 + th).saturating_sub(ys[yi + 1]) * factor } else { 0 };
            let ox_prev = if xi > 0 { (xs[xi - 1] + tw).saturating_sub(x0) * factor } else { 0 };
            let ox_next = if xi + 1 < xs.len() { (x0 + tw).saturating_sub(xs[xi + 1]) * factor } else { 0 };
            let wy = two_sided(ph, oy_prev, oy_next);
            let wx = two_sided(pw, ox_prev, ox_next);
            let weights: Vec<f32> = wy.iter().flat_map(|a| wx.iter().map(move |b| a * b)).collect();
            let wt: Tensor<5> = tensor_from_f32(weights, vec![1, 1, 1, ph, pw], &device, DType::F32);
            let tile = crate::nn::to_f32(tile) * wt.clone();
            let (full_h, full_w) = (h * factor, w * factor);
            // Place the weighted tile and its weights into full-size canvases.
            let pad = |x: Tensor<5>, ch: usize| -> Tensor<5> {
                let (py0, px0) = (y0 * factor, x0 * factor);
                let mut parts = Vec::new();
                if py0 > 0 {
                    parts.push(Tensor::zeros([b, ch, f, py0, pw], (&device, DType::F32)));
                }
                parts.push(x);
                if py0 + ph < full_h {
                    parts.push(Tensor::zeros([b, ch, f, full_h - py0 - ph, pw], (&device, DType::F32)));
                }
                let col = Tensor::cat(parts, 3);
                let mut parts = Vec::new();
                if px0 > 0 {
                    parts.push(Tensor::zeros([b, ch, f, full_h, px0], (&device, DType::F32)));
                }
                parts.push(col);
                if px0 + pw < full_w {
                    parts.push(Tensor::zeros([b, ch, f, full_h, full_w - px0 - pw], (&device, DType::F32)));
                }
                Tensor::cat(parts, 4)
            };
            let placed = pad(tile, c);
            let placed_w = pad(wt.expand([b, 1, f, ph, pw]), 1);
            acc = Some(match acc {
                Some(a) => a + placed,
                None => placed,
            });
            wsum = Some(match wsum {
                Some(a) => a + placed_w,
                None => placed_w,
            });
        }
    }
    match (acc, wsum) {
        (Some(a), Some(w)) => Ok(a / w),
        _ => Err(Error::Input("nothing to decode".into())),
    }
}

fn two_sided(len: usize, prev: usize, next: usize) -> Vec<f32> {
    let l = ramp(len, prev.max(1), prev > 0, false);
    let r = ramp(len, next.max(1), false, next > 0);
    l.iter().zip(&r).map(|(a, b)| a * b).collect()
}
