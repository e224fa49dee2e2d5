//! A stand-in for Slack's Web API on 127.0.0.1: it records every call,
//! keeps channels' messages and threads, serves the external upload flow
//! (its `upload_url` points at itself), `response_url`s, and Socket Mode
//! (`apps.connections.open` hands out a ws:// URL on itself). It can answer
//! 429 with Retry-After, for fault tests.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::ws::{Message as WsMessage, WebSocket, WebSocketUpgrade};
use axum::extract::{Multipart, Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use serde_json::{Value, json};
use tokio::sync::mpsc;

pub const BOT_TOKEN: &str = "xoxb-test-bot-token";
pub const APP_TOKEN: &str = "xapp-test-app-token";

#[derive(Debug, Clone)]
pub struct Call {
    pub method: String,
    pub at: Instant,
    pub authorization: Option<String>,
    /// JSON body, or the form's fields as a JSON object.
    pub body: Value,
    pub status: u16,
}

#[derive(Debug, Clone)]
pub struct SlackMessage {
    pub ts: String,
    pub channel: String,
    pub thread_ts: Option<String>,
    pub text: String,
    pub blocks: Value,
    /// chat.postMessage's `metadata`, returned only when asked for.
    pub metadata: Value,
}

impl SlackMessage {
    /// Button action ids and labels, by actions block.
    pub fn button_rows(&self) -> Vec<Vec<(String, String)>> {
        self.blocks
            .as_array()
            .into_iter()
            .flatten()
            .filter(|b| b["type"] == "actions")
            .map(|b| {
                b["elements"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|e| {
                        (
                            e["action_id"].as_str().unwrap_or_default().to_owned(),
                            e["text"]["text"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .collect()
    }

    /// The message as Slack puts it into a block_actions payload.
    pub fn json(&self) -> Value {
        let mut message = json!({ "type": "message", "bot_id": "B0WORDUP", "text": self.text, "ts": self.ts, "blocks": self.blocks });
        if let Some(thread) = &self.thread_ts {
            message["thread_ts"] = json!(thread);
        }
        message
    }
}

#[derive(Debug, Clone)]
pub struct SlackFile {
    pub id: String,
    pub filename: String,
    pub alt_text: String,
    pub bytes: Vec<u8>,
    /// Set by files.completeUploadExternal.
    pub channel: Option<String>,
    pub thread_ts: Option<String>,
    pub initial_comment: Option<String>,
    /// The ts of the message that shared it.
    pub shared_ts: Option<String>,
    /// Set by files.completeUploadExternal, with or without a channel.
    pub completed: bool,
}

#[derive(Default)]
struct Inner {
    calls: Vec<Call>,
    messages: Vec<SlackMessage>,
    files: Vec<SlackFile>,
    responses: Vec<(String, Value)>,
    /// 429s to answer: (method, Retry-After seconds).
    rate_limits: VecDeque<(String, u64)>,
    /// Errors to answer: (method, Slack error code).
    failures: VecDeque<(String, String)>,
    /// Methods whose next call is carried out, then answered 504.
    lost_answers: VecDeque<String>,
    socket_acks: Vec<Value>,
    socket: Option<mpsc::UnboundedSender<Value>>,
    next: u64,
    /// Files users shared, by `url_private` path: (mimetype, bytes).
    user_files: std::collections::HashMap<String, (String, Vec<u8>)>,
    /// Trigger ids handed out with interactions, and when (Slack honours
    /// one for 3 s, once).
    triggers: std::collections::HashMap<String, Instant>,
    /// Modal views opened (views.open's `view`).
    views: Vec<Value>,
    /// Ephemeral messages: (channel, user, text).
    ephemerals: Vec<(String, String, String)>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    base: String,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn next(&self) -> u64 {
        let mut inner = self.lock();
        inner.next += 1;
        inner.next
    }

    /// A message ts as Slack makes them: the time, with a counter to keep
    /// them unique.
    fn next_ts(&self) -> String {
        let n = self.next();
        let secs = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs());
        format!("{secs}.{:06}", n % 1_000_000)
    }
}

/// Slack's ts as a number, for `oldest`.
fn ts_value(ts: &str) -> f64 {
    ts.parse().unwrap_or(0.0)
}

pub struct FakeSlack {
    /// The Web API base to give the bot (`WORDUP_SLACK_API_URL`).
    pub api_url: String,
    /// Where `response_url`s point.
    pub base: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeSlack {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeSlack {
    pub async fn start() -> anyhow::Result<FakeSlack> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let shared = Shared {
            inner: Arc::default(),
            base: base.clone(),
        };
        let router = Router::new()
            .route("/api/{method}", post(api))
            .route("/upload/{file}", post(upload))
            .route("/response/{id}", post(response_url))
            .route("/socket", any(socket))
            .route("/files-pri/{*path}", axum::routing::get(user_file))
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(FakeSlack {
            api_url: format!("{base}/api"),
            base,
            shared,
            server,
        })
    }

    /// Hosts a file a user shared; returns it as a message's `files` entry
    /// (`url_private` on the fake).
    pub fn host_user_file(&self, name: &str, mimetype: &str, bytes: Vec<u8>) -> Value {
        let id = format!("F{:08}", self.shared.next());
        let path = format!("T0TEAM-{id}/{name}");
        self.shared
            .lock()
            .user_files
            .insert(path.clone(), (mimetype.to_owned(), bytes));
        json!({
            "id": id,
            "name": name,
            "mimetype": mimetype,
            "url_private": format!("{}/files-pri/{path}", self.base),
        })
    }

    /// `host:port` of the fake, as a file-host setting names it.
    /// A trigger id for an interaction payload, as Slack issues them: good
    /// for one views.open within 3 s.
    pub fn trigger(&self) -> String {
        let id = format!(
            "{}.{}.{:032x}",
            self.shared.next(),
            47445629121u64,
            rand::random::<u128>()
        );
        self.shared
            .lock()
            .triggers
            .insert(id.clone(), Instant::now());
        id
    }

    /// Views opened with views.open, oldest first.
    pub fn views(&self) -> Vec<Value> {
        self.shared.lock().views.clone()
    }

    /// Ephemeral messages posted: (channel, user, text).
    pub fn ephemerals(&self) -> Vec<(String, String, String)> {
        self.shared.lock().ephemerals.clone()
    }

    pub fn host(&self) -> String {
        self.base.trim_start_matches("http://").to_owned()
    }

    pub fn calls(&self) -> Vec<Call> {
        self.shared.lock().calls.clone()
    }

    pub fn messages(&self) -> Vec<SlackMessage> {
        self.shared.lock().messages.clone()
    }

    pub fn files(&self) -> Vec<SlackFile> {
        self.shared.lock().files.clone()
    }

    /// The files shared into a channel (files.completeUploadExternal done).
    pub fn shared_files(&self) -> Vec<SlackFile> {
        let mut files = self.files();
        files.retain(|f| f.channel.is_some());
        files
    }

    /// Bodies posted to response URLs.
    pub fn responses(&self) -> Vec<(String, Value)> {
        self.shared.lock().responses.clone()
    }

    pub fn socket_acks(&self) -> Vec<Value> {
        self.shared.lock().socket_acks.clone()
    }

    pub fn rate_limit(&self, method: &str, retry_after_secs: u64) {
        self.shared
            .lock()
            .rate_limits
            .push_back((method.to_owned(), retry_after_secs));
    }

    /// The next call of `method` answers `{"ok": false, "error": error}`.
    /// Carries out the next call of `method`, then answers 504 (Slack's
    /// edge timing out): the client cannot tell that it landed.
    pub fn lose_next_answer(&self, method: &str) {
        self.shared.lock().lost_answers.push_back(method.to_owned());
    }

    pub fn fail_next(&self, method: &str, error: &str) {
        self.shared
            .lock()
            .failures
            .push_back((method.to_owned(), error.to_owned()));
    }

    /// A fresh response URL on the fake.
    pub fn response_url(&self) -> String {
        format!("{}/response/{}", self.base, self.shared.next())
    }

    /// Pushes a Socket Mode envelope to the connected client.
    pub fn push_envelope(&self, envelope: Value) -> anyhow::Result<()> {
        let sender = self.shared.lock().socket.clone();
        sender
            .ok_or_else(|| anyhow::anyhow!("no Socket Mode client connected"))?
            .send(envelope)
            .map_err(|_| anyhow::anyhow!("the Socket Mode client went away"))
    }

    pub fn socket_connected(&self) -> bool {
        self.shared.lock().socket.is_some()
    }

    /// Waits until `check` holds over the fake's state.
    pub async fn wait_until(
        &self,
        what: &str,
        timeout: Duration,
        check: impl Fn(&FakeSlack) -> bool,
    ) -> anyhow::Result<()> {
        let deadline = Instant::now() + timeout;
        while !check(self) {
            if Instant::now() > deadline {
                anyhow::bail!(
                    "waited {timeout:?} for {what}; calls: {:?}",
                    self.calls()
                        .iter()
                        .map(|c| format!("{} → {}", c.method, c.status))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Messages in a thread (replies only), in order.
    pub fn thread(&self, channel: &str, ts: &str) -> Vec<SlackMessage> {
        self.messages()
            .into_iter()
            .filter(|m| m.channel == channel && m.thread_ts.as_deref() == Some(ts))
            .collect()
    }
}

fn read_body(headers: &HeaderMap, body: &Bytes) -> Value {
    let form = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("application/x-www-form-urlencoded"));
    if form {
        let pairs: Vec<(String, String)> = serde_urlencoded::from_bytes(body).unwrap_or_default();
        Value::Object(
            pairs
                .into_iter()
                .map(|(k, v)| (k, Value::String(v)))
                .collect(),
        )
    } else {
        serde_json::from_slice(body).unwrap_or(Value::Null)
    }
}

fn ok(extra: Value) -> Response {
    let mut body = json!({ "ok": true });
    if let (Some(body), Some(extra)) = (body.as_object_mut(), extra.as_object()) {
        body.extend(extra.clone());
    }
    axum::Json(body).into_response()
}

fn fail(error: &str) -> Response {
    axum::Json(json!({ "ok": false, "error": error })).into_response()
}

/// Slack's documented limits on what we send: message text ≤ 40,000
/// characters (`msg_too_long`), ≤ 50 blocks, section text ≤ 3000, ≤ 25
/// elements per actions block, action_id ≤ 255 and value ≤ 2000
/// (`invalid_blocks`), alt text ≤ 1000 (`alt_txt_too_large`).
pub fn refusal(method: &str, body: &Value) -> Option<&'static str> {
    let chars = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    match method {
        "chat.postMessage" | "chat.update" => {
            if chars(&body["text"]) > 40_000 {
                return Some("msg_too_long");
            }
            let blocks = body["blocks"].as_array().cloned().unwrap_or_default();
            let block_ok = |block: &Value| match block["type"].as_str() {
                Some("section") => chars(&block["text"]["text"]) <= 3000,
                Some("actions") => block["elements"].as_array().is_some_and(|elements| {
                    elements.len() <= 25
                        && elements.iter().all(|e| {
                            (1..=255).contains(&chars(&e["action_id"]))
                                && chars(&e["value"]) <= 2000
                        })
                }),
                _ => true,
            };
            if blocks.len() > 50 || !blocks.iter().all(block_ok) {
                return Some("invalid_blocks");
            }
            let metadata = &body["metadata"];
            let event_type_ok = metadata["event_type"].as_str().is_some_and(|t| {
                !t.is_empty() && t.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
            });
            (!metadata.is_null() && (!event_type_ok || !metadata["event_payload"].is_object()))
                .then_some("invalid_metadata_format")
        }
        "files.getUploadURLExternal" => {
            (chars(&body["alt_txt"]) > 1000).then_some("alt_txt_too_large")
        }
        "views.open" => view_refusal(&body["view"]),
        _ => None,
    }
}

/// What Slack refuses in a modal view (views.open's documented limits).
fn view_refusal(view: &Value) -> Option<&'static str> {
    let chars = |v: &Value| v.as_str().map_or(0, |s| s.chars().count());
    let plain =
        |v: &Value, max: usize| v["type"] == "plain_text" && (1..=max).contains(&chars(&v["text"]));
    let blocks = view["blocks"].as_array().cloned().unwrap_or_default();
    let input_ok = |block: &Value| {
        let element = &block["element"];
        let max = element["max_length"].as_u64().unwrap_or(3000) as usize;
        block["type"] == "input"
            && plain(&block["label"], 2000)
            && element["type"] == "plain_text_input"
            && (1..=255).contains(&chars(&element["action_id"]))
            && max <= 3000
            && chars(&element["initial_value"]) <= max
    };
    let valid = view["type"] == "modal"
        && plain(&view["title"], 24)
        && (view["submit"].is_null() || plain(&view["submit"], 24))
        && (view["close"].is_null() || plain(&view["close"], 24))
        && chars(&view["private_metadata"]) <= 3000
        && chars(&view["callback_id"]) <= 255
        && (1..=100).contains(&blocks.len())
        && blocks.iter().all(|b| b["type"] != "input" || input_ok(b));
    (!valid).then_some("invalid_arguments")
}

async fn api(
    State(shared): State<Shared>,
    Path(method): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let body = read_body(&headers, &body);
    let authorization = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let record = |status: u16| {
        shared.lock().calls.push(Call {
            method: method.clone(),
            at: Instant::now(),
            authorization: authorization.clone(),
            body: body.clone(),
            status,
        });
    };
    let limited = {
        let mut inner = shared.lock();
        match inner.rate_limits.iter().position(|(m, _)| *m == method) {
            Some(i) => inner.rate_limits.remove(i),
            None => None,
        }
    };
    if let Some((_, secs)) = limited {
        record(429);
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({ "ok": false, "error": "ratelimited" })),
        )
            .into_response();
        response.headers_mut().insert(
            "retry-after",
            secs.to_string()
                .parse()
                .expect("a number is a header value"),
        );
        return response;
    }
    let expected = if method == "apps.connections.open" {
        format!("Bearer {APP_TOKEN}")
    } else {
        format!("Bearer {BOT_TOKEN}")
    };
    if authorization.as_deref() != Some(expected.as_str()) {
        record(200);
        return fail("invalid_auth");
    }
    record(200);
    if let Some(error) = refusal(&method, &body) {
        return fail(error);
    }
    let lost_answer = {
        let mut inner = shared.lock();
        match inner.lost_answers.iter().position(|m| *m == method) {
            Some(i) => inner.lost_answers.remove(i).is_some(),
            None => false,
        }
    };
    if lost_answer {
        // Carried out, but the client hears only a timeout.
        if let Some(call) = shared.lock().calls.last_mut() {
            call.status = 504;
        }
        drop(carry_out(&shared, &method, &body));
        return (StatusCode::GATEWAY_TIMEOUT, "upstream request timeout").into_response();
    }
    let failure = {
        let mut inner = shared.lock();
        match inner.failures.iter().position(|(m, _)| *m == method) {
            Some(i) => inner.failures.remove(i),
            None => None,
        }
    };
    if let Some((_, error)) = failure {
        return fail(&error);
    }
    carry_out(&shared, &method, &body)
}

/// A Web API method's effect and answer.
fn carry_out(shared: &Shared, method: &str, body: &Value) -> Response {
    let str_of = |key: &str| body[key].as_str().map(str::to_owned);
    match method {
        "views.open" => {
            let trigger = str_of("trigger_id").unwrap_or_default();
            let mut inner = shared.lock();
            match inner.triggers.remove(&trigger) {
                None => fail("invalid_trigger_id"),
                Some(at) if at.elapsed() > std::time::Duration::from_secs(3) => {
                    fail("expired_trigger_id")
                }
                Some(_) => {
                    inner.views.push(body["view"].clone());
                    ok(json!({ "view": { "id": format!("V{}", inner.views.len()) } }))
                }
            }
        }
        "chat.postEphemeral" => {
            let (Some(channel), Some(user), Some(text)) =
                (str_of("channel"), str_of("user"), str_of("text"))
            else {
                return fail("invalid_arguments");
            };
            shared.lock().ephemerals.push((channel, user, text));
            ok(json!({ "message_ts": shared.next_ts() }))
        }
        "chat.postMessage" => {
            let Some(channel) = str_of("channel") else {
                return fail("channel_not_found");
            };
            if channel == "CNOTINVITED" {
                return fail("not_in_channel");
            }
            if !images_readable(&shared.lock().files, &body["blocks"]) {
                return fail("invalid_blocks");
            }
            let ts = shared.next_ts();
            shared.lock().messages.push(SlackMessage {
                ts: ts.clone(),
                channel: channel.clone(),
                thread_ts: str_of("thread_ts"),
                text: str_of("text").unwrap_or_default(),
                blocks: body["blocks"].clone(),
                metadata: body["metadata"].clone(),
            });
            ok(json!({ "channel": channel, "ts": ts }))
        }
        "conversations.replies" | "conversations.history" => {
            let Some(channel) = str_of("channel") else {
                return fail("channel_not_found");
            };
            let thread = str_of("ts");
            if method == "conversations.replies" && thread.is_none() {
                return fail("invalid_arguments");
            }
            let oldest = str_of("oldest").map_or(0.0, |o| ts_value(&o));
            let limit = str_of("limit")
                .and_then(|l| l.parse::<usize>().ok())
                .unwrap_or(100);
            let with_metadata = str_of("include_all_metadata").as_deref() == Some("true");
            let inner = shared.lock();
            let in_place = |m_thread: &Option<String>, ts: &str| match &thread {
                // A thread: its parent and its replies.
                Some(parent) => ts == parent || m_thread.as_deref() == Some(parent),
                // The channel: top-level messages only.
                None => m_thread.is_none(),
            };
            let mut found: Vec<(f64, Value)> = inner
                .messages
                .iter()
                .filter(|m| m.channel == channel && in_place(&m.thread_ts, &m.ts))
                .map(|m| {
                    let mut json = m.json();
                    if with_metadata && !m.metadata.is_null() {
                        json["metadata"] = m.metadata.clone();
                    }
                    (ts_value(&m.ts), json)
                })
                .chain(inner.files.iter().filter_map(|f| {
                    let ts = f.shared_ts.as_ref()?;
                    (f.channel.as_deref() == Some(&channel) && in_place(&f.thread_ts, ts)).then(
                        || {
                            (
                                ts_value(ts),
                                json!({ "type": "message", "ts": ts, "thread_ts": f.thread_ts,
                                    "files": [{ "id": f.id, "name": f.filename }] }),
                            )
                        },
                    )
                }))
                .filter(|(ts, _)| *ts > oldest)
                .collect();
            found.sort_by(|a, b| a.0.total_cmp(&b.0));
            // Replies come oldest first, history newest first.
            if method == "conversations.history" {
                found.reverse();
            }
            // Pages of `limit`, the cursor naming where the next begins.
            let start = str_of("cursor")
                .and_then(|c| c.strip_prefix("next:")?.parse::<usize>().ok())
                .unwrap_or(0);
            let has_more = found.len() > start + limit;
            let messages: Vec<Value> = found
                .into_iter()
                .skip(start)
                .take(limit)
                .map(|(_, m)| m)
                .collect();
            let cursor = if has_more {
                format!("next:{}", start + limit)
            } else {
                String::new()
            };
            ok(json!({ "messages": messages, "has_more": has_more,
                       "response_metadata": { "next_cursor": cursor } }))
        }
        "chat.delete" => {
            let (Some(channel), Some(ts)) = (str_of("channel"), str_of("ts")) else {
                return fail("message_not_found");
            };
            let mut inner = shared.lock();
            let before = inner.messages.len();
            inner
                .messages
                .retain(|m| !(m.channel == channel && m.ts == ts));
            if inner.messages.len() == before {
                return fail("message_not_found");
            }
            ok(json!({ "channel": channel, "ts": ts }))
        }
        "chat.update" => {
            let (Some(channel), Some(ts)) = (str_of("channel"), str_of("ts")) else {
                return fail("message_not_found");
            };
            let mut inner = shared.lock();
            if !images_readable(&inner.files, &body["blocks"]) {
                return fail("invalid_blocks");
            }
            let Some(message) = inner
                .messages
                .iter_mut()
                .find(|m| m.channel == channel && m.ts == ts)
            else {
                return fail("message_not_found");
            };
            message.text = str_of("text").unwrap_or_default();
            // Without `blocks` Slack keeps the message's blocks; `[]` removes them.
            if body.get("blocks").is_some() {
                message.blocks = body["blocks"].clone();
            }
            ok(json!({ "channel": channel, "ts": ts }))
        }
        "files.getUploadURLExternal" => {
            let (Some(filename), Some(length)) = (str_of("filename"), str_of("length")) else {
                return fail("invalid_arguments");
            };
            if length.parse::<u64>().is_err() {
                return fail("invalid_arguments");
            }
            let id = format!("F{:08}", shared.next());
            shared.lock().files.push(SlackFile {
                id: id.clone(),
                filename,
                alt_text: str_of("alt_txt").unwrap_or_default(),
                bytes: Vec::new(),
                channel: None,
                thread_ts: None,
                initial_comment: None,
                shared_ts: None,
                completed: false,
            });
            ok(json!({ "upload_url": format!("{}/upload/{id}", shared.base), "file_id": id }))
        }
        "files.completeUploadExternal" => {
            let files: Vec<Value> = str_of("files")
                .and_then(|f| serde_json::from_str(&f).ok())
                .unwrap_or_default();
            let mut inner = shared.lock();
            for file in &files {
                let Some(stored) = inner
                    .files
                    .iter_mut()
                    .find(|f| Some(f.id.as_str()) == file["id"].as_str())
                else {
                    return fail("file_not_found");
                };
                if stored.bytes.is_empty() {
                    return fail("file_upload_incomplete");
                }
                stored.channel = str_of("channel_id");
                stored.thread_ts = str_of("thread_ts");
                stored.initial_comment = str_of("initial_comment");
                stored.completed = true;
            }
            drop(inner);
            // Shared nowhere, a file stays private: no message shares it.
            for file in files.iter().filter(|_| str_of("channel_id").is_some()) {
                let ts = shared.next_ts();
                if let Some(stored) = shared
                    .lock()
                    .files
                    .iter_mut()
                    .find(|f| Some(f.id.as_str()) == file["id"].as_str())
                {
                    stored.shared_ts = Some(ts);
                }
            }
            ok(json!({ "files": files }))
        }
        "files.delete" => {
            let Some(file) = str_of("file") else {
                return fail("file_not_found");
            };
            let mut inner = shared.lock();
            let before = inner.files.len();
            inner.files.retain(|f| f.id != file);
            if inner.files.len() == before {
                return fail("file_not_found");
            }
            ok(json!({}))
        }
        "apps.connections.open" => {
            ok(json!({ "url": format!("{}/socket", shared.base.replace("http://", "ws://")) }))
        }
        _ => fail("unknown_method"),
    }
}

/// Whether every image block's `slack_file` names, by id only, a file whose
/// upload was completed (the poster must be able to read it), with alt text.
fn images_readable(files: &[SlackFile], blocks: &Value) -> bool {
    blocks
        .as_array()
        .into_iter()
        .flatten()
        .filter(|b| b["type"] == "image")
        .all(|b| {
            let file = &b["slack_file"];
            let alt = b["alt_text"].as_str().map_or(0, |a| a.chars().count());
            let known = file["id"]
                .as_str()
                .is_some_and(|id| files.iter().any(|f| f.id == id && f.completed));
            // A file given by both id and url is refused.
            known && file.get("url").is_none() && (1..=2000).contains(&alt)
        })
}

/// A file's `url_private`: the bytes with the bot token; without it, as
/// Slack does, a 200 with the sign-in page.
async fn user_file(
    State(shared): State<Shared>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    let authorized = headers.get("authorization").and_then(|v| v.to_str().ok())
        == Some(&format!("Bearer {BOT_TOKEN}"));
    if !authorized {
        return (
            [(axum::http::header::CONTENT_TYPE, "text/html")],
            "<!DOCTYPE html><html><body>Sign in to Slack</body></html>",
        )
            .into_response();
    }
    match shared.lock().user_files.get(&path).cloned() {
        Some((mimetype, bytes)) => {
            ([(axum::http::header::CONTENT_TYPE, mimetype)], bytes).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn upload(
    State(shared): State<Shared>,
    Path(file): Path<String>,
    mut multipart: Multipart,
) -> Response {
    let mut bytes = Vec::new();
    while let Ok(Some(field)) = multipart.next_field().await {
        if let Ok(data) = field.bytes().await {
            bytes.extend_from_slice(&data);
        }
    }
    let mut inner = shared.lock();
    match inner.files.iter_mut().find(|f| f.id == file) {
        Some(stored) => {
            stored.bytes = bytes;
            (StatusCode::OK, format!("OK - {}", stored.bytes.len())).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

async fn response_url(
    State(shared): State<Shared>,
    Path(id): Path<String>,
    body: Bytes,
) -> Response {
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    shared.lock().responses.push((id, body));
    StatusCode::OK.into_response()
}

async fn socket(State(shared): State<Shared>, upgrade: WebSocketUpgrade) -> Response {
    upgrade.on_upgrade(move |socket| serve_socket(shared, socket))
}

async fn serve_socket(shared: Shared, mut socket: WebSocket) {
    let (sender, mut envelopes) = mpsc::unbounded_channel::<Value>();
    shared.lock().socket = Some(sender);
    let hello = json!({ "type": "hello", "num_connections": 1, "debug_info": { "host": "fake" }, "connection_info": { "app_id": "A0WORDUP" } });
    if socket
        .send(WsMessage::Text(hello.to_string().into()))
        .await
        .is_err()
    {
        return;
    }
    loop {
        tokio::select! {
            envelope = envelopes.recv() => {
                let Some(envelope) = envelope else { break };
                if socket.send(WsMessage::Text(envelope.to_string().into())).await.is_err() {
                    break;
                }
            }
            frame = socket.recv() => {
                match frame {
                    Some(Ok(WsMessage::Text(text))) => {
                        if let Ok(ack) = serde_json::from_str::<Value>(&text) {
                            shared.lock().socket_acks.push(ack);
                        }
                    }
                    Some(Ok(_)) => {}
                    _ => break,
                }
            }
        }
    }
    shared.lock().socket = None;
}
