//! Enqueue, idempotent on the interaction id.
//!
//! Claim order is `(sort_key, id)`, a virtual clock per user and tier
//! ("VirtualClock" fair queueing): a user's next job gets
//! `max(now, that user's latest queued sort_key in the tier + fair_slot)`,
//! and relax jobs are shifted by `relax_aging` on top. So one user's 500 jobs
//! are spread one slot apart and a second user's job slots in next to the
//! first user's head; and a relax job sorts after the fast jobs of the next
//! `relax_aging`, and once its sort key has passed the claim takes it first
//! (see `claim.rs`), so a stream of fast jobs cannot starve it.
//! A single indexed column keeps the claim an index scan whatever the backlog.

use crate::error::{QueueError, Result};
use crate::model::{Admitted, Enqueued, JobId, NewJob};
use crate::stats::{UserCounts, position_with, user_counts_with};
use crate::{Queue, secs};

const INSERT_JOBS: &str = r#"
WITH input AS (
    SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[],
                         $6::text[], $7::text[], $8::jsonb[], $9::jsonb[], $10::text[])
        WITH ORDINALITY AS t(idempotency_key, tier, platform, workspace_id, channel_id,
                             thread_id, user_id, reply, request, batch_key, ord)
), numbered AS (
    SELECT input.*,
           row_number() OVER (PARTITION BY platform, user_id, tier ORDER BY ord) - 1 AS nth
    FROM input
), inserted AS (
INSERT INTO jobs (idempotency_key, tier, platform, workspace_id, channel_id, thread_id,
                  user_id, reply, request, batch_key, max_attempts, sort_key)
SELECT n.idempotency_key, n.tier, n.platform, n.workspace_id, n.channel_id, n.thread_id,
       n.user_id, n.reply, n.request, n.batch_key, $11,
       GREATEST(
           now() + make_interval(secs => CASE n.tier WHEN 'relax' THEN $13 ELSE 0 END),
           (SELECT max(j.sort_key) FROM jobs j
             WHERE j.platform = n.platform AND j.user_id = n.user_id AND j.tier = n.tier
               AND j.state = 'queued') + make_interval(secs => $12)
       ) + make_interval(secs => $12 * n.nth)
FROM numbered n
ORDER BY n.ord
ON CONFLICT (idempotency_key) WHERE idempotency_key IS NOT NULL DO NOTHING
RETURNING id, platform, user_id
), usage AS (
    INSERT INTO user_usage (platform, user_id, day, jobs)
    SELECT platform, user_id, (now() AT TIME ZONE 'UTC')::date, count(*)
    FROM inserted GROUP BY platform, user_id
    ON CONFLICT (platform, user_id, day) DO UPDATE SET jobs = user_usage.jobs + excluded.jobs
)
SELECT id FROM inserted
"#;

impl Queue {
    /// Enqueues one job. When its idempotency key already names a job, that
    /// job's id comes back with `created: false` and nothing is inserted.
    pub async fn enqueue(&self, job: &NewJob) -> Result<Enqueued> {
        if let Some(id) = self.enqueue_many(std::slice::from_ref(job)).await?.first() {
            return Ok(Enqueued {
                id: *id,
                created: true,
            });
        }
        // A conflict: the key exists (and is committed, or the insert above
        // would have waited for it).
        let id = existing_job(&self.pool, job)
            .await?
            .ok_or(QueueError::Database(sqlx::Error::RowNotFound))?;
        Ok(Enqueued { id, created: false })
    }

    /// Enqueues one job if `check` accepts the user's counts (a quota), read
    /// under a per-user lock held until the insert commits: concurrent
    /// commands from one user are checked one after another, so none slips
    /// past a limit. A repeated idempotency key returns its job unchecked.
    /// Relies on READ COMMITTED: each statement after the lock sees what
    /// the user's previous enqueue committed.
    pub async fn enqueue_checked<E>(
        &self,
        job: &NewJob,
        check: impl FnOnce(&UserCounts) -> std::result::Result<(), E>,
    ) -> Result<std::result::Result<Admitted, E>> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
            .bind(format!(
                "wordup-user:{}:{}",
                job.origin.platform, job.origin.user_id
            ))
            .execute(&mut *tx)
            .await?;
        if let Some(id) = existing_job(&mut *tx, job).await? {
            tx.rollback().await?;
            return Ok(Ok(self.admitted_before(id).await?));
        }
        let counts = user_counts_with(&mut *tx, &job.origin.platform, &job.origin.user_id).await?;
        if let Err(refusal) = check(&counts) {
            // Now, not when the pool next touches the connection: the
            // rollback is what lets the user's next command take the lock.
            tx.rollback().await?;
            return Ok(Err(refusal));
        }
        let created = self
            .insert_jobs(&mut *tx, std::slice::from_ref(job))
            .await?
            .first()
            .copied();
        let admitted = match created {
            Some(id) => Admitted {
                id,
                created: true,
                position: position_with(&mut *tx, id).await?,
            },
            None => {
                // Another transaction committed the same key after our look.
                tx.rollback().await?;
                let id = existing_job(&self.pool, job)
                    .await?
                    .ok_or(QueueError::Database(sqlx::Error::RowNotFound))?;
                return Ok(Ok(self.admitted_before(id).await?));
            }
        };
        tx.commit().await?;
        Ok(Ok(admitted))
    }

    async fn admitted_before(&self, id: JobId) -> Result<Admitted> {
        Ok(Admitted {
            id,
            created: false,
            position: self.position(id).await?,
        })
    }

    /// Enqueues many jobs in one statement, in order; returns the ids of the
    /// jobs created (duplicates of existing idempotency keys are skipped).
    pub async fn enqueue_many(&self, jobs: &[NewJob]) -> Result<Vec<JobId>> {
        self.insert_jobs(&self.pool, jobs).await
    }

    async fn insert_jobs<'e>(
        &self,
        executor: impl sqlx::PgExecutor<'e>,
        jobs: &[NewJob],
    ) -> Result<Vec<JobId>> {
        let mut keys = Vec::with_capacity(jobs.len());
        let mut tiers = Vec::with_capacity(jobs.len());
        let mut platforms = Vec::with_capacity(jobs.len());
        let mut workspaces = Vec::with_capacity(jobs.len());
        let mut channels = Vec::with_capacity(jobs.len());
        let mut threads = Vec::with_capacity(jobs.len());
        let mut users = Vec::with_capacity(jobs.len());
        let mut replies = Vec::with_capacity(jobs.len());
        let mut requests = Vec::with_capacity(jobs.len());
        let mut batch_keys = Vec::with_capacity(jobs.len());
        for job in jobs {
            keys.push(job.idempotency_key.clone());
            tiers.push(job.tier.as_str());
            platforms.push(job.origin.platform.as_str());
            workspaces.push(job.origin.workspace_id.as_str());
            channels.push(job.origin.channel_id.as_str());
            threads.push(job.origin.thread_id.clone());
            users.push(job.origin.user_id.as_str());
            replies.push(job.reply.clone());
            requests.push(serde_json::to_value(&job.request).map_err(QueueError::Encode)?);
            batch_keys.push(job.batch_key.as_str());
        }
        let rows: Vec<i64> = sqlx::query_scalar(INSERT_JOBS)
            .bind(keys)
            .bind(tiers)
            .bind(platforms)
            .bind(workspaces)
            .bind(channels)
            .bind(threads)
            .bind(users)
            .bind(replies)
            .bind(requests)
            .bind(batch_keys)
            .bind(self.config.max_attempts)
            .bind(secs(self.config.fair_slot))
            .bind(secs(self.config.relax_aging))
            .fetch_all(executor)
            .await?;
        let mut ids: Vec<JobId> = rows.into_iter().map(JobId).collect();
        ids.sort();
        Ok(ids)
    }
}

async fn existing_job<'e>(
    executor: impl sqlx::PgExecutor<'e>,
    job: &NewJob,
) -> Result<Option<JobId>> {
    let Some(key) = &job.idempotency_key else {
        return Ok(None);
    };
    let id: Option<i64> = sqlx::query_scalar("SELECT id FROM jobs WHERE idempotency_key = $1")
        .bind(key)
        .fetch_optional(executor)
        .await?;
    Ok(id.map(JobId))
}
