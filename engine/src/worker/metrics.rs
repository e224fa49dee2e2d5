//! What a worker measures, in Prometheus's types: the binary registers them
//! and serves `/metrics`.

use std::time::{Duration, Instant};

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct JobLabels {
    /// imagine, upscale, vary, reroll.
    pub kind: String,
    /// done, retrying, failed, cancelled, lost.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct StageLabels {
    /// encoding, denoising, decoding, upscaling, safety, storing, delivering, total.
    pub stage: String,
}

type HistogramFamily<L> = Family<L, Histogram, fn() -> Histogram>;

fn seconds_histogram() -> Histogram {
    // 5 ms to ~11 min.
    Histogram::new(exponential_buckets(0.005, 2.0, 18))
}

#[derive(Debug, Clone)]
pub struct WorkerMetrics {
    pub jobs: Family<JobLabels, Counter>,
    pub stage_seconds: HistogramFamily<StageLabels>,
    pub unet_step_seconds: Histogram,
    pub images: Counter,
    pub wait_seconds: Histogram,
    /// Grids per UNet batch, for each batch of two or more.
    pub batched_grids: Histogram,
    pub delivery_failures: Counter,
    /// 1 once the models are loaded.
    pub ready: Gauge,
}

impl Default for WorkerMetrics {
    fn default() -> Self {
        WorkerMetrics {
            jobs: Family::default(),
            stage_seconds: Family::new_with_constructor(seconds_histogram),
            unet_step_seconds: seconds_histogram(),
            images: Counter::default(),
            wait_seconds: seconds_histogram(),
            batched_grids: Histogram::new(exponential_buckets(2.0, 2.0, 6)),
            delivery_failures: Counter::default(),
            ready: Gauge::default(),
        }
    }
}

impl WorkerMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "jobs",
            "Job attempts settled, by kind and outcome",
            self.jobs.clone(),
        );
        registry.register(
            "job_stage_seconds",
            "Time spent per job in each stage",
            self.stage_seconds.clone(),
        );
        registry.register(
            "batched_grids",
            "Grids drawn in one UNet batch, for batches of two or more (WORDUP_ENGINE_BATCH)",
            self.batched_grids.clone(),
        );
        registry.register(
            "unet_step_seconds",
            "Time per denoising (UNet) step",
            self.unet_step_seconds.clone(),
        );
        registry.register(
            "images_generated",
            "Images drawn (rate() gives images/s)",
            self.images.clone(),
        );
        registry.register(
            "job_wait_seconds",
            "Time from enqueue to claim",
            self.wait_seconds.clone(),
        );
        registry.register(
            "delivery_failures",
            "Results or notices that could not be posted",
            self.delivery_failures.clone(),
        );
        registry.register(
            "engine_ready",
            "1 once the models are loaded",
            self.ready.clone(),
        );
    }

    pub fn observe_stage(&self, stage: &str, took: Duration) {
        self.stage_seconds
            .get_or_create(&StageLabels {
                stage: stage.to_owned(),
            })
            .observe(took.as_secs_f64());
    }

    pub fn count_job(&self, kind: &str, outcome: &str) {
        self.jobs
            .get_or_create(&JobLabels {
                kind: kind.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
    }
}

/// Turns progress callbacks into stage durations and UNet step times.
pub struct StageTimer<'a> {
    metrics: &'a WorkerMetrics,
    current: Option<(String, Instant)>,
    last_step: Option<Instant>,
}

impl<'a> StageTimer<'a> {
    pub fn new(metrics: &'a WorkerMetrics) -> StageTimer<'a> {
        StageTimer {
            metrics,
            current: None,
            last_step: None,
        }
    }

    /// A progress event of `stage` at `step`.
    pub fn event(&mut self, stage: &str, step: usize) {
        let now = Instant::now();
        if self.current.as_ref().is_none_or(|(s, _)| s != stage) {
            self.finish();
            self.current = Some((stage.to_owned(), now));
            self.last_step = None;
        }
        if stage == "denoising"
            && step > 0
            && let Some(last) = self.last_step
        {
            self.metrics
                .unet_step_seconds
                .observe((now - last).as_secs_f64());
        }
        if stage == "denoising" {
            self.last_step = Some(now);
        }
    }

    /// Closes the stage in progress.
    pub fn finish(&mut self) {
        if let Some((stage, started)) = self.current.take() {
            self.metrics.observe_stage(&stage, started.elapsed());
        }
    }
}

impl Drop for StageTimer<'_> {
    fn drop(&mut self) {
        self.finish();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stages_and_steps_are_timed() {
        let metrics = WorkerMetrics::default();
        let mut registry = Registry::with_prefix("wordup");
        metrics.register(&mut registry);
        {
            let mut timer = StageTimer::new(&metrics);
            timer.event("encoding", 0);
            for step in 0..4 {
                timer.event("denoising", step);
            }
            timer.event("decoding", 0);
        }
        metrics.count_job("imagine", "done");
        let mut text = String::new();
        prometheus_client::encoding::text::encode(&mut text, &registry).unwrap();
        assert!(text.contains("wordup_unet_step_seconds_count 3"), "{text}");
        for stage in ["encoding", "denoising", "decoding"] {
            assert!(
                text.contains(&format!(
                    "wordup_job_stage_seconds_count{{stage=\"{stage}\"}} 1"
                )),
                "{text}"
            );
        }
        assert!(
            text.contains("wordup_jobs_total{kind=\"imagine\",outcome=\"done\"} 1"),
            "{text}"
        );
    }
}
