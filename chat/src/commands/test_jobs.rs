//! Jobs for the commands' unit tests.

use wordup_queue::{AspectRatio, ImagineRequest, Job, JobId, JobState, Origin, Request, Tier};

/// A queued imagine job "fox {id}" of `user` on `platform`.
pub fn queued(id: i64, platform: &str, user: &str) -> Job {
    let now = chrono::Utc::now();
    Job {
        id: JobId(id),
        idempotency_key: None,
        tier: Tier::Fast,
        state: JobState::Queued,
        origin: Origin {
            platform: platform.to_owned(),
            workspace_id: "w".into(),
            channel_id: "c".into(),
            thread_id: None,
            user_id: user.into(),
        },
        reply: serde_json::Value::Null,
        request: Request::Imagine(ImagineRequest {
            prompt: format!("fox {id}"),
            negative_prompt: None,
            aspect: AspectRatio::SQUARE,
            seed: 1,
            steps: None,
            guidance: None,
            style: None,
            images: 4,
            model: None,
            draft: false,
            quality: 1,
            chaos: 0,
            tile: false,
            image_weight: None,
        }),
        batch_key: "k".into(),
        sort_key: now,
        attempt: 0,
        max_attempts: 3,
        run_at: now,
        enqueued_at: now,
        started_at: None,
        lease_expires_at: None,
        finished_at: None,
        cancel_requested: false,
        last_error: None,
        progress: None,
    }
}
