//! Host-side work split over the host's cores (one part on wasm32, which has no threads).

/// Fills `out` in contiguous parts, one per core: `fill(start, part)` gets each part and the
/// index of its first element. Parts are whole multiples of `unit` elements (rows) and at
/// least `min` elements long, so short outputs stay on this thread.
pub(crate) fn par_fill<T: Send>(out: &mut [T], unit: usize, min: usize, fill: impl Fn(usize, &mut [T]) + Sync) {
    let unit = unit.max(1);
    #[cfg(not(target_arch = "wasm32"))]
    {
        let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
        let threads = cores.min(out.len() / min.max(1)).max(1);
        if threads > 1 {
            let per = out.len().div_ceil(threads).div_ceil(unit) * unit;
            let fill = &fill;
            std::thread::scope(|s| {
                for (i, part) in out.chunks_mut(per).enumerate() {
                    s.spawn(move || fill(i * per, part));
                }
            });
            return;
        }
    }
    fill(0, out);
}
