//! Telling a requester that their job ended without a result, once: the
//! worker that settles a job tells its own requester, and every worker
//! sweeps for endings nobody told (a rescued last attempt). The queue's notice claim makes sure no requester is told twice.

use std::sync::Arc;
use std::time::Duration;

use wordup_queue::{Delivery, DeliveryError, Job, JobState, Queue, UNREADABLE_JOB};

use super::metrics::WorkerMetrics;

/// Endings a sweep tells at most.
const SWEEP_BATCH: i64 = 20;

/// What the requester is told about a job that ended without a result,
/// when nobody could say more.
pub(super) fn ending_text(state: JobState, last_error: Option<&str>, attempts: i32) -> String {
    let error = last_error.unwrap_or_default();
    match state {
        JobState::Cancelled => "cancelled".to_owned(),
        _ if error.starts_with("lease expired") => format!(
            "failed: the engine stopped while drawing this, {attempts} times; please try again"
        ),
        _ if error.starts_with(UNREADABLE_JOB) => {
            "failed: the engines running cannot read this job (it needs a newer release); please try again later".to_owned()
        }
        _ => "failed: something went wrong while drawing; please try again".to_owned(),
    }
}

/// Tells the requester `text` about `job`'s ending unless someone has;
/// gives the claim back if the notice cannot be posted.
pub(super) async fn announce<D: Delivery>(
    queue: &Queue,
    delivery: &D,
    metrics: &WorkerMetrics,
    job: &Job,
    text: &str,
) {
    match queue.claim_notice(job.id).await {
        Ok(true) => {}
        Ok(false) => return,
        Err(e) => {
            tracing::warn!(job_id = %job.id, error = %e, "could not claim a notice");
            return;
        }
    }
    post(queue, delivery, metrics, job, text).await;
}

/// Posts a claimed notice; gives the claim back when a later try could
/// succeed, and keeps it when the platform refused for good (a retry would
/// only add refused calls).
async fn post<D: Delivery>(
    queue: &Queue,
    delivery: &D,
    metrics: &WorkerMetrics,
    job: &Job,
    text: &str,
) {
    let posted = delivery.notice(job, "ended", text).await;
    if posted.is_err() {
        metrics.delivery_failures.inc();
    }
    match posted {
        Ok(()) => {}
        Err(DeliveryError::Permanent(e)) => {
            tracing::warn!(job_id = %job.id, error = %e, "the requester cannot be told how the job ended");
        }
        Err(DeliveryError::Transient(e)) => {
            tracing::warn!(job_id = %job.id, error = %e, "notice not posted; a later sweep retries");
            if let Err(e) = queue.release_notice(job.id).await {
                tracing::warn!(job_id = %job.id, error = %e, "a notice stays claimed");
            }
        }
    }
}

/// Tells the requesters of endings nobody announced, every `every`, on a
/// task of its own (a slow platform must not hold up the rescue of jobs).
/// Only endings older than a lease are swept: the worker that settles a job
/// claims its notice right after, with the better reason.
pub(super) async fn sweeper<D: Delivery>(
    queue: Queue,
    delivery: Arc<D>,
    metrics: Arc<WorkerMetrics>,
    every: Duration,
) {
    let grace = queue.config().lease;
    loop {
        tokio::time::sleep(every).await;
        sweep(&queue, delivery.as_ref(), &metrics, grace).await;
    }
}

async fn sweep<D: Delivery>(queue: &Queue, delivery: &D, metrics: &WorkerMetrics, grace: Duration) {
    let jobs = match queue.claim_notices(SWEEP_BATCH, grace).await {
        Ok(jobs) => jobs,
        Err(e) => {
            tracing::warn!(error = %e, "could not look for unannounced endings");
            return;
        }
    };
    for job in jobs {
        let text = ending_text(job.state, job.last_error.as_deref(), job.attempt);
        post(queue, delivery, metrics, &job, &text).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_ending_has_its_words() {
        for (state, error, expected) in [
            (
                JobState::Cancelled,
                Some("cancelled while running"),
                "cancelled",
            ),
            (
                JobState::Failed,
                Some("lease expired: the worker stopped heartbeating"),
                "failed: the engine stopped while drawing this, 3 times; please try again",
            ),
            (
                JobState::Failed,
                Some("this engine cannot read the job: unknown variant `from_the_future`"),
                "failed: the engines running cannot read this job (it needs a newer release); please try again later",
            ),
            (
                JobState::Failed,
                None,
                "failed: something went wrong while drawing; please try again",
            ),
        ] {
            assert_eq!(ending_text(state, error, 3), expected, "{error:?}");
        }
    }
}
