//! Sinusoidal timestep features (diffusers `Timesteps(256, flip_sin_to_cos=True,
//! downscale_freq_shift=0)`, MODEL-SPEC §3.4), computed on the host in f32 exactly
//! as PyTorch does: `freq_k = exp(f32(-ln 10000)·k / 128)`, `arg = t·freq_k`, `[cos, sin]`.

pub const CHANNELS: usize = 256;

pub fn sinusoid(timesteps: &[f32]) -> Vec<f32> {
    let half = CHANNELS / 2;
    let neg_log = -(10000f64.ln()) as f32;
    let freqs: Vec<f32> = (0..half).map(|k| ((neg_log * k as f32) / half as f32).exp()).collect();
    let mut out = Vec::with_capacity(timesteps.len() * CHANNELS);
    for &t in timesteps {
        let args: Vec<f32> = freqs.iter().map(|&f| t * f).collect();
        out.extend(args.iter().map(|&a| (a as f64).cos() as f32));
        out.extend(args.iter().map(|&a| (a as f64).sin() as f32));
    }
    out
}

/// The distinct values of `timesteps` (by bit pattern, in first-seen order) and, for each
/// input position, the index of its value among them.
pub fn distinct(timesteps: &[f32]) -> (Vec<f32>, Vec<i32>) {
    let mut seen: std::collections::HashMap<u32, i32> = std::collections::HashMap::new();
    let mut unique = Vec::new();
    let index = timesteps
        .iter()
        .map(|&t| {
            *seen.entry(t.to_bits()).or_insert_with(|| {
                unique.push(t);
                unique.len() as i32 - 1
            })
        })
        .collect();
    (unique, index)
}
