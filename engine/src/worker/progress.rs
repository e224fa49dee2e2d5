//! Progress of a running job: stored in the queue (for /queue and the
//! bot's listeners) and shown to the requester, each throttled.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use wordup_queue::{Attachment, Delivery, Job, Progress, Queue, QueueError};

use super::lease::Flags;

/// Least time between stored progress updates within one stage.
const STORE_EVERY: Duration = Duration::from_millis(500);

/// Whether an update is stored: at each new stage, and at most every
/// [`STORE_EVERY`] within one.
fn should_store(last: Option<(Duration, &str)>, stage: &str) -> bool {
    last.is_none_or(|(since, last_stage)| last_stage != stage || since >= STORE_EVERY)
}

/// What the drawing thread reports.
#[derive(Debug)]
pub(super) struct Update {
    pub progress: Progress,
    /// A preview of the images so far, now and then.
    pub preview: Option<Attachment>,
}

impl Update {
    pub fn new(stage: &str, step: usize, total: usize, preview: Option<Attachment>) -> Update {
        Update {
            progress: Progress {
                stage: stage.to_owned(),
                step: step as u32,
                total: total as u32,
            },
            preview,
        }
    }
}

/// Stores progress and shows it to the requester (at most once per
/// `every`, with the latest preview not yet shown) until `events` closes.
pub(super) async fn report<D: Delivery>(
    queue: Queue,
    delivery: Arc<D>,
    job: Job,
    every: Duration,
    mut events: mpsc::UnboundedReceiver<Update>,
    flags: Arc<Flags>,
) {
    let mut stored_at: Option<(Instant, String)> = None;
    let mut shown_at: Option<Instant> = None;
    let mut preview: Option<Attachment> = None;
    while let Some(update) = events.recv().await {
        // Only the latest event matters once we fall behind, and the
        // latest preview.
        let mut progress = update.progress;
        preview = update.preview.or(preview);
        while let Ok(next) = events.try_recv() {
            progress = next.progress;
            preview = next.preview.or(preview);
        }
        let last = stored_at
            .as_ref()
            .map(|(at, stage)| (at.elapsed(), stage.as_str()));
        if should_store(last, &progress.stage) {
            match queue.report_progress(job.id, job.attempt, &progress).await {
                Ok(()) => {}
                Err(QueueError::Stale { .. }) => {
                    flags.lost.store(true, Ordering::Relaxed);
                    return;
                }
                Err(e) => tracing::debug!(error = %e, "progress not stored"),
            }
            stored_at = Some((Instant::now(), progress.stage.clone()));
        }
        if shown_at.is_none_or(|at| at.elapsed() >= every) {
            delivery
                .progress(&job, &progress, preview.take().as_ref())
                .await;
            shown_at = Some(Instant::now());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stores_each_new_stage_and_throttles_within_one() {
        let ms = Duration::from_millis;
        for (last, stage, expected) in [
            (None, "starting", true),
            (Some((ms(10), "denoising")), "denoising", false),
            (Some((ms(499), "denoising")), "denoising", false),
            (Some((ms(500), "denoising")), "denoising", true),
            (Some((ms(10), "denoising")), "decoding", true),
        ] {
            assert_eq!(should_store(last, stage), expected, "{last:?} {stage}");
        }
    }
}
