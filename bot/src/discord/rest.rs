//! Discord's REST API over reqwest. serenity supplies the payload types and
//! builders; requests go through here so that every call honours 429s the
//! same way (serenity's own ratelimiter ignores a proxy, and without it a
//! 429 reaches the caller with its `retry_after` dropped).
//!
//! The base URL is Discord's, or a fake's in tests: the same seam as
//! serenity's `HttpBuilder::proxy` (`https://discord.com` replaced, paths
//! kept as `/api/v10/...`).

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::Value;

use crate::metrics::ApiCounters;
use crate::retry::{self, GaveUp};
use crate::secret::Secret;

pub const DISCORD_URL: &str = "https://discord.com";

/// A file in a multipart message.
#[derive(Debug, Clone)]
pub struct Upload {
    pub filename: String,
    pub mime: &'static str,
    pub description: String,
    pub bytes: Vec<u8>,
}

#[derive(Debug, thiserror::Error)]
pub enum RestError {
    /// Discord answered with an error: its HTTP status and JSON error code.
    #[error("Discord answered {status} (code {code}): {message}")]
    Api {
        status: StatusCode,
        code: i64,
        message: String,
    },
    #[error("rate limited for {0:?}, longer than we wait inline")]
    RateLimited(Duration),
    #[error("cannot reach Discord: {0}")]
    Transport(reqwest::Error),
}

impl RestError {
    pub fn status(&self) -> Option<StatusCode> {
        match self {
            RestError::Api { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// Discord's JSON error code (50013 Missing Permissions, 10062 Unknown interaction, ...).
    pub fn code(&self) -> Option<i64> {
        match self {
            RestError::Api { code, .. } => Some(*code),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct DiscordRest {
    client: reqwest::Client,
    api: String,
    token: Secret,
    pub counters: ApiCounters,
}

impl DiscordRest {
    /// `base` is `https://discord.com` or a stand-in serving `/api/v10/...`.
    pub fn new(base: &str, bot_token: Secret) -> Result<DiscordRest, RestError> {
        let client = reqwest::Client::builder()
            .user_agent(concat!(
                "DiscordBot (https://github.com/wordup, ",
                env!("CARGO_PKG_VERSION"),
                ")"
            ))
            .timeout(Duration::from_secs(30))
            .build()?;
        Ok(DiscordRest {
            client,
            api: format!("{}/api/v10", base.trim_end_matches('/')),
            token: bot_token,
            counters: ApiCounters::default(),
        })
    }

    pub async fn get(&self, path: &str) -> Result<Value, RestError> {
        self.call(Method::GET, path, None, &[]).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Result<Value, RestError> {
        self.call(Method::POST, path, Some(body), &[]).await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> Result<Value, RestError> {
        self.call(Method::PATCH, path, Some(body), &[]).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Result<Value, RestError> {
        self.call(Method::PUT, path, Some(body), &[]).await
    }

    /// A JSON body, or `payload_json` plus `files[i]` parts when there are
    /// uploads (their `attachments` entries are added to the payload here).
    pub async fn call(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
        uploads: &[Upload],
    ) -> Result<Value, RestError> {
        let url = format!("{}{path}", self.api);
        let payload = body.map(|b| with_attachments(b, uploads));
        let response = retry::send(&self.counters, path, || {
            let request = self
                .client
                .request(method.clone(), &url)
                .header("Authorization", format!("Bot {}", self.token.expose()));
            Ok(match (&payload, uploads.is_empty()) {
                (Some(payload), true) => request.json(payload),
                (payload, false) => request.multipart(form(payload.as_ref(), uploads)?),
                (None, true) => request,
            })
        })
        .await?;
        let status = response.status();
        let bytes = response.bytes().await?;
        let value: Value = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or(Value::Null)
        };
        if status.is_success() {
            return Ok(value);
        }
        Err(RestError::Api {
            status,
            code: value.get("code").and_then(Value::as_i64).unwrap_or(0),
            message: value
                .get("message")
                .and_then(Value::as_str)
                .unwrap_or("no message")
                .to_owned(),
        })
    }
}

fn with_attachments(body: &Value, uploads: &[Upload]) -> Value {
    let mut body = body.clone();
    if !uploads.is_empty()
        && let Some(map) = body.as_object_mut()
    {
        let attachments: Vec<Value> = uploads
            .iter()
            .enumerate()
            .map(|(id, u)| {
                serde_json::json!({
                    "id": id,
                    "filename": u.filename,
                    "description": u.description,
                })
            })
            .collect();
        map.insert("attachments".into(), Value::Array(attachments));
    }
    body
}

fn form(payload: Option<&Value>, uploads: &[Upload]) -> reqwest::Result<reqwest::multipart::Form> {
    let mut form = reqwest::multipart::Form::new();
    if let Some(payload) = payload {
        form = form.text("payload_json", payload.to_string());
    }
    for (id, upload) in uploads.iter().enumerate() {
        let part = reqwest::multipart::Part::bytes(upload.bytes.clone())
            .file_name(upload.filename.clone())
            .mime_str(upload.mime)?;
        form = form.part(format!("files[{id}]"), part);
    }
    Ok(form)
}

/// Request URLs carry secrets (interaction tokens, response and upload
/// URLs), so errors drop them before they can reach a log or a job's error.
impl From<GaveUp> for RestError {
    fn from(e: GaveUp) -> Self {
        match e {
            GaveUp::RateLimited(wait) => RestError::RateLimited(wait),
            GaveUp::Transport(e) => e.into(),
        }
    }
}

impl From<reqwest::Error> for RestError {
    fn from(e: reqwest::Error) -> Self {
        RestError::Transport(e.without_url())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uploads_are_listed_as_attachments() {
        let body = serde_json::json!({"content": "hi"});
        let uploads = [Upload {
            filename: "grid.png".into(),
            mime: "image/png",
            description: "alt".into(),
            bytes: vec![1, 2],
        }];
        let payload = with_attachments(&body, &uploads);
        assert_eq!(payload["attachments"][0]["filename"], "grid.png");
        assert_eq!(payload["attachments"][0]["description"], "alt");
        assert_eq!(payload["attachments"][0]["id"], 0);
        assert_eq!(with_attachments(&body, &[]), body);
    }
}
