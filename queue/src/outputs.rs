//! Job outputs: the images a job produced and the chat messages they were
//! posted as, so that buttons and redeliveries can find them.

use chrono::{DateTime, Utc};

use crate::Queue;
use crate::error::{QueueError, Result};
use crate::model::JobId;

#[derive(Debug, Clone, PartialEq, sqlx::FromRow)]
pub struct JobImage {
    pub idx: i32,
    pub png: Vec<u8>,
    pub width: i32,
    pub height: i32,
    pub seed: i64,
    pub score: Option<f32>,
    /// An image drawn with `--draft`: the latents it was decoded from, in the
    /// engine's own encoding, so that a follow-up can decode them with the
    /// full VAE. `None` for every other image.
    pub draft_latents: Option<Vec<u8>>,
}

#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct JobPost {
    pub job_id: i64,
    pub post_key: String,
    pub platform: String,
    pub channel_id: String,
    pub message_id: String,
    pub posted_at: DateTime<Utc>,
}

impl Queue {
    /// Stores an image of a running attempt (replacing one a previous attempt
    /// stored at the same index). Refused when the attempt is stale.
    pub async fn store_image(&self, job: JobId, attempt: i32, image: &JobImage) -> Result<()> {
        let stored = sqlx::query(
            "INSERT INTO job_images (job_id, idx, png, width, height, seed, score, draft_latents)
             SELECT id, $3, $4, $5, $6, $7, $8, $9 FROM jobs
             WHERE id = $1 AND attempt = $2 AND state = 'running'
             ON CONFLICT (job_id, idx) DO UPDATE SET
                 png = excluded.png, width = excluded.width, height = excluded.height,
                 seed = excluded.seed, score = excluded.score,
                 draft_latents = excluded.draft_latents, created_at = now()",
        )
        .bind(job.0)
        .bind(attempt)
        .bind(image.idx)
        .bind(&image.png)
        .bind(image.width)
        .bind(image.height)
        .bind(image.seed)
        .bind(image.score)
        .bind(&image.draft_latents)
        .execute(&self.pool)
        .await?
        .rows_affected();
        if stored == 1 {
            Ok(())
        } else {
            Err(QueueError::Stale { job, attempt })
        }
    }

    /// Deletes the images earlier attempts of a running job stored, before
    /// this attempt stores its own: an image this attempt withholds must not
    /// survive from an earlier one (its U and V buttons would work). Refused
    /// when the attempt is stale.
    pub async fn clear_images(&self, job: JobId, attempt: i32) -> Result<()> {
        let current: Option<i64> = sqlx::query_scalar(
            "WITH current AS (
                 SELECT id FROM jobs WHERE id = $1 AND attempt = $2 AND state = 'running'
             ), cleared AS (
                 DELETE FROM job_images WHERE job_id IN (SELECT id FROM current)
             )
             SELECT id FROM current",
        )
        .bind(job.0)
        .bind(attempt)
        .fetch_optional(&self.pool)
        .await?;
        match current {
            Some(_) => Ok(()),
            None => Err(QueueError::Stale { job, attempt }),
        }
    }

    /// Sets the thread a job's messages go in, unless it has one: the
    /// adapter that posts a job's parent message first wins. Returns the
    /// job's thread after the call (`thread_id`, or the winner's); `None`
    /// when the job does not exist.
    pub async fn set_thread(&self, job: JobId, thread_id: &str) -> Result<Option<String>> {
        Ok(sqlx::query_scalar(
            "WITH set AS (
                 UPDATE jobs SET thread_id = $2 WHERE id = $1 AND thread_id IS NULL
                 RETURNING thread_id
             )
             SELECT coalesce((SELECT thread_id FROM set), (SELECT thread_id FROM jobs WHERE id = $1))",
        )
        .bind(job.0)
        .bind(thread_id)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn images(&self, job: JobId) -> Result<Vec<JobImage>> {
        Ok(sqlx::query_as(
            "SELECT idx, png, width, height, seed, score, draft_latents FROM job_images
             WHERE job_id = $1 ORDER BY idx",
        )
        .bind(job.0)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Whether a job stored an image at `idx` (one the safety check
    /// withheld is never stored).
    pub async fn has_image(&self, job: JobId, idx: i32) -> Result<bool> {
        Ok(sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM job_images WHERE job_id = $1 AND idx = $2)",
        )
        .bind(job.0)
        .bind(idx)
        .fetch_one(&self.pool)
        .await?)
    }

    pub async fn image(&self, job: JobId, idx: i32) -> Result<Option<JobImage>> {
        Ok(sqlx::query_as(
            "SELECT idx, png, width, height, seed, score, draft_latents FROM job_images
             WHERE job_id = $1 AND idx = $2",
        )
        .bind(job.0)
        .bind(idx)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// Records that a job's result was posted as a chat message. Returns the
    /// post on record: an earlier one with the same key wins, so a delivery
    /// retried after a crash sees that it already posted.
    pub async fn record_post(
        &self,
        job: JobId,
        post_key: &str,
        platform: &str,
        channel_id: &str,
        message_id: &str,
    ) -> Result<JobPost> {
        sqlx::query(
            "INSERT INTO job_posts (job_id, post_key, platform, channel_id, message_id)
             VALUES ($1, $2, $3, $4, $5) ON CONFLICT (job_id, post_key) DO NOTHING",
        )
        .bind(job.0)
        .bind(post_key)
        .bind(platform)
        .bind(channel_id)
        .bind(message_id)
        .execute(&self.pool)
        .await?;
        self.post(job, post_key)
            .await?
            .ok_or(QueueError::Database(sqlx::Error::RowNotFound))
    }

    pub async fn post(&self, job: JobId, post_key: &str) -> Result<Option<JobPost>> {
        Ok(sqlx::query_as(
            "SELECT job_id, post_key, platform, channel_id, message_id, posted_at
             FROM job_posts WHERE job_id = $1 AND post_key = $2",
        )
        .bind(job.0)
        .bind(post_key)
        .fetch_optional(&self.pool)
        .await?)
    }

    /// The post a chat message id belongs to, for buttons on that message.
    pub async fn post_by_message(
        &self,
        platform: &str,
        message_id: &str,
    ) -> Result<Option<JobPost>> {
        Ok(sqlx::query_as(
            "SELECT job_id, post_key, platform, channel_id, message_id, posted_at
             FROM job_posts WHERE platform = $1 AND message_id = $2",
        )
        .bind(platform)
        .bind(message_id)
        .fetch_optional(&self.pool)
        .await?)
    }
}
