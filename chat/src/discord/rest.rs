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
use crate::retry::{self, GaveUp, Resend};
use wordup_runtime::secret::Secret;

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
    #[error("Discord: {0}")]
    GaveUp(#[from] GaveUp),
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
            .build()
            .map_err(GaveUp::from)?;
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

    pub async fn delete(&self, path: &str) -> Result<Value, RestError> {
        self.call(Method::DELETE, path, None, &[]).await
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
        let route = log_route(path);
        // A POST to a channel's messages or a follow-up creates a message
        // (Discord's nonce deduplicates only for a few minutes): its callers
        // look for it before trying again. Other calls are safe to repeat
        // (a second interaction callback is refused as already acknowledged).
        let creates = path.ends_with("/messages") || path.starts_with("/webhooks/");
        let resend = if method == Method::POST && creates {
            Resend::IfUnsent
        } else {
            Resend::Freely
        };
        let response = retry::send(&self.counters, &route, resend, || {
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
        let bytes = response.bytes().await.map_err(GaveUp::from)?;
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

/// A request path as logs may show it: interaction and webhook tokens
/// (credentials for 15 minutes) replaced by `:token`.
pub fn log_route(path: &str) -> String {
    let parts: Vec<&str> = path.split('/').collect();
    parts
        .iter()
        .enumerate()
        .map(|(i, part)| {
            let holds_token = i >= 2 && matches!(parts[i - 2], "webhooks" | "interactions");
            if holds_token { ":token" } else { part }
        })
        .collect::<Vec<_>>()
        .join("/")
}

impl crate::delivery::Transience for RestError {
    /// Client errors other than rate limits will not succeed on a retry.
    fn is_transient(&self) -> bool {
        !self.status().is_some_and(|status| status.is_client_error())
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn routes_in_logs_carry_no_token() {
        for (path, shown) in [
            (
                "/webhooks/111/SECRET/messages/@original",
                "/webhooks/111/:token/messages/@original",
            ),
            (
                "/interactions/222/SECRET/callback",
                "/interactions/222/:token/callback",
            ),
            ("/webhooks/111/SECRET", "/webhooks/111/:token"),
            ("/channels/333/messages", "/channels/333/messages"),
        ] {
            assert_eq!(log_route(path), shown);
        }
    }

    /// Everything logged while the guard lives.
    #[derive(Clone, Default)]
    struct Captured(Arc<Mutex<Vec<u8>>>);

    impl std::io::Write for Captured {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[tokio::test]
    async fn a_rate_limited_edit_logs_no_interaction_token() {
        use axum::http::StatusCode;
        use std::sync::atomic::{AtomicU32, Ordering};
        let calls = Arc::new(AtomicU32::new(0));
        let app = axum::Router::new().fallback({
            let calls = calls.clone();
            move || async move {
                if calls.fetch_add(1, Ordering::SeqCst) == 0 {
                    (
                        StatusCode::TOO_MANY_REQUESTS,
                        axum::Json(serde_json::json!({"retry_after": 0.01, "global": false})),
                    )
                } else {
                    (StatusCode::OK, axum::Json(serde_json::json!({"id": "1"})))
                }
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });

        let captured = Captured::default();
        let writer = captured.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_max_level(tracing::Level::DEBUG)
            .finish();
        let _guard = tracing::subscriber::set_default(subscriber);
        let rest = DiscordRest::new(&base, Secret::new("bot-token")).unwrap();
        let token = "aW50ZXJhY3Rpb246MTIzNDU2Nzg5OnNlY3JldA";
        rest.patch(
            &format!("/webhooks/111/{token}/messages/@original"),
            &serde_json::json!({"content": "hi"}),
        )
        .await
        .unwrap();
        let logs = String::from_utf8(captured.0.lock().unwrap().clone()).unwrap();
        assert_eq!(calls.load(Ordering::SeqCst), 2);
        assert!(logs.contains("rate limited"), "{logs}");
        assert!(logs.contains(":token"), "{logs}");
        assert!(!logs.contains(token), "{logs}");
    }

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
