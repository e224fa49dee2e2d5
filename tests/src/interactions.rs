//! Signed Discord interactions in the documented payload shapes, sent to
//! the bot's endpoint as Discord sends them.

use std::time::{Duration, Instant};

use chrono::Utc;
use ed25519_dalek::{Signer, SigningKey};
use serde_json::{Value, json};
use wordup_chat::discord::reply::snowflake_at;

pub const APPLICATION_ID: &str = "1200000000000000001";
pub const GUILD_ID: &str = "1200000000000000002";
pub const CHANNEL_ID: &str = "1200000000000000003";
pub const BOT_TOKEN: &str = "test-bot-token";

pub struct InteractionSigner {
    key: SigningKey,
}

/// Who sends an interaction.
#[derive(Debug, Clone)]
pub struct Member {
    pub user_id: String,
    pub name: String,
    /// Permissions in the channel, as Discord's decimal string.
    pub permissions: String,
}

impl Member {
    pub fn new(user_id: &str, name: &str) -> Member {
        Member {
            user_id: user_id.to_owned(),
            name: name.to_owned(),
            // View, Send Messages, Use Application Commands; not Manage Channels.
            permissions: ((1u64 << 10) | (1 << 11) | (1 << 31)).to_string(),
        }
    }

    fn json(&self) -> Value {
        json!({
            "user": user_json(&self.user_id, &self.name),
            "roles": [],
            "joined_at": "2025-01-01T00:00:00.000000+00:00",
            "deaf": false,
            "mute": false,
            "flags": 0,
            "pending": false,
            "permissions": self.permissions,
            "nick": null,
            "avatar": null,
            "premium_since": null,
        })
    }
}

fn user_json(id: &str, name: &str) -> Value {
    json!({ "id": id, "username": name, "discriminator": "0", "global_name": name, "avatar": null })
}

/// A fresh interaction id and token.
pub fn new_interaction() -> (String, String) {
    static SEQ: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    let seq = SEQ.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
        + u64::from(std::process::id()) * 1000;
    let id = snowflake_at(Utc::now(), seq).to_string();
    (id.clone(), format!("token-{id}"))
}

fn common(id: &str, token: &str, member: &Member, kind: u8, nsfw: bool) -> Value {
    json!({
        "id": id,
        "application_id": APPLICATION_ID,
        "type": kind,
        "guild_id": GUILD_ID,
        "channel_id": CHANNEL_ID,
        "channel": { "id": CHANNEL_ID, "type": 0, "name": "brainstorm", "guild_id": GUILD_ID, "nsfw": nsfw, "permissions": member.permissions },
        "member": member.json(),
        "token": token,
        "version": 1,
        "app_permissions": "562949953421311",
        "locale": "en-US",
        "guild_locale": "en-US",
        "entitlements": [],
        "authorizing_integration_owners": { "0": GUILD_ID },
        "context": 0,
        "attachment_size_limit": 10_485_760,
    })
}

/// An APPLICATION_COMMAND interaction (type 2).
pub fn command(id: &str, token: &str, member: &Member, name: &str, options: Value) -> Value {
    let mut payload = common(id, token, member, 2, false);
    payload["data"] = json!({ "id": "1200000000000000010", "name": name, "type": 1, "options": options, "guild_id": GUILD_ID });
    payload
}

pub fn imagine(id: &str, token: &str, member: &Member, prompt: &str) -> Value {
    command(
        id,
        token,
        member,
        "imagine",
        json!([{ "name": "prompt", "type": 3, "value": prompt }]),
    )
}

/// A MESSAGE_COMPONENT interaction (type 3): a button pressed on `message`
/// (as the fake returned it).
pub fn button(id: &str, token: &str, member: &Member, custom_id: &str, message: &Value) -> Value {
    let mut payload = common(id, token, member, 3, false);
    payload["data"] = json!({ "custom_id": custom_id, "component_type": 2 });
    payload["message"] = json!({
        "id": message["id"],
        "channel_id": CHANNEL_ID,
        "author": { "id": APPLICATION_ID, "username": "Word Up!", "discriminator": "0", "global_name": null, "avatar": null, "bot": true },
        "content": message["content"],
        "timestamp": "2026-11-26T10:00:00.000000+00:00",
        "edited_timestamp": null,
        "tts": false,
        "mention_everyone": false,
        "mentions": [],
        "mention_roles": [],
        "attachments": message["attachments"],
        "embeds": [],
        "pinned": false,
        "type": 0,
        "flags": 0,
        "components": message["components"],
    });
    payload
}

/// `/imagine` with an image prompt: the `image` attachment option (type 11)
/// and its resolved data.
pub fn imagine_with_image(
    id: &str,
    token: &str,
    member: &Member,
    prompt: &str,
    attachment: &Value,
) -> Value {
    let attachment_id = attachment["id"].as_str().unwrap_or_default().to_owned();
    let mut payload = command(
        id,
        token,
        member,
        "imagine",
        json!([
            { "name": "prompt", "type": 3, "value": prompt },
            { "name": "image", "type": 11, "value": attachment_id },
        ]),
    );
    payload["data"]["resolved"] = json!({ "attachments": { attachment_id: attachment } });
    payload
}

/// A MODAL_SUBMIT interaction (type 5): a form submitted with `fields`
/// (text inputs: custom id, value), opened from a button on `message`.
pub fn modal_submit(
    id: &str,
    token: &str,
    member: &Member,
    custom_id: &str,
    fields: &[(&str, &str)],
    message: &Value,
) -> Value {
    let mut payload = button(id, token, member, "unused", message);
    payload["type"] = json!(5);
    let rows: Vec<Value> = fields
        .iter()
        .map(|(field, value)| {
            json!({ "type": 1, "components": [{ "type": 4, "custom_id": field, "value": value }] })
        })
        .collect();
    payload["data"] = json!({ "custom_id": custom_id, "components": rows });
    payload
}

pub fn ping(id: &str) -> Value {
    json!({ "id": id, "application_id": APPLICATION_ID, "type": 1, "token": "ping-token", "version": 1 })
}

/// What the endpoint answered.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Value,
    pub latency: Duration,
}

impl InteractionSigner {
    pub fn new() -> InteractionSigner {
        InteractionSigner {
            key: SigningKey::from_bytes(&rand::random::<[u8; 32]>()),
        }
    }

    pub fn public_key_hex(&self) -> String {
        hex::encode(self.key.verifying_key().to_bytes())
    }

    pub fn sign(&self, timestamp: &str, body: &[u8]) -> String {
        hex::encode(
            self.key
                .sign(&[timestamp.as_bytes(), body].concat())
                .to_bytes(),
        )
    }

    /// Sends `payload` signed now.
    pub async fn send(
        &self,
        http: &reqwest::Client,
        endpoint: &str,
        payload: &Value,
    ) -> anyhow::Result<Answer> {
        let timestamp = Utc::now().timestamp().to_string();
        let body = serde_json::to_vec(payload)?;
        let signature = self.sign(&timestamp, &body);
        send_raw(http, endpoint, &signature, &timestamp, body).await
    }
}

impl Default for InteractionSigner {
    fn default() -> Self {
        InteractionSigner::new()
    }
}

pub async fn send_raw(
    http: &reqwest::Client,
    endpoint: &str,
    signature: &str,
    timestamp: &str,
    body: Vec<u8>,
) -> anyhow::Result<Answer> {
    let started = Instant::now();
    let response = http
        .post(endpoint)
        .header("content-type", "application/json")
        .header("x-signature-ed25519", signature)
        .header("x-signature-timestamp", timestamp)
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

/// An attachment object as Discord sends it in `resolved`.
pub fn attachment(id: &str, filename: &str, content_type: &str, size: u64, url: &str) -> Value {
    json!({
        "id": id, "filename": filename, "size": size, "url": url, "proxy_url": url,
        "content_type": content_type, "width": 64, "height": 64,
    })
}

/// `/describe` with an attachment option (type 11) and its resolved data.
pub fn describe(id: &str, token: &str, member: &Member, attachment: &Value) -> Value {
    let attachment_id = attachment["id"].as_str().unwrap_or_default().to_owned();
    let mut payload = command(
        id,
        token,
        member,
        "describe",
        json!([{ "name": "image", "type": 11, "value": attachment_id }]),
    );
    payload["data"]["resolved"] = json!({ "attachments": { attachment_id: attachment } });
    payload
}

/// The "Describe" message command (type 3) on a message with `attachments`.
pub fn describe_message(id: &str, token: &str, member: &Member, attachments: Value) -> Value {
    let target = "1300000000000000077";
    let mut payload = common(id, token, member, 2, false);
    payload["data"] = json!({
        "id": "1200000000000000011", "name": "Describe", "type": 3, "target_id": target,
        "guild_id": GUILD_ID,
        "resolved": { "messages": { target: {
            "id": target,
            "channel_id": CHANNEL_ID,
            "author": member.json()["user"],
            "content": "look at this",
            "timestamp": "2026-11-26T10:00:00.000000+00:00",
            "edited_timestamp": null,
            "tts": false,
            "mention_everyone": false,
            "mentions": [],
            "mention_roles": [],
            "attachments": attachments,
            "embeds": [],
            "pinned": false,
            "type": 0,
            "flags": 0,
        } } },
    });
    payload
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payloads_parse_as_serenity_interactions() {
        let member = Member::new("1200000000000000100", "ada");
        let (id, token) = new_interaction();
        let parsed: serenity::all::Interaction =
            serde_json::from_value(imagine(&id, &token, &member, "a fox --ar 16:9")).unwrap();
        assert!(matches!(parsed, serenity::all::Interaction::Command(_)));
        let message = json!({ "id": "1300000000000000001", "content": "x", "attachments": [], "components": [] });
        let parsed: serenity::all::Interaction =
            serde_json::from_value(button(&id, &token, &member, "wu:u:1:0", &message)).unwrap();
        assert!(matches!(parsed, serenity::all::Interaction::Component(_)));
        let parsed: serenity::all::Interaction = serde_json::from_value(ping(&id)).unwrap();
        assert!(matches!(parsed, serenity::all::Interaction::Ping(_)));
    }
}
