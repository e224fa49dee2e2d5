//! Answering within a platform's 3 seconds: an initial response, and work
//! to run once the platform has it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;
use tokio_util::task::TaskTracker;

/// Time the database gets before we answer with a deferred ack instead.
pub const ACK_BUDGET: Duration = Duration::from_millis(2000);

pub type Followup = Pin<Box<dyn Future<Output = ()> + Send + 'static>>;

/// The initial response, and work to run once the platform has it.
pub struct Handled {
    pub response: Value,
    pub after: Option<Followup>,
}

impl Handled {
    pub fn now(response: Value) -> Handled {
        Handled {
            response,
            after: None,
        }
    }
}

/// Work that outlives the request that started it (an enqueue that missed
/// the ack budget, the edit or answer after a deferred ack): spawned here
/// so that a shutdown waits for it instead of dropping an acked command.
#[derive(Debug, Clone, Default)]
pub struct Pending(TaskTracker);

impl Pending {
    pub fn spawn<F>(&self, work: F) -> tokio::task::JoinHandle<F::Output>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.0.spawn(work)
    }

    /// Waits up to `within` for the work in flight (new work is still
    /// accepted meanwhile); returns how many tasks were left unfinished.
    pub async fn drain(&self, within: Duration) -> usize {
        self.0.close();
        if tokio::time::timeout(within, self.0.wait()).await.is_err() {
            tracing::warn!(
                unfinished = self.0.len(),
                "shutdown drain timed out; unfinished commands are lost"
            );
        }
        self.0.len()
    }
}
