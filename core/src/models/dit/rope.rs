//! 3-D rotary embedding of the Wan family (MODEL-SPEC §3.3): head dim split into
//! time / height / width sub-spaces, angles in f64, tables rounded to f32.
//!
//! Positions are computed, not looked up, so LongSANA chunks far into a long video
//! (absolute frame offsets past `rope_max_seq_len`) work the same way.

use burn::tensor::{Device, Tensor, TensorData};

/// Channel split of a head: (time, height, width) real dims.
pub fn axis_dims(head_dim: usize) -> [usize; 3] {
    let hw = 2 * (head_dim / 6);
    [head_dim - 2 * hw, hw, hw]
}

fn freqs(dim: usize, theta: f64) -> Vec<f64> {
    (0..dim / 2).map(|j| 1.0 / theta.powf((2 * j) as f64 / dim as f64)).collect()
}

/// cos and sin tables `[N, head_dim/2]` (one angle per channel pair) for the grid
/// `frames x height x width` (patch units), frames numbered from `frame_offset`.
pub fn tables(head_dim: usize, grid: [usize; 3], frame_offset: usize) -> (Vec<f32>, Vec<f32>) {
    let [td, hd, wd] = axis_dims(head_dim);
    let (ft, fh, fw) = (freqs(td, 10000.0), freqs(hd, 10000.0), freqs(wd, 10000.0));
    let pairs = head_dim / 2;
    let [gf, gh, gw] = grid;
    let n = gf * gh * gw;
    // Each channel pair's angle depends on one axis only: the (few) per-axis rows are
    // computed once and copied into place (a 480p chunk has 15,600 tokens x 56 pairs, and
    // evaluating sin/cos per token took tens of milliseconds of host time per forward).
    let axis = |len: usize, offset: usize, fr: &[f64]| -> (Vec<f32>, Vec<f32>) {
        let mut c = Vec::with_capacity(len * fr.len());
        let mut s = Vec::with_capacity(len * fr.len());
        for p in 0..len {
            for w in fr {
                let a = (p + offset) as f64 * w;
                c.push(a.cos() as f32);
                s.push(a.sin() as f32);
            }
        }
        (c, s)
    };
    let (tc, ts) = axis(gf, frame_offset, &ft);
    let (hc, hs) = axis(gh, 0, &fh);
    let (wc, ws) = axis(gw, 0, &fw);
    let (nt, nh, nw) = (ft.len(), fh.len(), fw.len());
    let mut cos = Vec::with_capacity(n * pairs);
    let mut sin = Vec::with_capacity(n * pairs);
    for f in 0..gf {
        for i in 0..gh {
            for j in 0..gw {
                for (out, (t, h, w)) in [(&mut cos, (&tc, &hc, &wc)), (&mut sin, (&ts, &hs, &ws))] {
                    out.extend_from_slice(&t[f * nt..(f + 1) * nt]);
                    out.extend_from_slice(&h[i * nh..(i + 1) * nh]);
                    out.extend_from_slice(&w[j * nw..(j + 1) * nw]);
                }
            }
        }
    }
    (cos, sin)
}

pub fn table_tensors(head_dim: usize, grid: [usize; 3], frame_offset: usize, device: &Device) -> (Tensor<2>, Tensor<2>) {
    let n = grid.iter().product::<usize>();
    let (c, s) = tables(head_dim, grid, frame_offset);
    (
        Tensor::from_data(TensorData::new(c, [n, head_dim / 2]), device),
        Tensor::from_data(TensorData::new(s, [n, head_dim / 2]), device),
    )
}
