//! Cancellation: a queued job is cancelled at once; a running one gets a
//! signal (a flag its heartbeat returns, and a NOTIFY on the cancel channel)
//! and is cancelled when its worker acknowledges.

use crate::error::{QueueError, Result};
use crate::model::JobId;
use crate::{CANCEL_CHANNEL, Queue};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelOutcome {
    /// It was queued; now it is cancelled and will never run.
    Cancelled,
    /// It is running; its worker has been told to stop.
    Signalled,
    /// It had already finished.
    AlreadyFinished,
    NotFound,
}

impl Queue {
    pub async fn cancel(&self, job: JobId) -> Result<CancelOutcome> {
        let mut tx = self.pool.begin().await?;
        let state: Option<String> =
            sqlx::query_scalar("SELECT state FROM jobs WHERE id = $1 FOR UPDATE")
                .bind(job.0)
                .fetch_optional(&mut *tx)
                .await?;
        let outcome = match state.as_deref() {
            None => CancelOutcome::NotFound,
            Some("queued") => {
                sqlx::query(
                    "UPDATE jobs SET state = 'cancelled', finished_at = now(),
                         last_error = 'cancelled' WHERE id = $1",
                )
                .bind(job.0)
                .execute(&mut *tx)
                .await?;
                CancelOutcome::Cancelled
            }
            Some("running") => {
                sqlx::query("UPDATE jobs SET cancel_requested = true WHERE id = $1")
                    .bind(job.0)
                    .execute(&mut *tx)
                    .await?;
                sqlx::query("SELECT pg_notify($1, $2)")
                    .bind(CANCEL_CHANNEL)
                    .bind(job.0.to_string())
                    .execute(&mut *tx)
                    .await?;
                CancelOutcome::Signalled
            }
            Some(_) => CancelOutcome::AlreadyFinished,
        };
        tx.commit().await?;
        Ok(outcome)
    }

    /// A worker stopped a running attempt because it was asked to.
    pub async fn acknowledge_cancel(&self, job: JobId, attempt: i32) -> Result<()> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'cancelled', finished_at = now(), lease_expires_at = NULL,
                 last_error = 'cancelled while running'
             WHERE id = $1 AND attempt = $2 AND state = 'running'",
        )
        .bind(job.0)
        .bind(attempt)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if done == 1 {
            Ok(())
        } else {
            Err(QueueError::Stale { job, attempt })
        }
    }
}
