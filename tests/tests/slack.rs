#![allow(clippy::unwrap_used)]
//! Slack end to end: signed slash commands and block_actions into
//! `wordup-bot serve` (or Socket Mode), jobs through Postgres into
//! `wordup-engine run` on the tiny model, results uploaded to a fake Slack
//! Web API in the parent message's thread.

use std::time::Duration;

use serde_json::{Value, json};
use wordup_chat::buttons::ButtonId;
use wordup_queue::{JobId, JobState};
use wordup_tests::fake_slack::{FakeSlack, SlackMessage};
use wordup_tests::interactions::Answer;
use wordup_tests::slack_requests::{self as slack, CHANNEL_ID, SIGNING_SECRET};
use wordup_tests::stack::Stack;

const TIMEOUT: Duration = Duration::from_secs(180);
const ALICE: &str = "U0ALICE";

async fn command(stack: &Stack, text: &str) -> (Answer, String) {
    let response_url = stack.slack.response_url();
    let answer = command_named(stack, "/imagine", text, &response_url).await;
    (answer, response_url)
}

async fn press(stack: &Stack, action_id: &str, message: &SlackMessage) -> Answer {
    let payload = slack::block_actions(
        action_id,
        ALICE,
        &message.json(),
        &stack.slack.response_url(),
    );
    interact(stack, &payload).await
}

/// Sends an interactivity payload, signed, and checks it was acked in time.
async fn interact(stack: &Stack, payload: &Value) -> Answer {
    let answer = slack::send_signed(
        &stack.http,
        &stack.slack_interactions(),
        SIGNING_SECRET,
        chrono::Utc::now().timestamp(),
        slack::interaction_form(payload),
    )
    .await
    .unwrap();
    assert_eq!(answer.status, 200);
    assert!(answer.latency < Duration::from_secs(3));
    answer
}

fn parent_of(fake: &FakeSlack) -> SlackMessage {
    fake.messages()
        .into_iter()
        .find(|m| m.channel == CHANNEL_ID && m.thread_ts.is_none())
        .expect("a parent message")
}

/// Waits for the `n`th message with buttons in the thread.
async fn buttons_message(fake: &FakeSlack, parent: &str, n: usize) -> SlackMessage {
    fake.wait_until("buttons in the thread", TIMEOUT, |f| {
        f.thread(CHANNEL_ID, parent)
            .iter()
            .filter(|m| !m.button_rows().is_empty())
            .count()
            >= n
    })
    .await
    .unwrap();
    fake.thread(CHANNEL_ID, parent)
        .into_iter()
        .filter(|m| !m.button_rows().is_empty())
        .nth(n - 1)
        .unwrap()
}

fn png_size(bytes: &[u8]) -> (u32, u32) {
    let image = image::load_from_memory(bytes).unwrap();
    (image.width(), image.height())
}

fn job_of(message: &SlackMessage) -> JobId {
    ButtonId::parse(&message.button_rows()[0][0].0).unwrap().job
}

async fn wait_for_state(stack: &Stack, job: JobId, state: JobState) {
    let deadline = std::time::Instant::now() + TIMEOUT;
    loop {
        let current = stack.queue.job(job).await.unwrap().unwrap().state;
        if current == state {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "job {job} stayed {current:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imagine_in_a_channel_then_upscale_and_reroll_in_its_thread() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    let (answer, _) = command(&stack, "a paper crane --seed 11").await;
    assert_eq!(answer.status, 200);
    assert!(
        answer.latency < Duration::from_secs(3),
        "ack took {:?}",
        answer.latency
    );
    assert_eq!(answer.body["response_type"], "ephemeral");
    assert!(
        answer.body["text"].as_str().unwrap().contains("in line"),
        "{}",
        answer.body
    );

    let parent = parent_of(&stack.slack);
    assert!(parent.text.contains("a paper crane"), "{}", parent.text);
    let grid_buttons = buttons_message(&stack.slack, &parent.ts, 1).await;
    let labels: Vec<Vec<String>> = grid_buttons
        .button_rows()
        .into_iter()
        .map(|r| r.into_iter().map(|(_, l)| l).collect())
        .collect();
    assert_eq!(
        labels,
        [
            vec!["U1", "U2", "U3", "U4"],
            vec!["V1", "V2", "V3", "V4"],
            vec!["🔄", "🎛️ Remix", "👍", "❌"]
        ]
    );
    let job = job_of(&grid_buttons);
    // The grid was uploaded into the thread, with alt text.
    let files = stack.slack.files();
    assert_eq!(files.len(), 1);
    assert_eq!(files[0].thread_ts.as_deref(), Some(parent.ts.as_str()));
    assert_eq!(files[0].channel.as_deref(), Some(CHANNEL_ID));
    assert!(
        files[0].alt_text.starts_with("Four AI-generated images"),
        "{}",
        files[0].alt_text
    );
    assert_eq!(png_size(&files[0].bytes), (128, 128));
    wait_for_state(&stack, job, JobState::Succeeded).await;
    // The parent was posted with the place in line (the job is enqueued
    // first), progress edited it, and the last edit says done.
    let parent_texts: Vec<String> = stack
        .slack
        .calls()
        .into_iter()
        .filter(|c| matches!(c.method.as_str(), "chat.postMessage" | "chat.update"))
        .filter(|c| c.body["thread_ts"].is_null())
        .filter_map(|c| c.body["text"].as_str().map(str::to_owned))
        .collect();
    assert!(parent_texts[0].contains("in line"), "{parent_texts:?}");
    let updates = &parent_texts[1..];
    assert!(parent_of(&stack.slack).text.contains("done"), "{updates:?}");

    // U3 → the upscaled image in the same thread.
    press(&stack, &format!("wu:u:{job}:2"), &grid_buttons).await;
    let upscaled = buttons_message(&stack.slack, &parent.ts, 2).await;
    let labels: Vec<String> = upscaled
        .button_rows()
        .concat()
        .into_iter()
        .map(|(_, l)| l)
        .collect();
    assert_eq!(labels, ["Vary (subtle)", "Vary (strong)", "👍", "❌"]);
    let files = stack.slack.files();
    assert_eq!(files.len(), 2);
    assert_eq!(png_size(&files[1].bytes), (256, 256));
    assert_eq!(files[1].thread_ts.as_deref(), Some(parent.ts.as_str()));
    // The presser was told privately.
    stack
        .slack
        .wait_until("an ephemeral answer", TIMEOUT, |f| {
            f.responses().iter().any(|(_, b)| {
                b["text"]
                    .as_str()
                    .is_some_and(|t| t.contains("Upscaling image 3"))
            })
        })
        .await
        .unwrap();

    // 🔄 → a new grid in the thread.
    press(&stack, &format!("wu:r:{job}"), &grid_buttons).await;
    let rerolled = buttons_message(&stack.slack, &parent.ts, 3).await;
    assert_eq!(rerolled.button_rows().len(), 3);
    assert_ne!(job_of(&rerolled), job);
    assert_eq!(stack.slack.files().len(), 3);
    assert!(
        stack.slack.files()[2]
            .initial_comment
            .as_deref()
            .unwrap()
            .contains("re-roll")
    );

    // ❌: Bob may not; Alice deletes the re-roll's buttons and its image.
    let rerolled_job = job_of(&rerolled);
    let x = format!("wu:x:{rerolled_job}");
    let before = stack.slack.responses().len();
    for (n, (user, expected, buttons_left, files_left)) in [
        ("U0BOB", "only the person who asked", 3, 3),
        (ALICE, "Deleted the result of job", 2, 2),
    ]
    .into_iter()
    .enumerate()
    {
        let payload = slack::block_actions(&x, user, &rerolled.json(), &stack.slack.response_url());
        let answer = slack::send_signed(
            &stack.http,
            &stack.slack_interactions(),
            SIGNING_SECRET,
            chrono::Utc::now().timestamp(),
            slack::interaction_form(&payload),
        )
        .await
        .unwrap();
        assert_eq!(answer.status, 200);
        stack
            .slack
            .wait_until("the presser is told", TIMEOUT, |f| {
                f.responses().len() > before + n
            })
            .await
            .unwrap();
        let last = stack.slack.responses().last().unwrap().1.clone();
        assert!(last["text"].as_str().unwrap().contains(expected), "{last}");
        assert_eq!(last["response_type"], "ephemeral");
        let buttons = stack
            .slack
            .thread(CHANNEL_ID, &parent.ts)
            .iter()
            .filter(|m| !m.button_rows().is_empty())
            .count();
        assert_eq!(buttons, buttons_left, "{user}");
        assert_eq!(stack.slack.files().len(), files_left, "{user}");
    }
}

#[tokio::test]
async fn forged_stale_and_malformed_commands() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    let fields = slack::command_fields("/imagine", "a fox", ALICE, &stack.slack.response_url());
    let now = chrono::Utc::now().timestamp();
    let wrong = slack::send_signed(
        &stack.http,
        &stack.slack_commands(),
        "not-the-secret",
        now,
        slack::form(&fields),
    )
    .await
    .unwrap();
    assert_eq!(wrong.status, 401);
    let stale = slack::send_signed(
        &stack.http,
        &stack.slack_commands(),
        SIGNING_SECRET,
        now - 360,
        slack::form(&fields),
    )
    .await
    .unwrap();
    assert_eq!(stale.status, 401, "a timestamp 6 minutes old");
    let unsigned = stack
        .http
        .post(stack.slack_commands())
        .header("content-type", "application/x-www-form-urlencoded")
        .body(slack::form(&fields))
        .send()
        .await
        .unwrap();
    assert_eq!(unsigned.status().as_u16(), 401);

    let (answer, _) = command(&stack, "a fox --stylize 50").await;
    assert_eq!(answer.body["response_type"], "ephemeral");
    assert!(
        answer.body["text"].as_str().unwrap().contains("--stylize"),
        "{}",
        answer.body
    );
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(stack.queue.pool())
        .await
        .unwrap();
    assert_eq!(jobs, 0);
    assert!(
        stack.slack.messages().is_empty(),
        "no parent message for a refused prompt"
    );

    // Settings and the queue, typed.
    let response_url = stack.slack.response_url();
    let fields = slack::command_fields(
        "/imagine-settings",
        "style=watercolor buttons=requester",
        ALICE,
        &response_url,
    );
    let answer = slack::send_signed(
        &stack.http,
        &stack.slack_commands(),
        SIGNING_SECRET,
        now,
        slack::form(&fields),
    )
    .await
    .unwrap();
    let text = answer.body["text"].as_str().unwrap();
    assert!(
        text.contains("watercolor") && text.contains("only the requester"),
        "{text}"
    );
    let fields = slack::command_fields("/imagine-settings", "nsfw=on", ALICE, &response_url);
    let answer = slack::send_signed(
        &stack.http,
        &stack.slack_commands(),
        SIGNING_SECRET,
        now,
        slack::form(&fields),
    )
    .await
    .unwrap();
    assert!(
        answer.body["text"]
            .as_str()
            .unwrap()
            .contains("marked NSFW")
    );
    let fields = slack::command_fields("/imagine-queue", "", ALICE, &response_url);
    let answer = slack::send_signed(
        &stack.http,
        &stack.slack_commands(),
        SIGNING_SECRET,
        now,
        slack::form(&fields),
    )
    .await
    .unwrap();
    assert!(answer.body["text"].as_str().unwrap().contains("no jobs"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rate_limited_upload_is_retried_after_retry_after_and_posted_once() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.slack.rate_limit("files.completeUploadExternal", 1);
    stack.start_engine(&[]).await.unwrap();
    command(&stack, "a lantern --seed 2").await;
    let parent = parent_of(&stack.slack);
    let buttons = buttons_message(&stack.slack, &parent.ts, 1).await;
    wait_for_state(&stack, job_of(&buttons), JobState::Succeeded).await;
    let completes: Vec<_> = stack
        .slack
        .calls()
        .into_iter()
        .filter(|c| c.method == "files.completeUploadExternal")
        .collect();
    assert_eq!(
        completes.iter().map(|c| c.status).collect::<Vec<_>>(),
        [429, 200]
    );
    assert!(completes[1].at - completes[0].at >= Duration::from_secs(1));
    let posted: Vec<_> = stack.slack.shared_files();
    assert_eq!(posted.len(), 1, "posted once");
    assert_eq!(
        stack.slack.thread(CHANNEL_ID, &parent.ts).len(),
        1,
        "one buttons message"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_whose_answers_timed_out_are_found_and_not_posted_again() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    command(&stack, "a weathervane --seed 8").await;
    let parent = parent_of(&stack.slack);
    // Slack shares the file and posts the buttons, but both answers are
    // lost (its edge answers 504).
    stack.slack.lose_next_answer("files.completeUploadExternal");
    stack.slack.lose_next_answer("chat.postMessage");
    stack.start_engine(&[]).await.unwrap();
    let buttons = buttons_message(&stack.slack, &parent.ts, 1).await;
    let job = job_of(&buttons);
    wait_for_state(&stack, job, JobState::Succeeded).await;
    let shared: Vec<_> = stack.slack.shared_files();
    assert_eq!(shared.len(), 1, "the file is shared once");
    assert_eq!(
        stack.slack.thread(CHANNEL_ID, &parent.ts).len(),
        1,
        "one buttons message"
    );
    let calls = stack.slack.calls();
    let statuses = |method: &str| -> Vec<u16> {
        calls
            .iter()
            .filter(|c| {
                c.method == method
                    && (method != "chat.postMessage" || c.body["thread_ts"].is_string())
            })
            .map(|c| c.status)
            .collect()
    };
    assert_eq!(statuses("files.completeUploadExternal"), [504]);
    assert_eq!(statuses("chat.postMessage"), [504], "not posted again");
    assert!(
        statuses("conversations.replies").len() >= 2,
        "it looked in the thread before each repeat"
    );
    let stored = stack.queue.job(job).await.unwrap().unwrap();
    assert_eq!(stored.attempt, 1, "found within the attempt, not redrawn");
    assert_eq!(
        stack
            .queue
            .post(job, "slack:file")
            .await
            .unwrap()
            .unwrap()
            .message_id,
        shared[0].id
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn socket_mode_acks_on_the_socket_and_the_job_runs() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_slack_socket().await.unwrap();
    stack.start_engine(&[]).await.unwrap();
    let fields = slack::command_fields(
        "/imagine",
        "a comet over hills --seed 4",
        ALICE,
        &stack.slack.response_url(),
    );
    let envelope = slack::command_envelope(&fields);
    stack.slack.push_envelope(envelope.clone()).unwrap();
    stack
        .slack
        .wait_until("the ack", TIMEOUT, |f| {
            f.socket_acks()
                .iter()
                .any(|a| a["envelope_id"] == envelope["envelope_id"])
        })
        .await
        .unwrap();
    let ack: Value = stack
        .slack
        .socket_acks()
        .into_iter()
        .find(|a| a["envelope_id"] == envelope["envelope_id"])
        .unwrap();
    assert_eq!(ack["payload"]["response_type"], "ephemeral");
    assert!(
        ack["payload"]["text"].as_str().unwrap().contains("in line"),
        "{ack}"
    );
    let parent = parent_of(&stack.slack);
    let buttons = buttons_message(&stack.slack, &parent.ts, 1).await;
    wait_for_state(&stack, job_of(&buttons), JobState::Succeeded).await;
    assert_eq!(stack.slack.files().len(), 1);
}

#[test]
fn the_manifest_asks_for_exactly_the_scopes_the_calls_need() {
    let manifest = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../deploy/slack/manifest.yaml"
    ))
    .unwrap();
    let scopes: Vec<&str> = manifest
        .lines()
        .map(str::trim)
        .filter_map(|l| l.strip_prefix("- "))
        .filter(|l| !l.contains(" ") && !l.starts_with("command:"))
        .collect();
    // commands: the slash commands; chat:write: postMessage and update;
    // files:write: getUploadURLExternal and completeUploadExternal;
    // files:read: a shared file's url_private, for the Describe shortcut;
    // *:history: conversations.replies and .history, to look for a post
    // whose answer was lost.
    assert_eq!(
        scopes,
        [
            "commands",
            "chat:write",
            "files:write",
            "files:read",
            "channels:history",
            "groups:history",
            "im:history",
            "mpim:history"
        ]
    );
    for command in [
        "/imagine",
        "/imagine-analyze",
        "/imagine-settings",
        "/imagine-queue",
        "/imagine-cancel",
    ] {
        assert!(
            manifest.contains(&format!("command: {command}\n")),
            "{command}"
        );
    }
    assert!(manifest.contains("/slack/commands") && manifest.contains("/slack/interactions"));
    for shortcut in [
        wordup_chat::slack::handler::DESCRIBE,
        wordup_chat::slack::handler::IMAGINE,
    ] {
        assert!(manifest.contains(&format!("type: message\n      callback_id: {shortcut}\n")));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_hostile_link_in_a_prompt_is_posted_as_typed() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();
    let prompt = "<https://evil.example|Free Nitro> a fox in the snow";
    command(&stack, &format!("{prompt} --seed 4")).await;
    let parent = parent_of(&stack.slack);
    let buttons = buttons_message(&stack.slack, &parent.ts, 1).await;
    wait_for_state(&stack, job_of(&buttons), JobState::Succeeded).await;
    let file = stack
        .slack
        .files()
        .into_iter()
        .find(|f| f.channel.is_some())
        .unwrap();
    assert!(file.alt_text.chars().count() <= 1000);
    assert!(!buttons.text.contains("<https://evil"), "{}", buttons.text);
    assert!(
        buttons
            .text
            .contains("&lt;https://evil.example|Free Nitro&gt;"),
        "{}",
        buttons.text
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_whose_parent_post_fails_is_kept_and_the_engine_posts_the_parent() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    // Slack cannot take the parent message when the command arrives.
    stack.slack.fail_next("chat.postMessage", "fatal_error");
    let (answer, _) = command(&stack, "a lighthouse in fog --seed 6").await;
    assert_eq!(answer.status, 200);
    let text = answer.body["text"].as_str().unwrap_or_default();
    assert!(text.contains("queued"), "the command is kept: {text}");
    assert!(
        stack
            .slack
            .messages()
            .iter()
            .all(|m| m.channel != CHANNEL_ID),
        "no parent yet"
    );
    // The engine posts the parent itself, and the results in its thread.
    stack.start_engine(&[]).await.unwrap();
    stack
        .slack
        .wait_until("a parent message", TIMEOUT, |f| {
            f.messages()
                .iter()
                .any(|m| m.channel == CHANNEL_ID && m.thread_ts.is_none())
        })
        .await
        .unwrap();
    let parent = parent_of(&stack.slack);
    let buttons = buttons_message(&stack.slack, &parent.ts, 1).await;
    wait_for_state(&stack, job_of(&buttons), JobState::Succeeded).await;
    let parents = stack
        .slack
        .messages()
        .into_iter()
        .filter(|m| m.channel == CHANNEL_ID && m.thread_ts.is_none())
        .count();
    assert_eq!(parents, 1, "one parent message");
    let job = stack.queue.job(job_of(&buttons)).await.unwrap().unwrap();
    assert_eq!(job.origin.thread_id.as_deref(), Some(parent.ts.as_str()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn imagine_cancel_stops_ones_own_queued_job() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    command(&stack, "a tin robot --seed 3").await;
    let parent = parent_of(&stack.slack);
    let job = stack.queue.user_active_jobs("slack", ALICE).await.unwrap()[0].id;
    let cancel = |user: &'static str, text: String| {
        let stack = &stack;
        async move {
            let fields =
                slack::command_fields("/imagine-cancel", &text, user, &stack.slack.response_url());
            let answer = slack::send_signed(
                &stack.http,
                &stack.slack_commands(),
                SIGNING_SECRET,
                chrono::Utc::now().timestamp(),
                slack::form(&fields),
            )
            .await
            .unwrap();
            assert_eq!(answer.body["response_type"], "ephemeral");
            answer.body["text"].as_str().unwrap().to_owned()
        }
    };
    for (user, text, expected) in [
        ("U0BOB", job.to_string(), format!("job {job} is not yours")),
        (ALICE, "fox".to_owned(), "is not a job number".to_owned()),
    ] {
        let answer = cancel(user, text).await;
        assert!(answer.contains(&expected), "{answer}");
    }
    let answer = cancel(ALICE, format!("#{job}")).await;
    assert!(answer.contains(&format!("Cancelled job {job}")), "{answer}");
    wait_for_state(&stack, job, JobState::Cancelled).await;
    // An engine's sweep says so in the job's thread, once.
    stack.start_engine(&[]).await.unwrap();
    stack
        .slack
        .wait_until("a cancelled notice", TIMEOUT, |f| {
            f.thread(CHANNEL_ID, &parent.ts)
                .iter()
                .any(|m| m.text.contains("cancelled"))
        })
        .await
        .unwrap();
    tokio::time::sleep(Duration::from_secs(2)).await;
    let notices = stack
        .slack
        .thread(CHANNEL_ID, &parent.ts)
        .into_iter()
        .filter(|m| m.text.contains("cancelled"))
        .count();
    assert_eq!(notices, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_parent_post_whose_answer_timed_out_is_found_by_the_engine() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    // Slack posts the bot's parent message, but its answer is lost: the
    // bot leaves the parent to the engine, which must find this one.
    stack.slack.lose_next_answer("chat.postMessage");
    let (answer, _) = command(&stack, "a clock tower --seed 9").await;
    assert!(
        answer.body["text"]
            .as_str()
            .unwrap_or_default()
            .contains("queued"),
        "{}",
        answer.body
    );
    stack.start_engine(&[]).await.unwrap();
    let parent = parent_of(&stack.slack);
    let buttons = buttons_message(&stack.slack, &parent.ts, 1).await;
    let job = job_of(&buttons);
    wait_for_state(&stack, job, JobState::Succeeded).await;
    let parents = stack
        .slack
        .messages()
        .into_iter()
        .filter(|m| m.channel == CHANNEL_ID && m.thread_ts.is_none())
        .count();
    assert_eq!(parents, 1, "one parent message");
    let job = stack.queue.job(job).await.unwrap().unwrap();
    assert_eq!(job.origin.thread_id.as_deref(), Some(parent.ts.as_str()));
    assert!(
        stack
            .slack
            .calls()
            .iter()
            .any(|c| c.method == "conversations.history"),
        "the engine looked in the channel"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_draft_and_its_reroll_say_so_in_the_thread() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    let (help, _) = command(&stack, "help").await;
    let help = help.body["text"].as_str().unwrap().to_owned();
    assert!(help.contains("`--draft`"), "{help}");

    command(&stack, "a paper boat --draft --seed 3").await;
    let parent = parent_of(&stack.slack);
    let grid = buttons_message(&stack.slack, &parent.ts, 1).await;
    let job = job_of(&grid);
    wait_for_state(&stack, job, JobState::Succeeded).await;
    let comment = |n: usize| stack.slack.files()[n].initial_comment.clone().unwrap();
    assert!(
        comment(0).contains("seed 3 · 1:1 · draft"),
        "{}",
        comment(0)
    );
    assert!(
        stack
            .queue
            .images(job)
            .await
            .unwrap()
            .iter()
            .all(|image| image.draft_latents.is_some())
    );

    // 🔄 on a draft: a draft again.
    press(&stack, &format!("wu:r:{job}"), &grid).await;
    buttons_message(&stack.slack, &parent.ts, 2).await;
    assert!(
        comment(1).contains("re-roll") && comment(1).contains("· draft"),
        "{}",
        comment(1)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_parent_shows_a_private_preview_until_the_result_is_posted() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack
        .start_engine(&[("WORDUP_PROGRESS_EDIT_SECS", "0.05")])
        .await
        .unwrap();

    command(&stack, "a kite over dunes --steps 6 --seed 4").await;
    let parent = parent_of(&stack.slack);
    let grid = buttons_message(&stack.slack, &parent.ts, 1).await;
    let job = job_of(&grid);
    wait_for_state(&stack, job, JobState::Succeeded).await;
    stack
        .slack
        .wait_until("the parent says done", TIMEOUT, |f| {
            parent_of(f).text.contains("done")
        })
        .await
        .unwrap();

    // Progress edits of the parent showed a preview in an image block: a
    // file uploaded privately (the fake refuses blocks naming any other).
    let shown: Vec<(String, String)> = stack
        .slack
        .calls()
        .into_iter()
        .filter(|c| c.method == "chat.update" && c.status == 200)
        .filter_map(|c| {
            let blocks = c.body["blocks"].as_array()?.clone();
            let image = blocks.iter().find(|b| b["type"] == "image")?;
            Some((
                c.body["text"].as_str()?.to_owned(),
                image["slack_file"]["id"].as_str()?.to_owned(),
            ))
        })
        .collect();
    assert!(!shown.is_empty(), "no preview in {:?}", stack.slack.calls());
    // Made while denoising; it may be shown with a later stage's text, and
    // stays under the text until replaced.
    assert!(
        shown
            .iter()
            .all(|(text, _)| text.contains("denoising") || text.contains("decoding")),
        "{shown:?}"
    );
    let completions: Vec<Value> = stack
        .slack
        .calls()
        .into_iter()
        .filter(|c| c.method == "files.completeUploadExternal")
        .map(|c| c.body)
        .collect();
    for (_, file) in &shown {
        let completed = completions
            .iter()
            .find(|c| c["files"].as_str().unwrap().contains(file.as_str()))
            .unwrap();
        assert!(
            completed["channel_id"].is_null(),
            "shared nowhere: {completed}"
        );
    }
    // The result replaced it: the parent has no blocks left, and the
    // preview files are deleted; only the grid remains.
    let parent = parent_of(&stack.slack);
    assert!(parent.text.contains("done"), "{}", parent.text);
    assert_eq!(parent.blocks, serde_json::json!([]));
    let files = stack.slack.files();
    assert_eq!(files.len(), 1, "{files:?}");
    assert_eq!(files[0].channel.as_deref(), Some(CHANNEL_ID));
}

async fn command_named(stack: &Stack, name: &str, text: &str, response_url: &str) -> Answer {
    let fields = slack::command_fields(name, text, ALICE, response_url);
    slack::send_signed(
        &stack.http,
        &stack.slack_commands(),
        SIGNING_SECRET,
        chrono::Utc::now().timestamp(),
        slack::form(&fields),
    )
    .await
    .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clip_scores_quality_and_analysis_in_a_channel() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    // --quality 2: the best four of eight, scored, the prompt read back.
    command(&stack, "a red barn, oil painting --seed 5 --quality 2").await;
    let parent = parent_of(&stack.slack);
    let grid = buttons_message(&stack.slack, &parent.ts, 1).await;
    let job = job_of(&grid);
    wait_for_state(&stack, job, JobState::Succeeded).await;
    let stored = stack.queue.images(job).await.unwrap();
    let scores: Vec<f32> = stored.iter().map(|i| i.score.unwrap()).collect();
    assert!(
        scores.windows(2).all(|w| w[0] >= w[1]),
        "best first: {scores:?}"
    );
    let listed: Vec<String> = scores.iter().map(|s| format!("{s:.1}")).collect();
    let comment = stack.slack.files()[0].initial_comment.clone().unwrap();
    assert!(comment.contains("best 4 of 8 by CLIP"), "{comment}");
    assert!(
        comment.contains(&format!("CLIP {}", listed.join(" / "))),
        "{comment}"
    );
    assert!(
        comment.contains("\nread as subject: a red barn"),
        "{comment}"
    );
    assert!(
        stack.slack.files()[0].alt_text.contains("(CLIP scores "),
        "{}",
        stack.slack.files()[0].alt_text
    );

    // /imagine-analyze: answered in the channel, nothing drawn.
    let answer = command_named(
        &stack,
        "/imagine-analyze",
        "a red barn, oil painting, at dusk",
        &stack.slack.response_url(),
    )
    .await;
    assert_eq!(answer.status, 200);
    assert!(answer.latency < Duration::from_secs(3));
    stack
        .slack
        .wait_until("the analysis", TIMEOUT, |f| {
            f.messages()
                .iter()
                .any(|m| m.text.contains("phrases by weight"))
        })
        .await
        .unwrap();
    let analysis = stack
        .slack
        .messages()
        .into_iter()
        .find(|m| m.text.contains("phrases by weight"))
        .unwrap();
    assert_eq!(analysis.channel, CHANNEL_ID);
    assert!(analysis.thread_ts.is_none());
    assert!(
        analysis.text.starts_with(&format!(
            "<@{ALICE}> How \"a red barn, oil painting, at dusk\" reads:"
        )),
        "{}",
        analysis.text
    );
    assert_eq!(stack.slack.files().len(), 1, "nothing more uploaded");
}

async fn describe_shortcut(stack: &Stack, files: Value) -> Answer {
    let message = serde_json::json!({
        "type": "message", "user": "U0BOB", "ts": "1780000000.000100",
        "text": "look at this", "files": files,
    });
    let payload = slack::message_action(
        wordup_chat::slack::handler::DESCRIBE,
        ALICE,
        &message,
        &stack.slack.response_url(),
    );
    slack::send_signed(
        &stack.http,
        &stack.slack_interactions(),
        SIGNING_SECRET,
        chrono::Utc::now().timestamp(),
        slack::interaction_form(&payload),
    )
    .await
    .unwrap()
}

/// The private answers sent to response URLs, in order.
async fn wait_for_response(stack: &Stack, n: usize) -> String {
    stack
        .slack
        .wait_until("a private answer", TIMEOUT, |f| f.responses().len() >= n)
        .await
        .unwrap();
    stack.slack.responses()[n - 1].1["text"]
        .as_str()
        .unwrap()
        .to_owned()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_describe_shortcut_suggests_prompts_and_refuses_what_is_not_an_image() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    let image = image::RgbImage::from_fn(48, 40, |x, y| {
        image::Rgb([(x * 5) as u8, (y * 6) as u8, 90])
    });
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let file = stack.slack.host_user_file("boat.png", "image/png", png);
    let answer = describe_shortcut(&stack, serde_json::json!([file])).await;
    assert_eq!(answer.status, 200);
    assert!(answer.latency < Duration::from_secs(3));
    let told = wait_for_response(&stack, 1).await;
    assert!(told.starts_with("Describing the image — "), "{told}");
    // The engine answers in the channel with four suggestions and buttons.
    stack
        .slack
        .wait_until("the suggestions", TIMEOUT, |f| {
            f.messages()
                .iter()
                .any(|m| m.text.contains("Prompts for this image"))
        })
        .await
        .unwrap();
    let suggestions = stack
        .slack
        .messages()
        .into_iter()
        .find(|m| m.text.contains("Prompts for this image"))
        .unwrap();
    assert!(
        suggestions.text.starts_with(&format!("<@{ALICE}> ")),
        "{}",
        suggestions.text
    );
    let buttons = suggestions.button_rows().concat();
    assert_eq!(
        buttons
            .iter()
            .map(|(_, label)| label.as_str())
            .collect::<Vec<_>>(),
        ["Use 1", "Use 2", "Use 3", "Use 4"]
    );
    // "Use 1" draws the first suggestion into the suggestions' thread (once
    // the answer's job is finished: a button under a running job is refused).
    let describe_job = ButtonId::parse(&buttons[0].0).unwrap().job;
    wait_for_state(&stack, describe_job, JobState::Succeeded).await;
    press(&stack, &buttons[0].0, &suggestions).await;
    let grid = buttons_message(&stack.slack, &suggestions.ts, 1).await;
    let drawn = stack.queue.job(job_of(&grid)).await.unwrap().unwrap();
    let describe = ButtonId::parse(&buttons[0].0).unwrap().job;
    let first = stack.queue.suggestion(describe, 0).await.unwrap().unwrap();
    assert!(
        matches!(&drawn.request, wordup_queue::Request::Imagine(r) if r.prompt == first),
        "{:?}",
        drawn.request
    );

    // Not an image, and no file at all: a private message, no job.
    let text_file = stack
        .slack
        .host_user_file("notes.txt", "text/plain", b"hello".to_vec());
    describe_shortcut(&stack, serde_json::json!([text_file])).await;
    let told = wait_for_response(&stack, 3).await;
    assert!(told.contains("not a PNG, JPEG or WebP image"), "{told}");
    describe_shortcut(&stack, serde_json::json!([])).await;
    let told = wait_for_response(&stack, 4).await;
    assert!(told.contains("no image to describe"), "{told}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_permutation_prompt_gets_a_parent_message_and_thread_per_prompt() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    let (answer, _) = command(&stack, "a {red, blue} boat --ar {1:1, 16:9}").await;
    // Within the ack's budget, else through the response URL.
    let told = match answer.body["text"].as_str() {
        Some(text) if !text.starts_with('⏳') => text.to_owned(),
        _ => wait_for_response(&stack, 1).await,
    };
    assert!(told.contains("4 prompts:"), "{told}");
    assert!(told.contains("4. a blue boat --ar 16:9 — "), "{told}");
    stack
        .slack
        .wait_until("four parents", TIMEOUT, |f| {
            f.messages()
                .iter()
                .filter(|m| m.channel == CHANNEL_ID && m.thread_ts.is_none())
                .count()
                >= 4
        })
        .await
        .unwrap();
    let parents: Vec<SlackMessage> = stack
        .slack
        .messages()
        .into_iter()
        .filter(|m| m.channel == CHANNEL_ID && m.thread_ts.is_none())
        .collect();
    assert!(
        parents[0].text.contains("*a red boat --ar 1:1*"),
        "{}",
        parents[0].text
    );
    for parent in &parents {
        let grid = buttons_message(&stack.slack, &parent.ts, 1).await;
        let job = stack.queue.job(job_of(&grid)).await.unwrap().unwrap();
        assert_eq!(job.origin.thread_id.as_deref(), Some(parent.ts.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn remix_opens_a_modal_and_its_submission_draws_in_the_thread() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    command(&stack, "a red boat --no people").await;
    let parent = {
        stack
            .slack
            .wait_until("the parent", TIMEOUT, |f| {
                f.messages().iter().any(|m| m.thread_ts.is_none())
            })
            .await
            .unwrap();
        parent_of(&stack.slack)
    };
    let grid = buttons_message(&stack.slack, &parent.ts, 1).await;
    let job = job_of(&grid);
    wait_for_state(&stack, job, JobState::Succeeded).await;
    let remix = format!("wu:m:{job}");

    // The press opens the modal with a trigger Slack issued.
    let mut payload =
        slack::block_actions(&remix, ALICE, &grid.json(), &stack.slack.response_url());
    payload["trigger_id"] = json!(stack.slack.trigger());
    interact(&stack, &payload).await;
    let views = stack.slack.views();
    assert_eq!(views.len(), 1, "{views:?}");
    let view = &views[0];
    assert_eq!(
        view["blocks"][0]["element"]["initial_value"],
        "a red boat --no people"
    );
    // A trigger used twice (or never issued) opens nothing: the presser is told.
    interact(&stack, &payload).await;
    assert_eq!(stack.slack.views().len(), 1);

    // Submitted: the modal closes, the variation of image 3 with the new
    // prompt is drawn in the grid's thread, and the requester is told.
    let submission = slack::view_submission(
        view,
        ALICE,
        "V0REMIX1",
        &[("prompt", "a blue boat at night"), ("image", "3")],
    );
    let answer = interact(&stack, &submission).await;
    assert!(
        answer.body.is_null() || answer.body == json!(""),
        "{:?}",
        answer.body
    );
    let remixed = buttons_message(&stack.slack, &parent.ts, 2).await;
    let drawn = stack.queue.job(job_of(&remixed)).await.unwrap().unwrap();
    match &drawn.request {
        wordup_queue::Request::Vary {
            parent: p,
            index: 2,
            remix: Some(request),
            ..
        } => {
            assert_eq!(*p, job);
            assert_eq!(request.prompt, "a blue boat at night");
        }
        other => panic!("not a remix of image 3: {other:?}"),
    }
    let told = stack.slack.ephemerals();
    assert!(
        told.iter()
            .any(|(channel, user, text)| channel == CHANNEL_ID
                && user == ALICE
                && text.starts_with(&format!("Remixing job {job} — "))),
        "{told:?}"
    );
    // The same submission delivered again makes no second job.
    interact(&stack, &submission).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(stack.queue.pool())
        .await
        .unwrap();
    assert_eq!(count, 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_imagine_shortcut_asks_for_a_prompt_and_draws_from_the_image() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    let image = image::RgbImage::from_fn(90, 160, |x, y| image::Rgb([(x * 2) as u8, y as u8, 40]));
    let mut png = Vec::new();
    image
        .write_to(&mut std::io::Cursor::new(&mut png), image::ImageFormat::Png)
        .unwrap();
    let file = stack.slack.host_user_file("tall.png", "image/png", png);
    let message = json!({
        "type": "message", "user": "U0BOB", "ts": "1780000000.000100",
        "text": "our sketch", "files": [file],
    });
    let mut payload = slack::message_action(
        wordup_chat::slack::handler::IMAGINE,
        ALICE,
        &message,
        &stack.slack.response_url(),
    );
    payload["trigger_id"] = json!(stack.slack.trigger());
    interact(&stack, &payload).await;
    let views = stack.slack.views();
    assert_eq!(views.len(), 1, "{views:?}");

    let submission = slack::view_submission(
        &views[0],
        ALICE,
        "V0IMAGINE1",
        &[("prompt", "a lighthouse --iw 2")],
    );
    interact(&stack, &submission).await;
    stack
        .slack
        .wait_until("the parent", TIMEOUT, |f| {
            f.messages().iter().any(|m| m.thread_ts.is_none())
        })
        .await
        .unwrap();
    let parent = parent_of(&stack.slack);
    assert!(
        parent.text.contains("*a lighthouse --iw 2*"),
        "{}",
        parent.text
    );
    let grid = buttons_message(&stack.slack, &parent.ts, 1).await;
    let job = stack.queue.job(job_of(&grid)).await.unwrap().unwrap();
    match &job.request {
        wordup_queue::Request::Imagine(request) => {
            assert_eq!(request.image_weight, Some(2.0));
            // A tall image: the grid takes its shape.
            assert_eq!((request.aspect.width, request.aspect.height), (9, 16));
        }
        other => panic!("not an imagine: {other:?}"),
    }
    let told = stack.slack.ephemerals();
    assert!(
        told.iter()
            .any(|(_, user, text)| user == ALICE && text.contains("from your image")),
        "{told:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_vote_updates_the_buttons_message_with_the_count() {
    let mut stack = Stack::start().await.unwrap();
    stack.start_bot().await.unwrap();
    stack.start_engine(&[]).await.unwrap();

    command(&stack, "a quiet harbour").await;
    stack
        .slack
        .wait_until("the parent", TIMEOUT, |f| {
            f.messages().iter().any(|m| m.thread_ts.is_none())
        })
        .await
        .unwrap();
    let parent = parent_of(&stack.slack);
    let grid = buttons_message(&stack.slack, &parent.ts, 1).await;
    let job = job_of(&grid);
    wait_for_state(&stack, job, JobState::Succeeded).await;
    press(&stack, &format!("wu:l:{job}"), &grid).await;
    stack
        .slack
        .wait_until("the count on the button", TIMEOUT, |f| {
            f.calls().iter().any(|c| {
                c.method == "chat.update"
                    && c.body["ts"] == grid.ts.as_str()
                    && c.body["blocks"].to_string().contains("👍 1")
            })
        })
        .await
        .unwrap();
    assert_eq!(stack.queue.votes(job).await.unwrap(), 1);
    // The message keeps its other buttons.
    let updated = stack
        .slack
        .messages()
        .into_iter()
        .find(|m| m.ts == grid.ts)
        .unwrap();
    assert_eq!(updated.button_rows().concat().len(), 12);
}
