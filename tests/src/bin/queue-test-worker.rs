//! A worker process for the crash test: claims one job, says which on
//! stdout, then heartbeats forever, so that the test can SIGKILL it mid-job.

use std::time::Duration;

use anyhow::{Context, Result};
use wordup_queue::{Queue, QueueConfig};

#[tokio::main]
async fn main() -> Result<()> {
    let url = std::env::var("DATABASE_URL").context("DATABASE_URL is required")?;
    let lease_secs: f64 = std::env::var("LEASE_SECS")
        .unwrap_or_else(|_| "2".to_owned())
        .parse()
        .context("LEASE_SECS must be a number")?;
    let config = QueueConfig {
        lease: Duration::from_secs_f64(lease_secs),
        ..QueueConfig::default()
    };
    let queue = Queue::connect(&url, 2, Duration::from_secs(10), config).await?;
    let mut waker = queue.waker(Duration::from_millis(200)).await?;
    let job = queue
        .claim_next(&mut waker, 1)
        .await?
        .into_iter()
        .next()
        .context("claim_next returned no job")?;
    println!("claimed {} {}", job.id(), job.attempt());
    loop {
        tokio::time::sleep(Duration::from_secs_f64(lease_secs / 3.0)).await;
        queue.heartbeat(job.id(), job.attempt()).await?;
    }
}
