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
