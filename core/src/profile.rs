//! Opt-in stage timing, for benchmarks (`dit-forward --profile`, `SANA_PROFILE_STEP`). Off by
//! default: each [`mark`] then costs one atomic load. Two modes:
//! * **sync** (the default): a mark waits for the device to finish the work queued so far and
//!   charges the time since the previous mark to the named stage, so the figures are GPU time
//!   per stage plus one sync's overhead each, and the GPU idles while the host issues a stage;
//! * **timeline** (`SANA_PROFILE_MODE=timeline`, CUDA only; elsewhere it falls back to sync):
//!   a mark records a CUDA event on the stream and the host's clock, and nothing waits. A
//!   stage's time is then the GPU's time between two events, idle gaps included, and the
//!   host's clock at each mark shows where the GPU had caught up with the host (was starved).
//!
//! `SANA_PROFILE_MEMORY=1` also reads the device pool at each mark (host-side bookkeeping, no
//! sync): the largest bytes in use seen at a mark, after which stage, and the reservation.

use std::sync::atomic::{AtomicBool, Ordering};

use burn::tensor::Device;

static ENABLED: AtomicBool = AtomicBool::new(false);

/// What one profiled run recorded.
#[derive(Default)]
pub struct Recorded {
    /// `(stage, seconds, calls)`, in first-seen order.
    pub stages: Vec<(&'static str, f64, u64)>,
    /// Timeline mode only: host and GPU clocks side by side.
    pub timeline: Option<Timeline>,
    /// `SANA_PROFILE_MEMORY=1`: the most bytes in use at a mark, the stage it ended, and the
    /// most bytes reserved.
    pub memory: Option<(u64, &'static str, u64)>,
}

/// Timeline mode's view of a run.
#[derive(Clone, Debug, Default)]
pub struct Timeline {
    /// Seconds the host took to issue the work from the first mark to the last.
    pub host_s: f64,
    /// Seconds the GPU took from the first mark's event to the last's.
    pub gpu_s: f64,
    /// Marks after the first, and those the GPU reached within [`STARVED_S`] of the host
    /// issuing them: there the GPU had run out of work and waited for the host.
    pub marks: usize,
    pub starved: usize,
    /// Host seconds spent issuing each stage, by stage, in the stages' order.
    pub host_by_stage: Vec<f64>,
}

/// A mark the GPU reaches within this long of the host issuing it found the GPU waiting.
pub const STARVED_S: f64 = 0.5e-3;

#[cfg(not(target_arch = "wasm32"))]
mod imp {
    use std::sync::Mutex;
    use std::time::Instant;

    pub struct Clock {
        pub last: Option<Instant>,
        /// (stage, seconds, calls), in first-seen order.
        pub stages: Vec<(&'static str, f64, u64)>,
        /// Timeline mode: each mark's stage, host clock and GPU event, and the device.
        pub marks: Vec<(&'static str, Instant, sana_video_kernels::timeline::Stamp)>,
        pub device: Option<burn::tensor::Device>,
        pub memory: Option<(u64, &'static str, u64)>,
    }

    pub static CLOCK: Mutex<Clock> = Mutex::new(Clock { last: None, stages: Vec::new(), marks: Vec::new(), device: None, memory: None });
}

#[cfg(not(target_arch = "wasm32"))]
fn timeline_mode() -> bool {
    static MODE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| std::env::var("SANA_PROFILE_MODE").is_ok_and(|v| v.trim() == "timeline"))
}

#[cfg(not(target_arch = "wasm32"))]
fn memory_mode() -> bool {
    static MODE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *MODE.get_or_init(|| std::env::var("SANA_PROFILE_MEMORY").is_ok_and(|v| v.trim() == "1"))
}

/// Folds the pool's usage now into the peak seen at marks.
#[cfg(not(target_arch = "wasm32"))]
fn sample_memory(c: &mut imp::Clock, device: &Device, stage: &'static str) {
    if !memory_mode() {
        return;
    }
    if let Some(u) = device.memory_pool_usage() {
        let (in_use, at, reserved) = c.memory.unwrap_or((0, stage, 0));
        let (in_use, at) = if u.bytes_in_use > in_use { (u.bytes_in_use, stage) } else { (in_use, at) };
        c.memory = Some((in_use, at, reserved.max(u.bytes_reserved)));
    }
}

/// Turns stage timing on or off and clears what was recorded.
pub fn enable(on: bool) {
    // The fused ops' own marks (sub-stages of a profiled stage) come here too.
    let _ = sana_video_kernels::STAGE_MARK.set(mark);
    ENABLED.store(on, Ordering::SeqCst);
    #[cfg(not(target_arch = "wasm32"))]
    if let Ok(mut c) = imp::CLOCK.lock() {
        c.last = None;
        c.stages.clear();
        c.marks.clear();
        c.device = None;
        c.memory = None;
    }
}

pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Ends the current stage and charges it to `stage` (see the module doc for the two modes).
/// The first mark after [`enable`] or [`take`] only starts the clock.
pub fn mark(device: &Device, stage: &'static str) {
    if !enabled() {
        return;
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        if timeline_mode() && sana_video_kernels::timeline::available(device) {
            if let Ok(mut c) = imp::CLOCK.lock() {
                if c.marks.is_empty() {
                    // Start on an idle device, so the first event and the host clock agree.
                    let _ = device.sync();
                }
                if let Some(stamp) = sana_video_kernels::timeline::stamp(device) {
                    sample_memory(&mut c, device, stage);
                    c.marks.push((stage, std::time::Instant::now(), stamp));
                    c.device.get_or_insert_with(|| device.clone());
                    return;
                }
            }
        }
        // A failed sync only makes the figure wrong, never the result: ignore it here.
        let _ = device.sync();
        let now = std::time::Instant::now();
        if let Ok(mut c) = imp::CLOCK.lock() {
            if let Some(last) = c.last {
                let dt = (now - last).as_secs_f64();
                charge(&mut c.stages, stage, dt);
            }
            c.last = Some(now);
            sample_memory(&mut c, device, stage);
        }
    }
    #[cfg(target_arch = "wasm32")]
    let _ = (device, stage);
}

#[cfg(not(target_arch = "wasm32"))]
fn charge(stages: &mut Vec<(&'static str, f64, u64)>, stage: &'static str, dt: f64) {
    match stages.iter_mut().find(|s| s.0 == stage) {
        Some(s) => {
            s.1 += dt;
            s.2 += 1;
        }
        None => stages.push((stage, dt, 1)),
    }
}

/// What was recorded since the last call; restarts the clock. In timeline mode this waits
/// for the device, then reads the events.
pub fn take() -> Recorded {
    #[cfg(not(target_arch = "wasm32"))]
    if let Ok(mut c) = imp::CLOCK.lock() {
        c.last = None;
        let marks = std::mem::take(&mut c.marks);
        let memory = c.memory.take();
        if let Some(device) = c.device.take() {
            let _ = device.sync();
            return Recorded { memory, ..timeline_of(marks) };
        }
        return Recorded { stages: std::mem::take(&mut c.stages), timeline: None, memory };
    }
    Recorded::default()
}

#[cfg(not(target_arch = "wasm32"))]
fn timeline_of(marks: Vec<(&'static str, std::time::Instant, sana_video_kernels::timeline::Stamp)>) -> Recorded {
    use sana_video_kernels::timeline::seconds_between;
    let mut rec = Recorded::default();
    let mut tl = Timeline::default();
    let Some((_, h0, g0)) = marks.first() else {
        return rec;
    };
    let mut host_by_stage: Vec<(&'static str, f64)> = Vec::new();
    for w in marks.windows(2) {
        let ((_, ha, ga), (stage, hb, gb)) = (&w[0], &w[1]);
        let gpu = seconds_between(ga, gb).unwrap_or(f64::NAN);
        charge(&mut rec.stages, stage, gpu);
        let host = (*hb - *ha).as_secs_f64();
        match host_by_stage.iter_mut().find(|s| s.0 == *stage) {
            Some(s) => s.1 += host,
            None => host_by_stage.push((stage, host)),
        }
        // The GPU reached this mark `lag` after the host issued it.
        let lag = seconds_between(g0, gb).unwrap_or(f64::NAN) - (*hb - *h0).as_secs_f64();
        tl.marks += 1;
        if lag < STARVED_S {
            tl.starved += 1;
        }
    }
    if let Some((_, hl, gl)) = marks.last() {
        tl.host_s = (*hl - *h0).as_secs_f64();
        tl.gpu_s = seconds_between(g0, gl).unwrap_or(f64::NAN);
    }
    tl.host_by_stage = rec.stages.iter().map(|s| host_by_stage.iter().find(|h| h.0 == s.0).map_or(0.0, |h| h.1)).collect();
    rec.timeline = Some(tl);
    rec
}

/// `rec`'s stages as a Markdown table, largest first, under a heading naming `what`.
pub fn table(what: &str, total: f64, rec: Recorded) -> String {
    let Recorded { stages, timeline, memory } = rec;
    let sum: f64 = stages.iter().map(|s| s.1).sum();
    let mut rows: Vec<(&'static str, f64, u64, Option<f64>)> =
        stages.iter().enumerate().map(|(i, s)| (s.0, s.1, s.2, timeline.as_ref().and_then(|t| t.host_by_stage.get(i).copied()))).collect();
    rows.sort_by(|a, b| b.1.total_cmp(&a.1));
    let mut out = match &timeline {
        None => format!("\n## Profile, {what}: {total:.4} s with a sync after each stage ({sum:.4} s in stages)\n\n"),
        Some(t) => format!(
            "\n## Timeline, {what}: {total:.4} s, no syncs; GPU {:.4} s from first to last mark, host issued it in {:.4} s; \
             the GPU had caught up with the host (within {:.1} ms) at {} of {} marks\n\n",
            t.gpu_s,
            t.host_s,
            STARVED_S * 1e3,
            t.starved,
            t.marks
        ),
    };
    match timeline {
        None => out.push_str("| stage | calls | total s | share |\n|---|---|---|---|\n"),
        Some(_) => out.push_str("| stage | calls | GPU s | share | host issue s |\n|---|---|---|---|---|\n"),
    }
    for (name, secs, calls, host) in rows {
        out.push_str(&format!("| {name} | {calls} | {secs:.4} | {:.1}% |", 100.0 * secs / sum.max(1e-12)));
        if let Some(h) = host {
            out.push_str(&format!(" {h:.4} |"));
        }
        out.push('\n');
    }
    if let Some((in_use, at, reserved)) = memory {
        out.push_str(&format!(
            "\nDevice memory at the marks: at most {:.3} GB in use (after \"{at}\"), {:.3} GB reserved\n",
            in_use as f64 / 1e9,
            reserved as f64 / 1e9
        ));
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
        let stages = take().stages;
        enable(false);
        let names: Vec<_> = stages.iter().map(|s| (s.0, s.2)).collect();
        assert_eq!(names, vec![("a", 2), ("b", 1)]);
        assert!(stages.iter().all(|s| s.1 >= 0.0));
        assert!(take().stages.is_empty());
    }

    /// Timeline records print GPU seconds and the host's issue seconds side by side, largest
    /// GPU stage first, and the header says how often the GPU caught up with the host.
    #[test]
    fn timeline_table_lists_both_clocks() {
        let rec = Recorded {
            stages: vec![("a", 0.010, 2), ("b", 0.030, 2)],
            timeline: Some(Timeline { host_s: 0.02, gpu_s: 0.04, marks: 4, starved: 1, host_by_stage: vec![0.015, 0.005] }),
            memory: Some((2_500_000_000, "b", 4_000_000_000)),
        };
        let t = table("x", 0.05, rec);
        assert!(t.contains("at most 2.500 GB in use (after \"b\"), 4.000 GB reserved"), "{t}");
        assert!(t.contains("GPU 0.0400 s from first to last mark, host issued it in 0.0200 s"), "{t}");
        assert!(t.contains("at 1 of 4 marks"), "{t}");
        let b = t.find("| b | 2 | 0.0300 | 75.0% | 0.0050 |").expect("row b");
        let a = t.find("| a | 2 | 0.0100 | 25.0% | 0.0150 |").expect("row a");
        assert!(b < a, "largest first: {t}");
    }
}
