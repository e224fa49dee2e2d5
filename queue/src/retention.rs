//! Retention: finished jobs (and their images and posts, by cascade) are
//! deleted after a configurable age, in chunks so no statement runs long.

use std::time::Duration;

use crate::error::Result;
use crate::{Queue, secs};

const CHUNK: i64 = 5_000;

impl Queue {
    /// Deletes jobs that finished more than `older_than` ago, and usage
    /// counts of days before yesterday; returns how many jobs.
    pub async fn prune_finished(&self, older_than: Duration) -> Result<u64> {
        let mut total = 0;
        loop {
            let deleted = sqlx::query(
                "DELETE FROM jobs WHERE id IN (
                     SELECT id FROM jobs
                     WHERE finished_at < now() - make_interval(secs => $1)
                       AND state IN ('succeeded', 'failed', 'cancelled')
                     LIMIT $2)",
            )
            .bind(secs(older_than))
            .bind(CHUNK)
            .execute(&self.pool)
            .await?
            .rows_affected();
            total += deleted;
            if deleted < CHUNK as u64 {
                break;
            }
        }
        // Inputs go by their own age: a job is enqueued right after its input.
        sqlx::query("DELETE FROM job_inputs WHERE created_at < now() - make_interval(secs => $1)")
            .bind(secs(older_than))
            .execute(&self.pool)
            .await?;
        sqlx::query("DELETE FROM user_usage WHERE day < (now() AT TIME ZONE 'UTC')::date - 1")
            .execute(&self.pool)
            .await?;
        Ok(total)
    }
}
