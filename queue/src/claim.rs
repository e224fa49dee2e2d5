//! Claiming a batch of jobs in one statement.
//!
//! Claim order: relax jobs whose sort key has passed ("aged": they waited
//! `relax_aging`) first, then everything by `(sort_key, id)`, which puts fast
//! jobs before relax ones and interleaves users (see `enqueue.rs`).
//! The head pick takes the first claimable job in that order; the fill adds
//! up to `limit - 1` claimable jobs with the head's batch key that come after
//! it in `(sort_key, id)` order. Starting the fill at the head, rather than
//! at the start of the index, skips the index entries of jobs claimed since
//! the last vacuum, which otherwise every claim walks through.
//! Ids are picked in CTEs and updated with `UPDATE … FROM pick`, never with
//! `WHERE id IN (SELECT … LIMIT n FOR UPDATE SKIP LOCKED)`, which the planner
//! may evaluate more than once.
//!
//! Plan on a 100,000-job backlog (`queue-bench --explain`; 0.4 ms for 10 jobs):
//! ```text
//! Update on jobs
//!   CTE aged      -> Limit -> LockRows -> Index Scan using jobs_queued_relax (Index Cond: sort_key <= now())
//!   CTE in_order  -> Limit -> LockRows -> Result (One-Time Filter: NOT $aged)
//!                      -> Index Scan using jobs_queued_order
//!   CTE fill      -> Nested Loop -> CTE Scan on head
//!                      -> Limit -> LockRows -> Index Scan using jobs_queued_order
//!                         (Index Cond: ROW(sort_key, id) > ROW(head.sort_key, head.id))
//!   -> Nested Loop -> Append (head, fill) -> Index Scan using jobs_pkey
//! ```
//! Every scan reads only the first entries of a partial index on queued
//! jobs, so the claim costs the same with 10 or 100,000 jobs waiting.

use sqlx::Row;
use sqlx::postgres::PgRow;

use crate::Failure;
use crate::error::Result;
use crate::model::{ClaimedJob, Job, JobId, Request};
use crate::row::{JOB_COLUMNS, JobRow};
use crate::{Queue, secs};

/// What [`Queue::settle_and_claim`] did.
#[derive(Debug, Clone)]
pub struct Settled {
    /// Jobs whose attempt was no longer current: their completion was refused.
    pub stale: Vec<JobId>,
    /// The next batch, in claim order; empty when nothing was claimable.
    pub claimed: Vec<ClaimedJob>,
}

/// The limit is written into the statement rather than bound: with a bound
/// LIMIT, Postgres's cached generic plan assumes a tenth of the table and
/// the claim gets several times slower. Each batch size gets its own
/// prepared statement.
/// `platforms` is the parameter holding the platforms to claim, if limited.
pub(crate) fn claim_sql(limit: u32, platforms: Option<&str>) -> String {
    format!(
        "{}\nRETURNING {JOB_COLUMNS}",
        claim_ctes(limit, "", platforms)
    )
}

fn claim_ctes(limit: u32, gate: &str, platforms: Option<&str>) -> String {
    let only = platforms.map_or_else(String::new, |param| {
        format!("AND platform = ANY({param}::text[])")
    });
    CLAIM_CTES
        .replace("{fill_limit}", &(limit.max(1) - 1).to_string())
        .replace("{gate}", gate)
        .replace("{platforms}", &only)
        .replace("{fill_platforms}", &only.replace("platform", "j.platform"))
}

/// Completes the caller's finished jobs (each fenced by its attempt) and
/// claims the next batch in the same statement: one commit per batch instead
/// of two. Always returns at least one row: `completed` (the ids completed)
/// on every row, and the claimed jobs' columns, NULL when none was claimed.
///
/// The gate makes the completions run before the claim takes any row lock.
/// A claim can hold a lock on a row it then skips (a stale index entry of a
/// job just claimed elsewhere), so a worker completing that job waits for
/// it; with completions first, a waiting statement holds no claim locks and
/// two workers cannot wait on each other.
fn settle_and_claim_sql(limit: u32, platforms: Option<&str>) -> String {
    let ctes = claim_ctes(limit, "AND (SELECT count(*) FROM done) >= 0", platforms);
    let claim = ctes.trim_start().trim_start_matches("WITH ");
    format!(
        r#"
WITH done AS (
    UPDATE jobs SET state = 'succeeded', finished_at = now(), lease_expires_at = NULL
    FROM unnest($2::bigint[], $3::int[]) AS settled(id, attempt)
    WHERE jobs.id = settled.id AND jobs.attempt = settled.attempt AND jobs.state = 'running'
    RETURNING jobs.id
), {claim_ctes}
RETURNING {JOB_COLUMNS}
)
SELECT (SELECT coalesce(array_agg(id), '{{}}') FROM done) AS completed, claimed.*
FROM (SELECT 1) AS one LEFT JOIN claimed ON true
"#,
        claim_ctes = claim.replacen("UPDATE jobs\nSET", ", claimed AS (\nUPDATE jobs\nSET", 1),
    )
}

/// The claim: pick CTEs and the UPDATE, without its RETURNING.
const CLAIM_CTES: &str = r#"
WITH aged AS (
    SELECT id, batch_key, sort_key FROM jobs
    WHERE state = 'queued' AND tier = 'relax' AND sort_key <= now() AND run_at <= now()
      {gate} {platforms}
    ORDER BY sort_key, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), in_order AS (
    SELECT id, batch_key, sort_key FROM jobs
    WHERE state = 'queued' AND run_at <= now() AND NOT EXISTS (SELECT FROM aged) {platforms}
    ORDER BY sort_key, id
    LIMIT 1
    FOR UPDATE SKIP LOCKED
), head AS (
    SELECT id, batch_key, sort_key FROM aged
    UNION ALL
    SELECT id, batch_key, sort_key FROM in_order
), fill AS (
    SELECT next.id FROM head, LATERAL (
        SELECT j.id FROM jobs j
        WHERE j.state = 'queued' AND j.run_at <= now() AND j.batch_key = head.batch_key
          {fill_platforms}
          AND (j.sort_key, j.id) > (head.sort_key, head.id)
        ORDER BY j.sort_key, j.id
        LIMIT {fill_limit}
        FOR UPDATE OF j SKIP LOCKED
    ) AS next
), pick AS (
    SELECT id FROM head
    UNION ALL
    SELECT id FROM fill
)
UPDATE jobs
SET state = 'running',
    attempt = jobs.attempt + 1,
    started_at = now(),
    lease_expires_at = now() + make_interval(secs => $1),
    progress = NULL
FROM pick
WHERE jobs.id = pick.id"#;

impl Queue {
    /// Claims up to `limit` jobs that share one batch key, fairly ordered, and
    /// leases them. Returns them in claim order; empty when nothing is claimable.
    pub async fn claim(&self, limit: u32) -> Result<Vec<ClaimedJob>> {
        let platforms = self.serving_platforms();
        let sql = claim_sql(limit, platforms.map(|_| "$2"));
        let mut query = sqlx::query_as(&sql).bind(secs(self.config.lease));
        if let Some(platforms) = platforms {
            query = query.bind(platforms);
        }
        let rows: Vec<JobRow> = query.fetch_all(&self.pool).await?;
        let mut jobs = self.readable(rows).await?;
        // RETURNING has no defined order.
        jobs.sort_by_key(|job| (job.sort_key, job.id));
        Ok(jobs.into_iter().map(|job| ClaimedJob { job }).collect())
    }

    /// Completes `done` (each fenced by its attempt) and claims up to
    /// `limit` jobs, in one statement and one commit: a worker's loop.
    pub async fn settle_and_claim(&self, done: &[(JobId, i32)], limit: u32) -> Result<Settled> {
        let ids: Vec<i64> = done.iter().map(|(id, _)| id.0).collect();
        let attempts: Vec<i32> = done.iter().map(|(_, attempt)| *attempt).collect();
        let platforms = self.serving_platforms();
        let sql = settle_and_claim_sql(limit, platforms.map(|_| "$4"));
        let mut query = sqlx::query(&sql)
            .bind(secs(self.config.lease))
            .bind(&ids)
            .bind(&attempts);
        if let Some(platforms) = platforms {
            query = query.bind(platforms);
        }
        let rows: Vec<PgRow> = query.fetch_all(&self.pool).await?;
        let completed: Vec<i64> = match rows.first() {
            Some(row) => row.try_get("completed")?,
            None => Vec::new(),
        };
        let mut claimed = Vec::with_capacity(rows.len());
        for row in &rows {
            if row.try_get::<Option<i64>, _>("id")?.is_some() {
                claimed.push(<JobRow as sqlx::FromRow<PgRow>>::from_row(row)?);
            }
        }
        let mut jobs = self.readable(claimed).await?;
        jobs.sort_by_key(|job| (job.sort_key, job.id));
        Ok(Settled {
            stale: ids
                .iter()
                .filter(|id| !completed.contains(id))
                .map(|id| JobId(*id))
                .collect(),
            claimed: jobs.into_iter().map(|job| ClaimedJob { job }).collect(),
        })
    }

    /// The claimed rows as jobs. A job whose request this release cannot
    /// read (a kind from a newer release, say), or a row that does not
    /// decode at all, fails alone, for good, with the reason; the rest of
    /// the batch runs. (Its requester is told by the sweep of endings.)
    async fn readable(&self, rows: Vec<JobRow>) -> Result<Vec<Job>> {
        let mut jobs = Vec::with_capacity(rows.len());
        for row in rows {
            let (id, attempt) = row.attempt_key();
            let unreadable = match Job::try_from(row) {
                Ok(Job {
                    request: Request::Unreadable { error },
                    ..
                }) => error,
                Ok(job) => {
                    jobs.push(job);
                    continue;
                }
                Err(e) => e.to_string(),
            };
            tracing::error!(job_id = %id, error = %unreadable, "claimed an unreadable job; failing it");
            let reason = format!("{}: {unreadable}", crate::UNREADABLE_JOB);
            // The rest of the batch runs whatever happens here; an
            // unsettled bad row comes back when its lease expires.
            if let Err(e) = self.fail(id, attempt, &reason, Failure::Permanent).await {
                tracing::warn!(job_id = %id, error = %e, "could not fail an unreadable job");
            }
        }
        Ok(jobs)
    }

    /// EXPLAIN ANALYZE of one claim, rolled back: for benchmarks and the
    /// plan noted above.
    pub async fn explain_claim(&self, limit: u32) -> Result<String> {
        let mut tx = self.pool.begin().await?;
        let platforms = self.serving_platforms();
        let sql = format!(
            "EXPLAIN (ANALYZE, COSTS OFF) {}",
            claim_sql(limit, platforms.map(|_| "$2"))
        );
        let mut query = sqlx::query_scalar(&sql).bind(secs(self.config.lease));
        if let Some(platforms) = platforms {
            query = query.bind(platforms);
        }
        let lines: Vec<String> = query.fetch_all(&mut *tx).await?;
        tx.rollback().await?;
        Ok(lines.join("\n"))
    }
}
