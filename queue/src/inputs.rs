//! What a job reads besides its request, and text it leaves: the image a
//! `/describe` brought (stored before its job, under the job's idempotency
//! key), and the prompt suggestions its answer offers.

use crate::Queue;
use crate::error::Result;
use crate::model::JobId;

impl Queue {
    /// Stores the image a command brought, as PNG, for the job to be
    /// enqueued under `idempotency_key`; a repeated command keeps the first.
    pub async fn put_input(&self, idempotency_key: &str, png: &[u8]) -> Result<()> {
        sqlx::query(
            "INSERT INTO job_inputs (idempotency_key, png) VALUES ($1, $2)
             ON CONFLICT (idempotency_key) DO NOTHING",
        )
        .bind(idempotency_key)
        .bind(png)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The image stored for the job enqueued under `idempotency_key`.
    pub async fn input(&self, idempotency_key: &str) -> Result<Option<Vec<u8>>> {
        Ok(
            sqlx::query_scalar("SELECT png FROM job_inputs WHERE idempotency_key = $1")
                .bind(idempotency_key)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    /// A job's prompt suggestions, in order, replacing any an earlier
    /// attempt stored.
    pub async fn store_suggestions(&self, job: JobId, prompts: &[String]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        sqlx::query("DELETE FROM job_suggestions WHERE job_id = $1")
            .bind(job.0)
            .execute(&mut *tx)
            .await?;
        for (idx, prompt) in prompts.iter().enumerate() {
            sqlx::query("INSERT INTO job_suggestions (job_id, idx, prompt) VALUES ($1, $2, $3)")
                .bind(job.0)
                .bind(i16::try_from(idx).unwrap_or(i16::MAX))
                .bind(prompt)
                .execute(&mut *tx)
                .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    /// A job's suggestion `idx`.
    pub async fn suggestion(&self, job: JobId, idx: u8) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT prompt FROM job_suggestions WHERE job_id = $1 AND idx = $2")
                .bind(job.0)
                .bind(i16::from(idx))
                .fetch_optional(&self.pool)
                .await?,
        )
    }
}
