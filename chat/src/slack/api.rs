//! The Slack Web API methods we call, over reqwest. Every call waits out a
//! 429 for its `Retry-After`, retries transport failures and 5xx, and turns
//! `"ok": false` into an error carrying Slack's error code.

use std::time::Duration;

use reqwest::StatusCode;
use serde_json::{Value, json};

use crate::metrics::ApiCounters;
use crate::retry::{self, GaveUp, Resend};
use wordup_runtime::secret::Secret;

pub const SLACK_API_URL: &str = "https://slack.com/api";
/// Pages of history a look for an earlier post reads at most.
pub const LOOK_PAGES: usize = 5;

#[derive(Debug, thiserror::Error)]
pub enum SlackError {
    /// Slack answered `"ok": false` (`not_in_channel`, `channel_not_found`, ...).
    #[error("Slack {method} failed: {error}")]
    Api { method: String, error: String },
    #[error("Slack {method} answered HTTP {status}")]
    Http { method: String, status: StatusCode },
    #[error("Slack: {0}")]
    GaveUp(#[from] GaveUp),
}

impl SlackError {
    pub fn code(&self) -> Option<&str> {
        match self {
            SlackError::Api { error, .. } => Some(error),
            _ => None,
        }
    }

    /// Whether a later retry could succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            SlackError::Api { error, .. } => {
                matches!(
                    error.as_str(),
                    "internal_error"
                        | "fatal_error"
                        | "service_unavailable"
                        | "request_timeout"
                        | "ratelimited"
                )
            }
            SlackError::Http { status, .. } => status.is_server_error(),
            SlackError::GaveUp(_) => true,
        }
    }
}

/// A file uploaded with [`SlackApi::upload_file`].
#[derive(Debug, Clone)]
pub struct SlackUpload<'a> {
    pub filename: &'a str,
    pub title: &'a str,
    pub alt_text: &'a str,
    pub bytes: &'a [u8],
}

#[derive(Debug, Clone)]
pub struct SlackApi {
    client: reqwest::Client,
    base: String,
    bot_token: Secret,
    pub counters: ApiCounters,
}

enum Body<'a> {
    Json(&'a Value),
    Form(&'a [(&'a str, String)]),
}

impl SlackApi {
    pub fn new(base: &str, bot_token: Secret) -> Result<SlackApi, SlackError> {
        Ok(SlackApi {
            client: reqwest::Client::builder()
                .timeout(Duration::from_secs(30))
                .build()
                .map_err(GaveUp::from)?,
            base: base.trim_end_matches('/').to_owned(),
            bot_token,
            counters: ApiCounters::default(),
        })
    }

    /// A JSON method call with the bot token.
    pub async fn call(&self, method: &str, body: &Value) -> Result<Value, SlackError> {
        self.send(method, &self.bot_token, Body::Json(body)).await
    }

    /// A form-encoded call (the files.* methods take no JSON).
    pub async fn call_form(
        &self,
        method: &str,
        form: &[(&str, String)],
    ) -> Result<Value, SlackError> {
        self.send(method, &self.bot_token, Body::Form(form)).await
    }

    /// `apps.connections.open` with the app-level token: a Socket Mode URL.
    pub async fn open_connection(&self, app_token: &Secret) -> Result<String, SlackError> {
        let answer = self
            .send("apps.connections.open", app_token, Body::Form(&[]))
            .await?;
        answer["url"]
            .as_str()
            .map(str::to_owned)
            .ok_or_else(|| SlackError::Api {
                method: "apps.connections.open".into(),
                error: "no url in the answer".into(),
            })
    }

    pub async fn post_message(&self, message: &Value) -> Result<String, SlackError> {
        let answer = self.call("chat.postMessage", message).await?;
        Ok(answer["ts"].as_str().unwrap_or_default().to_owned())
    }

    /// The messages of a thread (or of the channel, when `thread_ts` is
    /// `None`) since `oldest`, with their metadata: up to [`LOOK_PAGES`]
    /// pages (Slack pages with a cursor; a busy channel may need more than
    /// one, and apps outside the Marketplace get small pages).
    pub async fn messages_since(
        &self,
        channel: &str,
        thread_ts: Option<&str>,
        oldest: chrono::DateTime<chrono::Utc>,
    ) -> Result<Vec<Value>, SlackError> {
        let oldest = format!(
            "{}.{:06}",
            oldest.timestamp(),
            oldest.timestamp_subsec_micros()
        );
        let mut form = vec![
            ("channel", channel.to_owned()),
            ("oldest", oldest),
            ("include_all_metadata", "true".to_owned()),
            ("limit", "200".to_owned()),
        ];
        let method = match thread_ts {
            Some(ts) => {
                form.push(("ts", ts.to_owned()));
                "conversations.replies"
            }
            None => "conversations.history",
        };
        let mut messages = Vec::new();
        for _ in 0..LOOK_PAGES {
            let answer = self.call_form(method, &form).await?;
            messages.extend(answer["messages"].as_array().cloned().unwrap_or_default());
            match answer["response_metadata"]["next_cursor"].as_str() {
                Some(cursor) if !cursor.is_empty() => {
                    form.retain(|(name, _)| *name != "cursor");
                    form.push(("cursor", cursor.to_owned()));
                }
                _ => break,
            }
        }
        Ok(messages)
    }

    pub async fn delete_message(&self, channel: &str, ts: &str) -> Result<(), SlackError> {
        self.call("chat.delete", &json!({ "channel": channel, "ts": ts }))
            .await
            .map(drop)
    }

    /// Deletes a file the bot shared (files.delete).
    pub async fn delete_file(&self, file: &str) -> Result<(), SlackError> {
        self.call_form("files.delete", &[("file", file.to_owned())])
            .await
            .map(drop)
    }

    /// Replaces a message's text, and its blocks when `blocks` is given
    /// (an empty array removes them; without it Slack keeps them, and they
    /// show instead of the text).
    pub async fn update_message(
        &self,
        channel: &str,
        ts: &str,
        text: &str,
        blocks: Option<&Value>,
    ) -> Result<(), SlackError> {
        let mut body = json!({ "channel": channel, "ts": ts, "text": text });
        if let Some(blocks) = blocks {
            body["blocks"] = blocks.clone();
        }
        self.call("chat.update", &body).await.map(drop)
    }

    /// Uploads a file into a channel's thread: `files.getUploadURLExternal`,
    /// the bytes to the returned URL, then `files.completeUploadExternal`.
    /// Returns the file's id.
    pub async fn upload_file(
        &self,
        channel: &str,
        thread_ts: &str,
        initial_comment: &str,
        upload: &SlackUpload<'_>,
    ) -> Result<String, SlackError> {
        self.upload(
            upload,
            &[
                ("channel_id", channel.to_owned()),
                ("thread_ts", thread_ts.to_owned()),
                ("initial_comment", initial_comment.to_owned()),
            ],
        )
        .await
    }

    /// Uploads a file shared nowhere (private to the bot), for an image
    /// block to show by its id. Returns the file's id.
    pub async fn upload_private(&self, upload: &SlackUpload<'_>) -> Result<String, SlackError> {
        self.upload(upload, &[]).await
    }

    /// The external upload flow, completed with `share` (where the file is
    /// shared; nothing keeps it private).
    async fn upload(
        &self,
        upload: &SlackUpload<'_>,
        share: &[(&str, String)],
    ) -> Result<String, SlackError> {
        let ticket = self
            .call_form(
                "files.getUploadURLExternal",
                &[
                    ("filename", upload.filename.to_owned()),
                    ("length", upload.bytes.len().to_string()),
                    ("alt_txt", upload.alt_text.to_owned()),
                ],
            )
            .await?;
        let (Some(url), Some(file_id)) =
            (ticket["upload_url"].as_str(), ticket["file_id"].as_str())
        else {
            return Err(SlackError::Api {
                method: "files.getUploadURLExternal".into(),
                error: "no upload_url or file_id in the answer".into(),
            });
        };
        self.upload_bytes(url, upload).await?;
        let files = json!([{ "id": file_id, "title": upload.title }]).to_string();
        let mut form = vec![("files", files)];
        form.extend_from_slice(share);
        self.call_form("files.completeUploadExternal", &form)
            .await?;
        Ok(file_id.to_owned())
    }

    async fn upload_bytes(&self, url: &str, upload: &SlackUpload<'_>) -> Result<(), SlackError> {
        let response = retry::send(&self.counters, "file upload", Resend::Freely, || {
            let part = reqwest::multipart::Part::bytes(upload.bytes.to_vec())
                .file_name(upload.filename.to_owned());
            Ok(self
                .client
                .post(url)
                .multipart(reqwest::multipart::Form::new().part("file", part)))
        })
        .await?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(SlackError::Http {
                method: "file upload".into(),
                status: response.status(),
            })
        }
    }

    /// Posts to an interaction's `response_url` (no token: the URL is the credential).
    pub async fn respond(&self, response_url: &str, body: &Value) -> Result<(), SlackError> {
        let response = self
            .client
            .post(response_url)
            .json(body)
            .send()
            .await
            .map_err(GaveUp::from)?;
        if response.status().is_success() {
            Ok(())
        } else {
            Err(SlackError::Http {
                method: "response_url".into(),
                status: response.status(),
            })
        }
    }

    async fn send(
        &self,
        method: &str,
        token: &Secret,
        body: Body<'_>,
    ) -> Result<Value, SlackError> {
        let url = format!("{}/{method}", self.base);
        let response = retry::send(&self.counters, method, resend(method), || {
            let request = self.client.post(&url).bearer_auth(token.expose());
            Ok(match &body {
                Body::Json(json) => request.json(json),
                Body::Form(form) => request.form(form),
            })
        })
        .await?;
        let status = response.status();
        if !status.is_success() {
            return Err(SlackError::Http {
                method: method.to_owned(),
                status,
            });
        }
        let answer: Value = response.json().await.map_err(GaveUp::from)?;
        if answer["ok"].as_bool() != Some(true) {
            return Err(SlackError::Api {
                method: method.to_owned(),
                error: answer["error"]
                    .as_str()
                    .unwrap_or("unknown_error")
                    .to_owned(),
            });
        }
        Ok(answer)
    }
}

/// Methods that post (Slack deduplicates nothing) are repeated only when
/// the try surely did not land; their callers look before trying again.
fn resend(method: &str) -> Resend {
    match method {
        "chat.postMessage" | "files.completeUploadExternal" => Resend::IfUnsent,
        _ => Resend::Freely,
    }
}

impl crate::delivery::Transience for SlackError {
    fn is_transient(&self) -> bool {
        SlackError::is_transient(self)
    }
}
