//! What engines can serve: each engine claims only jobs of the platforms it
//! can post to ([`Queue::serving`]), and says so every poll
//! ([`Queue::engine_seen`]), so that a job for a platform no engine serves
//! waits and is reported as waiting, not claimed and failed.

use std::sync::Arc;

use crate::Queue;
use crate::error::Result;

/// An engine not seen for this long no longer counts as serving.
pub const ENGINE_FRESH_SECS: f64 = 120.0;

impl Queue {
    /// This queue handle, claiming only jobs of `platforms`.
    pub fn serving(mut self, platforms: Vec<String>) -> Queue {
        self.platforms = Some(Arc::new(platforms));
        self
    }

    /// The platforms this handle's claims are limited to; `None`: all.
    pub fn serving_platforms(&self) -> Option<&[String]> {
        self.platforms.as_deref().map(Vec::as_slice)
    }

    /// Records that engine `id` is alive and serves what this handle claims.
    /// A handle that claims everything records nothing.
    pub async fn engine_seen(&self, id: &str) -> Result<()> {
        let Some(platforms) = self.serving_platforms() else {
            return Ok(());
        };
        sqlx::query(
            "INSERT INTO engines (id, platforms, last_seen) VALUES ($1, $2, now())
             ON CONFLICT (id) DO UPDATE SET platforms = excluded.platforms, last_seen = now()",
        )
        .bind(id)
        .bind(platforms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// Removes engine `id` (it is shutting down), and engines long gone.
    pub async fn engine_gone(&self, id: &str) -> Result<()> {
        sqlx::query(
            "DELETE FROM engines WHERE id = $1 OR last_seen < now() - make_interval(secs => $2 * 10)",
        )
        .bind(id)
        .bind(ENGINE_FRESH_SECS)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    /// The platforms some live engine serves.
    pub async fn served_platforms(&self) -> Result<Vec<String>> {
        Ok(sqlx::query_scalar(
            "SELECT DISTINCT unnest(platforms) FROM engines
             WHERE last_seen > now() - make_interval(secs => $1)
             ORDER BY 1",
        )
        .bind(ENGINE_FRESH_SECS)
        .fetch_all(&self.pool)
        .await?)
    }

    /// Queued jobs no live engine can serve, by platform.
    pub async fn waiting_for_an_engine(&self) -> Result<Vec<(String, i64)>> {
        Ok(sqlx::query_as(
            "SELECT platform, count(*) FROM jobs
             WHERE state = 'queued' AND NOT EXISTS (
                 SELECT 1 FROM engines
                 WHERE jobs.platform = ANY(engines.platforms)
                   AND engines.last_seen > now() - make_interval(secs => $1)
             )
             GROUP BY platform ORDER BY platform",
        )
        .bind(ENGINE_FRESH_SECS)
        .fetch_all(&self.pool)
        .await?)
    }
}
