//! Waking idle workers: LISTEN/NOTIFY as a hint, polling as the guarantee.
//!
//! Notifications sent while the listener is reconnecting are lost, so a
//! reconnect counts as a wake-up (the caller claims again), and a quiet
//! channel still wakes the caller every poll interval.

use std::time::Duration;

use sqlx::postgres::PgListener;

use crate::error::Result;
use crate::model::ClaimedJob;
use crate::{JOBS_CHANNEL, Queue};

/// Why [`Waker::wait`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Wake {
    Notified,
    PollInterval,
    /// The listener lost its connection; notifications may have been missed.
    Reconnected,
}

pub struct Waker {
    listener: PgListener,
    poll_interval: Duration,
}

impl Waker {
    pub async fn wait(&mut self) -> Wake {
        match tokio::time::timeout(self.poll_interval, self.listener.try_recv()).await {
            Err(_) => Wake::PollInterval,
            Ok(Ok(Some(_))) => Wake::Notified,
            Ok(Ok(None)) => Wake::Reconnected,
            Ok(Err(error)) => {
                // Postgres restarting, say: back off a little, then re-poll.
                tracing::warn!(%error, "job listener failed; polling until it reconnects");
                tokio::time::sleep(self.poll_interval.min(Duration::from_secs(1))).await;
                Wake::Reconnected
            }
        }
    }
}

impl Queue {
    /// A listener on the jobs channel that also wakes every `poll_interval`.
    pub async fn waker(&self, poll_interval: Duration) -> Result<Waker> {
        let mut listener = PgListener::connect_with(&self.pool).await?;
        listener.listen(JOBS_CHANNEL).await?;
        Ok(Waker {
            listener,
            poll_interval,
        })
    }

    /// Claims the next batch, waiting on `waker` while nothing is claimable.
    /// Claim errors propagate; the caller decides whether to retry.
    pub async fn claim_next(&self, waker: &mut Waker, limit: u32) -> Result<Vec<ClaimedJob>> {
        loop {
            let jobs = self.claim(limit).await?;
            if !jobs.is_empty() {
                return Ok(jobs);
            }
            waker.wait().await;
        }
    }
}
