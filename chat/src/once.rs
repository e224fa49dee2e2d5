//! Posting at most once, on either platform. A post whose answer was lost
//! (a timeout, a 5xx) may have landed, and neither platform deduplicates
//! for good. So every try first records the intent
//! ([`Queue::intend_post`]); a try that finds an earlier one looks for its
//! message, the platform's way, before posting again.

use std::future::Future;
use std::time::Duration;

use chrono::{DateTime, Utc};
use wordup_queue::{DeliveryError, JobId, Queue};

use crate::delivery::Transience;
use crate::retry::backoff;

/// Tries of one post within a delivery; the job's own retries come after.
pub const TRIES: u32 = 4;
/// How far before the first try to look: the platform's clock and ours differ.
const CLOCK_SKEW: chrono::Duration = chrono::Duration::seconds(120);

/// Makes up to `tries` tries of post `key` of `job`. Each records the
/// intent; when an earlier try was made, `look` searches for its message
/// (from the time given), and `post` runs only when none is found. A look
/// the platform cannot answer now (transient) skips the post; one it
/// refuses for good (no history scope) posts anyway, since a duplicate is
/// better than a result never posted. The outer error is the queue's; the
/// inner one is the platform's last answer.
pub async fn post_once<T, E, L, LF, P, PF>(
    queue: &Queue,
    job: JobId,
    key: &str,
    tries: u32,
    mut look: L,
    mut post: P,
) -> Result<Result<T, E>, DeliveryError>
where
    E: Transience,
    L: FnMut(DateTime<Utc>) -> LF,
    LF: Future<Output = Result<Option<T>, E>>,
    P: FnMut() -> PF,
    PF: Future<Output = Result<T, E>>,
{
    let mut n = 0;
    loop {
        n += 1;
        let since = queue
            .intend_post(job, key)
            .await
            .map_err(|e| DeliveryError::Transient(e.to_string()))?;
        let looked = match since {
            Some(since) => look(since - CLOCK_SKEW).await,
            None => Ok(None),
        };
        let failed = match looked {
            Ok(Some(found)) => return Ok(Ok(found)),
            Err(e) if e.is_transient() => e,
            looked => {
                if let Err(e) = looked {
                    tracing::warn!(error = %e, post = key, "cannot look for an earlier try; posting again");
                }
                match post().await {
                    Ok(posted) => return Ok(Ok(posted)),
                    Err(e) if e.is_transient() => e,
                    Err(e) => return Ok(Err(e)),
                }
            }
        };
        if n >= tries {
            return Ok(Err(failed));
        }
        tokio::time::sleep(backoff(n).min(Duration::from_secs(4))).await;
    }
}
