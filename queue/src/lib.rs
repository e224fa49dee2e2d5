//! wordup-queue: the job model and the Postgres-backed job queue.
//!
//! This is the only crate that writes SQL. It knows nothing about Discord,
//! Slack or candle: jobs carry platform-neutral requests and an origin.
//!
//! Life of a job: [`Queue::enqueue`] → `queued` → [`Queue::claim`] →
//! `running` under a lease that [`Queue::heartbeat`] extends → settled by
//! [`Queue::complete`], [`Queue::fail`] (back to `queued` with a backoff
//! until attempts run out) or [`Queue::acknowledge_cancel`]. A lease that
//! expires is returned to `queued` by [`Queue::rescue_expired`]. Every
//! settlement is fenced by (job id, attempt).

mod backoff;
mod board;
mod cancel;
mod channels;
mod claim;
mod config;
pub mod delivery;
mod engines;
mod enqueue;
mod error;
mod inputs;
mod intents;
mod lease;
mod maintenance;
mod model;
mod notices;
mod outputs;
mod progress;
pub mod prompt;
mod retention;
mod row;
mod stats;
pub mod style;
mod waker;

pub use backoff::BackoffPolicy;
pub use board::{BoardEntry, BoardImage, BoardOrder, BoardQuery, Vote};
pub use cancel::CancelOutcome;
pub use channels::{ChannelSettings, ChannelSettingsUpdate};
pub use claim::Settled;
pub use config::QueueConfig;
pub use delivery::{Attachment, Delivery, DeliveryError, Posted, ResultKind, ResultPost};
pub use error::{QueueError, Result};
pub use lease::{FailOutcome, Failure, Heartbeat};
pub use maintenance::Maintenance;
pub use model::{
    Admitted, AspectRatio, ClaimedJob, Enqueued, GRID_IMAGES, ImagineRequest, Job, JobId, JobState,
    NewJob, Origin, Progress, Request, Tier, UpscaleMode, VaryStrength,
};
pub use outputs::{JobImage, JobPost};
pub use progress::{ProgressEvent, ProgressListener};
pub use stats::{QueueDepth, UserCounts};
pub use waker::{Wake, Waker};

use sqlx::PgPool;
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};

/// How the `last_error` of a job whose request this release cannot read
/// begins (the claim fails such jobs; the announcement reads it).
pub const UNREADABLE_JOB: &str = "this engine cannot read the job";

/// Channel that enqueues and rescues notify, so idle workers look again.
pub const JOBS_CHANNEL: &str = "wordup_jobs";
/// Channel that carries [`ProgressEvent`]s as JSON.
pub const PROGRESS_CHANNEL: &str = "wordup_progress";
/// Channel that carries the id of a running job whose cancellation was asked for.
pub const CANCEL_CHANNEL: &str = "wordup_cancel";

/// The queue: a connection pool and the tunables.
#[derive(Debug, Clone)]
pub struct Queue {
    pool: PgPool,
    config: QueueConfig,
    /// Platforms this handle claims jobs of; `None`: all ([`Queue::serving`]).
    platforms: Option<std::sync::Arc<Vec<String>>>,
}

impl Queue {
    /// Connects with a pool of at most `max_connections`; waiting for a
    /// connection (at start or later) fails after `acquire_timeout`.
    pub async fn connect(
        url: &str,
        max_connections: u32,
        acquire_timeout: std::time::Duration,
        config: QueueConfig,
    ) -> Result<Queue> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            // A ping per acquire doubles the round trips of a claim; a dead
            // connection fails the query instead, which callers retry.
            .test_before_acquire(false)
            .after_connect(|conn, _| Box::pin(async move { prepare_session(conn).await }))
            .acquire_timeout(acquire_timeout)
            .connect(url)
            .await?;
        Ok(Queue::from_pool(pool, config))
    }

    pub async fn connect_with(
        options: PgConnectOptions,
        max_connections: u32,
        config: QueueConfig,
    ) -> Result<Queue> {
        let pool = PgPoolOptions::new()
            .max_connections(max_connections)
            // A ping per acquire doubles the round trips of a claim; a dead
            // connection fails the query instead, which callers retry.
            .test_before_acquire(false)
            .after_connect(|conn, _| Box::pin(async move { prepare_session(conn).await }))
            .connect_with(options)
            .await?;
        Ok(Queue::from_pool(pool, config))
    }

    pub fn from_pool(pool: PgPool, config: QueueConfig) -> Queue {
        Queue {
            pool,
            config,
            platforms: None,
        }
    }

    /// Applies the embedded migrations; safe to run from several processes at once.
    pub async fn migrate(&self) -> Result<()> {
        sqlx::migrate!("../migrations").run(&self.pool).await?;
        Ok(())
    }

    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    pub fn config(&self) -> &QueueConfig {
        &self.config
    }
}

/// Session settings for every pooled connection. The queue's statements are
/// index lookups whose plans do not depend on their parameters, but some
/// (arrays, CTEs) get generic-plan estimates worse than their custom plans,
/// and Postgres then replans them on every execution: planning the claim
/// costs more than running it.
async fn prepare_session(conn: &mut sqlx::PgConnection) -> std::result::Result<(), sqlx::Error> {
    use sqlx::Executor;
    conn.execute("SET plan_cache_mode = force_generic_plan")
        .await?;
    Ok(())
}

fn secs(duration: std::time::Duration) -> f64 {
    duration.as_secs_f64()
}
