#![allow(clippy::unwrap_used)]
//! Discord end to end: signed interactions into `wordup-bot serve`, jobs
//! through Postgres into `wordup-engine run` on the tiny model, results
//! posted to a fake Discord REST API.

use std::time::{Duration, Instant};

use serde_json::{Value, json};
use wordup_chat::buttons::ButtonId;
use wordup_queue::{JobId, JobState, Request};
use wordup_tests::fake_discord::{Fault, Message};
use wordup_tests::interactions::{self, CHANNEL_ID, InteractionSigner, Member, new_interaction};
use wordup_tests::stack::Stack;

const POST_TIMEOUT: Duration = Duration::from_secs(180);

fn alice() -> Member {
    Member::new("1200000000000000100", "alice")
}

async fn send(stack: &Stack, payload: &Value) -> interactions::Answer {
    stack
        .signer
        .send(&stack.http, &stack.endpoint(), payload)
        .await
        .unwrap()
}

/// Sends an interaction, checks the ack came in time, and tells the fake
/// that Discord has it (so the token's original message exists).
async fn acked(stack: &Stack, payload: &Value) -> interactions::Answer {
    let answer = send(stack, payload).await;
    assert_eq!(answer.status, 200, "{:?}", answer.body);
    assert!(
        answer.latency < Duration::from_secs(3),
        "ack took {:?}",
        answer.latency
    );
    stack
        .fake
        .acknowledged(payload["token"].as_str().unwrap(), &answer.body);
    answer
}

async fn job_count(stack: &Stack) -> i64 {
    sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(stack.queue.pool())
        .await
        .unwrap()
}

async fn wait_for_state(stack: &Stack, job: JobId, state: JobState) {
    let deadline = Instant::now() + POST_TIMEOUT;
    loop {
        let current = stack.queue.job(job).await.unwrap().unwrap().state;
        if current == state {
            return;
        }
        assert!(Instant::now() < deadline, "job {job} stayed {current:?}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

/// The contents of every edit sent for an interaction's original response,
/// in order (answered or not).
fn original_edits(stack: &Stack, token: &str) -> Vec<String> {
    let path = format!("{token}/messages/@original");
    stack
        .fake
        .requests()
        .iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with(&path))
        .filter_map(|r| r.json.as_ref()?["content"].as_str().map(str::to_owned))
        .collect()
}

/// The job an interaction made, if any.
async fn job_made_by(stack: &Stack, interaction_id: &str) -> Option<wordup_queue::Job> {
    stack
        .queue
        .job_by_idempotency_key(&format!("discord:{interaction_id}"))
        .await
        .unwrap()
}

/// The first edit of an interaction's original response that contains `text`.
async fn wait_for_original_edit(stack: &Stack, token: &str, text: &str) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if let Some(content) = original_edits(stack, token)
            .into_iter()
            .find(|content| content.contains(text))
        {
            return content;
        }
        assert!(Instant::now() < deadline, "no edit with {text:?}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory(bytes).unwrap();
    (image.width(), image.height())
}

/// The job a posted message belongs to, from its buttons.
fn job_of(message: &Message) -> JobId {
    ButtonId::parse(&message.button_rows()[0][0].0).unwrap().job
}

fn assert_grid(message: &Message) -> JobId {
    let rows = message.button_rows();
    let labels: Vec<Vec<&str>> = rows
        .iter()
        .map(|r| r.iter().map(|(_, l)| l.as_str()).collect())
        .collect();
    assert_eq!(
        labels,
        vec![
            vec!["U1", "U2", "U3", "U4"],
            vec!["V1", "V2", "V3", "V4"],
            vec!["🔄", "🎛️ Remix", "👍", "❌"]
        ]
    );
    let job = job_of(message);
    for (custom_id, _) in rows.iter().flatten() {
        assert!(custom_id.len() <= 100);
        assert_eq!(ButtonId::parse(custom_id).unwrap().job, job);
    }
    assert_eq!(message.channel_id, CHANNEL_ID);
    assert_eq!(message.payload["nonce"], format!("wu{job}"));
    assert_eq!(message.payload["enforce_nonce"], true);
    assert_eq!(message.files.len(), 1);
    let file = &message.files[0];
    assert_eq!(file.name, "files[0]");
    assert_eq!(file.content_type, "image/png");
    let alt = message.payload["attachments"][0]["description"]
        .as_str()
        .unwrap();
    assert!(alt.starts_with("Four AI-generated images"), "{alt}");
    job
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imagine_then_upscale_and_vary_across_a_bot_restart() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();

    let (id, token) = new_interaction();
    let answer = acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a lighthouse at dusk --seed 7"),
    )
    .await;
    assert_eq!(answer.body["type"], 5, "a deferred ack: {:?}", answer.body);
    assert_eq!(
        answer.body["data"]["flags"].as_u64().unwrap_or(0) & 64,
        0,
        "public"
    );
    // With no engine yet the job waits, and the ack is edited with its place.
    assert_eq!(
        wait_for_original_edit(&stack, &token, "next in line").await,
        "**a lighthouse at dusk --seed 7** — queued — next in line"
    );
    stack.start_engine(&[]).await.unwrap();

    let messages = stack.fake.wait_for_messages(1, POST_TIMEOUT).await.unwrap();
    let grid = &messages[0];
    let job = assert_grid(grid);
    assert!(
        grid.payload["content"]
            .as_str()
            .unwrap()
            .contains("a lighthouse at dusk")
    );
    assert!(
        grid.payload["content"]
            .as_str()
            .unwrap()
            .contains("<@1200000000000000100>")
    );
    // The grid replies to the ack's message.
    let original = stack.fake.original(&token).unwrap();
    assert_eq!(
        grid.payload["message_reference"]["message_id"],
        original["id"]
    );
    // 2×2 tiles of the tiny model's 64-pixel images.
    assert_eq!(png_size(&grid.files[0].bytes), (128, 128));

    wait_for_state(&stack, job, JobState::Succeeded).await;
    let stored = stack.queue.images(job).await.unwrap();
    assert_eq!(stored.len(), 4);
    for (i, image) in stored.iter().enumerate() {
        assert_eq!((image.idx, image.seed), (i as i32, 7 + i as i64));
        assert_eq!((image.width, image.height), (64, 64));
        assert_eq!(png_size(&image.png), (64, 64));
    }
    let post = stack.queue.post(job, "result").await.unwrap().unwrap();
    assert_eq!(post.message_id, grid.id);

    // The ack was edited with the place in line, then progress, then done.
    let edits = original_edits(&stack, &token);
    assert!(edits[0].contains("in line"), "{edits:?}");
    // Which stages show depends on speed (edits are throttled), but the first
    // progress event is always shown.
    assert!(
        edits
            .iter()
            .any(|e| ["starting", "encoding", "denoising", "decoding"]
                .iter()
                .any(|stage| e.contains(stage))),
        "{edits:?}"
    );
    assert!(edits.last().unwrap().contains("done"), "{edits:?}");
    // Every bot-token call carried the bot token.
    for request in stack
        .fake
        .requests()
        .iter()
        .filter(|r| r.path.contains("/channels/"))
    {
        assert_eq!(request.authorization.as_deref(), Some("Bot test-bot-token"));
    }

    // A restarted bot still handles the old grid's buttons.
    stack.stop_bot().await.unwrap();
    stack.start_bot().await.unwrap();

    let (id, token) = new_interaction();
    let u2 = format!("wu:u:{job}:1");
    let answer = acked(
        &stack,
        &interactions::button(&id, &token, &alice(), &u2, &grid.json()),
    )
    .await;
    assert_eq!(answer.body["type"], 5);
    assert_eq!(answer.body["data"]["flags"], 64, "an ephemeral ack");
    let messages = stack.fake.wait_for_messages(2, POST_TIMEOUT).await.unwrap();
    let upscaled = &messages[1];
    let labels: Vec<String> = upscaled
        .button_rows()
        .concat()
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(labels, ["Vary (subtle)", "Vary (strong)", "👍", "❌"]);
    assert_eq!(
        png_size(&upscaled.files[0].bytes),
        (256, 256),
        "×4 with the GAN"
    );
    assert_eq!(
        upscaled.payload["message_reference"]["message_id"],
        grid.id.as_str()
    );
    let upscale_job = job_of(upscaled);
    assert_eq!(
        stack.queue.job(upscale_job).await.unwrap().unwrap().request,
        Request::Upscale {
            parent: job,
            index: 1,
            mode: wordup_queue::UpscaleMode::Plain
        }
    );

    // Pressing U2 again makes no second job.
    let jobs_before = job_count(&stack).await;
    let (id, token) = new_interaction();
    let answer = acked(
        &stack,
        &interactions::button(&id, &token, &alice(), &u2, &grid.json()),
    )
    .await;
    assert_eq!(answer.body["type"], 5);
    assert_eq!(job_count(&stack).await, jobs_before);

    let (id, token) = new_interaction();
    let v1 = format!("wu:v:{job}:0");
    acked(
        &stack,
        &interactions::button(&id, &token, &alice(), &v1, &grid.json()),
    )
    .await;
    let messages = stack.fake.wait_for_messages(3, POST_TIMEOUT).await.unwrap();
    let variations = &messages[2];
    let vary_job = assert_grid(variations);
    assert_ne!(vary_job, job);
    assert!(
        variations.payload["content"]
            .as_str()
            .unwrap()
            .contains("variations of image 1")
    );
    assert_eq!(png_size(&variations.files[0].bytes), (128, 128));
    wait_for_state(&stack, vary_job, JobState::Succeeded).await;
    assert_eq!(stack.fake.messages().len(), 3, "nothing posted twice");

    // What the run left in the metrics.
    let get = |url: String| {
        let http = stack.http.clone();
        async move {
            let response = http.get(url).send().await.unwrap();
            (response.status().as_u16(), response.text().await.unwrap())
        }
    };
    let (status, bot) = get(format!("{}/metrics", stack.bot_url())).await;
    assert_eq!(status, 200);
    // The restarted bot answered the three presses.
    assert!(
        bot.contains("wordup_ack_seconds_count{platform=\"discord\"} 3"),
        "{bot}"
    );
    assert!(
        bot.contains("wordup_interactions_total{platform=\"discord\",outcome=\"answered\"} 3"),
        "{bot}"
    );
    assert!(bot.contains("wordup_queue_depth{tier=\"fast\"} 0"), "{bot}");
    assert_eq!(get(format!("{}/readyz", stack.bot_url())).await.0, 200);
    // Internals are not on the public listener.
    for path in ["/metrics", "/readyz", "/healthz"] {
        assert_eq!(
            get(format!("{}{path}", stack.public_url())).await.0,
            404,
            "{path} on the public port"
        );
    }
    let (status, engine) = get(format!("{}/metrics", stack.engine_url())).await;
    assert_eq!(status, 200);
    for expected in [
        "wordup_jobs_total{kind=\"imagine\",outcome=\"done\"} 1",
        "wordup_jobs_total{kind=\"upscale\",outcome=\"done\"} 1",
        "wordup_jobs_total{kind=\"vary\",outcome=\"done\"} 1",
        "wordup_images_generated_total 9",
        "wordup_job_wait_seconds_count 3",
        "wordup_job_stage_seconds_count{stage=\"upscaling\"} 1",
        "wordup_engine_ready 1",
    ] {
        assert!(engine.contains(expected), "{expected} in:\n{engine}");
    }
    let steps: u64 = engine
        .lines()
        .find_map(|l| l.strip_prefix("wordup_unet_step_seconds_count "))
        .unwrap()
        .parse()
        .unwrap();
    assert!(steps > 0, "UNet steps timed");
    assert_eq!(get(format!("{}/readyz", stack.engine_url())).await.0, 200);

    // ❌: not for Bob; Alice deletes her variations; a member who may
    // manage messages deletes her upscale.
    let x = format!("wu:x:{vary_job}");
    let bob = Member::new("1200000000000000200", "bob");
    let mut moderator = Member::new("1200000000000000300", "moderator");
    moderator.permissions = ((1u64 << 10) | (1 << 11) | (1 << 13) | (1 << 31)).to_string();
    let upscale_job = ButtonId::parse(&upscaled.button_rows()[0][0].0)
        .unwrap()
        .job;
    for (member, custom_id, message, expected, left) in [
        (bob, &x, variations, "only the person who asked", 3),
        (alice(), &x, variations, "Deleted the result of job", 2),
        (
            moderator,
            &format!("wu:x:{upscale_job}"),
            upscaled,
            "Deleted the result of job",
            1,
        ),
    ] {
        let (id, token) = new_interaction();
        let answer = acked(
            &stack,
            &interactions::button(&id, &token, &member, custom_id, &message.json()),
        )
        .await;
        assert_eq!(answer.body["type"], 5, "a deferred ack: {:?}", answer.body);
        assert_eq!(answer.body["data"]["flags"], 64, "{:?}", answer.body);
        wait_for_original_edit(&stack, &token, expected).await;
        assert_eq!(stack.fake.messages().len(), left);
    }
    assert_eq!(stack.fake.messages()[0].id, grid.id, "the grid stays");
}

#[tokio::test]
async fn forged_stale_repeated_and_malformed_interactions() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    let endpoint = stack.endpoint();

    let (id, token) = new_interaction();
    let payload = interactions::imagine(&id, &token, &alice(), "a red fox");
    let body = serde_json::to_vec(&payload).unwrap();
    let now = chrono::Utc::now().timestamp();

    // Signed by someone else.
    let stranger = InteractionSigner::new();
    let ts = now.to_string();
    let answer = interactions::send_raw(
        &stack.http,
        &endpoint,
        &stranger.sign(&ts, &body),
        &ts,
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 401);
    // Our key, a body changed after signing.
    let mut tampered = payload.clone();
    tampered["data"]["options"][0]["value"] = json!("something else");
    let answer = interactions::send_raw(
        &stack.http,
        &endpoint,
        &stack.signer.sign(&ts, &body),
        &ts,
        serde_json::to_vec(&tampered).unwrap(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 401);
    // Our key, but captured 301 s ago.
    let old = (now - 301).to_string();
    let answer = interactions::send_raw(
        &stack.http,
        &endpoint,
        &stack.signer.sign(&old, &body),
        &old,
        body.clone(),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 401);
    // No headers at all.
    let answer = stack
        .http
        .post(&endpoint)
        .body(body.clone())
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status().as_u16(), 401);
    assert_eq!(job_count(&stack).await, 0);

    // PING → PONG.
    let answer = send(&stack, &interactions::ping(&id)).await;
    assert_eq!(
        (answer.status, answer.body["type"].as_u64()),
        (200, Some(1))
    );

    // The same interaction twice: one job.
    let first = send(&stack, &payload).await;
    let second = send(&stack, &payload).await;
    assert_eq!(
        (first.body["type"].as_u64(), second.body["type"].as_u64()),
        (Some(5), Some(5))
    );
    assert_eq!(job_count(&stack).await, 1);

    // Bad input: an ephemeral message naming the problem, and no job.
    for (prompt, expected) in [
        ("a fox --qualty 2", "--qualty"),
        ("a fox --quality 9", "--quality 9"),
        ("a fox --ar 7:1", "--ar 7:1"),
        ("a fox --steps 500", "--steps 500"),
        ("   ", "empty"),
    ] {
        let (id, token) = new_interaction();
        let answer = send(
            &stack,
            &interactions::imagine(&id, &token, &alice(), prompt),
        )
        .await;
        assert_eq!(answer.body["type"], 4, "{prompt}: {:?}", answer.body);
        assert_eq!(answer.body["data"]["flags"], 64, "{prompt}");
        let content = answer.body["data"]["content"].as_str().unwrap();
        assert!(content.contains(expected), "{prompt}: {content}");
    }
    assert_eq!(job_count(&stack).await, 1);

    // /queue lists the job with its place in line.
    let (id, token) = new_interaction();
    let answer = send(
        &stack,
        &interactions::command(&id, &token, &alice(), "queue", json!([])),
    )
    .await;
    let content = answer.body["data"]["content"].as_str().unwrap();
    assert!(
        content.contains("a red fox") && content.contains("#1 in line"),
        "{content}"
    );
    assert_eq!(answer.body["data"]["flags"], 64);

    // /help.
    let (id, token) = new_interaction();
    let answer = send(
        &stack,
        &interactions::command(&id, &token, &alice(), "help", json!([])),
    )
    .await;
    assert!(
        answer.body["data"]["content"]
            .as_str()
            .unwrap()
            .contains("--ar W:H")
    );
}

#[tokio::test]
async fn a_late_place_in_line_edit_is_dropped_once_an_engine_has_the_job() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    let (id, token) = new_interaction();
    let payload = interactions::imagine(&id, &token, &alice(), "a quiet harbour");
    // Discord has not seen the ack yet: the bot's edit gets 10015 and waits.
    let answer = send(&stack, &payload).await;
    assert_eq!(answer.body["type"], 5, "{:?}", answer.body);
    // Two tries refused: the bot now waits 600 ms before its next one. The
    // claim goes in that wait, so the next try reads its place after the
    // claim (a try that read before it can still land; that window is not
    // what this test is about).
    let deadline = Instant::now() + Duration::from_secs(10);
    while original_edits(&stack, &token).len() < 2 {
        assert!(Instant::now() < deadline, "the bot did not retry its edit");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    // An engine claims the job; only then does Discord know the token.
    let claimed = stack.queue.claim(1).await.unwrap();
    assert_eq!(claimed.len(), 1);
    stack.fake.acknowledged(&token, &answer.body);
    // Past the bot's retries (0.3 + 0.6 + 0.9 + 1.2 s).
    tokio::time::sleep(Duration::from_millis(3500)).await;
    assert!(
        !original_edits(&stack, &token).is_empty(),
        "the bot never tried to edit"
    );
    let original = stack.fake.original(&token).unwrap();
    assert!(
        !original["content"]
            .as_str()
            .unwrap_or_default()
            .contains("in line"),
        "a stale place in line landed: {original}"
    );
}

#[tokio::test]
async fn quotas_blocklist_and_channel_settings() {
    let mut stack = Stack::start().await.unwrap();
    // Through the environment, as in production.
    start_bot_with_env(
        &mut stack,
        &[
            ("WORDUP_MAX_ACTIVE_PER_USER", "2"),
            ("WORDUP_BLOCKED_TERMS", "gore,blood bath"),
        ],
    )
    .await;

    for n in 0..2 {
        let (id, token) = new_interaction();
        let answer = send(
            &stack,
            &interactions::imagine(&id, &token, &alice(), &format!("cat {n}")),
        )
        .await;
        assert_eq!(answer.body["type"], 5);
    }
    let (id, token) = new_interaction();
    let answer = send(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "cat 3"),
    )
    .await;
    assert_eq!(answer.body["type"], 4);
    assert!(
        answer.body["data"]["content"]
            .as_str()
            .unwrap()
            .contains("already have 2 jobs")
    );
    let (id, token) = new_interaction();
    let bob = Member::new("1200000000000000200", "bob");
    let answer = send(
        &stack,
        &interactions::imagine(&id, &token, &bob, "a Blood-Bath"),
    )
    .await;
    assert!(
        answer.body["data"]["content"]
            .as_str()
            .unwrap()
            .contains("blocked term")
    );
    assert_eq!(job_count(&stack).await, 2);

    // Settings: only moderators change them; NSFW only in NSFW channels.
    let change = json!([{ "name": "style", "type": 3, "value": "anime" }, { "name": "tier", "type": 3, "value": "relax" }]);
    let (id, token) = new_interaction();
    let answer = send(
        &stack,
        &interactions::command(&id, &token, &bob, "settings", change.clone()),
    )
    .await;
    assert!(
        answer.body["data"]["content"]
            .as_str()
            .unwrap()
            .contains("moderator")
    );
    let mut moderator = Member::new("1200000000000000300", "mod");
    moderator.permissions = ((1u64 << 4) | (1 << 10) | (1 << 11)).to_string();
    let (id, token) = new_interaction();
    let answer = send(
        &stack,
        &interactions::command(&id, &token, &moderator, "settings", change),
    )
    .await;
    let content = answer.body["data"]["content"].as_str().unwrap();
    assert!(
        content.starts_with("Saved.") && content.contains("anime") && content.contains("relax"),
        "{content}"
    );
    let (id, token) = new_interaction();
    let nsfw = json!([{ "name": "nsfw", "type": 5, "value": true }]);
    let answer = send(
        &stack,
        &interactions::command(&id, &token, &moderator, "settings", nsfw),
    )
    .await;
    assert!(
        answer.body["data"]["content"]
            .as_str()
            .unwrap()
            .contains("marked NSFW")
    );

    // The channel's defaults apply to the next prompt.
    let (id, token) = new_interaction();
    send(
        &stack,
        &interactions::imagine(&id, &token, &bob, "a quiet harbour"),
    )
    .await;
    let job = job_made_by(&stack, &id).await.unwrap();
    assert_eq!(job.tier, wordup_queue::Tier::Relax);
    let Request::Imagine(request) = job.request else {
        panic!("not an imagine")
    };
    assert_eq!(request.style.as_deref(), Some("anime"));
}

/// Starts the bot with extra environment variables.
async fn start_bot_with_env(stack: &mut Stack, env: &[(&str, &str)]) {
    stack.bot_env = env
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    stack.start_bot().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_engine_killed_between_posting_and_recording_posts_once() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    // Discord creates the message, but the engine never hears back.
    stack.fake.push_fault(Fault::Hold(Duration::from_secs(120)));
    stack.start_engine(&[]).await.unwrap();
    let (id, token) = new_interaction();
    acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a windmill --seed 3"),
    )
    .await;
    let messages = stack.fake.wait_for_messages(1, POST_TIMEOUT).await.unwrap();
    let job = job_of(&messages[0]);
    stack.kill_engine().await.unwrap();
    assert_eq!(
        stack.queue.job(job).await.unwrap().unwrap().state,
        JobState::Running
    );
    assert!(stack.queue.post(job, "result").await.unwrap().is_none());

    // A new engine rescues the job once its lease expires, draws it again,
    // finds the first attempt's intent and looks before posting: the
    // message is there, so it is recorded and not posted again.
    stack.start_engine(&[]).await.unwrap();
    wait_for_state(&stack, job, JobState::Succeeded).await;
    let messages = stack.fake.messages();
    assert_eq!(messages.len(), 1, "posted exactly once");
    let posts = stack
        .fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "POST"
                && r.path
                    .ends_with(&format!("/channels/{CHANNEL_ID}/messages"))
        })
        .count();
    assert_eq!(posts, 1, "the second attempt found the first's message");
    assert!(
        stack.fake.requests().iter().any(|r| r.method == "GET"
            && r.path
                .contains(&format!("/channels/{CHANNEL_ID}/messages?after="))),
        "it looked in the channel"
    );
    let stored = stack.queue.job(job).await.unwrap().unwrap();
    assert_eq!(stored.attempt, 2);
    assert_eq!(
        stack
            .queue
            .post(job, "result")
            .await
            .unwrap()
            .unwrap()
            .message_id,
        messages[0].id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_post_whose_answer_timed_out_is_found_and_not_posted_again() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    // Discord creates the message and its edge answers 504; by the retry it
    // has forgotten the nonce, as it does after a few minutes.
    stack.fake.set_nonce_window(Duration::ZERO);
    stack.fake.push_fault(Fault::LoseAnswer);
    stack.start_engine(&[]).await.unwrap();
    let (id, token) = new_interaction();
    acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a lighthouse --seed 4"),
    )
    .await;
    let messages = stack.fake.wait_for_messages(1, POST_TIMEOUT).await.unwrap();
    let job = job_of(&messages[0]);
    wait_for_state(&stack, job, JobState::Succeeded).await;
    assert_eq!(stack.fake.messages().len(), 1, "posted exactly once");
    let requests = stack.fake.requests();
    let posts: Vec<u16> = requests
        .iter()
        .filter(|r| {
            r.method == "POST"
                && r.path
                    .ends_with(&format!("/channels/{CHANNEL_ID}/messages"))
        })
        .map(|r| r.status)
        .collect();
    assert_eq!(
        posts,
        [504],
        "a 504 after the post is not sent again blindly"
    );
    assert!(
        requests
            .iter()
            .any(|r| r.method == "GET" && r.path.contains("/messages?after=") && r.status == 200),
        "it looked for the message"
    );
    let stored = stack.queue.job(job).await.unwrap().unwrap();
    assert_eq!(stored.attempt, 1, "found within the attempt, not redrawn");
    assert_eq!(
        stack
            .queue
            .post(job, "result")
            .await
            .unwrap()
            .unwrap()
            .message_id,
        messages[0].id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_post_is_retried_after_retry_after_and_lands_once() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.fake.push_fault(Fault::RateLimit(0.8));
    stack.start_engine(&[]).await.unwrap();
    let (id, token) = new_interaction();
    acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a kite --seed 5"),
    )
    .await;
    let messages = stack.fake.wait_for_messages(1, POST_TIMEOUT).await.unwrap();
    wait_for_state(&stack, job_of(&messages[0]), JobState::Succeeded).await;
    let posts: Vec<_> = stack
        .fake
        .requests()
        .into_iter()
        .filter(|r| {
            r.method == "POST" && r.path.ends_with("/messages") && r.path.contains("/channels/")
        })
        .collect();
    assert_eq!(
        posts.iter().map(|r| r.status).collect::<Vec<_>>(),
        [429, 200]
    );
    let waited = posts[1].at - posts[0].at;
    assert!(
        waited >= Duration::from_millis(800),
        "retried after {waited:?}"
    );
    assert_eq!(stack.fake.messages().len(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn withheld_images_are_never_posted_and_the_requester_is_told() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    // Every image counts as unsafe at threshold 0.
    stack
        .start_engine(&[("WORDUP_NSFW_THRESHOLD", "0")])
        .await
        .unwrap();
    let (id, token) = new_interaction();
    acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a meadow --seed 1"),
    )
    .await;
    let job = job_made_by(&stack, &id).await.unwrap().id;
    wait_for_state(&stack, job, JobState::Succeeded).await;
    assert!(stack.fake.messages().is_empty(), "nothing posted");
    assert!(
        stack.queue.images(job).await.unwrap().is_empty(),
        "nothing stored"
    );
    let original = stack.fake.original(&token).unwrap();
    assert!(
        original["content"]
            .as_str()
            .unwrap()
            .contains("withheld by the safety check"),
        "{original}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_delivers_interactions_to_the_same_handlers() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_gateway().await.unwrap();
    let identify = stack
        .fake
        .gateway_received()
        .into_iter()
        .find(|p| p["op"] == 2)
        .unwrap();
    // serenity sends the token with its "Bot " prefix, which Discord accepts.
    assert!(
        identify["d"]["token"]
            .as_str()
            .unwrap()
            .ends_with("test-bot-token")
    );
    assert_eq!(
        identify["d"]["intents"], 0,
        "no privileged (or any) intents"
    );
    stack.start_engine(&[]).await.unwrap();

    let (id, token) = new_interaction();
    let payload = interactions::imagine(&id, &token, &alice(), "a gateway arch --seed 9");
    stack.fake.dispatch_interaction(&payload).unwrap();
    // The ack goes to the callback endpoint instead of an HTTP response.
    let deadline = Instant::now() + Duration::from_secs(30);
    let callback = loop {
        if let Some(r) = stack
            .fake
            .requests()
            .into_iter()
            .find(|r| r.path == format!("/api/v10/interactions/{id}/{token}/callback"))
        {
            break r;
        }
        assert!(Instant::now() < deadline, "no callback");
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    assert_eq!(callback.json.as_ref().unwrap()["type"], 5);
    let messages = stack.fake.wait_for_messages(1, POST_TIMEOUT).await.unwrap();
    let job = assert_grid(&messages[0]);
    wait_for_state(&stack, job, JobState::Succeeded).await;
    // The channel's NSFW flag came from the REST API (the gateway's model drops it).
    assert!(
        stack
            .fake
            .requests()
            .iter()
            .any(|r| r.method == "GET" && r.path == format!("/api/v10/channels/{CHANNEL_ID}"))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_finishes_the_jobs_in_hand_and_releases_the_rest_of_the_batch() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    let mut ids = Vec::new();
    // The first two are drawn as one batch; the third (four candidates per
    // image to pick from) is drawn on its own after them.
    for (n, options) in ["", "", " --quality 2"].iter().enumerate() {
        let (id, token) = new_interaction();
        let member = Member::new(&format!("12000000000000005{n:02}"), "user");
        acked(
            &stack,
            &interactions::imagine(
                &id,
                &token,
                &member,
                &format!("a boat {n} --seed {n}{options}"),
            ),
        )
        .await;
        ids.push(id);
    }
    let mut jobs = Vec::new();
    for id in &ids {
        jobs.push(job_made_by(&stack, id).await.unwrap().id);
    }
    // The first post is held, so the engine is mid-job when the signal comes.
    stack.fake.push_fault(Fault::Hold(Duration::from_secs(5)));
    stack
        .start_engine(&[("WORDUP_ENGINE_BATCH", "3")])
        .await
        .unwrap();
    stack.fake.wait_for_messages(1, POST_TIMEOUT).await.unwrap();
    let status = stack.stop_engine().await.unwrap();
    assert!(status.success(), "{status:?}");
    let mut states = Vec::new();
    for job in &jobs {
        let job = stack.queue.job(*job).await.unwrap().unwrap();
        states.push((job.state, job.attempt, job.max_attempts));
    }
    // The two drawn together were finished; the third was released (a
    // release gives the attempt back: max_attempts + 1), not left to expire
    // and be rescued, though the jobs in hand outlasted its lease (3 s here).
    assert_eq!(
        states,
        [
            (JobState::Succeeded, 1, 3),
            (JobState::Succeeded, 1, 3),
            (JobState::Queued, 1, 4),
        ]
    );
    assert_eq!(stack.fake.messages().len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn grids_claimed_together_are_drawn_as_one_batch() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    let prompts = [
        "a red boat --seed 1",
        "a green hill --seed 2",
        "a grey cat --seed 3",
    ];
    let mut ids = Vec::new();
    for (n, prompt) in prompts.iter().enumerate() {
        let (id, token) = new_interaction();
        let member = Member::new(&format!("12000000000000006{n:02}"), "user");
        acked(&stack, &interactions::imagine(&id, &token, &member, prompt)).await;
        ids.push(id);
    }
    stack
        .start_engine(&[("WORDUP_ENGINE_BATCH", "3")])
        .await
        .unwrap();
    let messages = stack.fake.wait_for_messages(3, POST_TIMEOUT).await.unwrap();
    let posted_jobs: Vec<JobId> = messages.iter().map(assert_grid).collect();
    for id in &ids {
        let job = job_made_by(&stack, id).await.unwrap().id;
        wait_for_state(&stack, job, JobState::Succeeded).await;
        assert!(posted_jobs.contains(&job), "job {job} posted");
    }
    for job in &posted_jobs {
        let posts = posted_jobs.iter().filter(|j| *j == job).count();
        assert_eq!(posts, 1, "job {job} posted once");
    }
    // Each prompt's grid went to its own interaction, with its own seed.
    for (message, prompt) in messages.iter().zip(prompts) {
        let content = message.payload["content"].as_str().unwrap();
        let seed = prompt.rsplit(' ').next().unwrap();
        assert!(
            content.contains(&format!("seed {seed}")),
            "{prompt}: {content}"
        );
    }
    let engine = stack
        .http
        .get(format!("{}/metrics", stack.engine_url()))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for expected in [
        "wordup_batched_grids_count 1",
        "wordup_batched_grids_sum 3.0",
        "wordup_jobs_total{kind=\"imagine\",outcome=\"done\"} 3",
    ] {
        assert!(engine.contains(expected), "{expected} in:\n{engine}");
    }
}

#[tokio::test]
async fn register_commands_puts_the_definitions_for_a_guild_or_globally() {
    let stack = Stack::start().await.unwrap();
    for (args, path) in [
        (
            vec!["register-commands", "--guild", "1200000000000000002"],
            "/api/v10/applications/1200000000000000001/guilds/1200000000000000002/commands",
        ),
        (
            vec!["register-commands"],
            "/api/v10/applications/1200000000000000001/commands",
        ),
    ] {
        let output =
            tokio::process::Command::new(wordup_tests::stack::workspace_bin("wordup-bot").unwrap())
                .args(&args)
                .env("DATABASE_URL", stack.db.url())
                .env("WORDUP_DISCORD_BOT_TOKEN", interactions::BOT_TOKEN)
                .env(
                    "WORDUP_DISCORD_APPLICATION_ID",
                    interactions::APPLICATION_ID,
                )
                .env("WORDUP_DISCORD_API_URL", &stack.fake.url)
                .output()
                .await
                .unwrap();
        assert!(
            output.status.success(),
            "{}",
            String::from_utf8_lossy(&output.stderr)
        );
        let stdout = String::from_utf8_lossy(&output.stdout);
        assert!(
            stdout.contains(
                "/imagine, /imagine-analyze, /describe, /board, /Describe, /settings, /queue, /cancel, /help"
            ),
            "{stdout}"
        );
        let put = stack
            .fake
            .requests()
            .into_iter()
            .rfind(|r| r.method == "PUT")
            .unwrap();
        assert_eq!(put.path, path);
        let names: Vec<&str> = put
            .json
            .as_ref()
            .unwrap()
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["name"].as_str().unwrap())
            .collect();
        assert_eq!(
            names,
            [
                "imagine",
                "imagine-analyze",
                "describe",
                "board",
                "Describe",
                "settings",
                "queue",
                "cancel",
                "help"
            ]
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_markdown_in_a_prompt_is_posted_as_typed() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();
    let prompt = "[Free Nitro](https://evil.example) a fox in the snow";
    let (id, token) = new_interaction();
    acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), &format!("{prompt} --seed 4")),
    )
    .await;
    let messages = stack.fake.wait_for_messages(1, POST_TIMEOUT).await.unwrap();
    wait_for_state(&stack, job_of(&messages[0]), JobState::Succeeded).await;
    let posted = &messages[0].payload;
    let alt = posted["attachments"][0]["description"].as_str().unwrap();
    assert!(
        alt.chars().count() <= 1000,
        "{} characters",
        alt.chars().count()
    );
    let content = posted["content"].as_str().unwrap();
    assert!(
        content.contains("\\[Free Nitro\\]\\(https://evil.example\\)"),
        "{content}"
    );
    assert!(!content.contains("[Free Nitro](https"), "{content}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_right_after_a_deferred_ack_still_enqueues_the_job() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    // Alice's enqueue waits on her quota lock, so the bot must defer its ack.
    let mut hold = stack.queue.pool().begin().await.unwrap();
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(format!("wordup-user:discord:{}", alice().user_id))
        .execute(&mut *hold)
        .await
        .unwrap();
    let (id, token) = new_interaction();
    let answer = acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a harbour at dawn --seed 5"),
    )
    .await;
    assert_eq!(answer.body["type"], 5, "a deferred ack: {:?}", answer.body);
    // The orchestrator stops the bot while the enqueue is still waiting.
    stack.signal_bot().unwrap();
    tokio::time::sleep(Duration::from_millis(500)).await;
    assert!(!stack.bot_exited(), "the bot waits for the acked command");
    hold.commit().await.unwrap();
    stack.stop_bot().await.unwrap();
    let job = job_made_by(&stack, &id).await;
    assert!(job.is_some(), "the acked command was enqueued before exit");
    // And its requester was told its place in line before the bot exited.
    wait_for_original_edit(&stack, &token, "next in line").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_whose_last_attempt_dies_is_announced_once() {
    let mut stack = Stack::start().await.unwrap();
    start_bot_with_env(&mut stack, &[("WORDUP_MAX_ATTEMPTS", "1")]).await;
    // The engine hangs in its post and is killed there: its lease expires
    // with no attempt left, and nobody settles the job.
    stack.fake.push_fault(Fault::Hold(Duration::from_secs(120)));
    stack.start_engine(&[]).await.unwrap();
    let (id, token) = new_interaction();
    acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a bridge --seed 8"),
    )
    .await;
    let messages = stack.fake.wait_for_messages(1, POST_TIMEOUT).await.unwrap();
    let job = job_of(&messages[0]);
    stack.kill_engine().await.unwrap();
    // Another engine rescues the job as failed and tells the requester.
    stack.start_engine(&[]).await.unwrap();
    wait_for_state(&stack, job, JobState::Failed).await;
    let told = wait_for_original_edit(&stack, &token, "the engine stopped").await;
    assert!(told.contains("failed"), "{told}");
    // Later sweeps do not tell again.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let notices = original_edits(&stack, &token)
        .into_iter()
        .filter(|content| content.contains("the engine stopped"))
        .count();
    assert_eq!(notices, 1);
}

#[tokio::test]
async fn an_over_long_prompt_is_refused_at_once_with_its_count_and_costs_no_quota() {
    let mut stack = Stack::start().await.unwrap();
    let tokenizer = stack.tokenizer_dir().display().to_string();
    start_bot_with_env(&mut stack, &[("WORDUP_TOKENIZER_DIR", &tokenizer)]).await;
    let (id, token) = new_interaction();
    // Well within the 1000 characters, but over 300 of the model's tokens.
    let prompt = "fox ".repeat(200);
    let answer = send(
        &stack,
        &interactions::imagine(&id, &token, &alice(), prompt.trim_end()),
    )
    .await;
    assert_eq!(answer.body["type"], 4, "{:?}", answer.body);
    let content = answer.body["data"]["content"].as_str().unwrap();
    assert!(
        content.contains("tokens long; the limit is 300"),
        "{content}"
    );
    assert_eq!(
        job_count(&stack).await,
        0,
        "nothing queued, nothing charged"
    );
    // A prompt within the limit is queued as before.
    let (id, token) = new_interaction();
    acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a fox in the snow"),
    )
    .await;
    assert_eq!(job_count(&stack).await, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_ones_own_queued_job_and_its_ack_then_says_so() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    let (id, token) = new_interaction();
    acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a red kite --seed 2"),
    )
    .await;
    let job = job_made_by(&stack, &id).await.unwrap().id;
    let cancel = |member: Member, options: Value| {
        let stack = &stack;
        async move {
            let (id, token) = new_interaction();
            let answer = send(
                stack,
                &interactions::command(&id, &token, &member, "cancel", options),
            )
            .await;
            assert_eq!(answer.body["data"]["flags"], 64, "{:?}", answer.body);
            answer.body["data"]["content"].as_str().unwrap().to_owned()
        }
    };
    let bob = Member::new("1200000000000000200", "bob");
    let options = json!([{ "name": "job", "type": 4, "value": job.0 }]);
    for (member, options, expected) in [
        (
            bob.clone(),
            options.clone(),
            format!("job {job} is not yours"),
        ),
        (bob, json!([]), "you have no jobs".to_owned()),
        (
            alice(),
            json!([{ "name": "job", "type": 4, "value": 999_999 }]),
            "there is no job 999999".to_owned(),
        ),
    ] {
        let text = cancel(member, options).await;
        assert!(text.contains(&expected), "{text}");
        assert_eq!(
            stack.queue.job(job).await.unwrap().unwrap().state,
            JobState::Queued
        );
    }
    // Alice's only job needs no number.
    let text = cancel(alice(), json!([])).await;
    assert!(text.contains(&format!("Cancelled job {job}")), "{text}");
    assert_eq!(
        stack.queue.job(job).await.unwrap().unwrap().state,
        JobState::Cancelled
    );
    let text = cancel(alice(), options).await;
    assert!(text.contains("already finished"), "{text}");
    // An engine's sweep tells the channel, in the ack, once.
    stack.start_engine(&[]).await.unwrap();
    let told = wait_for_original_edit(&stack, &token, "cancelled").await;
    assert!(told.starts_with("⚠️"), "{told}");
    assert!(stack.fake.messages().is_empty(), "nothing drawn or posted");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_no_engine_can_read_fails_and_its_requester_is_told() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    let (id, token) = new_interaction();
    acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a paper boat --seed 1"),
    )
    .await;
    let job = job_made_by(&stack, &id).await.unwrap().id;
    // A request kind from a newer release, say.
    sqlx::query("UPDATE jobs SET request = '{\"kind\": \"from_the_future\"}' WHERE id = $1")
        .bind(job.0)
        .execute(stack.queue.pool())
        .await
        .unwrap();
    stack.start_engine(&[]).await.unwrap();
    wait_for_state(&stack, job, JobState::Failed).await;
    let told = wait_for_original_edit(&stack, &token, "cannot read this job").await;
    assert!(told.contains("failed"), "{told}");
    assert!(stack.fake.messages().is_empty());
}

/// The pixels of a stored PNG.
fn pixels(png: &[u8]) -> image::RgbImage {
    image::load_from_memory(png).unwrap().to_rgb8()
}

/// (largest, mean) difference per channel between two images of one size.
fn pixel_difference(a: &image::RgbImage, b: &image::RgbImage) -> (u8, f64) {
    assert_eq!(a.dimensions(), b.dimensions());
    let differences: Vec<u8> = a
        .as_raw()
        .iter()
        .zip(b.as_raw())
        .map(|(x, y)| x.abs_diff(*y))
        .collect();
    let mean = differences.iter().map(|d| f64::from(*d)).sum::<f64>() / differences.len() as f64;
    (differences.into_iter().max().unwrap_or(0), mean)
}

/// The message a job's result was posted as.
fn message_of(stack: &Stack, job: JobId) -> Message {
    stack
        .fake
        .messages()
        .into_iter()
        .find(|m| !m.button_rows().is_empty() && job_of(m) == job)
        .unwrap_or_else(|| panic!("no message for job {job}"))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_says_so_and_its_upscale_starts_from_the_full_decode() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    // One prompt and seed drawn in full, then as a draft: the same latents.
    let mut grids = Vec::new();
    for (n, prompt) in ["a barn at noon --seed 5", "a barn at noon --seed 5 --draft"]
        .into_iter()
        .enumerate()
    {
        let (id, token) = new_interaction();
        acked(
            &stack,
            &interactions::imagine(&id, &token, &alice(), prompt),
        )
        .await;
        let messages = stack
            .fake
            .wait_for_messages(n + 1, POST_TIMEOUT)
            .await
            .unwrap();
        let grid = messages[n].clone();
        let job = assert_grid(&grid);
        wait_for_state(&stack, job, JobState::Succeeded).await;
        grids.push((job, grid));
    }
    let [(full_job, full_grid), (draft_job, draft_grid)] = &grids[..] else {
        unreachable!()
    };
    let content = |m: &Message| m.payload["content"].as_str().unwrap().to_owned();
    assert!(
        content(draft_grid).contains("seed 5 · 1:1 · draft"),
        "{}",
        content(draft_grid)
    );
    assert!(
        !content(full_grid).contains("draft"),
        "{}",
        content(full_grid)
    );
    let draft_request = stack.queue.job(*draft_job).await.unwrap().unwrap();
    let Request::Imagine(imagine) = &draft_request.request else {
        panic!("not an imagine")
    };
    assert!(imagine.draft);
    assert!(draft_request.batch_key.ends_with(":draft"));

    // The draft grid is the draft decoder's picture of the full one's
    // latents, and keeps them; the full one keeps none.
    let full_images = stack.queue.images(*full_job).await.unwrap();
    let draft_images = stack.queue.images(*draft_job).await.unwrap();
    assert_eq!((full_images.len(), draft_images.len()), (4, 4));
    for (full, draft) in full_images.iter().zip(&draft_images) {
        assert_eq!(full.draft_latents, None);
        assert!(draft.draft_latents.is_some());
        assert_eq!(full.seed, draft.seed);
        let (_, mean) = pixel_difference(&pixels(&full.png), &pixels(&draft.png));
        eprintln!(
            "image {}: draft and full {mean:.1} apart on average",
            full.idx + 1
        );
        assert!(
            mean > 10.0,
            "the draft is another decoder's picture: {mean}"
        );
    }
    let provenance = wordup_engine::finish::output::png_text(&draft_images[0].png).unwrap();
    assert!(
        provenance.iter().any(|(k, _)| k == "draft_decoder"),
        "{provenance:?}"
    );

    // U1 on each: the draft's upscale is the full one's.
    let mut upscales = Vec::new();
    for (job, grid) in [(full_job, full_grid), (draft_job, draft_grid)] {
        let (id, token) = new_interaction();
        let u1 = format!("wu:u:{job}:0");
        acked(
            &stack,
            &interactions::button(&id, &token, &alice(), &u1, &grid.json()),
        )
        .await;
        // A press is acked before its job is enqueued, under the button's key.
        let deadline = Instant::now() + Duration::from_secs(30);
        let key = format!("discord:button:{u1}");
        let upscale = loop {
            if let Some(job) = stack.queue.job_by_idempotency_key(&key).await.unwrap() {
                break job.id;
            }
            assert!(Instant::now() < deadline, "U1 on job {job} made no job");
            tokio::time::sleep(Duration::from_millis(50)).await;
        };
        upscales.push(upscale);
    }
    let [full_upscale, draft_upscale] = upscales[..] else {
        unreachable!()
    };
    for job in [full_upscale, draft_upscale] {
        wait_for_state(&stack, job, JobState::Succeeded).await;
    }
    let draft_message = message_of(&stack, draft_upscale);
    assert!(
        !content(&draft_message).contains("draft"),
        "{}",
        content(&draft_message)
    );
    let stored = |job: JobId| {
        let queue = stack.queue.clone();
        async move { queue.image(job, 0).await.unwrap().unwrap() }
    };
    let (full_up, draft_up) = (stored(full_upscale).await, stored(draft_upscale).await);
    assert_eq!(draft_up.draft_latents, None);
    assert_eq!((draft_up.width, draft_up.height), (256, 256));
    // The VAE decoded the draft's image alone and the full grid's four at
    // once: at most rounding apart, where the draft's own picture is far off.
    let (largest, mean) = pixel_difference(&pixels(&full_up.png), &pixels(&draft_up.png));
    eprintln!(
        "upscales of the full and the draft image 1: largest {largest}, mean {mean:.3} apart"
    );
    assert!(largest <= 8 && mean < 0.5, "largest {largest}, mean {mean}");

    // 🔄 on the draft draws a draft again.
    let (id, token) = new_interaction();
    acked(
        &stack,
        &interactions::button(
            &id,
            &token,
            &alice(),
            &format!("wu:r:{draft_job}"),
            &draft_grid.json(),
        ),
    )
    .await;
    let messages = stack.fake.wait_for_messages(5, POST_TIMEOUT).await.unwrap();
    let reroll = &messages[4];
    let reroll_job = assert_grid(reroll);
    assert!(
        content(reroll).contains("re-roll") && content(reroll).contains("· draft"),
        "{}",
        content(reroll)
    );
    wait_for_state(&stack, reroll_job, JobState::Succeeded).await;
    let rerolled = stack.queue.images(reroll_job).await.unwrap();
    assert!(rerolled.iter().all(|image| image.draft_latents.is_some()));
}

/// Every edit of an interaction's original response that uploaded a file,
/// with its content and the file's bytes.
fn preview_edits(stack: &Stack, token: &str) -> Vec<(String, Vec<u8>)> {
    let path = format!("{token}/messages/@original");
    stack
        .fake
        .requests()
        .into_iter()
        .filter(|r| r.method == "PATCH" && r.path.ends_with(&path) && r.status == 200)
        .filter_map(|r| {
            let file = r.files.first()?;
            let listed = r.json.as_ref()?["attachments"].as_array()?.len();
            assert_eq!(listed, 1, "the preview, listed as the one attachment");
            assert!(file.filename.ends_with("-preview.jpg"), "{}", file.filename);
            let content = r.json.as_ref()?["content"].as_str()?.to_owned();
            Some((content, file.bytes.clone()))
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn progress_edits_show_a_preview_that_the_result_replaces() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack
        .start_engine(&[("WORDUP_PROGRESS_EDIT_SECS", "0.05")])
        .await
        .unwrap();

    let mut tokens = Vec::new();
    for (n, prompt) in [
        "a harbour at dawn --steps 6 --seed 3",
        "a harbour at dawn --seed 3",
    ]
    .into_iter()
    .enumerate()
    {
        let (id, token) = new_interaction();
        acked(
            &stack,
            &interactions::imagine(&id, &token, &alice(), prompt),
        )
        .await;
        let messages = stack
            .fake
            .wait_for_messages(n + 1, POST_TIMEOUT)
            .await
            .unwrap();
        wait_for_state(&stack, assert_grid(&messages[n]), JobState::Succeeded).await;
        wait_for_original_edit(&stack, &token, "done").await;
        tokens.push(token);
    }

    // Six steps: a preview while denoising, a 2×2 grid of the tiny model's
    // 64-pixel images, decoded by its draft decoder.
    let previews = preview_edits(&stack, &tokens[0]);
    assert!(
        !previews.is_empty(),
        "{:?}",
        original_edits(&stack, &tokens[0])
    );
    for (content, bytes) in &previews {
        // Made while denoising; shown with the latest stage's text.
        assert!(
            content.contains("denoising") || content.contains("decoding"),
            "{content}"
        );
        let image = image::load_from_memory_with_format(bytes, image::ImageFormat::Jpeg).unwrap();
        assert_eq!((image.width(), image.height()), (128, 128));
    }
    // The result replaced it: the ack says done and shows no picture.
    let original = stack.fake.original(&tokens[0]).unwrap();
    assert!(
        original["content"].as_str().unwrap().contains("done"),
        "{original}"
    );
    assert_eq!(original["attachments"], json!([]), "{original}");
    let last = stack
        .fake
        .requests()
        .into_iter()
        .rfind(|r| {
            r.method == "PATCH"
                && r.path
                    .ends_with(&format!("{}/messages/@original", tokens[0]))
        })
        .unwrap();
    assert_eq!(last.json.unwrap()["attachments"], json!([]));

    // One step: nothing to preview.
    assert!(preview_edits(&stack, &tokens[1]).is_empty());
    assert_eq!(
        stack.fake.original(&tokens[1]).unwrap()["attachments"],
        json!([])
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_carry_clip_scores_and_the_concept_check_withholds() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    let (id, token) = new_interaction();
    acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a windmill, watercolor --seed 2"),
    )
    .await;
    let grid = stack.fake.wait_for_messages(1, POST_TIMEOUT).await.unwrap()[0].clone();
    let job = assert_grid(&grid);
    wait_for_state(&stack, job, JobState::Succeeded).await;
    // Every stored image has its score; the message and the alt text list
    // them in reading order, as stored.
    let stored = stack.queue.images(job).await.unwrap();
    let scores: Vec<String> = stored
        .iter()
        .map(|image| format!("{:.1}", image.score.expect("a CLIP score")))
        .collect();
    let content = grid.payload["content"].as_str().unwrap();
    assert!(
        content.contains(&format!("· CLIP {}", scores.join(" / "))),
        "{content} vs {scores:?}"
    );
    let alt = grid.payload["attachments"][0]["description"]
        .as_str()
        .unwrap();
    assert!(
        alt.starts_with(&format!(
            "Four AI-generated images in a grid (CLIP scores {}): a windmill, watercolor",
            scores.join(", ")
        )),
        "{alt}"
    );
    let provenance = wordup_engine::finish::output::png_text(&stored[0].png).unwrap();
    assert!(
        provenance
            .iter()
            .any(|(k, v)| k == "clip_score" && v.parse::<f32>().is_ok()),
        "{provenance:?}"
    );
    // Under it, how the prompt was read, and the phrase shown least.
    let reading = content
        .split_once("\n-# ")
        .map(|(_, r)| r)
        .unwrap_or_default();
    eprintln!("read back: {reading}");
    assert!(
        reading.starts_with("read as subject: a windmill"),
        "{content}"
    );
    assert!(reading.contains("watercolor"), "{content}");
    assert!(reading.contains("least shown: \""), "{content}");

    // A blocked concept CLIP sees (any, at threshold 0) withholds the image
    // as the safety check does.
    stack.stop_engine().await.unwrap();
    stack
        .start_engine(&[
            ("WORDUP_BLOCKED_CONCEPTS", "windmill, tulips"),
            ("WORDUP_CONCEPT_THRESHOLD", "0"),
        ])
        .await
        .unwrap();
    let (id, token) = new_interaction();
    acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a windmill --seed 3"),
    )
    .await;
    let job = job_made_by(&stack, &id).await.unwrap().id;
    wait_for_state(&stack, job, JobState::Succeeded).await;
    assert_eq!(stack.fake.messages().len(), 1, "nothing more posted");
    assert!(
        stack.queue.images(job).await.unwrap().is_empty(),
        "nothing stored"
    );
    let edit = wait_for_original_edit(&stack, &token, "withheld").await;
    assert!(
        edit.contains("all images were withheld by the safety check"),
        "{edit}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn quality_posts_the_best_candidates_by_clip_score() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    // Seeds 10–17 drawn as two plain grids, then as one --quality 2 job.
    let mut jobs = Vec::new();
    for (n, prompt) in [
        "a kite on a beach --seed 10",
        "a kite on a beach --seed 14",
        "a kite on a beach --seed 10 --quality 2",
    ]
    .into_iter()
    .enumerate()
    {
        let (id, token) = new_interaction();
        acked(
            &stack,
            &interactions::imagine(&id, &token, &alice(), prompt),
        )
        .await;
        let grid = stack
            .fake
            .wait_for_messages(n + 1, POST_TIMEOUT)
            .await
            .unwrap()[n]
            .clone();
        let job = assert_grid(&grid);
        wait_for_state(&stack, job, JobState::Succeeded).await;
        jobs.push((job, grid));
    }
    let mut candidates: Vec<(i64, f32)> = Vec::new();
    for (job, _) in &jobs[..2] {
        for image in stack.queue.images(*job).await.unwrap() {
            candidates.push((image.seed, image.score.unwrap()));
        }
    }
    assert_eq!(candidates.len(), 8);
    candidates.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let (quality_job, quality_grid) = &jobs[2];
    let shown: Vec<(i64, f32)> = stack
        .queue
        .images(*quality_job)
        .await
        .unwrap()
        .iter()
        .map(|image| (image.seed, image.score.unwrap()))
        .collect();
    // The four best of the eight, best first, stored in the order shown.
    assert_eq!(shown, candidates[..4], "all: {candidates:?}");
    let content = quality_grid.payload["content"].as_str().unwrap();
    assert!(content.contains("best 4 of 8 by CLIP"), "{content}");

    // U1 upscales the best candidate, whatever its seed.
    let (id, token) = new_interaction();
    let u1 = format!("wu:u:{quality_job}:0");
    acked(
        &stack,
        &interactions::button(&id, &token, &alice(), &u1, &quality_grid.json()),
    )
    .await;
    let upscaled = stack.fake.wait_for_messages(4, POST_TIMEOUT).await.unwrap()[3].clone();
    let content = upscaled.payload["content"].as_str().unwrap();
    assert!(content.contains("image 1 upscaled"), "{content}");
    let upscale_job = job_of(&upscaled);
    wait_for_state(&stack, upscale_job, JobState::Succeeded).await;
    let parent = stack.queue.job(upscale_job).await.unwrap().unwrap();
    assert!(
        matches!(parent.request, Request::Upscale { parent, index: 0, .. } if parent == *quality_job),
        "{:?}",
        parent.request
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imagine_analyze_answers_with_the_reading_and_the_weights_without_drawing() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    let (id, token) = new_interaction();
    let answer = acked(
        &stack,
        &interactions::command(
            &id,
            &token,
            &alice(),
            "imagine-analyze",
            json!([{ "name": "prompt", "type": 3,
                     "value": "a lighthouse, watercolor, in the style of Hokusai --ar 16:9" }]),
        ),
    )
    .await;
    assert_eq!(answer.body["type"], 5, "a deferred ack: {:?}", answer.body);
    let job = job_made_by(&stack, &id).await.unwrap();
    assert!(
        matches!(&job.request, Request::Analyze { prompt } if prompt == "a lighthouse, watercolor, in the style of Hokusai"),
        "{:?}",
        job.request
    );
    wait_for_state(&stack, job.id, JobState::Succeeded).await;
    let text = wait_for_original_edit(&stack, &token, "phrases by weight").await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines[0],
        "How \"a lighthouse, watercolor, in the style of Hokusai\" reads:"
    );
    assert!(lines[1].starts_with("• subject: a lighthouse"), "{text}");
    assert!(
        lines[1].contains("watercolor") && lines[1].contains("Hokusai"),
        "{text}"
    );
    // Three phrases, heaviest first, their weights summing to ~100%.
    let weights: Vec<u32> = lines[2]
        .split(" · ")
        .map(|part| {
            part.rsplit(' ')
                .next()
                .unwrap()
                .trim_end_matches('%')
                .parse()
                .unwrap()
        })
        .collect();
    assert_eq!(weights.len(), 3, "{text}");
    assert!(weights.windows(2).all(|w| w[0] >= w[1]), "{text}");
    assert!((98..=102).contains(&weights.iter().sum::<u32>()), "{text}");
    // Nothing drawn, nothing posted; the answer is the job's result.
    assert!(stack.fake.messages().is_empty());
    assert!(stack.queue.images(job.id).await.unwrap().is_empty());
    assert!(stack.queue.post(job.id, "result").await.unwrap().is_some());
}

fn png_of(width: u32, height: u32) -> Vec<u8> {
    let image = image::RgbImage::from_fn(width, height, |x, y| {
        image::Rgb([(x * 4) as u8, (y * 4) as u8, 128])
    });
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    png
}

/// A PNG whose header claims `side`×`side` pixels over a few bytes of data:
/// a decompression bomb, refused before decoding.
fn bomb(side: u32) -> Vec<u8> {
    let mut png = png_of(8, 8);
    // IHDR's width and height follow the 8-byte signature, length and type;
    // its CRC (over type and data) follows its 13 bytes of data.
    png[16..20].copy_from_slice(&side.to_be_bytes());
    png[20..24].copy_from_slice(&side.to_be_bytes());
    let crc = crc32(&png[12..29]);
    png[29..33].copy_from_slice(&crc.to_be_bytes());
    png
}

/// PNG's CRC-32 (IEEE, reflected), bit by bit.
fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for byte in bytes {
        crc ^= u32::from(*byte);
        for _ in 0..8 {
            crc = if crc & 1 == 1 {
                (crc >> 1) ^ 0xEDB8_8320
            } else {
                crc >> 1
            };
        }
    }
    !crc
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_suggests_four_prompts_whose_buttons_draw_them() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    let url = stack
        .fake
        .host_attachment("sketch.png", "image/png", png_of(64, 64));
    let attachment =
        interactions::attachment("1400000000000000001", "sketch.png", "image/png", 900, &url);
    let (id, token) = new_interaction();
    let answer = acked(
        &stack,
        &interactions::describe(&id, &token, &alice(), &attachment),
    )
    .await;
    assert_eq!(answer.body["type"], 5, "{:?}", answer.body);
    let job = job_made_by(&stack, &id).await.unwrap();
    assert!(
        matches!(job.request, Request::Describe {}),
        "{:?}",
        job.request
    );
    wait_for_state(&stack, job.id, JobState::Succeeded).await;
    let text = wait_for_original_edit(&stack, &token, "Prompts for this image").await;
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    for (i, line) in lines[1..].iter().enumerate() {
        assert!(line.starts_with(&format!("{}. ", i + 1)), "{text}");
    }
    // The suggestions are stored, one per button under the answer.
    let original = stack.fake.original(&token).unwrap();
    let buttons: Vec<String> = original["components"][0]["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| b["custom_id"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        buttons,
        (0..4)
            .map(|i| format!("wu:p:{}:{i}", job.id))
            .collect::<Vec<_>>()
    );
    let second = stack.queue.suggestion(job.id, 1).await.unwrap().unwrap();
    assert_eq!(lines[2], format!("2. {second}"));
    assert!(stack.fake.messages().is_empty(), "nothing drawn yet");

    // "Use 2": an /imagine of the second suggestion, drawn into the channel.
    let (id2, token2) = new_interaction();
    let message = json!({ "id": original["id"], "content": original["content"], "attachments": [], "components": original["components"] });
    acked(
        &stack,
        &interactions::button(&id2, &token2, &alice(), &buttons[1], &message),
    )
    .await;
    let grid = stack.fake.wait_for_messages(1, POST_TIMEOUT).await.unwrap()[0].clone();
    let drawn = stack.queue.job(assert_grid(&grid)).await.unwrap().unwrap();
    assert!(
        matches!(&drawn.request, Request::Imagine(r) if r.prompt == second),
        "{:?}",
        drawn.request
    );

    // The message command on a message with the same image.
    let (id3, token3) = new_interaction();
    acked(
        &stack,
        &interactions::describe_message(&id3, &token3, &alice(), json!([attachment])),
    )
    .await;
    wait_for_original_edit(&stack, &token3, "Prompts for this image").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_refuses_oversized_non_image_and_bomb_attachments_with_a_message() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    let jobs_before = job_count(&stack).await;
    let cases = [
        // Refused on what Discord says, before any fetch.
        (
            "big.png",
            "image/png",
            14_200_000u64,
            png_of(8, 8),
            "that file is 14.2 MB; the limit is 10 MB",
        ),
        (
            "notes.txt",
            "text/plain",
            12,
            b"hello there".to_vec(),
            "not a PNG, JPEG or WebP image",
        ),
        // Refused on the bytes: a type that lies, and a bomb.
        (
            "fake.png",
            "image/png",
            12,
            b"GIF89a......".to_vec(),
            "not a PNG, JPEG or WebP image",
        ),
        (
            "bomb.png",
            "image/png",
            100,
            bomb(20_000),
            "20000×20000 pixels; the limit is 40 megapixels",
        ),
    ];
    for (i, (name, content_type, size, bytes, expected)) in cases.into_iter().enumerate() {
        let url = stack.fake.host_attachment(name, content_type, bytes);
        let attachment = interactions::attachment(
            &format!("14000000000000001{i:02}"),
            name,
            content_type,
            size,
            &url,
        );
        let (id, token) = new_interaction();
        let answer = send(
            &stack,
            &interactions::describe(&id, &token, &alice(), &attachment),
        )
        .await;
        let text = match answer.body["type"].as_u64() {
            Some(4) => answer.body["data"]["content"].as_str().unwrap().to_owned(),
            // Deferred while fetching: the outcome comes as an edit.
            _ => wait_for_original_edit(&stack, &token, "⚠️").await,
        };
        assert!(text.contains(expected), "{name}: {text}");
    }
    // A link elsewhere is never fetched.
    let attachment = interactions::attachment(
        "1400000000000000199",
        "x.png",
        "image/png",
        10,
        "https://evil.example.com/x.png",
    );
    let (id, token) = new_interaction();
    let answer = send(
        &stack,
        &interactions::describe(&id, &token, &alice(), &attachment),
    )
    .await;
    let text = match answer.body["type"].as_u64() {
        Some(4) => answer.body["data"]["content"].as_str().unwrap().to_owned(),
        _ => wait_for_original_edit(&stack, &token, "⚠️").await,
    };
    assert!(
        text.contains("only fetched from Discord's own file hosts"),
        "{text}"
    );
    assert_eq!(
        job_count(&stack).await,
        jobs_before,
        "no job for a refused image"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permutation_prompt_queues_one_job_per_prompt_within_the_quota() {
    let mut stack = Stack::start().await.unwrap();
    stack
        .bot_env
        .push(("WORDUP_MAX_JOBS_PER_DAY".into(), "2".into()));
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    // A bad expansion is refused before anything is queued.
    let (id, token) = new_interaction();
    let answer = acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a fox --steps {1, 99}"),
    )
    .await;
    let text = answer.body["data"]["content"].as_str().unwrap_or_default();
    assert!(text.contains("in `a fox --steps 99`"), "{text}");
    assert_eq!(job_count(&stack).await, 0);

    // Three prompts, two left in today's quota: two jobs, the third refused.
    let (id, token) = new_interaction();
    let answer = acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a {red, blue, green} fox"),
    )
    .await;
    assert_eq!(answer.body["type"], 5, "{:?}", answer.body);
    let summary = wait_for_original_edit(&stack, &token, "3 prompts").await;
    assert!(summary.contains("1. a red fox — "), "{summary}");
    assert!(summary.contains("2. a blue fox — "), "{summary}");
    assert!(
        summary.contains("3. a green fox — not queued: you have reached today's limit of 2"),
        "{summary}"
    );
    let mut prompts = Vec::new();
    for n in 1..=2 {
        let job = stack
            .queue
            .job_by_idempotency_key(&format!("discord:{id}#{n}"))
            .await
            .unwrap()
            .unwrap();
        let Request::Imagine(request) = &job.request else {
            panic!("not an imagine: {:?}", job.request)
        };
        prompts.push(request.prompt.clone());
    }
    assert_eq!(prompts, ["a red fox", "a blue fox"]);
    assert_eq!(job_count(&stack).await, 2);
    // Each result is a message of its own; the summary stays as it is.
    let posted = stack.fake.wait_for_messages(2, POST_TIMEOUT).await.unwrap();
    for message in &posted {
        assert_grid(message);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let edits = original_edits(&stack, &token);
    assert_eq!(edits.last(), Some(&summary), "{edits:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_image_prompt_draws_from_the_attached_image() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    // --iw without an image is refused at once.
    let (id, token) = new_interaction();
    let answer = acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a fox --iw 1.5"),
    )
    .await;
    let text = answer.body["data"]["content"].as_str().unwrap_or_default();
    assert!(text.contains("`--iw` weighs the prompt's image"), "{text}");

    // A wide image: the grid takes its shape, and the image is kept as the
    // job's input.
    let url = stack
        .fake
        .host_attachment("wide.png", "image/png", png_of(160, 90));
    let attachment =
        interactions::attachment("1400000000000000201", "wide.png", "image/png", 900, &url);
    let (id, token) = new_interaction();
    acked(
        &stack,
        &interactions::imagine_with_image(&id, &token, &alice(), "a fox --iw 1.5", &attachment),
    )
    .await;
    let job = {
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Some(job) = job_made_by(&stack, &id).await {
                break job;
            }
            assert!(Instant::now() < deadline, "no job");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    let Request::Imagine(request) = &job.request else {
        panic!("not an imagine: {:?}", job.request)
    };
    assert_eq!(request.image_weight, Some(1.5));
    assert_eq!((request.aspect.width, request.aspect.height), (16, 9));
    assert!(job.batch_key.ends_with(":image"), "{}", job.batch_key);
    let kept = stack
        .queue
        .input(&format!("discord:{id}"))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(png_size(&kept), (160, 90));
    let posted = stack.fake.wait_for_messages(1, POST_TIMEOUT).await.unwrap();
    assert_eq!(assert_grid(&posted[0]), job.id);
    assert!(
        posted[0].payload["content"]
            .as_str()
            .unwrap_or_default()
            .contains("from your image"),
        "{}",
        posted[0].payload["content"]
    );

    // A file that is not an image is refused before anything is queued.
    let url = stack
        .fake
        .host_attachment("notes.txt", "text/plain", b"hello".to_vec());
    let attachment =
        interactions::attachment("1400000000000000202", "notes.txt", "text/plain", 5, &url);
    let (id, token) = new_interaction();
    let answer = acked(
        &stack,
        &interactions::imagine_with_image(&id, &token, &alice(), "a fox", &attachment),
    )
    .await;
    let text = answer.body["data"]["content"].as_str().unwrap_or_default();
    assert!(text.contains("not a PNG, JPEG or WebP image"), "{text}");
    assert!(job_made_by(&stack, &id).await.is_none());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remix_opens_a_prefilled_form_and_draws_the_edited_prompt_from_the_image() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    let (id, token) = new_interaction();
    acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a red fox --ar 3:2 --no snow"),
    )
    .await;
    let grid = stack.fake.wait_for_messages(1, POST_TIMEOUT).await.unwrap()[0].clone();
    let parent = assert_grid(&grid);
    wait_for_state(&stack, parent, JobState::Succeeded).await;
    let remix_id = format!("wu:m:{parent}");
    assert!(grid.button_rows()[2].iter().any(|(id, _)| *id == remix_id));

    // The press answers with the modal, prefilled with the grid's /imagine.
    let (press, press_token) = new_interaction();
    let message = grid.json();
    let answer = send(
        &stack,
        &interactions::button(&press, &press_token, &alice(), &remix_id, &message),
    )
    .await;
    assert_eq!(answer.body["type"], 9, "{:?}", answer.body);
    let form = &answer.body["data"];
    assert!(form["title"].as_str().unwrap().chars().count() <= 45);
    let form_id = form["custom_id"].as_str().unwrap().to_owned();
    let inputs: Vec<&Value> = form["components"]
        .as_array()
        .unwrap()
        .iter()
        .map(|row| &row["components"][0])
        .collect();
    assert_eq!(inputs[0]["value"], "a red fox --ar 3:2 --no snow");
    assert_eq!(inputs[1]["value"], "1");
    for input in &inputs {
        assert_eq!(input["type"], 4);
        assert!(input["label"].as_str().unwrap().chars().count() <= 45);
    }

    // A bad image number is refused with a message; nothing is queued.
    let jobs = job_count(&stack).await;
    let (bad, bad_token) = new_interaction();
    let answer = acked(
        &stack,
        &interactions::modal_submit(
            &bad,
            &bad_token,
            &alice(),
            &form_id,
            &[("prompt", "a blue fox"), ("image", "7")],
            &message,
        ),
    )
    .await;
    let text = answer.body["data"]["content"].as_str().unwrap_or_default();
    assert!(text.contains("write 1, 2, 3 or 4"), "{text}");
    assert_eq!(job_count(&stack).await, jobs);

    // The edited prompt, from image 2: a variation with the new prompt.
    let (submit, submit_token) = new_interaction();
    acked(
        &stack,
        &interactions::modal_submit(
            &submit,
            &submit_token,
            &alice(),
            &form_id,
            &[
                ("prompt", "a blue fox in the rain --ar 3:2"),
                ("image", "2"),
            ],
            &message,
        ),
    )
    .await;
    let posted = stack.fake.wait_for_messages(2, POST_TIMEOUT).await.unwrap();
    let remixed = stack
        .queue
        .job(assert_grid(&posted[1]))
        .await
        .unwrap()
        .unwrap();
    match &remixed.request {
        Request::Vary {
            parent: p,
            index: 1,
            remix: Some(remix),
            ..
        } => {
            assert_eq!(*p, parent);
            assert_eq!(remix.prompt, "a blue fox in the rain");
            assert_eq!(remix.negative_prompt, None);
        }
        other => panic!("not a remix of image 2: {other:?}"),
    }
    assert!(
        posted[1].payload["content"]
            .as_str()
            .unwrap_or_default()
            .contains("remix of image 2"),
        "{}",
        posted[1].payload["content"]
    );
    assert!(
        posted[1].payload["content"]
            .as_str()
            .unwrap_or_default()
            .contains("a blue fox in the rain"),
        "{}",
        posted[1].payload["content"]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn votes_count_once_per_person_and_the_board_shows_them_behind_a_signed_link() {
    const SECRET: &str = "board-secret-for-tests";
    let mut stack = Stack::start().await.unwrap();
    let public = stack.public_url();
    stack.bot_env.extend([
        ("WORDUP_BOARD_SECRET".to_owned(), SECRET.to_owned()),
        ("WORDUP_PUBLIC_URL".to_owned(), public.clone()),
    ]);
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    let (id, token) = new_interaction();
    acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "a <b>bold</b> lighthouse"),
    )
    .await;
    let grid = stack.fake.wait_for_messages(1, POST_TIMEOUT).await.unwrap()[0].clone();
    let job = assert_grid(&grid);
    wait_for_state(&stack, job, JobState::Succeeded).await;
    let vote = format!("wu:l:{job}");

    // 👍 updates the message in place with the count; a second press by the
    // same person takes the vote back; another person's counts.
    let press = |member: Member| {
        let (id, token) = new_interaction();
        interactions::button(&id, &token, &member, &vote, &grid.json())
    };
    let label = |answer: &interactions::Answer| {
        assert_eq!(answer.body["type"], 7, "{:?}", answer.body);
        answer.body["data"]["components"][2]["components"][2]["label"]
            .as_str()
            .unwrap()
            .to_owned()
    };
    assert_eq!(label(&send(&stack, &press(alice())).await), "👍 1");
    assert_eq!(label(&send(&stack, &press(alice())).await), "👍");
    let bob = Member::new("1200000000000000200", "bob");
    assert_eq!(label(&send(&stack, &press(alice())).await), "👍 1");
    assert_eq!(label(&send(&stack, &press(bob)).await), "👍 2");
    assert_eq!(stack.queue.votes(job).await.unwrap(), 2);

    // /board: a private link to this channel's board.
    let (id, token) = new_interaction();
    let answer = acked(
        &stack,
        &interactions::command(&id, &token, &alice(), "board", json!([])),
    )
    .await;
    assert_eq!(answer.body["data"]["flags"], 64, "{:?}", answer.body);
    let text = answer.body["data"]["content"].as_str().unwrap();
    let link = text
        .split_whitespace()
        .find(|w| w.starts_with(&format!("{public}/board/")))
        .expect("a board link")
        .to_owned();
    let page = stack.http.get(&link).send().await.unwrap();
    assert_eq!(page.status(), 200);
    let html = page.text().await.unwrap();
    assert!(
        html.contains("a &lt;b&gt;bold&lt;/b&gt; lighthouse"),
        "{html}"
    );
    assert!(!html.contains("<b>bold</b>"));
    assert!(html.contains("👍 2"), "{html}");
    assert!(html.contains(&format!("value=\"{job}-3\"")), "{html}");
    // "Mine" and "most voted" are the same result here; another day has none.
    for filter in ["?mine=1", "?order=votes"] {
        let html = stack
            .http
            .get(format!("{link}{filter}"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(html.contains(&format!("id=\"job-{job}\"")), "{filter}");
    }
    let html = stack
        .http
        .get(format!("{link}?day=2001-01-01"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("No results here yet"), "{html}");

    // Images, full size, with caching headers.
    let png = stack
        .http
        .get(format!("{link}/png/{job}/1"))
        .send()
        .await
        .unwrap();
    assert_eq!(png.status(), 200);
    assert_eq!(png.headers()["content-type"], "image/png");
    assert!(
        png.headers()["cache-control"]
            .to_str()
            .unwrap()
            .contains("immutable")
    );
    let stored = stack.queue.image(job, 1).await.unwrap().unwrap();
    assert_eq!(png.bytes().await.unwrap().to_vec(), stored.png);
    let provenance = stack
        .http
        .get(format!("{link}/image/{job}/1"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        provenance.contains(&format!("seed {}", stored.seed)),
        "{provenance}"
    );

    // A selection as a ZIP of PNGs with metadata, and as a contact sheet.
    let zip = stack
        .http
        .get(format!(
            "{link}/download?pick={job}-0&pick={job}-1&format=zip"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(zip.headers()["content-type"], "application/zip");
    let zip = zip.bytes().await.unwrap().to_vec();
    let mut archive = zip::ZipArchive::new(std::io::Cursor::new(zip)).unwrap();
    assert_eq!(archive.len(), 3);
    let mut metadata = String::new();
    std::io::Read::read_to_string(
        &mut archive.by_name("metadata.json").unwrap(),
        &mut metadata,
    )
    .unwrap();
    assert!(metadata.contains("a <b>bold</b> lighthouse"), "{metadata}");
    let sheet = stack
        .http
        .get(format!("{link}/download?pick={job}-2&format=sheet"))
        .send()
        .await
        .unwrap();
    assert_eq!(sheet.headers()["content-type"], "image/png");

    // Forged, altered, expired and revoked links show nothing.
    let token = link.rsplit('/').next().unwrap().to_owned();
    let (payload, signature) = token.split_once('.').unwrap();
    let mut flipped = signature.to_owned();
    flipped.replace_range(0..1, if flipped.starts_with('0') { "1" } else { "0" });
    let expired = wordup_chat::web::link::sign(
        &wordup_chat::web::link::BoardGrant {
            platform: "discord".into(),
            channel_id: CHANNEL_ID.into(),
            user_id: alice().user_id,
            expires: chrono::Utc::now() - chrono::Duration::minutes(1),
        },
        SECRET.as_bytes(),
    );
    let other_secret = wordup_chat::web::link::sign(
        &wordup_chat::web::link::BoardGrant {
            platform: "discord".into(),
            channel_id: CHANNEL_ID.into(),
            user_id: alice().user_id,
            expires: chrono::Utc::now() + chrono::Duration::days(1),
        },
        b"rotated",
    );
    for bad in [
        format!("{payload}.{flipped}"),
        expired,
        other_secret,
        "not-a-link".to_owned(),
    ] {
        for path in [
            String::new(),
            format!("/png/{job}/0"),
            format!("/download?pick={job}-0"),
        ] {
            let response = stack
                .http
                .get(format!("{public}/board/{bad}{path}"))
                .send()
                .await
                .unwrap();
            assert_eq!(response.status(), 403, "{bad}{path}");
            let body = response.bytes().await.unwrap();
            assert!(
                !body.starts_with(b"\x89PNG") && !body.starts_with(b"PK"),
                "{bad}{path}"
            );
        }
    }
    // A valid link shows only its own channel's results.
    let elsewhere = wordup_chat::web::link::sign(
        &wordup_chat::web::link::BoardGrant {
            platform: "discord".into(),
            channel_id: "1100000000000000999".into(),
            user_id: alice().user_id,
            expires: chrono::Utc::now() + chrono::Duration::days(1),
        },
        SECRET.as_bytes(),
    );
    let response = stack
        .http
        .get(format!("{public}/board/{elsewhere}/png/{job}/0"))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 404);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn weighted_chaotic_tiled_prompts_are_drawn_end_to_end() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    // A weight that cannot work is refused before the queue.
    let (id, token) = new_interaction();
    let answer = acked(
        &stack,
        &interactions::imagine(&id, &token, &alice(), "moss::-2 stone"),
    )
    .await;
    let text = answer.body["data"]["content"].as_str().unwrap_or_default();
    assert!(text.contains("must add up to more than 0"), "{text}");
    assert!(job_made_by(&stack, &id).await.is_none());

    let (id, token) = new_interaction();
    acked(
        &stack,
        &interactions::imagine(
            &id,
            &token,
            &alice(),
            "moss:: stone wall::2 cracks::-0.5 --chaos 60 --tile",
        ),
    )
    .await;
    let posted = stack.fake.wait_for_messages(1, POST_TIMEOUT).await.unwrap();
    let job = stack
        .queue
        .job(assert_grid(&posted[0]))
        .await
        .unwrap()
        .unwrap();
    match &job.request {
        Request::Imagine(request) => {
            assert_eq!(request.prompt, "moss:: stone wall::2 cracks::-0.5");
            assert_eq!((request.chaos, request.tile), (60, true));
        }
        other => panic!("not an imagine: {other:?}"),
    }
    // Tiled jobs are never drawn in one batch with plain ones.
    assert!(job.batch_key.ends_with(":tile"), "{}", job.batch_key);
    assert_eq!(stack.queue.images(job.id).await.unwrap().len(), 4);
}
