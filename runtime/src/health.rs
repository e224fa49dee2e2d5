//! The health report that `status` prints.

use std::fmt;

use anyhow::Result;
use wordup_queue::{Queue, QueueDepth};

#[derive(Debug, Clone)]
pub struct Health {
    pub postgres_version: String,
    pub migrations_applied: i64,
    pub depth: QueueDepth,
}

impl Health {
    pub async fn check(queue: &Queue) -> Result<Health> {
        let postgres_version: String = sqlx::query_scalar("SHOW server_version")
            .fetch_one(queue.pool())
            .await?;
        let migrations_applied: i64 =
            sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations WHERE success")
                .fetch_one(queue.pool())
                .await?;
        Ok(Health {
            postgres_version,
            migrations_applied,
            depth: queue.depth().await?,
        })
    }
}

impl fmt::Display for Health {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "postgres     ok (PostgreSQL {})", self.postgres_version)?;
        writeln!(f, "migrations   {} applied", self.migrations_applied)?;
        writeln!(
            f,
            "queue        {} fast, {} relax queued; {} running; oldest waiting {:.0} s",
            self.depth.fast_queued,
            self.depth.relax_queued,
            self.depth.running,
            self.depth.oldest_wait_secs
        )
    }
}
