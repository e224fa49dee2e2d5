//! Telling requesters how a job ended: every job that ends failed or
//! cancelled is announced once. Whoever ends a job (a worker settling it,
//! the rescue of its last attempt, a claim that cannot read it, a
//! cancellation) leaves the telling to a claim on `notice_claimed_at`, so
//! that no two processes tell one requester twice, and a notice that could
//! not be posted is released for a later sweep.

use std::time::Duration;

use crate::Queue;
use crate::error::Result;
use crate::model::{Job, JobId};
use crate::row::{JOB_COLUMNS, JobRow};

/// Ended jobs older than this are no longer announced by a sweep.
const SWEEP_WINDOW_SECS: f64 = 24.0 * 3600.0;

impl Queue {
    /// Claims the announcement of `job`'s ending; true when this call did,
    /// and the caller is the one to tell the requester.
    pub async fn claim_notice(&self, job: JobId) -> Result<bool> {
        let claimed = sqlx::query(
            "UPDATE jobs SET notice_claimed_at = now()
             WHERE id = $1 AND state IN ('failed', 'cancelled') AND notice_claimed_at IS NULL",
        )
        .bind(job.0)
        .execute(&self.pool)
        .await?
        .rows_affected();
        Ok(claimed == 1)
    }

    /// Claims up to `limit` jobs that ended failed or cancelled at least
    /// `older_than` ago and that nobody has announced (a rescued last
    /// attempt, say), oldest first. Rows that cannot be read as jobs are
    /// claimed too and left out: nothing can be posted for them.
    pub async fn claim_notices(&self, limit: i64, older_than: Duration) -> Result<Vec<Job>> {
        let rows: Vec<JobRow> = sqlx::query_as(&format!(
            "WITH pick AS (
                 SELECT id FROM jobs
                 WHERE state IN ('failed', 'cancelled') AND notice_claimed_at IS NULL
                   AND finished_at > now() - make_interval(secs => $2)
                   AND finished_at <= now() - make_interval(secs => $3)
                 ORDER BY finished_at
                 LIMIT $1
                 FOR UPDATE SKIP LOCKED
             )
             UPDATE jobs SET notice_claimed_at = now() FROM pick WHERE jobs.id = pick.id
             RETURNING {JOB_COLUMNS}"
        ))
        .bind(limit)
        .bind(SWEEP_WINDOW_SECS)
        .bind(older_than.as_secs_f64())
        .fetch_all(&self.pool)
        .await?;
        Ok(rows
            .into_iter()
            .filter_map(|row| {
                let (id, _) = row.attempt_key();
                Job::try_from(row)
                    .inspect_err(|e| tracing::warn!(job_id = %id, error = %e, "cannot announce an unreadable job"))
                    .ok()
            })
            .collect())
    }

    /// Gives back a claimed notice that could not be posted.
    pub async fn release_notice(&self, job: JobId) -> Result<()> {
        sqlx::query("UPDATE jobs SET notice_claimed_at = NULL WHERE id = $1")
            .bind(job.0)
            .execute(&self.pool)
            .await?;
        Ok(())
    }
}
