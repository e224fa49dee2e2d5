//! Mapping of `jobs` rows to [`Job`].

use chrono::{DateTime, Utc};

use crate::error::{QueueError, Result};
use crate::model::{Job, JobId, JobState, Origin, Progress, Request, Tier};

/// The column list every job query selects, in [`JobRow`]'s order.
pub(crate) const JOB_COLUMNS: &str = "jobs.id, jobs.idempotency_key, jobs.tier, jobs.state, \
     jobs.platform, jobs.workspace_id, jobs.channel_id, jobs.thread_id, jobs.user_id, \
     jobs.reply, jobs.request, jobs.batch_key, jobs.sort_key, jobs.attempt, jobs.max_attempts, jobs.run_at, \
     jobs.enqueued_at, jobs.started_at, jobs.lease_expires_at, jobs.finished_at, \
     jobs.cancel_requested, jobs.last_error, jobs.progress";

#[derive(sqlx::FromRow)]
pub(crate) struct JobRow {
    id: i64,
    idempotency_key: Option<String>,
    tier: String,
    state: String,
    platform: String,
    workspace_id: String,
    channel_id: String,
    thread_id: Option<String>,
    user_id: String,
    reply: serde_json::Value,
    request: serde_json::Value,
    batch_key: String,
    sort_key: DateTime<Utc>,
    attempt: i32,
    max_attempts: i32,
    run_at: DateTime<Utc>,
    enqueued_at: DateTime<Utc>,
    started_at: Option<DateTime<Utc>>,
    lease_expires_at: Option<DateTime<Utc>>,
    finished_at: Option<DateTime<Utc>>,
    cancel_requested: bool,
    last_error: Option<String>,
    progress: Option<serde_json::Value>,
}

impl TryFrom<JobRow> for Job {
    type Error = QueueError;

    fn try_from(row: JobRow) -> Result<Job> {
        let id = JobId(row.id);
        let corrupt = |source| QueueError::Corrupt { job: id, source };
        // The CHECK constraints admit only the values these parse.
        let tier = Tier::parse(&row.tier).unwrap_or(Tier::Relax);
        let state = JobState::parse(&row.state).unwrap_or(JobState::Failed);
        let progress: Option<Progress> = row
            .progress
            .map(serde_json::from_value)
            .transpose()
            .map_err(corrupt)?;
        Ok(Job {
            id,
            idempotency_key: row.idempotency_key,
            tier,
            state,
            origin: Origin {
                platform: row.platform,
                workspace_id: row.workspace_id,
                channel_id: row.channel_id,
                thread_id: row.thread_id,
                user_id: row.user_id,
            },
            reply: row.reply,
            request: serde_json::from_value(row.request).unwrap_or_else(|e| Request::Unreadable {
                error: e.to_string(),
            }),
            batch_key: row.batch_key,
            sort_key: row.sort_key,
            attempt: row.attempt,
            max_attempts: row.max_attempts,
            run_at: row.run_at,
            enqueued_at: row.enqueued_at,
            started_at: row.started_at,
            lease_expires_at: row.lease_expires_at,
            finished_at: row.finished_at,
            cancel_requested: row.cancel_requested,
            last_error: row.last_error,
            progress,
        })
    }
}

pub(crate) fn jobs_from_rows(rows: Vec<JobRow>) -> Result<Vec<Job>> {
    rows.into_iter().map(Job::try_from).collect()
}

impl JobRow {
    /// The job and attempt a row is, readable even when the rest is not.
    pub(crate) fn attempt_key(&self) -> (JobId, i32) {
        (JobId(self.id), self.attempt)
    }
}
