//! Keeping claimed jobs leased: a heartbeat per job from its claim until it
//! is settled or released, and the rescue of dead workers' jobs.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use wordup_queue::{Job, JobId, Queue, QueueError};

/// Set by the heartbeat, read by the drawing thread between steps.
#[derive(Default)]
pub(super) struct Flags {
    pub cancel: AtomicBool,
    pub lost: AtomicBool,
}

impl Flags {
    /// Whether drawing should stop at its next step.
    pub fn stop_requested(&self) -> bool {
        self.cancel.load(Ordering::Relaxed) || self.lost.load(Ordering::Relaxed)
    }
}

/// A claimed job's heartbeat, from the claim until it is settled or released.
pub struct Lease {
    pub(super) flags: Arc<Flags>,
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

/// Returns the jobs of dead workers to the queue, every `every`, and says
/// that this engine (`engine_id`) is alive and what it serves. Every worker
/// runs one, so that no separate maintainer is needed for recovery.
pub(super) async fn rescue(queue: Queue, engine_id: String, every: Duration) {
    loop {
        if let Err(e) = queue.engine_seen(&engine_id).await {
            tracing::warn!(error = %e, "could not say what this engine serves");
        }
        tokio::time::sleep(every).await;
        match queue.rescue_expired().await {
            Ok(0) => {}
            Ok(rescued) => tracing::info!(rescued, "returned jobs of dead workers to the queue"),
            Err(e) => tracing::warn!(error = %e, "rescue failed"),
        }
    }
}
