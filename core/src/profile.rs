//! Opt-in stage timing, for benchmarks (`dit-forward --profile`). Off by default: each
//! [`mark`] then costs one atomic load. When on, a mark waits for the device to finish the
//! work queued so far and charges the time since the previous mark to the named stage, so
//! the figures are GPU time per stage (plus one sync's overhead each), not launch time.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;

static ENABLED: AtomicBool = AtomicBool::new(false);

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::sync::Mutex;
    use std::time::Instant;

    pub struct Clock {
        pub last: Option<Instant>,
        /// (stage, seconds, calls), in first-seen order.
        pub stages: Vec<(&'static str, f64, u64)>,
    }

    pub static CLOCK: Mutex<Clock> = Mutex::new(Clock { last: None, stages: Vec::new() });
}

/// Turns stage timing on or off and clears what was recorded.
pub fn enable(on: bool) {
    ENABLED.store(on, Ordering::SeqCst);
    #[cfg(not(target_arch = "wasm32"))]
    if let Ok(mut c) = imp::CLOCK.lock() {
        c.last = None;
        c.stages.clear();
    }
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Ends the current stage: waits for `device`, charges the time since the last mark to `stage`.
/// The first mark after [`enable`] or [`take`] only starts the clock.
pub fn mark(device: &Device, stage: &'static str) {
    if !enabled() {
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        // A failed sync only makes the figure wrong, never the result: ignore it here.
        let _ = device.sync();
        let now = std::time::Instant::now();
        if let Ok(mut c) = imp::CLOCK.lock() {
            if let Some(last) = c.last {
                let dt = (now - last).as_secs_f64();
                match c.stages.iter_mut().find(|s| s.0 == stage) {
                    Some(s) => {
                        s.1 += dt;
                        s.2 += 1;
                    }
                    None => c.stages.push((stage, dt, 1)),
                }
            }
            c.last = Some(now);
        }
    }
    #[cfg(target_arch = "wasm32")]
    let _ = (device, stage);
}

/// The stages recorded since the last call, `(stage, seconds, calls)`; restarts the clock.
pub fn take() -> Vec<(&'static str, f64, u64)> {
    #[cfg(not(target_arch = "wasm32"))]
    if let Ok(mut c) = imp::CLOCK.lock() {
        c.last = None;
        return std::mem::take(&mut c.stages);
    }
    Vec::new()
}

/// `stages` as a Markdown table, largest first, under a heading naming `what`.
pub fn table(what: &str, total: f64, mut stages: Vec<(&'static str, f64, u64)>) -> String {
    let sum: f64 = stages.iter().map(|s| s.1).sum();
    let mut out = format!("\n## Profile, {what}: {total:.4} s with a sync after each stage ({sum:.4} s in stages)\n\n");
    out.push_str("| stage | calls | total s | share |\n|---|---|---|---|\n");
    stages.sort_by(|a, b| b.1.total_cmp(&a.1));
    for (name, secs, calls) in stages {
        out.push_str(&format!("| {name} | {calls} | {secs:.4} | {:.1}% |\n", 100.0 * secs / sum.max(1e-12)));
    }
    out
}

/// The denoising step to profile, from `SANA_PROFILE_STEP` (0-based; unset: none). The
/// pipelines then print that step's stage table to stderr.
pub fn step_to_profile() -> Option<usize> {
    std::env::var("SANA_PROFILE_STEP").ok()?.trim().parse().ok()
}

#[cfg(all(test, not(target_arch = "wasm32"), feature = "flex"))]
mod tests {
    use super::*;

    #[test]
    fn marks_charge_stages_in_order() {
        let device = crate::device::create(crate::device::BackendKind::Cpu).expect("cpu device");
        mark(&device, "ignored while off");
        enable(true);
        mark(&device, "start");
        mark(&device, "a");
        mark(&device, "b");
        mark(&device, "a");
        let stages = take();
        enable(false);
        let names: Vec<_> = stages.iter().map(|s| (s.0, s.2)).collect();
        assert_eq!(names, vec![("a", 2), ("b", 1)]);
        assert!(stages.iter().all(|s| s.1 >= 0.0));
        assert!(take().is_empty());
    }
}
