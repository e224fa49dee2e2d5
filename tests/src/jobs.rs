//! Builders for jobs in tests and benchmarks.

use wordup_queue::{AspectRatio, ImagineRequest, NewJob, Origin, Request, Tier};

pub fn origin(user: &str) -> Origin {
    Origin {
        platform: "discord".to_owned(),
        workspace_id: "guild-1".to_owned(),
        channel_id: "channel-1".to_owned(),
        thread_id: None,
        user_id: user.to_owned(),
    }
}

pub fn imagine(prompt: &str) -> Request {
    Request::Imagine(ImagineRequest {
        prompt: prompt.to_owned(),
        negative_prompt: None,
        aspect: AspectRatio::SQUARE,
        seed: 42,
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
    })
}

/// A job of `user` in `tier` with batch key `batch`.
pub fn job(user: &str, tier: Tier, batch: &str) -> NewJob {
    NewJob {
        idempotency_key: None,
        tier,
        origin: origin(user),
        request: imagine("a cozy coffee shop at sunset"),
        batch_key: batch.to_owned(),
        reply: serde_json::json!({}),
    }
}
