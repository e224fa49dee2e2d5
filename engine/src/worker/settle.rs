//! How an attempt ended, and settling the job accordingly: complete it,
//! acknowledge a cancellation, or fail it (for a retry, or for good with a
//! notice to the requester).

use std::time::Instant;

use wordup_queue::{Delivery, DeliveryError, FailOutcome, Failure, Job, QueueError};

use super::{Worker, announce};
use crate::error::EngineError;

/// Shown to the requester when an attempt fails for a reason of ours.
const DRAWING_FAILED: &str = "something went wrong while drawing; please try again";
/// Shown to the requester when the platform refuses the result for good.
const NOT_POSTABLE: &str = "the result could not be posted here";

/// How one attempt ended.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Outcome {
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
    pub fn permanent(text: impl Into<String>) -> Outcome {
        let text = text.into();
        Outcome::Failed {
            error: text.clone(),
            failure: Failure::Permanent,
            user_text: text,
        }
    }

    pub fn transient(error: impl Into<String>) -> Outcome {
        Outcome::Failed {
            error: error.into(),
            failure: Failure::Transient,
            user_text: DRAWING_FAILED.into(),
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

impl From<DeliveryError> for Outcome {
    fn from(e: DeliveryError) -> Outcome {
        match e {
            DeliveryError::Transient(e) => Outcome::transient(format!("delivery: {e}")),
            DeliveryError::Permanent(e) => Outcome::Failed {
                error: format!("delivery: {e}"),
                failure: Failure::Permanent,
                user_text: NOT_POSTABLE.into(),
            },
        }
    }
}

impl<D: Delivery> Worker<D> {
    pub(super) async fn settle(&self, job: &Job, outcome: Outcome, started: Instant) {
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
                announce::announce(
                    &self.queue,
                    self.delivery.as_ref(),
                    &self.metrics,
                    job,
                    "cancelled",
                )
                .await;
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
                        let text = format!("failed: {user_text}");
                        announce::announce(
                            &self.queue,
                            self.delivery.as_ref(),
                            &self.metrics,
                            job,
                            &text,
                        )
                        .await;
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

#[cfg(test)]
mod tests {
    use wordup_queue::JobId;

    use super::*;

    #[test]
    fn errors_become_outcomes_by_whether_a_retry_can_help() {
        let failed = |error: &str, failure, user_text: &str| Outcome::Failed {
            error: error.into(),
            failure,
            user_text: user_text.into(),
        };
        for (outcome, expected) in [
            (
                Outcome::from(QueueError::Stale {
                    job: JobId(1),
                    attempt: 2,
                }),
                Outcome::Lost,
            ),
            (Outcome::from(EngineError::Cancelled), Outcome::Cancelled),
            (
                Outcome::from(EngineError::InvalidRequest("prompt too long".into())),
                failed("prompt too long", Failure::Permanent, "prompt too long"),
            ),
            (
                Outcome::from(EngineError::Image("out of memory".into())),
                failed("image: out of memory", Failure::Transient, DRAWING_FAILED),
            ),
            (
                Outcome::from(DeliveryError::Transient("502".into())),
                failed("delivery: 502", Failure::Transient, DRAWING_FAILED),
            ),
            (
                Outcome::from(DeliveryError::Permanent("403".into())),
                failed("delivery: 403", Failure::Permanent, NOT_POSTABLE),
            ),
        ] {
            assert_eq!(outcome, expected);
        }
    }
}
