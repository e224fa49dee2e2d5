//! The worker: claims jobs from the queue, keeps their leases alive, draws,
//! checks, stores the images, has them posted, and settles each job, one
//! step per module. It knows no chat platform: posting goes through a
//! [`Delivery`] that the binary wires.
//!
//! Crash safety: every write is fenced by (job, attempt). A result is posted
//! with a key the platform deduplicates on (Discord's message nonce), then
//! recorded; a retried attempt that finds the record completes without
//! posting, and one that posts again gets the first message back.

mod announce;
mod answer;
mod batch;
mod check;
mod deliver;
mod draw;
mod draw_thread;
mod judge;
mod lease;
pub mod metrics;
mod plan;
mod preview;
mod progress;
pub mod render;
mod settle;
mod store;
pub mod warm_up;

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::{mpsc, watch};
use wordup_queue::{
    Delivery, GRID_IMAGES, ImagineRequest, Job, Queue, QueueError, Request, ResultKind, ResultPost,
};

pub use deliver::RESULT_POST;
pub use lease::Lease;

use crate::judge::ClipJudge;
use crate::judge::clip;
use crate::judge::safety::OpenNsfw;
use lease::Flags;
use metrics::WorkerMetrics;
use plan::{Draw, Plan};
use render::{Drawn, Models};
use settle::Outcome;

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
    /// Whether progress messages of multi-step jobs show previews.
    pub previews: bool,
    /// nsfw probability from which an image is withheld.
    pub nsfw_threshold: f32,
    /// Concepts CLIP must not see in a result (the concept check).
    pub blocked_concepts: Vec<String>,
    /// CLIP score from which a blocked concept counts as seen.
    pub concept_threshold: f32,
    /// Model id written into each image's provenance.
    pub model_id: String,
    /// The draft decoder's id, written into the provenance of the images it
    /// decodes; `None` when the engine has none.
    pub draft_decoder_id: Option<String>,
}

pub struct Worker<D> {
    pub queue: Queue,
    pub models: Arc<Models>,
    /// `None` runs without the output safety check (development only).
    pub safety: Option<Arc<OpenNsfw>>,
    /// Scores images, runs the concept check and reads prompts back;
    /// `None` runs without them.
    pub clip: Option<Arc<ClipJudge>>,
    pub delivery: Arc<D>,
    pub config: WorkerConfig,
    pub metrics: Arc<WorkerMetrics>,
}

impl<D: Delivery> Worker<D> {
    /// Runs until `shutdown` turns true; then finishes the jobs in hand (one
    /// job, or the grids drawn as one batch with it) and releases the rest
    /// of its batch.
    pub async fn run(&self, mut shutdown: watch::Receiver<bool>) -> Result<(), QueueError> {
        let mut waker = self.queue.waker(self.config.poll).await?;
        tracing::info!(batch = self.config.batch, "worker started");
        let every = self.config.poll.max(Duration::from_secs(1));
        // Unique per process: a restarted engine is a new one.
        let engine_id = format!(
            "engine-{}-{:08x}",
            std::process::id(),
            rand::random::<u32>()
        );
        let rescuer = tokio::spawn(lease::rescue(self.queue.clone(), engine_id.clone(), every));
        let sweeper = tokio::spawn(announce::sweeper(
            self.queue.clone(),
            self.delivery.clone(),
            self.metrics.clone(),
            every,
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
            let jobs = claimed
                .into_iter()
                .map(|job| {
                    let lease = Lease::keep(&self.queue, &job.job, self.config.heartbeat);
                    (job, lease)
                })
                .collect();
            self.run_batch(jobs, &shutdown).await;
        }
        rescuer.abort();
        sweeper.abort();
        if let Err(e) = self.queue.engine_gone(&engine_id).await {
            tracing::warn!(error = %e, "could not deregister this engine");
        }
        tracing::info!("worker stopped");
        Ok(())
    }

    /// A job's wait in the queue, observed once it runs.
    fn observe_wait(&self, job: &Job) {
        if let Some(started) = job.started_at {
            let waited = (started - job.enqueued_at).to_std().unwrap_or_default();
            self.metrics.wait_seconds.observe(waited.as_secs_f64());
        }
    }

    /// What a job draws, or how it ended without drawing: its result was
    /// already posted by an earlier attempt, it was an /analyze or a
    /// /describe (answered here), or it cannot be planned.
    async fn prepare(&self, job: &Job) -> Result<Plan, Outcome> {
        // A previous attempt posted and recorded, then died before completing.
        match self.queue.post(job.id, RESULT_POST).await {
            Ok(Some(_)) => return Err(Outcome::Done),
            Ok(None) => {}
            Err(e) => return Err(e.into()),
        }
        match &job.request {
            Request::Analyze { prompt } => return Err(self.analyze(job, prompt).await),
            Request::Describe {} => return Err(self.describe(job).await),
            _ => {}
        }
        self.plan(job).await
    }

    /// A progress reporter for `job`, told that drawing is starting; the
    /// drawing sends to the sender, and the reporter ends when it is dropped.
    fn reporter(
        &self,
        job: &Job,
        flags: &Arc<Flags>,
    ) -> (
        mpsc::UnboundedSender<progress::Update>,
        tokio::task::JoinHandle<()>,
    ) {
        let (progress_tx, progress_rx) = mpsc::unbounded_channel();
        let reporter = tokio::spawn(progress::report(
            self.queue.clone(),
            self.delivery.clone(),
            job.clone(),
            self.config.progress_every,
            progress_rx,
            flags.clone(),
        ));
        let _ = progress_tx.send(progress::Update::new("starting", 0, 1, None));
        (progress_tx, reporter)
    }

    /// Draws one job's plan on its own.
    async fn draw_alone(
        &self,
        job: &Job,
        flags: &Arc<Flags>,
        root: &ImagineRequest,
        draw: Draw,
    ) -> Result<Vec<Drawn>, Outcome> {
        let (progress_tx, reporter) = self.reporter(job, flags);
        let drawn = draw::draw(
            self.models.clone(),
            self.metrics.clone(),
            flags.clone(),
            progress_tx,
            self.previews(job),
            root.clone(),
            draw,
        )
        .await;
        let _ = reporter.await;
        if flags.lost.load(Ordering::Relaxed) {
            return Err(Outcome::Lost);
        }
        drawn.map_err(Outcome::from)
    }

    /// Checks, stores and posts what a job drew.
    async fn finish(
        &self,
        job: &Job,
        root: ImagineRequest,
        kind: ResultKind,
        what: String,
        drawn: Vec<Drawn>,
    ) -> Outcome {
        self.metrics.images.inc_by(drawn.len() as u64);

        let timed = Instant::now();
        let judged = match self.judge(&root.prompt, &drawn).await {
            Ok(judged) => judged,
            Err(e) => return e.into(),
        };
        // --quality drew more than a grid: the best by CLIP score are shown,
        // best first, and stored in that order so that buttons name them.
        let picks = kind == ResultKind::Grid && !judged.scores.is_empty();
        let (drawn, judged) = if picks && drawn.len() > GRID_IMAGES.into() {
            let best = clip::rerank(&judged.scores, GRID_IMAGES.into());
            let kept = best.iter().map(|&i| drawn[i].clone()).collect();
            (kept, judged.select(&best))
        } else {
            (drawn, judged)
        };
        self.metrics.observe_stage("scoring", timed.elapsed());

        let timed = Instant::now();
        let withheld = match self.withheld(job, &drawn, &judged).await {
            Ok(withheld) => withheld,
            Err(e) => return e.into(),
        };
        self.metrics.observe_stage("safety", timed.elapsed());

        let timed = Instant::now();
        let resolved = self.models.resolve(&root);
        if let Err(outcome) = self.store(job, &resolved, &drawn, &withheld, &judged).await {
            return outcome;
        }
        self.metrics.observe_stage("storing", timed.elapsed());

        if withheld.iter().all(|w| *w) {
            return match self
                .delivery
                .notice(job, "nothing-shown", check::nothing_shown_text(drawn.len()))
                .await
            {
                Ok(()) => Outcome::Done,
                Err(e) => e.into(),
            };
        }
        let scores = judged.shown(&withheld);
        let reading = self.read_back(&root.prompt, &judged, &withheld).await;
        let what = what
            + &judge::scores_note(&scores)
            + &check::withheld_note(&withheld).unwrap_or_default();
        let post = deliver::picture(kind, &drawn, &withheld)
            .and_then(|picture| {
                self.result_post(
                    job, &root, &resolved, what, kind, &picture, &drawn[0], &scores,
                )
            })
            .map(|post| ResultPost { reading, ..post });
        match post {
            Ok(post) => self.deliver(job, &post).await,
            Err(e) => e.into(),
        }
    }
}
