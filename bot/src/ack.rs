//! Answering within a platform's 3 seconds: an initial response, and work
//! to run once the platform has it.

use std::future::Future;
use std::pin::Pin;
use std::time::Duration;

use serde_json::Value;

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
