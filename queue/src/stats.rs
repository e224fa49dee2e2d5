//! Reads: a job, its queue position, per-user counts for quotas, queue depth.

use crate::Queue;
use crate::error::Result;
use crate::model::{Job, JobId};
use crate::row::{JOB_COLUMNS, JobRow, jobs_from_rows};

/// A user's jobs, for quotas.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct UserCounts {
    pub queued: i64,
    pub running: i64,
    /// Jobs enqueued today (UTC), in any state.
    pub today: i64,
}

/// Queue depth by tier, for health and metrics.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct QueueDepth {
    pub fast_queued: i64,
    pub relax_queued: i64,
    pub running: i64,
    /// Seconds the oldest claimable job has waited.
    pub oldest_wait_secs: f64,
}

impl Queue {
    pub async fn job(&self, id: JobId) -> Result<Option<Job>> {
        let row: Option<JobRow> =
            sqlx::query_as(&format!("SELECT {JOB_COLUMNS} FROM jobs WHERE id = $1"))
                .bind(id.0)
                .fetch_optional(&self.pool)
                .await?;
        row.map(Job::try_from).transpose()
    }

    /// The job an idempotency key (an interaction id) made, if any.
    pub async fn job_by_idempotency_key(&self, key: &str) -> Result<Option<Job>> {
        let row: Option<JobRow> = sqlx::query_as(&format!(
            "SELECT {JOB_COLUMNS} FROM jobs WHERE idempotency_key = $1"
        ))
        .bind(key)
        .fetch_optional(&self.pool)
        .await?;
        row.map(Job::try_from).transpose()
    }

    /// 1-based place in line of a queued job in claim order; `None` once it
    /// is no longer queued. Uses the claim's order; batch fills can only move a
    /// job forward.
    pub async fn position(&self, id: JobId) -> Result<Option<i64>> {
        position_with(&self.pool, id).await
    }

    pub async fn user_counts(&self, platform: &str, user_id: &str) -> Result<UserCounts> {
        user_counts_with(&self.pool, platform, user_id).await
    }

    /// A user's queued and running jobs in claim order.
    pub async fn user_active_jobs(&self, platform: &str, user_id: &str) -> Result<Vec<Job>> {
        let rows: Vec<JobRow> = sqlx::query_as(&format!(
            "SELECT * FROM (
                 SELECT {JOB_COLUMNS} FROM jobs
                 WHERE platform = $1 AND user_id = $2 AND state = 'running'
                 UNION ALL
                 SELECT {JOB_COLUMNS} FROM jobs
                 WHERE platform = $1 AND user_id = $2 AND state = 'queued'
             ) AS active
             ORDER BY state DESC, sort_key, id"
        ))
        .bind(platform)
        .bind(user_id)
        .fetch_all(&self.pool)
        .await?;
        jobs_from_rows(rows)
    }

    pub async fn depth(&self) -> Result<QueueDepth> {
        let (fast_queued, relax_queued, running, oldest_wait_secs): (i64, i64, i64, f64) =
            sqlx::query_as(
                "SELECT
                     count(*) FILTER (WHERE state = 'queued' AND tier = 'fast'),
                     count(*) FILTER (WHERE state = 'queued' AND tier = 'relax'),
                     count(*) FILTER (WHERE state = 'running'),
                     coalesce(extract(epoch FROM now() - min(run_at)
                                      FILTER (WHERE state = 'queued' AND run_at <= now())), 0)::float8
                 FROM jobs WHERE state IN ('queued', 'running')",
            )
            .fetch_one(&self.pool)
            .await?;
        Ok(QueueDepth {
            fast_queued,
            relax_queued,
            running,
            oldest_wait_secs,
        })
    }
}

/// A user's counts through any executor, so that a quota check can read
/// them inside the transaction that then enqueues.
pub(crate) async fn user_counts_with<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    platform: &str,
    user_id: &str,
) -> Result<UserCounts> {
    let (queued, running, today): (i64, i64, i64) = sqlx::query_as(
        // Queued jobs through jobs_queued_user; running ones are few, so
        // scanning jobs_running_lease is cheap.
        "SELECT
             (SELECT count(*) FROM jobs
              WHERE platform = $1 AND user_id = $2 AND state = 'queued'),
             (SELECT count(*) FROM jobs
              WHERE platform = $1 AND user_id = $2 AND state = 'running'),
             coalesce((SELECT jobs FROM user_usage
                       WHERE platform = $1 AND user_id = $2
                         AND day = (now() AT TIME ZONE 'UTC')::date), 0)::bigint",
    )
    .bind(platform)
    .bind(user_id)
    .fetch_one(executor)
    .await?;
    Ok(UserCounts {
        queued,
        running,
        today,
    })
}

/// The place in line through any executor: inside the enqueueing
/// transaction no worker can have claimed the job yet.
pub(crate) async fn position_with<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    id: JobId,
) -> Result<Option<i64>> {
    // The claim's order: aged relax jobs first, then (sort_key, id).
    let ahead: Option<i64> = sqlx::query_scalar(
        "WITH me AS (
             SELECT id, sort_key,
                    tier = 'relax' AND sort_key <= now() AND run_at <= now() AS aged
             FROM jobs WHERE id = $1 AND state = 'queued'
         )
         SELECT CASE WHEN me.aged THEN
             (SELECT count(*) FROM jobs o
              WHERE o.state = 'queued' AND o.tier = 'relax' AND o.sort_key <= now()
                AND o.run_at <= now() AND (o.sort_key, o.id) < (me.sort_key, me.id))
         ELSE
             (SELECT count(*) FROM jobs o
              WHERE o.state = 'queued' AND o.tier = 'relax' AND o.sort_key <= now()
                AND o.run_at <= now())
             + (SELECT count(*) FROM jobs o
                WHERE o.state = 'queued' AND (o.sort_key, o.id) < (me.sort_key, me.id)
                  AND NOT (o.tier = 'relax' AND o.sort_key <= now() AND o.run_at <= now()))
         END
         FROM me",
    )
    .bind(id.0)
    .fetch_optional(executor)
    .await?;
    Ok(ahead.map(|n| n + 1))
}
