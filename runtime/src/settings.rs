//! Settings both binaries share, from environment variables (or flags),
//! parsed once at start-up. Every variable is listed in `.env.example`.

use std::time::Duration;

use anyhow::{Context, Result};
use wordup_queue::{BackoffPolicy, Queue, QueueConfig};

use crate::secret::Secret;

#[derive(Debug, Clone, clap::Args)]
pub struct DatabaseSettings {
    /// Postgres URL of the queue database (the default is the one that
    /// scripts/postgres.sh sets up).
    #[arg(
        long,
        env = "DATABASE_URL",
        hide_env_values = true,
        hide_default_value = true,
        global = true,
        default_value = "postgres://wordup:wordup@127.0.0.1:5432/wordup"
    )]
    pub database_url: Secret,
    /// Connections in this process's pool.
    #[arg(
        long,
        global = true,
        env = "WORDUP_DB_MAX_CONNECTIONS",
        default_value_t = 10
    )]
    pub db_max_connections: u32,
    /// Seconds to keep trying to reach Postgres before giving up.
    #[arg(
        long,
        global = true,
        env = "WORDUP_DB_CONNECT_TIMEOUT_SECS",
        default_value_t = 10.0
    )]
    pub db_connect_timeout_secs: f64,
    #[command(flatten)]
    pub queue: QueueSettings,
}

#[derive(Debug, Clone, clap::Args)]
pub struct QueueSettings {
    /// Seconds a claimed job stays leased without a heartbeat.
    #[arg(long, global = true, env = "WORDUP_LEASE_SECS", default_value_t = 60.0)]
    pub lease_secs: f64,
    /// Seconds between one user's jobs on the fair-share clock.
    #[arg(
        long,
        global = true,
        env = "WORDUP_FAIR_SLOT_SECS",
        default_value_t = 10.0
    )]
    pub fair_slot_secs: f64,
    /// Seconds a relax job waits behind fast jobs at most.
    #[arg(
        long,
        global = true,
        env = "WORDUP_RELAX_AGING_SECS",
        default_value_t = 600.0
    )]
    pub relax_aging_secs: f64,
    /// Attempts before a job fails for good.
    #[arg(long, global = true, env = "WORDUP_MAX_ATTEMPTS", default_value_t = 3)]
    pub max_attempts: i32,
    /// Delay before the first retry, doubled for each one after.
    #[arg(
        long,
        global = true,
        env = "WORDUP_RETRY_BASE_SECS",
        default_value_t = 5.0
    )]
    pub retry_base_secs: f64,
    /// Longest delay between retries.
    #[arg(
        long,
        global = true,
        env = "WORDUP_RETRY_MAX_SECS",
        default_value_t = 300.0
    )]
    pub retry_max_secs: f64,
    /// Days finished jobs and their images are kept.
    #[arg(
        long,
        global = true,
        env = "WORDUP_RETENTION_DAYS",
        default_value_t = 30.0
    )]
    pub retention_days: f64,
}

impl QueueSettings {
    pub fn queue_config(&self) -> Result<QueueConfig> {
        let secs = |name: &str, value: f64| {
            Duration::try_from_secs_f64(value)
                .with_context(|| format!("{name} must be a non-negative number, got {value}"))
        };
        anyhow::ensure!(
            self.max_attempts >= 1,
            "WORDUP_MAX_ATTEMPTS must be at least 1, got {}",
            self.max_attempts
        );
        Ok(QueueConfig {
            lease: secs("WORDUP_LEASE_SECS", self.lease_secs)?,
            fair_slot: secs("WORDUP_FAIR_SLOT_SECS", self.fair_slot_secs)?,
            relax_aging: secs("WORDUP_RELAX_AGING_SECS", self.relax_aging_secs)?,
            max_attempts: self.max_attempts,
            backoff: BackoffPolicy {
                base: secs("WORDUP_RETRY_BASE_SECS", self.retry_base_secs)?,
                max: secs("WORDUP_RETRY_MAX_SECS", self.retry_max_secs)?,
                jitter: 0.5,
            },
        })
    }

    pub fn retention(&self) -> Result<Duration> {
        Duration::try_from_secs_f64(self.retention_days * 86_400.0).with_context(|| {
            format!(
                "WORDUP_RETENTION_DAYS must be a non-negative number, got {}",
                self.retention_days
            )
        })
    }
}

impl DatabaseSettings {
    /// Connects and applies the migrations, as every binary does at start.
    pub async fn connect_and_migrate(&self) -> Result<Queue> {
        let timeout = Duration::try_from_secs_f64(self.db_connect_timeout_secs)
            .context("WORDUP_DB_CONNECT_TIMEOUT_SECS must be a non-negative number")?;
        let queue = Queue::connect(
            self.database_url.expose(),
            self.db_max_connections,
            timeout,
            self.queue.queue_config()?,
        )
        .await
        .context("cannot connect to Postgres at DATABASE_URL (is it running? ./scripts/postgres.sh starts one)")?;
        queue.migrate().await.context("applying migrations")?;
        Ok(queue)
    }
}
