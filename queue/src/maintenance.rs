//! Housekeeping that some process must run periodically: the rescuer and
//! retention. Running it from several processes at once is safe.

use std::time::Duration;

use crate::Queue;
use crate::error::Result;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Maintenance {
    /// Running jobs whose lease had expired, returned to the queue.
    pub rescued: u64,
    /// Finished jobs older than the retention age, deleted.
    pub pruned: u64,
}

impl Queue {
    pub async fn maintain(&self, retention: Duration) -> Result<Maintenance> {
        Ok(Maintenance {
            rescued: self.rescue_expired().await?,
            pruned: self.prune_finished(retention).await?,
        })
    }
}
