//! Timing helpers shared by the benchmark binaries.

use std::time::Instant;

/// The median wall time in milliseconds of `repeats` runs (at least one).
/// Warm-up is the caller's; a run on a device must end by waiting for it.
pub fn median_ms<E>(repeats: usize, mut run: impl FnMut() -> Result<(), E>) -> Result<f64, E> {
    let mut times = Vec::with_capacity(repeats.max(1));
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        run()?;
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}
