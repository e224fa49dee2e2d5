use crate::model::JobId;

/// Everything the queue can fail with.
#[derive(Debug, thiserror::Error)]
pub enum QueueError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("job {job} has a malformed stored value: {source}")]
    Corrupt {
        job: JobId,
        #[source]
        source: serde_json::Error,
    },
    #[error("cannot encode a job's request: {0}")]
    Encode(#[source] serde_json::Error),
    /// The job is no longer running under this attempt: its lease expired and it
    /// was rescued, it was cancelled, or it was already settled.
    #[error("job {job} attempt {attempt} is no longer the running attempt")]
    Stale { job: JobId, attempt: i32 },
}

pub type Result<T, E = QueueError> = std::result::Result<T, E>;
