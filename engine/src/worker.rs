//! The worker: claims jobs from the queue, keeps their leases alive, draws,
//! stores the images, has them posted, and settles each job. It knows no
//! chat platform: posting goes through a [`Delivery`] that the binary wires.
//!
//! Crash safety: every write is fenced by (job, attempt). A result is posted
//! with a key the platform deduplicates on (Discord's message nonce), then
//! recorded; a retried attempt that finds the record completes without
//! posting, and one that posts again gets the first message back.

use std::future::Future;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use image::RgbImage;
use tokio::sync::{mpsc, watch};
use tracing::Instrument;
use wordup_queue::{
    ClaimedJob, FailOutcome, Failure, ImagineRequest, Job, JobId, JobImage, Progress, Queue,
    QueueError, Request,
};

use crate::error::EngineError;
use crate::metrics::{StageTimer, WorkerMetrics};
use crate::output::{self, Provenance};
use crate::pipeline::Stage;
use crate::render::{self, Drawn, Models};
use crate::safety::OpenNsfw;

/// The key a job's result post is recorded under.
pub const RESULT_POST: &str = "result";

/// A finished result, ready to upload.
#[derive(Debug, Clone)]
pub struct Finished {
    pub kind: FinishedKind,
    /// The prompt as the user typed it.
    pub prompt: String,
    /// What the result is ("seed 42 · 16:9", "image 2 upscaled ×4").
    pub what: String,
    pub filename: String,
    pub mime: &'static str,
    pub bytes: Vec<u8>,
    pub alt: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FinishedKind {
    Grid,
    Single,
}

/// Where a result was posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub channel_id: String,
    pub message_id: String,
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryFailure {
    /// Worth retrying later (network, rate limits, the platform's 5xx).
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

/// Posting to the platform a job came from.
pub trait Delivery: Send + Sync + 'static {
    /// Largest upload the job's destination takes, in bytes.
    fn attachment_limit(&self, job: &Job) -> u64;
    /// Whether the destination allows NSFW output (the safety check is skipped).
    fn nsfw_allowed(&self, job: &Job) -> bool;
    /// Shows progress to the requester; best effort.
    fn progress(&self, job: &Job, progress: &Progress) -> impl Future<Output = ()> + Send;
    /// Posts a result; the same job posted twice must yield one message.
    fn post(
        &self,
        job: &Job,
        finished: &Finished,
    ) -> impl Future<Output = Result<Posted, DeliveryFailure>> + Send;
    /// Tells the requester why there is no (full) result.
    fn notice(
        &self,
        job: &Job,
        text: &str,
    ) -> impl Future<Output = Result<(), DeliveryFailure>> + Send;
}

#[derive(Debug, Clone)]
pub struct WorkerConfig {
    /// Jobs claimed at once (sharing a batch key).
    pub batch: u32,
    /// Polling interval when no notification arrives.
    pub poll: Duration,
    /// Time between heartbeats (well under the lease).
    pub heartbeat: Duration,
    /// Least time between progress messages to the requester.
    pub progress_every: Duration,
    /// nsfw probability from which an image is withheld.
    pub nsfw_threshold: f32,
    /// Model id written into each image's provenance.
    pub model_id: String,
}

pub struct Worker<D> {
    pub queue: Queue,
    pub models: Arc<Models>,
    /// `None` runs without the output safety check (development only).
    pub safety: Option<Arc<OpenNsfw>>,
    pub delivery: Arc<D>,
    pub config: WorkerConfig,
    pub metrics: Arc<WorkerMetrics>,
}

/// How one attempt ended.
#[derive(Debug)]
enum Outcome {
    Done,
    /// Asked to stop by a cancellation.
    Cancelled,
    /// The lease was lost: another attempt owns the job now.
    Lost,
    Failed {
        error: String,
        failure: Failure,
        /// Shown to the requester if the job fails for good.
        user_text: String,
    },
}

impl Outcome {
    fn permanent(text: impl Into<String>) -> Outcome {
        let text = text.into();
        Outcome::Failed {
            error: text.clone(),
            failure: Failure::Permanent,
            user_text: text,
        }
    }

    fn transient(error: impl Into<String>) -> Outcome {
        Outcome::Failed {
            error: error.into(),
            failure: Failure::Transient,
            user_text: "something went wrong while drawing; please try again".into(),
        }
    }
}

impl From<QueueError> for Outcome {
    fn from(e: QueueError) -> Outcome {
        match e {
            QueueError::Stale { .. } => Outcome::Lost,
            e => Outcome::transient(e.to_string()),
        }
    }
}

impl From<EngineError> for Outcome {
    fn from(e: EngineError) -> Outcome {
        match e {
            EngineError::Cancelled => Outcome::Cancelled,
            EngineError::InvalidRequest(text) => Outcome::permanent(text),
            e => Outcome::transient(e.to_string()),
        }
    }
}

impl From<DeliveryFailure> for Outcome {
    fn from(e: DeliveryFailure) -> Outcome {
        match e {
            DeliveryFailure::Transient(e) => Outcome::transient(format!("delivery: {e}")),
            DeliveryFailure::Permanent(e) => Outcome::Failed {
                error: format!("delivery: {e}"),
                failure: Failure::Permanent,
                user_text: "the result could not be posted here".into(),
            },
        }
    }
}

/// Set by the heartbeat, read by the drawing thread between steps.
#[derive(Default)]
struct Flags {
    cancel: AtomicBool,
    lost: AtomicBool,
}

/// A claimed job's heartbeat, from the claim until it is settled or released.
pub struct Lease {
    flags: Arc<Flags>,
    heartbeat: tokio::task::JoinHandle<()>,
}

impl Lease {
    /// Starts heartbeating `job` every `every`.
    pub fn keep(queue: &Queue, job: &Job, every: Duration) -> Lease {
        let flags = Arc::new(Flags::default());
        let heartbeat = tokio::spawn(heartbeat(
            queue.clone(),
            job.id,
            job.attempt,
            every,
            flags.clone(),
        ));
        Lease { flags, heartbeat }
    }

    pub fn stop(self) {
        self.heartbeat.abort();
    }
}

/// What a job draws, with its inputs fetched.
enum Plan {
    Grid {
        root: ImagineRequest,
        first_seed: u64,
        what: String,
    },
    Variations {
        root: ImagineRequest,
        source: RgbImage,
        strength: wordup_queue::VaryStrength,
        first_seed: u64,
        what: String,
    },
    Upscale {
        root: ImagineRequest,
        source: RgbImage,
        mode: wordup_queue::UpscaleMode,
        seed: u64,
        what: String,
    },
}

impl<D: Delivery> Worker<D> {
    /// Runs until `shutdown` turns true; then finishes the job in hand and
    /// releases the rest of its batch.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), QueueError> {
        let mut waker = self.queue.waker(self.config.poll).await?;
        tracing::info!(batch = self.config.batch, "worker started");
        // Every worker also returns the jobs of dead workers, so that no
        // separate maintainer is needed for recovery.
        let rescuer = tokio::spawn(rescue(
            self.queue.clone(),
            self.config.poll.max(Duration::from_secs(1)),
        ));
        loop {
            if *shutdown.borrow() {
                break;
            }
            // The claim itself is never abandoned half-way (a claim that
            // committed must be run or released); only the waiting is.
            let claimed = match self.queue.claim(self.config.batch).await {
                Ok(claimed) => claimed,
                Err(e) => {
                    tracing::warn!(error = %e, "claim failed; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            };
            if claimed.is_empty() {
                tokio::select! {
                    _ = waker.wait() => continue,
                    _ = shutdown.changed() => break,
                }
            }
            // Every job of the batch is leased from the claim on, so each
            // keeps a heartbeat while it waits for its turn.
            let mut jobs = claimed
                .into_iter()
                .map(|job| {
                    let lease = Lease::keep(&self.queue, &job.job, self.config.heartbeat);
                    (job, lease)
                })
                .collect::<Vec<_>>()
                .into_iter();
            while let Some((job, lease)) = jobs.next() {
                self.run_job(job, lease).await;
                if *shutdown.borrow() {
                    for (rest, lease) in jobs.by_ref() {
                        lease.stop();
                        if let Err(e) = self.queue.release(rest.id(), rest.attempt()).await {
                            tracing::warn!(job_id = %rest.id(), error = %e, "could not release a job");
                        }
                    }
                }
            }
        }
        rescuer.abort();
        tracing::info!("worker stopped");
        Ok(())
    }

    /// Runs one claimed job to a settlement; `lease` keeps it leased.
    pub async fn run_job(&self, claimed: ClaimedJob, lease: Lease) {
        let job = claimed.job;
        let span = tracing::info_span!("job", job_id = %job.id, attempt = job.attempt, kind = job.request.kind());
        if let Some(started) = job.started_at {
            let waited = (started - job.enqueued_at).to_std().unwrap_or_default();
            self.metrics.wait_seconds.observe(waited.as_secs_f64());
        }
        async {
            let started = Instant::now();
            let outcome = self.attempt(&job, &lease.flags).await;
            lease.stop();
            self.settle(&job, outcome, started).await;
        }
        .instrument(span)
        .await;
    }

    async fn attempt(&self, job: &Job, flags: &Arc<Flags>) -> Outcome {
        // A previous attempt posted and recorded, then died before completing.
        match self.queue.post(job.id, RESULT_POST).await {
            Ok(Some(_)) => return Outcome::Done,
            Ok(None) => {}
            Err(e) => return e.into(),
        }
        let plan = match self.plan(job).await {
            Ok(plan) => plan,
            Err(outcome) => return outcome,
        };
        let (progress_tx, progress_rx) = mpsc::unbounded_channel();
        let reporter = tokio::spawn(report_progress(
            self.queue.clone(),
            self.delivery.clone(),
            job.clone(),
            self.config.progress_every,
            progress_rx,
            flags.clone(),
        ));
        let _ = progress_tx.send(Progress {
            stage: "starting".into(),
            step: 0,
            total: 1,
        });
        let models = self.models.clone();
        let draw_flags = flags.clone();
        let metrics = self.metrics.clone();
        let (root, what, kind, drawn) = match plan {
            Plan::Grid {
                root,
                first_seed,
                what,
            } => {
                let request = root.clone();
                let drawn = blocking(models, metrics, draw_flags, progress_tx, move |m, p| {
                    m.imagine(&request, first_seed, wordup_queue::style::GRID_IMAGES, p)
                })
                .await;
                (root, what, FinishedKind::Grid, drawn)
            }
            Plan::Variations {
                root,
                source,
                strength,
                first_seed,
                what,
            } => {
                let request = root.clone();
                let drawn = blocking(models, metrics, draw_flags, progress_tx, move |m, p| {
                    m.vary(
                        &request,
                        &source,
                        strength,
                        first_seed,
                        wordup_queue::style::GRID_IMAGES,
                        p,
                    )
                })
                .await;
                (root, what, FinishedKind::Grid, drawn)
            }
            Plan::Upscale {
                root,
                source,
                mode,
                seed,
                what,
            } => {
                let request = root.clone();
                let drawn = blocking(models, metrics, draw_flags, progress_tx, move |m, p| {
                    Ok(vec![Drawn {
                        image: m.upscale(&request, &source, mode, seed, p)?,
                        seed,
                    }])
                })
                .await;
                (root, what, FinishedKind::Single, drawn)
            }
        };
        let _ = reporter.await;
        if flags.lost.load(Ordering::Relaxed) {
            return Outcome::Lost;
        }
        let drawn = match drawn {
            Ok(drawn) => drawn,
            Err(e) => return e.into(),
        };
        self.metrics.images.inc_by(drawn.len() as u64);
        self.finish(job, &root, what, kind, drawn).await
    }

    /// Safety check, storage, the attachment, the post and its record.
    async fn finish(
        &self,
        job: &Job,
        root: &ImagineRequest,
        what: String,
        kind: FinishedKind,
        drawn: Vec<Drawn>,
    ) -> Outcome {
        let timed = Instant::now();
        let withheld = match self.withheld(job, &drawn).await {
            Ok(withheld) => withheld,
            Err(e) => return e.into(),
        };
        self.metrics.observe_stage("safety", timed.elapsed());
        let timed = Instant::now();
        let resolved = self.models.resolve(root);
        for (idx, d) in drawn.iter().enumerate() {
            if withheld[idx] {
                continue;
            }
            let png = match output::encode_png(&d.image, &self.provenance(&resolved, d.seed)) {
                Ok(png) => png,
                Err(e) => return e.into(),
            };
            let image = JobImage {
                idx: idx as i32,
                png,
                width: d.image.width() as i32,
                height: d.image.height() as i32,
                seed: d.seed as i64,
                score: None,
            };
            if let Err(e) = self.queue.store_image(job.id, job.attempt, &image).await {
                return e.into();
            }
        }
        self.metrics.observe_stage("storing", timed.elapsed());
        let shown = withheld.iter().filter(|w| !**w).count();
        if shown == 0 {
            let text = if drawn.len() == 1 {
                "the image was withheld by the safety check, so nothing was posted".to_owned()
            } else {
                "all images were withheld by the safety check, so nothing was posted".to_owned()
            };
            return match self.delivery.notice(job, &text).await {
                Ok(()) => Outcome::Done,
                Err(e) => e.into(),
            };
        }
        let mut what = what;
        let blocked: Vec<String> = withheld
            .iter()
            .enumerate()
            .filter(|(_, w)| **w)
            .map(|(i, _)| (i + 1).to_string())
            .collect();
        if !blocked.is_empty() {
            what.push_str(&format!(
                " · image {} withheld by the safety check",
                blocked.join(", ")
            ));
        }
        let picture = match kind {
            FinishedKind::Single => drawn[0].image.clone(),
            FinishedKind::Grid => {
                let tiles: Vec<RgbImage> = drawn
                    .iter()
                    .zip(&withheld)
                    .map(|(d, w)| {
                        if *w {
                            RgbImage::from_pixel(
                                d.image.width(),
                                d.image.height(),
                                image::Rgb([96, 96, 96]),
                            )
                        } else {
                            d.image.clone()
                        }
                    })
                    .collect();
                match output::grid(&tiles, 2) {
                    Ok(grid) => grid,
                    Err(e) => return e.into(),
                }
            }
        };
        let finished =
            match self.attachment(job, root, &resolved, what, kind, &picture, drawn[0].seed) {
                Ok(finished) => finished,
                Err(e) => return e.into(),
            };
        let timed = Instant::now();
        let posted = match self.delivery.post(job, &finished).await {
            Ok(posted) => posted,
            Err(e) => {
                self.metrics.delivery_failures.inc();
                return e.into();
            }
        };
        self.metrics.observe_stage("delivering", timed.elapsed());
        match self
            .queue
            .record_post(
                job.id,
                RESULT_POST,
                &job.origin.platform,
                &posted.channel_id,
                &posted.message_id,
            )
            .await
        {
            Ok(_) => Outcome::Done,
            Err(e) => e.into(),
        }
    }

    /// How an image of this job was made, for its PNG.
    fn provenance(&self, resolved: &render::Resolved, seed: u64) -> Provenance {
        Provenance {
            prompt: resolved.prompt.clone(),
            negative_prompt: resolved.negative_prompt.clone(),
            seed,
            steps: resolved.steps,
            guidance: resolved.guidance,
            scheduler: self.models.pipeline.scheduler_kind.name().to_owned(),
            model: self.config.model_id.clone(),
            clip_score: None,
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn attachment(
        &self,
        job: &Job,
        root: &ImagineRequest,
        resolved: &render::Resolved,
        what: String,
        kind: FinishedKind,
        picture: &RgbImage,
        seed: u64,
    ) -> Result<Finished, EngineError> {
        let png = output::encode_png(picture, &self.provenance(resolved, seed))?;
        let limit = usize::try_from(self.delivery.attachment_limit(job)).unwrap_or(usize::MAX);
        let fitted = output::fit_to_limit(png, picture, limit)?;
        let stem = match kind {
            FinishedKind::Grid => "grid",
            FinishedKind::Single => "image",
        };
        let alt = match kind {
            FinishedKind::Grid => format!(
                "Four AI-generated images in a grid: {}",
                output::alt_text(&root.prompt)
            ),
            FinishedKind::Single => {
                format!("AI-generated image: {}", output::alt_text(&root.prompt))
            }
        };
        Ok(Finished {
            kind,
            prompt: root.prompt.clone(),
            what,
            filename: format!("wordup-{}-{stem}.{}", job.id, fitted.format.extension()),
            mime: fitted.format.mime(),
            bytes: fitted.bytes,
            alt,
        })
    }

    /// Which images the safety check withholds.
    async fn withheld(&self, job: &Job, drawn: &[Drawn]) -> Result<Vec<bool>, EngineError> {
        let Some(safety) = self.safety.clone() else {
            return Ok(vec![false; drawn.len()]);
        };
        if self.delivery.nsfw_allowed(job) {
            return Ok(vec![false; drawn.len()]);
        }
        let images: Vec<RgbImage> = drawn.iter().map(|d| d.image.clone()).collect();
        let threshold = self.config.nsfw_threshold;
        let verdicts = tokio::task::spawn_blocking(move || safety.check(&images, threshold))
            .await
            .map_err(|e| EngineError::Image(format!("safety check panicked: {e}")))??;
        Ok(verdicts.iter().map(|v| v.withheld).collect())
    }

    /// Fetches a job's inputs: the original prompt and, for follow-ups, the image.
    async fn plan(&self, job: &Job) -> Result<Plan, Outcome> {
        match &job.request {
            Request::Imagine(request) => Ok(Plan::Grid {
                root: request.clone(),
                first_seed: request.seed,
                what: format!(
                    "seed {} · {}:{}",
                    request.seed, request.aspect.width, request.aspect.height
                ),
            }),
            Request::Reroll { parent } => {
                let root = self.root_request(*parent).await?;
                let first_seed = render::job_seed(job.id.0);
                Ok(Plan::Grid {
                    what: format!("re-roll · seed {first_seed}"),
                    root,
                    first_seed,
                })
            }
            Request::Vary {
                parent,
                index,
                strength,
            } => {
                let root = self.root_request(*parent).await?;
                let source = self.parent_image(*parent, *index).await?;
                Ok(Plan::Variations {
                    root,
                    source,
                    strength: *strength,
                    first_seed: render::job_seed(job.id.0),
                    what: format!(
                        "{} variations of image {}",
                        match strength {
                            wordup_queue::VaryStrength::Subtle => "subtle",
                            wordup_queue::VaryStrength::Strong => "strong",
                        },
                        index + 1
                    ),
                })
            }
            Request::Upscale {
                parent,
                index,
                mode,
            } => {
                let root = self.root_request(*parent).await?;
                let source = self.parent_image(*parent, *index).await?;
                let what = match mode {
                    wordup_queue::UpscaleMode::Plain => format!("image {} upscaled ×4", index + 1),
                    wordup_queue::UpscaleMode::Subtle => {
                        format!("image {} upscaled (subtle)", index + 1)
                    }
                    wordup_queue::UpscaleMode::Creative => {
                        format!("image {} upscaled (creative)", index + 1)
                    }
                };
                Ok(Plan::Upscale {
                    root,
                    source,
                    mode: *mode,
                    seed: render::job_seed(job.id.0),
                    what,
                })
            }
        }
    }

    /// The /imagine request at the root of a chain of follow-ups.
    async fn root_request(&self, mut id: JobId) -> Result<ImagineRequest, Outcome> {
        for _ in 0..32 {
            let Some(job) = self.queue.job(id).await? else {
                return Err(Outcome::permanent(
                    "the original job is no longer available (past retention)",
                ));
            };
            match job.request {
                Request::Imagine(request) => return Ok(request),
                other => match other.parent() {
                    Some(parent) => id = parent,
                    None => break,
                },
            }
        }
        Err(Outcome::permanent("the chain of follow-ups is too long"))
    }

    async fn parent_image(&self, parent: JobId, index: u8) -> Result<RgbImage, Outcome> {
        let Some(stored) = self.queue.image(parent, i32::from(index)).await? else {
            return Err(Outcome::permanent(format!(
                "image {} of job {parent} is not available",
                index + 1
            )));
        };
        image::load_from_memory(&stored.png)
            .map(|i| i.to_rgb8())
            .map_err(|e| Outcome::permanent(format!("stored image is unreadable: {e}")))
    }

    async fn settle(&self, job: &Job, outcome: Outcome, started: Instant) {
        let elapsed = started.elapsed().as_secs_f64();
        self.metrics.observe_stage("total", started.elapsed());
        let kind = job.request.kind();
        let result = match outcome {
            Outcome::Done => {
                self.metrics.count_job(kind, "done");
                tracing::info!(elapsed_s = elapsed, "job done");
                self.queue.complete(job.id, job.attempt).await
            }
            Outcome::Lost => {
                self.metrics.count_job(kind, "lost");
                tracing::warn!("lease lost; another attempt owns the job");
                Ok(())
            }
            Outcome::Cancelled => {
                self.metrics.count_job(kind, "cancelled");
                tracing::info!("job cancelled");
                // Settle first: the notice may wait out rate limits, and the
                // lease is no longer kept.
                let settled = self.queue.acknowledge_cancel(job.id, job.attempt).await;
                if let Err(e) = self.delivery.notice(job, "cancelled").await {
                    self.metrics.delivery_failures.inc();
                    tracing::warn!(error = %e, "could not tell the requester about a cancellation");
                }
                settled
            }
            Outcome::Failed {
                error,
                failure,
                user_text,
            } => {
                tracing::warn!(%error, ?failure, "job attempt failed");
                match self.queue.fail(job.id, job.attempt, &error, failure).await {
                    Ok(FailOutcome::Failed) => {
                        self.metrics.count_job(kind, "failed");
                        if let Err(e) = self
                            .delivery
                            .notice(job, &format!("failed: {user_text}"))
                            .await
                        {
                            self.metrics.delivery_failures.inc();
                            tracing::warn!(error = %e, "could not tell the requester about a failure");
                        }
                        Ok(())
                    }
                    Ok(FailOutcome::Retrying { .. }) => {
                        self.metrics.count_job(kind, "retrying");
                        Ok(())
                    }
                    Err(e) => Err(e),
                }
            }
        };
        match result {
            Ok(()) | Err(QueueError::Stale { .. }) => {}
            Err(e) => {
                tracing::error!(error = %e, "could not settle the job; its lease will expire")
            }
        }
    }
}

/// Runs drawing on a blocking thread, forwarding progress and stopping at
/// the next step once the job is cancelled or its lease is lost.
async fn blocking<F>(
    models: Arc<Models>,
    metrics: Arc<WorkerMetrics>,
    flags: Arc<Flags>,
    progress: mpsc::UnboundedSender<Progress>,
    draw: F,
) -> Result<Vec<Drawn>, EngineError>
where
    F: FnOnce(&Models, &mut crate::pipeline::ProgressFn) -> Result<Vec<Drawn>, EngineError>
        + Send
        + 'static,
{
    tokio::task::spawn_blocking(move || {
        let mut timer = StageTimer::new(&metrics);
        let mut on_progress = |stage: Stage, step: usize, total: usize| {
            if flags.cancel.load(Ordering::Relaxed) || flags.lost.load(Ordering::Relaxed) {
                return Err(EngineError::Cancelled);
            }
            timer.event(stage.name(), step);
            let _ = progress.send(Progress {
                stage: stage.name().to_owned(),
                step: step as u32,
                total: total as u32,
            });
            Ok(())
        };
        draw(&models, &mut on_progress)
    })
    .await
    .map_err(|e| EngineError::Image(format!("drawing panicked: {e}")))?
}

async fn rescue(queue: Queue, every: Duration) {
    loop {
        tokio::time::sleep(every).await;
        match queue.rescue_expired().await {
            Ok(0) => {}
            Ok(rescued) => tracing::info!(rescued, "returned jobs of dead workers to the queue"),
            Err(e) => tracing::warn!(error = %e, "rescue failed"),
        }
    }
}

async fn heartbeat(queue: Queue, job: JobId, attempt: i32, every: Duration, flags: Arc<Flags>) {
    loop {
        tokio::time::sleep(every).await;
        match queue.heartbeat(job, attempt).await {
            Ok(beat) if beat.cancel_requested => flags.cancel.store(true, Ordering::Relaxed),
            Ok(_) => {}
            Err(QueueError::Stale { .. }) => {
                flags.lost.store(true, Ordering::Relaxed);
                return;
            }
            Err(e) => tracing::warn!(error = %e, "heartbeat failed; retrying"),
        }
    }
}

/// Stores progress (at most twice a second, and at each new stage) and
/// shows it to the requester (at most once per `every`).
async fn report_progress<D: Delivery>(
    queue: Queue,
    delivery: Arc<D>,
    job: Job,
    every: Duration,
    mut events: mpsc::UnboundedReceiver<Progress>,
    flags: Arc<Flags>,
) {
    let mut stored_at: Option<(Instant, String)> = None;
    let mut shown_at: Option<Instant> = None;
    while let Some(mut progress) = events.recv().await {
        // Only the latest event matters once we fall behind.
        while let Ok(next) = events.try_recv() {
            progress = next;
        }
        let stage_changed = stored_at
            .as_ref()
            .is_none_or(|(_, stage)| *stage != progress.stage);
        if stage_changed
            || stored_at
                .as_ref()
                .is_some_and(|(at, _)| at.elapsed() >= Duration::from_millis(500))
        {
            match queue.report_progress(job.id, job.attempt, &progress).await {
                Ok(()) => {}
                Err(QueueError::Stale { .. }) => {
                    flags.lost.store(true, Ordering::Relaxed);
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "progress not stored"),
            }
            stored_at = Some((Instant::now(), progress.stage.clone()));
        }
        if shown_at.is_none_or(|at| at.elapsed() >= every) {
            delivery.progress(&job, &progress).await;
            shown_at = Some(Instant::now());
        }
    }
}
