//! Claiming a batch of jobs in one statement.
//!
//! Claim order: relax jobs whose sort key has passed ("aged": they waited
//! `relax_aging`) first, then everything by `(sort_key, id)`, which puts fast
//! jobs before relax ones and interleaves users (see `enqueue.rs`).
//! The head pick takes the first claimable job in that order; the fill adds
//! up to `limit - 1` claimable jobs with the head's batch key by `(sort_key, id)`.
//! Ids are picked in CTEs and updated with `UPDATE … FROM pick`, never with
//! `WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`, which the planner
//! may evaluate more than once.
//!
//! Plan on a 100,000-job backlog (checked by `queue-bench --explain`):
//! ```text
//! Update on jobs
//!   CTE head -> Limit -> LockRows -> Index Scan using jobs_queued_order on jobs
//!   CTE pick -> Limit -> LockRows -> Nested Loop
//!                 -> CTE Scan on head
//!                 -> Index Scan using jobs_queued_batch on jobs j (Index Cond: batch_key = head.batch_key)
//!   -> Nested Loop -> CTE Scan on pick -> Index Scan using jobs_pkey on jobs
//! ```
//! Both scans read only the first rows of a partial index on queued jobs, so
//! the claim costs the same with 10 or 100,000 jobs waiting.

use crate::error::Result;
use crate::model::ClaimedJob;
use crate::row::{JOB_COLUMNS, JobRow, jobs_from_rows};
use crate::{Queue, secs};

pub(crate) fn claim_sql() -> String {
    format!(
        r#"
WITH aged AS (
    SELECT id, batch_key FROM jobs
    WHERE state = 'queued' AND tier = 'relax' AND sort_key <= now() AND run_at <= now()
    ORDER BY sort_key, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), in_order AS (
    SELECT id, batch_key FROM jobs
    WHERE state = 'queued' AND run_at <= now() AND NOT EXISTS (SELECT FROM aged)
    ORDER BY sort_key, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), head AS (
    SELECT id, batch_key FROM aged
    UNION ALL
    SELECT id, batch_key FROM in_order
), fill AS (
    SELECT j.id FROM jobs j, head
    WHERE j.state = 'queued' AND j.run_at <= now() AND j.batch_key = head.batch_key
      AND j.id <> head.id
    ORDER BY j.sort_key, j.id
    LIMIT $1 - 1
    FOR UPDATE OF j SKIP LOCKED
), pick AS (
    SELECT id FROM head
    UNION ALL
    SELECT id FROM fill
)
UPDATE jobs
SET state = 'running',
    attempt = jobs.attempt + 1,
    started_at = now(),
    lease_expires_at = now() + make_interval(secs => $2),
    progress = NULL
FROM pick
WHERE jobs.id = pick.id
RETURNING {JOB_COLUMNS}
"#
    )
}

impl Queue {
    /// Claims up to `limit` jobs that share one batch key, fairly ordered, and
    /// leases them. Returns them in claim order; empty when nothing is claimable.
    pub async fn claim(&self, limit: u32) -> Result<Vec<ClaimedJob>> {
        let rows: Vec<JobRow> = sqlx::query_as(&claim_sql())
            .bind(i64::from(limit.max(1)))
            .bind(secs(self.config.lease))
            .fetch_all(&self.pool)
            .await?;
        let mut jobs = jobs_from_rows(rows)?;
        // RETURNING has no defined order.
        jobs.sort_by_key(|job| (job.sort_key, job.id));
        Ok(jobs.into_iter().map(|job| ClaimedJob { job }).collect())
    }

    /// EXPLAIN ANALYZE of one claim, rolled back: for benchmarks and the
    /// plan noted above.
    pub async fn explain_claim(&self, limit: u32) -> Result<String> {
        let mut tx = self.pool.begin().await?;
        let lines: Vec<String> =
            sqlx::query_scalar(&format!("EXPLAIN (ANALYZE, COSTS OFF) {}", claim_sql()))
                .bind(i64::from(limit.max(1)))
                .bind(secs(self.config.lease))
                .fetch_all(&mut *tx)
                .await?;
        tx.rollback().await?;
        Ok(lines.join("\n"))
    }
}
