//! Leases: heartbeats, settlement fenced by (job id, attempt), and the rescuer.

use chrono::{DateTime, Utc};

use crate::error::{QueueError, Result};
use crate::model::JobId;
use crate::{JOBS_CHANNEL, Queue, secs};

/// What a heartbeat learned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Heartbeat {
    pub lease_expires_at: DateTime<Utc>,
    /// Someone asked to cancel this job: stop and [`Queue::acknowledge_cancel`].
    pub cancel_requested: bool,
}

/// How a job failed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Failure {
    /// Worth another attempt (a transient error): retried with backoff while
    /// attempts remain.
    Transient,
    /// Will fail the same way again (bad input, a missing parent image).
    Permanent,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailOutcome {
    /// Back in the queue, claimable from `run_at`.
    Retrying { run_at: DateTime<Utc> },
    /// Terminal: the error is kept on the job.
    Failed,
}

impl Queue {
    /// Extends the lease of a running attempt. Fails with
    /// [`QueueError::Stale`] when the attempt no longer holds the job.
    pub async fn heartbeat(&self, job: JobId, attempt: i32) -> Result<Heartbeat> {
        let row: Option<(DateTime<Utc>, bool)> = sqlx::query_as(
            "UPDATE jobs SET lease_expires_at = now() + make_interval(secs => $3)
             WHERE id = $1 AND attempt = $2 AND state = 'running'
             RETURNING lease_expires_at, cancel_requested",
        )
        .bind(job.0)
        .bind(attempt)
        .bind(secs(self.config.lease))
        .fetch_optional(&self.pool)
        .await?;
        let (lease_expires_at, cancel_requested) = row.ok_or(QueueError::Stale { job, attempt })?;
        Ok(Heartbeat {
            lease_expires_at,
            cancel_requested,
        })
    }

    /// Marks a running attempt succeeded.
    pub async fn complete(&self, job: JobId, attempt: i32) -> Result<()> {
        let done = sqlx::query(
            "UPDATE jobs SET state = 'succeeded', finished_at = now(), lease_expires_at = NULL
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

    /// Marks many running attempts succeeded in one statement; each is fenced
    /// on its own. Returns the jobs whose attempt was stale.
    pub async fn complete_many(&self, jobs: &[(JobId, i32)]) -> Result<Vec<JobId>> {
        let ids: Vec<i64> = jobs.iter().map(|(id, _)| id.0).collect();
        let attempts: Vec<i32> = jobs.iter().map(|(_, attempt)| *attempt).collect();
        let done: Vec<i64> = sqlx::query_scalar(
            "UPDATE jobs SET state = 'succeeded', finished_at = now(), lease_expires_at = NULL
             FROM unnest($1::bigint[], $2::int[]) AS done(id, attempt)
             WHERE jobs.id = done.id AND jobs.attempt = done.attempt AND jobs.state = 'running'
             RETURNING jobs.id",
        )
        .bind(&ids)
        .bind(&attempts)
        .fetch_all(&self.pool)
        .await?;
        Ok(jobs
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !done.contains(&id.0))
            .collect())
    }

    /// Records a failed attempt: back to the queue after a backoff while
    /// attempts remain and the failure is transient, else failed for good.
    pub async fn fail(
        &self,
        job: JobId,
        attempt: i32,
        error: &str,
        failure: Failure,
    ) -> Result<FailOutcome> {
        let delay = self.config.backoff.delay_with_thread_rng(attempt);
        let row: Option<(String, DateTime<Utc>)> = sqlx::query_as(
            "UPDATE jobs SET
                 state = CASE WHEN $4 AND attempt < max_attempts THEN 'queued' ELSE 'failed' END,
                 run_at = CASE WHEN $4 AND attempt < max_attempts
                               THEN now() + make_interval(secs => $5) ELSE run_at END,
                 finished_at = CASE WHEN $4 AND attempt < max_attempts THEN NULL ELSE now() END,
                 lease_expires_at = NULL,
                 last_error = $3
             WHERE id = $1 AND attempt = $2 AND state = 'running'
             RETURNING state, run_at",
        )
        .bind(job.0)
        .bind(attempt)
        .bind(error)
        .bind(failure == Failure::Transient)
        .bind(secs(delay))
        .fetch_optional(&self.pool)
        .await?;
        match row {
            None => Err(QueueError::Stale { job, attempt }),
            Some((state, run_at)) if state == "queued" => Ok(FailOutcome::Retrying { run_at }),
            Some(_) => Ok(FailOutcome::Failed),
        }
    }

    /// Returns running jobs whose lease expired to the queue (or fails them
    /// when they have used all attempts). Returns how many were rescued.
    pub async fn rescue_expired(&self) -> Result<u64> {
        let rescued = sqlx::query(
            "UPDATE jobs SET
                 state = CASE WHEN attempt < max_attempts THEN 'queued' ELSE 'failed' END,
                 finished_at = CASE WHEN attempt < max_attempts THEN NULL ELSE now() END,
                 run_at = now(),
                 lease_expires_at = NULL,
                 last_error = 'lease expired: the worker stopped heartbeating'
             WHERE state = 'running' AND lease_expires_at < now()",
        )
        .execute(&self.pool)
        .await?
        .rows_affected();
        if rescued > 0 {
            sqlx::query("SELECT pg_notify($1, '')")
                .bind(JOBS_CHANNEL)
                .execute(&self.pool)
                .await?;
            tracing::warn!(rescued, "returned jobs with expired leases to the queue");
        }
        Ok(rescued)
    }

    /// Returns a running attempt to the queue at once without counting it as
    /// a failure (a worker shutting down before it could finish).
    pub async fn release(&self, job: JobId, attempt: i32) -> Result<()> {
        let released = sqlx::query(
            // The attempt number keeps counting so that it still fences the
            // released worker; the extra attempt makes up for it.
            "UPDATE jobs SET state = 'queued', max_attempts = max_attempts + 1, run_at = now(),
                 lease_expires_at = NULL, progress = NULL
             WHERE id = $1 AND attempt = $2 AND state = 'running'",
        )
        .bind(job.0)
        .bind(attempt)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if released == 0 {
            return Err(QueueError::Stale { job, attempt });
        }
        sqlx::query("SELECT pg_notify($1, '')")
            .bind(JOBS_CHANNEL)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
