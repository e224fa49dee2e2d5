//! Choosing, once per shape, the fastest of several ways to run an op on a
//! device: each way runs on the shape's first call, those whose output
//! strays from a reference are dropped, the rest are timed, and the
//! fastest is kept for every later call of that shape. The convolutions
//! (`device_conv`) and GPU attention choose this way.

use std::collections::HashMap;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Result, Tensor};

/// The fastest of the timed ways (one that failed, or gave a wrong result,
/// has no time; the first of equals wins); `None` when none ran.
pub fn fastest<C: Copy>(timings: &[(C, Option<Duration>)]) -> Option<C> {
    timings
        .iter()
        .filter_map(|&(way, time)| Some((way, time?)))
        .min_by_key(|&(_, time)| time)
        .map(|(way, _)| way)
}

/// The ways chosen so far, per shape.
#[derive(Debug)]
pub struct Chosen<K, C> {
    chosen: Mutex<HashMap<K, Option<C>>>,
}

impl<K, C> Default for Chosen<K, C> {
    fn default() -> Self {
        Self {
            chosen: Mutex::new(HashMap::new()),
        }
    }
}

impl<K: Eq + Hash + Clone + Debug, C: Copy + Debug> Chosen<K, C> {
    /// The way for `key`, chosen by `time` (the ways' timings) the first
    /// time the key is seen.
    pub fn get_or_choose(
        &self,
        key: &K,
        time: impl FnOnce() -> Vec<(C, Option<Duration>)>,
    ) -> Option<C> {
        if let Some(way) = self.lock().get(key) {
            return *way;
        }
        // Timed outside the lock: another thread timing the same key at
        // once costs a second timing, not a wait.
        let timings = time();
        let way = fastest(&timings);
        tracing::debug!(?key, ?timings, ?way, "way chosen");
        self.lock().insert(key.clone(), way);
        way
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<K, Option<C>>> {
        // The map stays consistent whatever a panicking holder was doing.
        self.chosen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// ‖actual − reference‖ / ‖reference‖ in f32 (`reference` is f32); not
/// finite when `actual` is not.
pub fn relative_error(actual: &Tensor, reference: &Tensor) -> Result<f64> {
    let diff = (actual.to_dtype(DType::F32)? - reference)?
        .sqr()?
        .sum_all()?
        .to_scalar::<f32>()?;
    let norm = reference.sqr()?.sum_all()?.to_scalar::<f32>()?;
    Ok((diff as f64 / (norm as f64).max(f64::MIN_POSITIVE)).sqrt())
}

/// `run`'s time, the better of two runs after a first that is checked
/// against `reference` (f32) and serves as the warm-up; `None`, logged with
/// `what`, when a run fails or the output strays beyond `tolerance`.
pub fn time_if_accurate(
    what: &dyn Debug,
    device: &Device,
    reference: &Tensor,
    tolerance: f64,
    run: impl Fn() -> Result<Tensor>,
) -> Option<Duration> {
    match run().and_then(|actual| relative_error(&actual, reference)) {
        Ok(error) if error <= tolerance => {}
        Ok(error) => {
            tracing::warn!(?what, error, "strays from the reference; not used");
            return None;
        }
        Err(error) => {
            tracing::debug!(?what, %error, "refused");
            return None;
        }
    }
    best_of_two(device, run)
        .inspect_err(|error| tracing::debug!(?what, %error, "refused"))
        .ok()
}

/// The better of two runs of `run`, each waited for on `device`.
pub fn best_of_two(device: &Device, run: impl Fn() -> Result<Tensor>) -> Result<Duration> {
    let once = || -> Result<Duration> {
        let started = Instant::now();
        run()?;
        device.synchronize()?;
        Ok(started.elapsed())
    };
    Ok(once()?.min(once()?))
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn the_fastest_way_that_ran_is_chosen() {
        type Timings<'a> = &'a [(char, Option<Duration>)];
        let cases: [(Timings, Option<char>); 5] = [
            (&[], None),
            (&[('a', None), ('b', None)], None),
            (&[('a', ms(3)), ('b', ms(1)), ('c', ms(2))], Some('b')),
            (&[('a', None), ('b', ms(5))], Some('b')),
            (&[('a', ms(1)), ('b', ms(1))], Some('a')),
        ];
        for (timings, expected) in cases {
            assert_eq!(fastest(timings), expected, "{timings:?}");
        }
    }

    #[test]
    fn each_key_is_timed_once() {
        let chosen = Chosen::<(usize, &str), char>::default();
        let timed = Cell::new(0);
        let time = |winner: char| {
            timed.set(timed.get() + 1);
            vec![(winner, ms(1)), ('z', ms(2))]
        };
        assert_eq!(chosen.get_or_choose(&(64, "f16"), || time('a')), Some('a'));
        // Kept: the second timing (which would say otherwise) never runs.
        assert_eq!(chosen.get_or_choose(&(64, "f16"), || time('b')), Some('a'));
        assert_eq!(timed.get(), 1);
        // Another key is timed on its own.
        assert_eq!(chosen.get_or_choose(&(32, "f16"), || time('b')), Some('b'));
        assert_eq!(chosen.get_or_choose(&(64, "f32"), || time('c')), Some('c'));
        assert_eq!(timed.get(), 3);
        // A key no way ran for is remembered too.
        assert_eq!(chosen.get_or_choose(&(16, "bf16"), Vec::new), None);
        assert_eq!(chosen.get_or_choose(&(16, "bf16"), || time('d')), None);
    }

    #[test]
    fn errors_are_relative_to_the_reference() -> Result<()> {
        let reference = Tensor::new(&[3f32, 4.0], &Device::Cpu)?;
        let off = Tensor::new(&[3f32, 4.5], &Device::Cpu)?;
        assert!((relative_error(&off, &reference)? - 0.1).abs() < 1e-6);
        assert_eq!(relative_error(&reference, &reference)?, 0.0);
        let broken = Tensor::new(&[f32::NAN, 4.0], &Device::Cpu)?;
        assert!(!relative_error(&broken, &reference)?.is_finite());
        Ok(())
    }
}
