//! Resolution binning and the resize-and-crop back to the requested size, as diffusers'
//! `SanaVideoPipeline(use_resolution_binning=True)` does (MODEL-SPEC §8.1).

/// `(ratio h/w, height, width)`, in diffusers' dict order (ties go to the first).
pub const BINS_480: [(f64, usize, usize); 11] = [
    (0.5, 448, 896),
    (0.57, 480, 832),
    (0.68, 528, 768),
    (0.78, 560, 720),
    (1.0, 624, 624),
    (1.13, 672, 592),
    (1.29, 720, 560),
    (1.46, 768, 528),
    (1.67, 816, 496),
    (1.75, 832, 480),
    (2.0, 896, 448),
];

pub const BINS_720: [(f64, usize, usize); 11] = [
    (0.5, 672, 1344),
    (0.57, 704, 1280),
    (0.68, 800, 1152),
    (0.78, 832, 1088),
    (1.0, 960, 960),
    (1.13, 1024, 896),
    (1.29, 1088, 832),
    (1.46, 1152, 800),
    (1.67, 1248, 736),
    (1.75, 1280, 704),
    (2.0, 1344, 672),
];

/// The bin table for a transformer `sample_size` (30: 480p, 22: 720p), as diffusers picks it.
pub fn bins_for(sample_size: usize) -> Option<&'static [(f64, usize, usize)]> {
    match sample_size {
        30 => Some(&BINS_480),
        22 => Some(&BINS_720),
        _ => None,
    }
}

/// `classify_height_width_bin`: the bin whose ratio is closest to `height / width`.
pub fn classify(height: usize, width: usize, bins: &[(f64, usize, usize)]) -> (usize, usize) {
    let ar = height as f64 / width as f64;
    let mut best = bins[0];
    for &b in bins {
        if (b.0 - ar).abs() < (best.0 - ar).abs() {
            best = b;
        }
    }
    (best.1, best.2)
}

/// The intermediate size `resize_and_crop_tensor` resizes to before its center crop.
pub fn cover_size(from: (usize, usize), to: (usize, usize)) -> (usize, usize) {
    let ratio = (to.0 as f64 / from.0 as f64).max(to.1 as f64 / from.1 as f64);
    ((from.0 as f64 * ratio) as usize, (from.1 as f64 * ratio) as usize)
}

/// PyTorch's bilinear source positions (`align_corners=False`, no antialiasing): for each
/// output index, `(i0, i1, λ)`, computed in f32 as ATen does for f32 inputs.
fn taps(input: usize, output: usize) -> Vec<(usize, usize, f32)> {
    let scale = input as f32 / output as f32;
    (0..output)
        .map(|o| {
            let src = (scale * (o as f32 + 0.5) - 0.5).max(0.0);
            let i0 = (src as usize).min(input - 1);
            let i1 = (i0 + 1).min(input - 1);
            (i0, i1, src - i0 as f32)
        })
        .collect()
}

/// `resize_and_crop_tensor` on one frame `[H, W, 3]` (channels last): bilinear resize so
/// the frame covers `to`, then a center crop. Returns the frame unchanged when sizes match.
pub fn resize_and_crop(frame: &[f32], from: (usize, usize), to: (usize, usize)) -> Vec<f32> {
    if from == to {
        return frame.to_vec();
    }
    let (rh, rw) = cover_size(from, to);
    let (ty, tx) = (taps(from.0, rh), taps(from.1, rw));
    let (y0, x0) = ((rh - to.0) / 2, (rw - to.1) / 2);
    let mut out = Vec::with_capacity(to.0 * to.1 * 3);
    for &(a0, a1, ly) in &ty[y0..y0 + to.0] {
        for &(b0, b1, lx) in &tx[x0..x0 + to.1] {
            for c in 0..3 {
                let p = |y: usize, x: usize| frame[(y * from.1 + x) * 3 + c];
                let top = (1.0 - lx) * p(a0, b0) + lx * p(a0, b1);
                let bottom = (1.0 - lx) * p(a1, b0) + lx * p(a1, b1);
                out.push((1.0 - ly) * top + ly * bottom);
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bins_follow_the_closest_ratio() {
        assert_eq!(classify(480, 832, &BINS_480), (480, 832));
        assert_eq!(classify(96, 160, &BINS_480), (480, 832));
        assert_eq!(classify(512, 512, &BINS_480), (624, 624));
        assert_eq!(classify(720, 1280, &BINS_720), (704, 1280));
        assert_eq!(classify(1000, 100, &BINS_480), (896, 448));
    }

    #[test]
    fn identity_and_constant_frames() {
        let f: Vec<f32> = (0..4 * 6 * 3).map(|i| i as f32).collect();
        assert_eq!(resize_and_crop(&f, (4, 6), (4, 6)), f);
        let c = vec![0.25f32; 8 * 10 * 3];
        assert!(resize_and_crop(&c, (8, 10), (5, 5)).iter().all(|&v| (v - 0.25).abs() < 1e-7));
    }
}
