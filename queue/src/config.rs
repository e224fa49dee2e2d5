use std::time::Duration;

use crate::backoff::BackoffPolicy;

/// The queue's tunables. Binaries fill it from environment variables.
#[derive(Debug, Clone)]
pub struct QueueConfig {
    /// How long a claimed job stays leased without a heartbeat.
    pub lease: Duration,
    /// Spacing of one user's jobs on the claim order's virtual clock: with
    /// several users waiting, each gets about one job per slot in turn.
    pub fair_slot: Duration,
    /// How long a relax job waits behind fast jobs at most, before it is
    /// ordered as if it were a fast job enqueued then.
    pub relax_aging: Duration,
    /// Attempts before a job fails for good (a lost lease counts as one).
    pub max_attempts: i32,
    pub backoff: BackoffPolicy,
}

impl Default for QueueConfig {
    fn default() -> Self {
        QueueConfig {
            lease: Duration::from_secs(60),
            fair_slot: Duration::from_secs(10),
            relax_aging: Duration::from_secs(600),
            max_attempts: 3,
            backoff: BackoffPolicy::default(),
        }
    }
}
