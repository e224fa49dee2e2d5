//! The platform-neutral commands against a real Postgres.
#![allow(clippy::unwrap_used)]

use wordup_chat::buttons::{Action, ButtonId};
use wordup_chat::commands::{CommandConfig, Commands, Invocation};
use wordup_chat::policy::Blocklist;
use wordup_queue::{JobId, JobImage, QueueConfig, Tier};
use wordup_tests::jobs::{job, origin};
use wordup_tests::pg::TestDb;

fn commands(queue: wordup_queue::Queue) -> Commands {
    Commands {
        queue,
        config: CommandConfig {
            max_active_per_user: 50,
            max_jobs_per_day: 50,
            default_tier: Tier::Fast,
            blocklist: Blocklist::default(),
            retention_days: 30.0,
            tokenizer: None,
            boards: None,
        },
        pending: Default::default(),
    }
}

/// A finished grid with its four images stored.
async fn finished_grid(queue: &wordup_queue::Queue) -> JobId {
    let id = queue
        .enqueue(&job("alice", Tier::Fast, "k"))
        .await
        .unwrap()
        .id;
    queue.claim(1).await.unwrap();
    for idx in 0..4 {
        let image = JobImage {
            idx,
            png: vec![0; 4],
            width: 64,
            height: 64,
            seed: 1,
            score: None,
            draft_latents: None,
        };
        queue.store_image(id, 1, &image).await.unwrap();
    }
    queue.complete(id, 1).await.unwrap();
    id
}

fn press(button: &ButtonId, interaction: &str) -> Invocation {
    Invocation {
        origin: origin("bob"),
        idempotency_key: button.press_key("discord", interaction),
        channel_nsfw: false,
        reply: serde_json::json!({}),
    }
}

#[tokio::test]
async fn every_press_of_reroll_and_vary_is_a_job_and_a_redelivery_is_not() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 4).await.unwrap();
    let commands = commands(queue.clone());
    let grid = finished_grid(&queue).await;
    for (action, p1, p2) in [
        (Action::Reroll, "p1", "p2"),
        (Action::Vary { index: 2 }, "p3", "p4"),
    ] {
        let button = ButtonId { action, job: grid };
        let first = commands.press(&press(&button, p1), &button).await.unwrap();
        let again = commands.press(&press(&button, p1), &button).await.unwrap();
        let second = commands.press(&press(&button, p2), &button).await.unwrap();
        assert!(first.created && second.created, "{action:?}");
        assert!(!again.created, "{action:?}: a redelivery is the same press");
        assert_eq!(again.job, first.job);
        assert_ne!(
            second.job, first.job,
            "{action:?}: a second press re-rolls again"
        );
    }
    // An upscale is one job per button, whoever presses it.
    let upscale = ButtonId {
        action: Action::Upscale { index: 0 },
        job: grid,
    };
    let first = commands
        .press(&press(&upscale, "p5"), &upscale)
        .await
        .unwrap();
    let second = commands
        .press(&press(&upscale, "p6"), &upscale)
        .await
        .unwrap();
    assert_eq!(second.job, first.job);
    assert!(!second.created);
}

#[tokio::test]
async fn a_button_whose_jobs_keep_failing_still_makes_a_new_job() {
    let db = TestDb::new().await.unwrap();
    let queue = db.queue(QueueConfig::default(), 4).await.unwrap();
    let commands = commands(queue.clone());
    let grid = finished_grid(&queue).await;
    let upscale = ButtonId {
        action: Action::Upscale { index: 1 },
        job: grid,
    };
    // Twenty presses whose jobs are cancelled: each next press makes a new job.
    let mut seen = Vec::new();
    for press_no in 0..20 {
        let accepted = commands
            .press(&press(&upscale, &format!("p{press_no}")), &upscale)
            .await
            .unwrap();
        assert!(accepted.created, "press {press_no}");
        assert!(
            !seen.contains(&accepted.job),
            "press {press_no} got an old job"
        );
        seen.push(accepted.job);
        queue.cancel(accepted.job).await.unwrap();
    }
}
