//! Noise schedules of the flow-matching samplers, computed with diffusers 0.42.1's exact
//! arithmetic (float64 tables cast to f32, the same truncations and the same quirks), so
//! a run can be matched step for step against the reference.

/// `σ_0 > … > σ_{N−1} > σ_N = 0` and the timesteps fed to the network (one per step).
#[derive(Clone, Debug, PartialEq)]
pub struct Schedule {
    pub sigmas: Vec<f32>,
    pub timesteps: Vec<f32>,
}

fn shift_f64(s: f64, shift: f64) -> f64 {
    shift * s / (1.0 + (shift - 1.0) * s)
}

/// numpy's `linspace(start, stop, n)` (float64; the last value is exactly `stop`).
fn linspace(start: f64, stop: f64, n: usize) -> Vec<f64> {
    match n {
        0 => vec![],
        1 => vec![start],
        _ => {
            let step = (stop - start) / (n - 1) as f64;
            let mut v: Vec<f64> = (0..n).map(|i| i as f64 * step + start).collect();
            v[n - 1] = stop;
            v
        }
    }
}

/// `DPMSolverMultistepScheduler(use_flow_sigmas=True, flow_shift=shift,
/// final_sigmas_type="zero")`, the default T2V sampler: `σ_i = shift(s_i)` for
/// `s = 1 − linspace(1, 1/1000, N+1)` in descending order without the zero, then 0;
/// timesteps `⌊1000·σ_i⌋` (int64 truncation of the float64 value).
pub fn dpm_flow(steps: usize, shift: f64) -> Schedule {
    let alphas = linspace(1.0, 1.0 / 1000.0, steps + 1);
    let mut sig: Vec<f64> = alphas.iter().map(|a| shift_f64(1.0 - a, shift)).collect();
    sig.reverse();
    sig.pop();
    let timesteps = sig.iter().map(|s| (s * 1000.0).trunc() as f32).collect();
    let mut sigmas: Vec<f32> = sig.iter().map(|&s| s as f32).collect();
    sigmas.push(0.0);
    Schedule { sigmas, timesteps }
}

/// `FlowMatchEulerDiscreteScheduler(shift=shift)`: timesteps spaced linearly between the
/// shifted training extremes (computed in f32 at construction) and shifted once more, as
/// diffusers does (so the smallest σ is shifted twice); timesteps `1000·σ` in f32.
pub fn flow_euler(steps: usize, shift: f64) -> Schedule {
    let shift32 = |s: f32| (shift as f32) * s / (1.0 + (shift as f32 - 1.0) * s);
    let sigma_max = shift32(1000.0f32 / 1000.0) as f64;
    let sigma_min = shift32(1.0f32 / 1000.0) as f64;
    let t = linspace(sigma_max * 1000.0, sigma_min * 1000.0, steps);
    let mut sigmas: Vec<f32> = t.iter().map(|t| shift_f64(t / 1000.0, shift) as f32).collect();
    let timesteps = sigmas.iter().map(|s| s * 1000.0).collect();
    sigmas.push(0.0);
    Schedule { sigmas, timesteps }
}

/// `UniPCMultistepScheduler(use_flow_sigmas=True, flow_shift=shift)`: `σ = shift(linspace(1,
/// 1/1000, N+1)[:-1])` in float64, the first nudged to `1 − 1e-6` when it is 1 (diffusers
/// avoids `ln 0`), then 0; timesteps `⌊1000·σ⌋` (int64 truncation).
pub fn unipc_flow(steps: usize, shift: f64) -> Schedule {
    let mut sig: Vec<f64> = linspace(1.0, 1.0 / 1000.0, steps + 1);
    sig.pop();
    for s in sig.iter_mut() {
        *s = shift_f64(*s, shift);
    }
    if let Some(first) = sig.first_mut() {
        if (*first - 1.0).abs() < 1e-6 {
            *first -= 1e-6;
        }
    }
    let timesteps = sig.iter().map(|s| (s * 1000.0).trunc() as f32).collect();
    let mut sigmas: Vec<f32> = sig.iter().map(|&s| s as f32).collect();
    sigmas.push(0.0);
    Schedule { sigmas, timesteps }
}
