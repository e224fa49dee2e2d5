//! Signed Slack requests in the documented shapes: slash commands
//! (form-encoded) and block_actions (a form with a JSON `payload`).

use std::time::Instant;

use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

use crate::interactions::Answer;

pub const SIGNING_SECRET: &str = "8f742231b10e8888abcd99yyyzzz85a5";
pub const TEAM_ID: &str = "T0WORDUP1";
pub const CHANNEL_ID: &str = "C0BRAINSTORM";

/// `v0=hex(HMAC-SHA256(secret, "v0:" + ts + ":" + body))`.
pub fn signature(secret: &str, timestamp: &str, body: &str) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).expect("HMAC takes any key");
    mac.update(format!("v0:{timestamp}:{body}").as_bytes());
    format!("v0={}", hex::encode(mac.finalize().into_bytes()))
}

/// A fresh trigger id.
pub fn trigger_id() -> String {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    format!(
        "{}.{}.{:x}",
        std::process::id(),
        SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed),
        rand::random::<u64>()
    )
}

/// A slash command's fields, as Slack sends them.
pub fn command_fields(
    command: &str,
    text: &str,
    user: &str,
    response_url: &str,
) -> Vec<(&'static str, String)> {
    vec![
        ("token", "deprecated-verification-token".into()),
        ("team_id", TEAM_ID.into()),
        ("team_domain", "wordup-test".into()),
        ("channel_id", CHANNEL_ID.into()),
        ("channel_name", "brainstorm".into()),
        ("user_id", user.into()),
        ("user_name", "alice".into()),
        ("command", command.into()),
        ("text", text.into()),
        ("api_app_id", "A0WORDUP".into()),
        ("is_enterprise_install", "false".into()),
        ("response_url", response_url.into()),
        ("trigger_id", trigger_id()),
    ]
}

/// The same command as a Socket Mode envelope.
pub fn command_envelope(fields: &[(&'static str, String)]) -> Value {
    let payload: serde_json::Map<String, Value> = fields
        .iter()
        .map(|(k, v)| ((*k).to_owned(), Value::String(v.clone())))
        .collect();
    json!({
        "envelope_id": format!("env-{}", rand::random::<u32>()),
        "type": "slash_commands",
        "accepts_response_payload": true,
        "payload": payload,
    })
}

/// A block_actions payload: `action_id` pressed on `message`.
pub fn block_actions(action_id: &str, user: &str, message: &Value, response_url: &str) -> Value {
    let mut container = json!({ "type": "message", "message_ts": message["ts"], "channel_id": CHANNEL_ID, "is_ephemeral": false });
    if let Some(thread) = message.get("thread_ts") {
        container["thread_ts"] = thread.clone();
    }
    json!({
        "type": "block_actions",
        "user": { "id": user, "username": "alice", "name": "alice", "team_id": TEAM_ID },
        "api_app_id": "A0WORDUP",
        "token": "deprecated-verification-token",
        "container": container,
        "trigger_id": trigger_id(),
        "team": { "id": TEAM_ID, "domain": "wordup-test" },
        "enterprise": null,
        "is_enterprise_install": false,
        "channel": { "id": CHANNEL_ID, "name": "brainstorm" },
        "message": message,
        "state": { "values": {} },
        "response_url": response_url,
        "actions": [{
            "action_id": action_id,
            "block_id": "wu-actions",
            "text": { "type": "plain_text", "text": "button", "emoji": true },
            "value": action_id,
            "type": "button",
            "action_ts": "1780000000.000100",
        }],
    })
}

/// A view_submission payload: the modal `view` (as views.open got it)
/// submitted by `user` with `values` typed in its inputs (block id and
/// action id alike, as ours are).
pub fn view_submission(view: &Value, user: &str, view_id: &str, values: &[(&str, &str)]) -> Value {
    let state: serde_json::Map<String, Value> = values
        .iter()
        .map(|(field, value)| {
            (
                (*field).to_owned(),
                json!({ *field: { "type": "plain_text_input", "value": value } }),
            )
        })
        .collect();
    let mut submitted = view.clone();
    for (key, value) in [
        ("id", json!(view_id)),
        ("team_id", json!(TEAM_ID)),
        ("state", json!({ "values": state })),
        ("hash", json!("1780000000.abcdef12")),
        ("previous_view_id", Value::Null),
        ("root_view_id", json!(view_id)),
        ("app_id", json!("A0WORDUP")),
        ("external_id", json!("")),
        ("app_installed_team_id", json!(TEAM_ID)),
        ("bot_id", json!("B0WORDUP")),
        ("clear_on_close", json!(false)),
        ("notify_on_close", json!(false)),
    ] {
        submitted[key] = value;
    }
    json!({
        "type": "view_submission",
        "team": { "id": TEAM_ID, "domain": "wordup-test" },
        "user": { "id": user, "username": "alice", "name": "alice", "team_id": TEAM_ID },
        "api_app_id": "A0WORDUP",
        "token": "deprecated-verification-token",
        "trigger_id": trigger_id(),
        "view": submitted,
        "response_urls": [],
        "is_enterprise_install": false,
        "enterprise": null,
    })
}

/// A message_action payload: the message shortcut `callback_id` used on
/// `message` (with its `files`).
pub fn message_action(callback_id: &str, user: &str, message: &Value, response_url: &str) -> Value {
    json!({
        "type": "message_action",
        "callback_id": callback_id,
        "trigger_id": trigger_id(),
        "response_url": response_url,
        "action_ts": "1780000000.000200",
        "message_ts": message["ts"],
        "user": { "id": user, "username": "alice", "name": "alice", "team_id": TEAM_ID },
        "team": { "id": TEAM_ID, "domain": "wordup-test" },
        "channel": { "id": CHANNEL_ID, "name": "brainstorm" },
        "message": message,
        "token": "deprecated-verification-token",
    })
}

/// Posts a form-encoded body signed with `secret` at `timestamp`.
pub async fn send_signed(
    http: &reqwest::Client,
    url: &str,
    secret: &str,
    timestamp: i64,
    body: String,
) -> anyhow::Result<Answer> {
    let ts = timestamp.to_string();
    let started = Instant::now();
    let response = http
        .post(url)
        .header("content-type", "application/x-www-form-urlencoded")
        .header("x-slack-request-timestamp", &ts)
        .header("x-slack-signature", signature(secret, &ts, &body))
        .body(body)
        .send()
        .await?;
    let status = response.status().as_u16();
    let text = response.text().await?;
    Ok(Answer {
        status,
        body: serde_json::from_str(&text).unwrap_or(Value::String(text)),
        latency: started.elapsed(),
    })
}

pub fn form(fields: &[(&str, String)]) -> String {
    serde_urlencoded::to_string(fields).expect("strings encode")
}

pub fn interaction_form(payload: &Value) -> String {
    form(&[("payload", payload.to_string())])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_slacks_documented_example() {
        // From Slack's "Verifying requests" guide.
        let body = "token=xyzz0WbapA4vBCDEFasx0q6G&team_id=T1DC2JH3J&team_domain=testteamnow&channel_id=G8PSS9T3V&channel_name=foobar&user_id=U2CERLKJA&user_name=roadrunner&command=%2Fwebhook-collect&text=&response_url=https%3A%2F%2Fhooks.slack.com%2Fcommands%2FT1DC2JH3J%2F397700885554%2F96rGlfmibIGlgcZRskXaIFfN&trigger_id=398738663015.47445629121.803a0bc887a14d10d2c447fce8b6703c";
        assert_eq!(
            signature(SIGNING_SECRET, "1531420618", body),
            "v0=a2114d57b48eac39b9ad189dd8316235a7b4a8d21a10bd27519666489c69b503"
        );
    }

    #[test]
    fn payloads_parse_as_slack_morphism_events() {
        let fields = command_fields("/imagine", "a fox", "U0ALICE", "http://x/response/1");
        let event: slack_morphism::prelude::SlackCommandEvent =
            serde_urlencoded::from_str(&form(&fields)).unwrap();
        assert_eq!(event.text.as_deref(), Some("a fox"));
        let message = json!({ "type": "message", "bot_id": "B1", "text": "t", "ts": "1.000002", "thread_ts": "1.000001", "blocks": [] });
        let event: slack_morphism::prelude::SlackInteractionEvent = serde_json::from_value(
            block_actions("wu:u:1:2", "U0ALICE", &message, "http://x/response/2"),
        )
        .unwrap();
        assert!(matches!(
            event,
            slack_morphism::prelude::SlackInteractionEvent::BlockActions(_)
        ));
    }
}
