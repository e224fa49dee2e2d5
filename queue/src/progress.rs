//! Progress events: stored on the running job and published with NOTIFY.
//! Notifications are a hint (lost while a listener reconnects); the stored
//! value is the truth.

use serde::{Deserialize, Serialize};
use sqlx::postgres::PgListener;

use crate::error::{QueueError, Result};
use crate::model::{JobId, Progress};
use crate::{PROGRESS_CHANNEL, Queue};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProgressEvent {
    pub job_id: JobId,
    pub attempt: i32,
    #[serde(flatten)]
    pub progress: Progress,
}

impl Queue {
    /// Stores and publishes the progress of a running attempt.
    pub async fn report_progress(
        &self,
        job: JobId,
        attempt: i32,
        progress: &Progress,
    ) -> Result<()> {
        let event = ProgressEvent {
            job_id: job,
            attempt,
            progress: progress.clone(),
        };
        let stored =
            serde_json::to_value(progress).map_err(|source| QueueError::Corrupt { job, source })?;
        let payload =
            serde_json::to_string(&event).map_err(|source| QueueError::Corrupt { job, source })?;
        let published: Option<i64> = sqlx::query_scalar(
            "WITH updated AS (
                 UPDATE jobs SET progress = $3
                 WHERE id = $1 AND attempt = $2 AND state = 'running'
                 RETURNING id
             )
             SELECT updated.id FROM updated, LATERAL (SELECT pg_notify($4, $5)) AS notified",
        )
        .bind(job.0)
        .bind(attempt)
        .bind(stored)
        .bind(PROGRESS_CHANNEL)
        .bind(payload)
        .fetch_optional(&self.pool)
        .await?;
        published
            .map(|_| ())
            .ok_or(QueueError::Stale { job, attempt })
    }

    /// Subscribes to progress events of all jobs.
    pub async fn progress_listener(&self) -> Result<ProgressListener> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(PROGRESS_CHANNEL).await?;
        Ok(ProgressListener { listener })
    }
}

pub struct ProgressListener {
    listener: PgListener,
}

impl ProgressListener {
    /// The next event. Events sent while the connection was down are lost;
    /// read the stored progress after an error if it matters.
    pub async fn recv(&mut self) -> Result<ProgressEvent> {
        loop {
            let notification = self.listener.recv().await?;
            match serde_json::from_str(notification.payload()) {
                Ok(event) => return Ok(event),
                Err(error) => tracing::warn!(%error, "ignoring a malformed progress event"),
            }
        }
    }
}
