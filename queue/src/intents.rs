//! Intents to post: recorded before a platform call that has no (lasting)
//! deduplication, so that a retry knows an earlier try may have landed
//! although its answer was lost, and looks for it before posting again.

use chrono::{DateTime, Utc};

use crate::Queue;
use crate::error::Result;
use crate::model::JobId;

impl Queue {
    /// Records that `post_key` of `job` is about to be posted. Returns when
    /// the first try of it began if this is not the first: the caller looks
    /// for a message posted since then before posting.
    pub async fn intend_post(&self, job: JobId, post_key: &str) -> Result<Option<DateTime<Utc>>> {
        let (first_at, tries): (DateTime<Utc>, i32) = sqlx::query_as(
            "INSERT INTO post_intents (job_id, post_key) VALUES ($1, $2)
             ON CONFLICT (job_id, post_key) DO UPDATE SET tries = post_intents.tries + 1
             RETURNING first_at, tries",
        )
        .bind(job.0)
        .bind(post_key)
        .fetch_one(&self.pool)
        .await?;
        Ok((tries > 1).then_some(first_at))
    }
}
