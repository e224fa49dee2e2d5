//! The cuDNN forward algorithm of each convolution shape, chosen once by
//! timing the candidates on the device and then reused. candle, given no
//! algorithm, asks cuDNN for one on every call
//! (`cudnnGetConvolutionForwardAlgorithm_v7`), which cost 2.5–3 ms per call
//! on an H200, more than the 3×3 convolution itself (0.84–1.06 ms with a
//! fixed algorithm, `sd-bench parts`), 66 times per UNet step.
//! Only builds with cuDNN choose; elsewhere candle's convolution runs as is.

use std::collections::HashMap;
use std::sync::{LazyLock, Mutex};
use std::time::{Duration, Instant};

use candle_core::conv::CudnnFwdAlgo;
use candle_core::{DType, DeviceLocation, Result, Tensor};

/// Timed for each new shape; the FFT algorithms are left out (their
/// workspaces grow with the image, and they are not chosen for 3×3 or 1×1
/// kernels in f16).
const CANDIDATES: [CudnnFwdAlgo; 5] = [
    CudnnFwdAlgo::ImplicitPrecompGemm,
    CudnnFwdAlgo::ImplicitGemm,
    CudnnFwdAlgo::Gemm,
    CudnnFwdAlgo::Winograd,
    CudnnFwdAlgo::WinogradNonFused,
];

/// What an algorithm is chosen for.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ConvKey {
    pub input: Vec<usize>,
    pub weight: Vec<usize>,
    pub padding: usize,
    pub stride: usize,
    pub dtype: DType,
    pub device: DeviceLocation,
}

/// The fastest of the timed algorithms (one that failed has no time);
/// `None` when every one failed, and cuDNN then picks per call as before.
pub fn fastest(timings: &[(CudnnFwdAlgo, Option<Duration>)]) -> Option<CudnnFwdAlgo> {
    timings
        .iter()
        .filter_map(|&(algo, time)| Some((algo, time?)))
        .min_by_key(|&(_, time)| time)
        .map(|(algo, _)| algo)
}

/// Algorithms chosen so far, per shape.
#[derive(Debug, Default)]
pub struct AlgoCache {
    chosen: Mutex<HashMap<ConvKey, Option<CudnnFwdAlgo>>>,
}

impl AlgoCache {
    /// The algorithm for `key`, chosen by `time` (the candidates' timings)
    /// the first time the key is seen.
    pub fn get_or_choose(
        &self,
        key: &ConvKey,
        time: impl FnOnce() -> Vec<(CudnnFwdAlgo, Option<Duration>)>,
    ) -> Option<CudnnFwdAlgo> {
        if let Some(algo) = self.lock().get(key) {
            return *algo;
        }
        // Timed outside the lock: another thread timing the same key at
        // once costs a second timing, not a wait.
        let timings = time();
        let algo = fastest(&timings);
        tracing::debug!(?key, ?timings, ?algo, "cuDNN forward algorithm chosen");
        self.lock().insert(key.clone(), algo);
        algo
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<ConvKey, Option<CudnnFwdAlgo>>> {
        // The map stays consistent whatever a panicking holder was doing.
        self.chosen
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

static CHOSEN: LazyLock<AlgoCache> = LazyLock::new(AlgoCache::default);

/// candle's convolution (no bias), with the cached cuDNN algorithm for its
/// shape on a CUDA device in a cuDNN build.
pub fn conv2d(x: &Tensor, weight: &Tensor, padding: usize, stride: usize) -> Result<Tensor> {
    if !(cfg!(feature = "cudnn") && x.device().is_cuda()) {
        return x.conv2d(weight, padding, stride, 1, 1);
    }
    let key = ConvKey {
        input: x.dims().to_vec(),
        weight: weight.dims().to_vec(),
        padding,
        stride,
        dtype: x.dtype(),
        device: x.device().location(),
    };
    let algo = CHOSEN.get_or_choose(&key, || {
        CANDIDATES
            .iter()
            .map(|&algo| (algo, time_algo(x, weight, padding, stride, algo)))
            .collect()
    });
    match algo {
        // cuDNN may refuse a kept algorithm later (another layout, less
        // memory for its workspace): it then picks one for the call.
        Some(kept) => x
            .conv2d_with_algo(weight, padding, stride, 1, 1, algo)
            .or_else(|error| {
                tracing::debug!(?kept, %error, "cuDNN refused the kept algorithm; it picks one");
                x.conv2d(weight, padding, stride, 1, 1)
            }),
        None => x.conv2d(weight, padding, stride, 1, 1),
    }
}

/// The better of two synchronised runs after a warm-up; `None` when cuDNN
/// refuses the algorithm for this shape.
fn time_algo(
    x: &Tensor,
    weight: &Tensor,
    padding: usize,
    stride: usize,
    algo: CudnnFwdAlgo,
) -> Option<Duration> {
    let run = || -> Result<Duration> {
        let started = Instant::now();
        x.conv2d_with_algo(weight, padding, stride, 1, 1, Some(algo))?;
        x.device().synchronize()?;
        Ok(started.elapsed())
    };
    let timed = run().and_then(|_| Ok(run()?.min(run()?)));
    match timed {
        Ok(time) => Some(time),
        Err(error) => {
            tracing::debug!(?algo, %error, "cuDNN algorithm refused");
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use candle_core::Device;

    use super::*;

    fn ms(n: u64) -> Option<Duration> {
        Some(Duration::from_millis(n))
    }

    #[test]
    fn the_fastest_algorithm_that_ran_is_chosen() {
        use CudnnFwdAlgo::*;
        type Timings<'a> = &'a [(CudnnFwdAlgo, Option<Duration>)];
        let cases: [(Timings, Option<CudnnFwdAlgo>); 5] = [
            (&[], None),
            (&[(Gemm, None), (Winograd, None)], None),
            (
                &[(Gemm, ms(3)), (Winograd, ms(1)), (ImplicitGemm, ms(2))],
                Some(Winograd),
            ),
            (
                &[(Gemm, None), (ImplicitPrecompGemm, ms(5))],
                Some(ImplicitPrecompGemm),
            ),
            (&[(Gemm, ms(1)), (Winograd, ms(1))], Some(Gemm)),
        ];
        for (timings, expected) in cases {
            assert_eq!(fastest(timings), expected, "{timings:?}");
        }
    }

    #[test]
    fn each_shape_is_timed_once() {
        let cache = AlgoCache::default();
        let key = |side: usize, dtype: DType| ConvKey {
            input: vec![1, 4, side, side],
            weight: vec![8, 4, 3, 3],
            padding: 1,
            stride: 1,
            dtype,
            device: Device::Cpu.location(),
        };
        let timed = Cell::new(0);
        let time = |winner: CudnnFwdAlgo| {
            timed.set(timed.get() + 1);
            vec![(winner, ms(1)), (CudnnFwdAlgo::Gemm, ms(2))]
        };
        let a = key(64, DType::F16);
        assert_eq!(
            cache.get_or_choose(&a, || time(CudnnFwdAlgo::Winograd)),
            Some(CudnnFwdAlgo::Winograd)
        );
        // Kept: the second timing (which would say otherwise) never runs.
        assert_eq!(
            cache.get_or_choose(&a, || time(CudnnFwdAlgo::ImplicitGemm)),
            Some(CudnnFwdAlgo::Winograd)
        );
        assert_eq!(timed.get(), 1);
        // Another size or dtype is another shape.
        for other in [key(32, DType::F16), key(64, DType::F32)] {
            assert_eq!(
                cache.get_or_choose(&other, || time(CudnnFwdAlgo::ImplicitGemm)),
                Some(CudnnFwdAlgo::ImplicitGemm)
            );
        }
        assert_eq!(timed.get(), 3);
        // A shape no algorithm ran for is remembered too.
        let none = key(16, DType::BF16);
        assert_eq!(cache.get_or_choose(&none, Vec::new), None);
        assert_eq!(
            cache.get_or_choose(&none, || time(CudnnFwdAlgo::Gemm)),
            None
        );
    }
}
