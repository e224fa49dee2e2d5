//! A stand-in for Discord's REST API on 127.0.0.1: it records every request
//! (multipart parts included), creates messages as Discord does (with
//! `enforce_nonce` deduplication), serves interaction responses, and can be
//! told to answer 429 or to hold a response, for fault tests.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{FromRequest, Multipart, Path, Query, Request, State};
use axum::http::{HeaderMap, Method, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, patch, post, put};
use serde_json::{Value, json};

/// One multipart file part.
#[derive(Debug, Clone)]
pub struct FilePart {
    pub name: String,
    pub filename: String,
    pub content_type: String,
    pub bytes: Vec<u8>,
}

/// A request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: String,
    pub path: String,
    pub at: Instant,
    pub authorization: Option<String>,
    /// The JSON body, or the multipart `payload_json`.
    pub json: Option<Value>,
    pub files: Vec<FilePart>,
    pub status: u16,
}

/// A message the fake created.
#[derive(Debug, Clone)]
pub struct Message {
    pub id: String,
    pub channel_id: String,
    pub payload: Value,
    pub files: Vec<FilePart>,
    pub created: Instant,
}

/// Where hosted attachments live on the fake CDN.
const CHANNEL_ATTACHMENTS: &str = "1200000000000000003/1300000000000000001";

/// The bot user's id, as `GET /users/@me` answers and message authors show.
pub const BOT_USER_ID: &str = "990000000000000001";
/// How long Discord honours `enforce_nonce` ("the past few minutes").
pub const NONCE_WINDOW: Duration = Duration::from_secs(180);

/// Faults applied, in order, to message creation in channels.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Answer 429 with this `retry_after` (seconds) and create nothing.
    RateLimit(f64),
    /// Create the message, then hold the response this long.
    Hold(Duration),
    /// Create the message, then answer 504 as Discord's edge does when
    /// the answer timed out: the client cannot tell that it landed.
    LoseAnswer,
}

#[derive(Default)]
struct Inner {
    requests: Vec<Recorded>,
    messages: Vec<Message>,
    /// Interaction responses by token.
    originals: HashMap<String, Value>,
    faults: VecDeque<Fault>,
    next_id: u64,
    /// How long a nonce is deduplicated ([`NONCE_WINDOW`] unless a test
    /// shortens it to stand for a retry that comes later).
    nonce_window: Option<Duration>,
    /// The connected gateway client's dispatch queue, and what it sent us.
    gateway: Option<tokio::sync::mpsc::UnboundedSender<Value>>,
    gateway_received: Vec<Value>,
    /// Files users uploaded, as the CDN serves them: path → (type, bytes).
    cdn: HashMap<String, (String, Vec<u8>)>,
}

#[derive(Clone)]
struct Shared {
    inner: Arc<Mutex<Inner>>,
    bot_token: String,
    base: String,
}

pub struct FakeDiscord {
    /// Base URL to give the bot (`WORDUP_DISCORD_API_URL`).
    pub url: String,
    shared: Shared,
    server: tokio::task::JoinHandle<()>,
}

impl Drop for FakeDiscord {
    fn drop(&mut self) {
        self.server.abort();
    }
}

impl FakeDiscord {
    pub async fn start(bot_token: &str) -> anyhow::Result<FakeDiscord> {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Shared {
            inner: Arc::default(),
            bot_token: bot_token.to_owned(),
            base: url.clone(),
        };
        let router = Router::new()
            .route(
                "/api/v10/channels/{channel}/messages",
                post(create_message).get(list_messages),
            )
            .route(
                "/api/v10/channels/{channel}/messages/{message}",
                axum::routing::delete(delete_message),
            )
            .route("/api/v10/users/@me", get(users_me))
            .route("/api/v10/channels/{channel}", get(get_channel))
            .route(
                "/api/v10/webhooks/{app}/{token}/messages/{message}",
                patch(edit_original).get(get_original),
            )
            .route("/api/v10/webhooks/{app}/{token}", post(followup))
            .route(
                "/api/v10/interactions/{id}/{token}/callback",
                post(callback),
            )
            .route("/api/v10/applications/{app}/commands", put(register))
            .route("/api/v10/gateway/bot", get(gateway_bot))
            .route("/api/v10/gateway", get(gateway_bot))
            .route("/gateway", get(gateway))
            .route("/attachments/{*path}", get(cdn_file))
            .route(
                "/api/v10/applications/{app}/guilds/{guild}/commands",
                put(register),
            )
            .with_state(shared.clone());
        let server = tokio::spawn(async move {
            let _ = axum::serve(listener, router).await;
        });
        Ok(FakeDiscord {
            url,
            shared,
            server,
        })
    }

    /// Whether a gateway client has identified.
    pub fn gateway_identified(&self) -> bool {
        self.lock().gateway_received.iter().any(|p| p["op"] == 2)
    }

    /// What the gateway client sent (Identify, heartbeats).
    pub fn gateway_received(&self) -> Vec<Value> {
        self.lock().gateway_received.clone()
    }

    /// Sends an INTERACTION_CREATE dispatch to the connected gateway client.
    pub fn dispatch_interaction(&self, interaction: &Value) -> anyhow::Result<()> {
        let sender = self.lock().gateway.clone();
        sender
            .ok_or_else(|| anyhow::anyhow!("no gateway client connected"))?
            .send(json!({ "op": 0, "t": "INTERACTION_CREATE", "d": interaction }))
            .map_err(|_| anyhow::anyhow!("the gateway client went away"))
    }

    /// Shortens how long nonces are deduplicated (zero: a retry that comes
    /// after Discord forgot the nonce).
    pub fn set_nonce_window(&self, window: Duration) {
        self.lock().nonce_window = Some(window);
    }

    pub fn push_fault(&self, fault: Fault) {
        self.lock().faults.push_back(fault);
    }

    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    pub fn messages(&self) -> Vec<Message> {
        self.lock().messages.clone()
    }

    /// The interaction response's current content for a token.
    pub fn original(&self, token: &str) -> Option<Value> {
        self.lock().originals.get(token).cloned()
    }

    /// Waits until `count` messages exist.
    pub async fn wait_for_messages(
        &self,
        count: usize,
        timeout: Duration,
    ) -> anyhow::Result<Vec<Message>> {
        let deadline = Instant::now() + timeout;
        loop {
            let messages = self.messages();
            if messages.len() >= count {
                return Ok(messages);
            }
            if Instant::now() > deadline {
                anyhow::bail!(
                    "waited {timeout:?} for {count} messages, have {}; requests: {:#?}",
                    messages.len(),
                    self.requests()
                        .iter()
                        .map(|r| format!("{} {} → {}", r.method, r.path, r.status))
                        .collect::<Vec<_>>()
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.shared.inner.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn authorized(&self, headers: &HeaderMap) -> bool {
        headers
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v == format!("Bot {}", self.bot_token))
    }

    /// Records and answers 401 a bodiless request without the bot token.
    fn unauthorized(&self, method: &Method, path: &str, headers: &HeaderMap) -> Option<Response> {
        if self.authorized(headers) {
            return None;
        }
        self.record(method, path.to_owned(), headers, None, Vec::new(), 401);
        Some(error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized"))
    }

    /// Records and answers a request Discord would refuse ([`refusal`]).
    fn refused(
        &self,
        method: &Method,
        path: &str,
        headers: &HeaderMap,
        json: &Option<Value>,
        files: &[FilePart],
    ) -> Option<Response> {
        let refused = refusal(json.as_ref(), files)?;
        let status = refused.status().as_u16();
        self.record(
            method,
            path.to_owned(),
            headers,
            json.clone(),
            files.to_vec(),
            status,
        );
        Some(refused)
    }

    fn record(
        &self,
        method: &Method,
        path: String,
        headers: &HeaderMap,
        json: Option<Value>,
        files: Vec<FilePart>,
        status: u16,
    ) {
        self.lock().requests.push(Recorded {
            method: method.to_string(),
            path,
            at: Instant::now(),
            authorization: headers
                .get("authorization")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned),
            json,
            files,
            status,
        });
    }

    fn next_id(&self) -> String {
        let mut inner = self.lock();
        inner.next_id += 1;
        // A snowflake: milliseconds since Discord's epoch, then a counter.
        let ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64)
            - 1_420_070_400_000;
        ((ms << 22) | (inner.next_id & 0xfff)).to_string()
    }
}

/// JSON or multipart (`payload_json` + `files[n]`), as Discord accepts.
async fn read_body(request: Request) -> Result<(Option<Value>, Vec<FilePart>), Response> {
    let is_multipart = request
        .headers()
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v.starts_with("multipart/form-data"));
    if !is_multipart {
        let bytes = Bytes::from_request(request, &())
            .await
            .map_err(IntoResponse::into_response)?;
        let json = if bytes.is_empty() {
            None
        } else {
            Some(serde_json::from_slice(&bytes).map_err(|e| {
                (
                    StatusCode::BAD_REQUEST,
                    json!({"code": 50109, "message": format!("invalid JSON: {e}")}).to_string(),
                )
                    .into_response()
            })?)
        };
        return Ok((json, Vec::new()));
    }
    let mut multipart = Multipart::from_request(request, &())
        .await
        .map_err(IntoResponse::into_response)?;
    let mut json = None;
    let mut files = Vec::new();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(IntoResponse::into_response)?
    {
        let name = field.name().unwrap_or_default().to_owned();
        let filename = field.file_name().map(str::to_owned);
        let content_type = field.content_type().unwrap_or_default().to_owned();
        let bytes = field.bytes().await.map_err(IntoResponse::into_response)?;
        if name == "payload_json" {
            json = serde_json::from_slice(&bytes).ok();
        } else if let Some(filename) = filename {
            files.push(FilePart {
                name,
                filename,
                content_type,
                bytes: bytes.to_vec(),
            });
        }
    }
    Ok((json, files))
}

/// Discord's documented limits on a message: content ≤ 2000 characters, an
/// attachment description ≤ 1024, ≤ 5 action rows of ≤ 5 buttons with
/// unique custom_ids of 1–100 characters, files ≤ 10 MiB (the default).
/// A request over any of them is refused as Discord refuses it.
pub fn refusal(payload: Option<&Value>, files: &[FilePart]) -> Option<Response> {
    const MAX_FILE: usize = 10 * 1024 * 1024;
    if files.iter().any(|f| f.bytes.len() > MAX_FILE) {
        return Some(error(
            StatusCode::PAYLOAD_TOO_LARGE,
            40005,
            "Request entity too large",
        ));
    }
    let payload = payload?;
    let invalid = |what: &str| {
        Some(error(
            StatusCode::BAD_REQUEST,
            50035,
            &format!("Invalid Form Body: {what}"),
        ))
    };
    if payload["content"]
        .as_str()
        .is_some_and(|c| c.chars().count() > 2000)
    {
        return invalid("content: Must be 2000 or fewer in length.");
    }
    for attachment in payload["attachments"].as_array().into_iter().flatten() {
        if attachment["description"]
            .as_str()
            .is_some_and(|d| d.chars().count() > 1024)
        {
            return invalid("attachments.description: Must be 1024 or fewer in length.");
        }
    }
    let rows = payload["components"]
        .as_array()
        .cloned()
        .unwrap_or_default();
    if rows.len() > 5 {
        return invalid("components: Must be 5 or fewer in length.");
    }
    let mut ids = std::collections::HashSet::new();
    for row in &rows {
        let buttons = row["components"].as_array().cloned().unwrap_or_default();
        if buttons.len() > 5 {
            return invalid("components.components: Must be 5 or fewer in length.");
        }
        for button in buttons {
            let id = button["custom_id"].as_str().unwrap_or_default();
            if !(1..=100).contains(&id.chars().count()) || !ids.insert(id.to_owned()) {
                return invalid("components.custom_id: invalid or duplicated");
            }
        }
    }
    None
}

fn error(status: StatusCode, code: i64, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "code": code, "message": message })),
    )
        .into_response()
}

impl Message {
    /// The message as Discord's API returns it.
    pub fn json(&self) -> Value {
        message_json(self)
    }

    /// Every button's custom_id, row by row.
    pub fn button_rows(&self) -> Vec<Vec<(String, String)>> {
        self.payload["components"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|row| {
                row["components"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .map(|b| {
                        (
                            b["custom_id"].as_str().unwrap_or_default().to_owned(),
                            b["label"].as_str().unwrap_or_default().to_owned(),
                        )
                    })
                    .collect()
            })
            .collect()
    }
}

fn message_json(message: &Message) -> Value {
    let attachments: Vec<Value> = message
        .files
        .iter()
        .enumerate()
        .map(|(i, f)| {
            let described = message.payload["attachments"]
                .as_array()
                .and_then(|a| a.iter().find(|a| a["id"] == i))
                .cloned()
                .unwrap_or(Value::Null);
            json!({
                "id": format!("{}{i}", message.id),
                "filename": f.filename,
                "description": described["description"],
                "content_type": f.content_type,
                "size": f.bytes.len(),
                "url": format!("https://cdn.discordapp.com/attachments/{}/{}/{}", message.channel_id, message.id, f.filename),
                "proxy_url": format!("https://media.discordapp.net/attachments/{}/{}/{}", message.channel_id, message.id, f.filename),
                "width": image::load_from_memory(&f.bytes).map(|i| i.width()).ok(),
                "height": image::load_from_memory(&f.bytes).map(|i| i.height()).ok(),
            })
        })
        .collect();
    json!({
        "id": message.id,
        "channel_id": message.channel_id,
        "content": message.payload["content"],
        "components": message.payload["components"],
        "nonce": message.payload["nonce"],
        "author": { "id": BOT_USER_ID, "username": "Word Up!", "bot": true },
        "attachments": attachments,
        "type": 0,
        "flags": message.payload["flags"].as_u64().unwrap_or(0),
    })
}

async fn create_message(
    State(shared): State<Shared>,
    Path(channel): Path<String>,
    request: Request,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let (json, files) = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    if !shared.authorized(&headers) {
        shared.record(&method, path, &headers, json, files, 401);
        return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let fault = shared.lock().faults.pop_front();
    if let Some(Fault::RateLimit(retry_after)) = fault {
        shared.record(&method, path, &headers, json, files, 429);
        let mut response = (
            StatusCode::TOO_MANY_REQUESTS,
            axum::Json(json!({ "message": "You are being rate limited.", "retry_after": retry_after, "global": false })),
        )
            .into_response();
        let headers = response.headers_mut();
        headers.insert(
            "retry-after",
            retry_after
                .ceil()
                .to_string()
                .parse()
                .expect("a number is a header value"),
        );
        headers.insert("x-ratelimit-scope", "user".parse().expect("ascii"));
        return response;
    }
    if let Some(refused) = shared.refused(&method, &path, &headers, &json, &files) {
        return refused;
    }
    let payload = json.clone().unwrap_or(Value::Null);
    let window = shared.lock().nonce_window.unwrap_or(NONCE_WINDOW);
    // Discord: with enforce_nonce, a nonce seen recently from the same author returns that message.
    let existing = payload["enforce_nonce"]
        .as_bool()
        .unwrap_or(false)
        .then(|| {
            shared
                .lock()
                .messages
                .iter()
                .find(|m| {
                    m.channel_id == channel
                        && !payload["nonce"].is_null()
                        && m.payload["nonce"] == payload["nonce"]
                        && m.created.elapsed() < window
                })
                .cloned()
        })
        .flatten();
    let message = match existing {
        Some(message) => message,
        None => {
            let message = Message {
                id: shared.next_id(),
                channel_id: channel,
                payload,
                files: files.clone(),
                created: Instant::now(),
            };
            shared.lock().messages.push(message.clone());
            message
        }
    };
    if let Some(Fault::LoseAnswer) = fault {
        shared.record(&method, path, &headers, json, files, 504);
        return error(StatusCode::GATEWAY_TIMEOUT, 0, "504: Gateway Time-out");
    }
    shared.record(&method, path, &headers, json, files, 200);
    if let Some(Fault::Hold(duration)) = fault {
        tokio::time::sleep(duration).await;
    }
    axum::Json(message_json(&message)).into_response()
}

/// `GET /channels/{id}/messages?after=`: the first `limit` (1–100)
/// messages after a snowflake, newest first. Fetched messages carry no nonce.
async fn list_messages(
    State(shared): State<Shared>,
    Path(channel): Path<String>,
    Query(query): Query<HashMap<String, String>>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.to_string();
    if let Some(refused) = shared.unauthorized(&method, &path, &headers) {
        return refused;
    }
    let limit = query.get("limit").map_or(Ok(50), |l| l.parse::<usize>());
    let after = query.get("after").map_or(Ok(0), |a| a.parse::<u64>());
    let (Ok(limit @ 1..=100), Ok(after)) = (limit, after) else {
        shared.record(&method, path, &headers, None, Vec::new(), 400);
        return error(StatusCode::BAD_REQUEST, 50035, "Invalid Form Body");
    };
    let mut found: Vec<Value> = shared
        .lock()
        .messages
        .iter()
        .filter(|m| m.channel_id == channel && m.id.parse::<u64>().is_ok_and(|id| id > after))
        .map(|m| {
            let mut json = message_json(m);
            json.as_object_mut().map(|j| j.remove("nonce"));
            json
        })
        .collect();
    // Discord: the `limit` messages right after `after`, newest first.
    found.truncate(limit);
    found.reverse();
    shared.record(&method, path, &headers, None, Vec::new(), 200);
    axum::Json(Value::Array(found)).into_response()
}

/// `DELETE /channels/{id}/messages/{id}`: the bot may delete its own
/// messages; an unknown one is 10008.
async fn delete_message(
    State(shared): State<Shared>,
    Path((channel, message)): Path<(String, String)>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let path = uri.path().to_owned();
    if let Some(refused) = shared.unauthorized(&method, &path, &headers) {
        return refused;
    }
    let removed = {
        let mut inner = shared.lock();
        let before = inner.messages.len();
        inner
            .messages
            .retain(|m| !(m.channel_id == channel && m.id == message));
        inner.messages.len() < before
    };
    if !removed {
        shared.record(&method, path, &headers, None, Vec::new(), 404);
        return error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
    }
    shared.record(&method, path, &headers, None, Vec::new(), 204);
    StatusCode::NO_CONTENT.into_response()
}

async fn users_me(State(shared): State<Shared>, method: Method, headers: HeaderMap) -> Response {
    let path = "/api/v10/users/@me";
    if let Some(refused) = shared.unauthorized(&method, path, &headers) {
        return refused;
    }
    shared.record(&method, path.into(), &headers, None, Vec::new(), 200);
    axum::Json(json!({ "id": BOT_USER_ID, "username": "Word Up!", "bot": true })).into_response()
}

async fn get_channel(
    State(shared): State<Shared>,
    Path(channel): Path<String>,
    method: Method,
    headers: HeaderMap,
) -> Response {
    shared.record(
        &method,
        format!("/api/v10/channels/{channel}"),
        &headers,
        None,
        Vec::new(),
        200,
    );
    axum::Json(json!({ "id": channel, "type": 0, "nsfw": false, "name": "brainstorm" }))
        .into_response()
}

async fn edit_original(
    State(shared): State<Shared>,
    Path((app, token, message)): Path<(String, String, String)>,
    request: Request,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let (json, files) = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let _ = app;
    if let Some(refused) = shared.refused(&method, &path, &headers, &json, &files) {
        return refused;
    }
    if message != "@original" {
        shared.record(&method, path, &headers, json, files, 404);
        return error(StatusCode::NOT_FOUND, 10008, "Unknown Message");
    }
    let mut inner = shared.lock();
    inner.next_id += 1;
    let edit = inner.next_id;
    let Some(original) = inner.originals.get_mut(&token) else {
        drop(inner);
        shared.record(&method, path, &headers, json, files, 404);
        return error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook");
    };
    // API v10: without `attachments` the message keeps its own; with it,
    // exactly those listed stay — kept ones by their id, new ones by the
    // index of their `files[n]` part.
    let listed = json.as_ref().and_then(|j| j["attachments"].as_array());
    let attachments = match listed {
        None => None,
        Some(listed) => {
            let existing = original["attachments"]
                .as_array()
                .cloned()
                .unwrap_or_default();
            let kept: Option<Vec<Value>> = listed
                .iter()
                .map(|entry| {
                    let new_file = entry["id"]
                        .as_u64()
                        .and_then(|i| Some((i, files.get(usize::try_from(i).ok()?)?)));
                    match new_file {
                        Some((i, f)) => Some(json!({
                            "id": format!("{}{edit}{i}", original["id"].as_str().unwrap_or_default()),
                            "filename": f.filename,
                            "size": f.bytes.len(),
                            "content_type": f.content_type,
                            "description": entry["description"],
                        })),
                        None => existing.iter().find(|a| a["id"] == entry["id"]).cloned(),
                    }
                })
                .collect();
            let Some(kept) = kept else {
                drop(inner);
                shared.record(&method, path, &headers, json, files, 400);
                return error(
                    StatusCode::BAD_REQUEST,
                    50035,
                    "Invalid Form Body: attachments: unknown attachment",
                );
            };
            Some(kept)
        }
    };
    for field in ["content", "components", "allowed_mentions"] {
        if let Some(value) = json.as_ref().and_then(|j| j.get(field)) {
            original[field] = value.clone();
        }
    }
    if let Some(attachments) = attachments {
        original["attachments"] = Value::Array(attachments);
    }
    let body = original.clone();
    drop(inner);
    shared.record(&method, path, &headers, json, files, 200);
    axum::Json(body).into_response()
}

async fn get_original(
    State(shared): State<Shared>,
    Path((_app, token, _message)): Path<(String, String, String)>,
    method: Method,
    uri: axum::http::Uri,
    headers: HeaderMap,
) -> Response {
    let original = shared.lock().originals.get(&token).cloned();
    shared.record(
        &method,
        uri.path().to_owned(),
        &headers,
        None,
        Vec::new(),
        if original.is_some() { 200 } else { 404 },
    );
    match original {
        Some(original) => axum::Json(original).into_response(),
        None => error(StatusCode::NOT_FOUND, 10015, "Unknown Webhook"),
    }
}

async fn followup(
    State(shared): State<Shared>,
    Path((_app, token)): Path<(String, String)>,
    request: Request,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let (json, files) = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    if let Some(refused) = shared.refused(&method, &path, &headers, &json, &files) {
        return refused;
    }
    let message = Message {
        id: shared.next_id(),
        channel_id: format!("followup:{token}"),
        payload: json.clone().unwrap_or(Value::Null),
        files: files.clone(),
        created: Instant::now(),
    };
    shared.lock().messages.push(message.clone());
    shared.record(&method, path, &headers, json, files, 200);
    axum::Json(message_json(&message)).into_response()
}

/// Interaction callbacks (gateway mode answers here); also what the tests
/// call to tell the fake that an interaction was acked over HTTP.
async fn callback(
    State(shared): State<Shared>,
    Path((_id, token)): Path<(String, String)>,
    request: Request,
) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let (json, files) = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    if let Some(json) = &json {
        shared.acknowledge(&token, json);
    }
    shared.record(&method, path, &headers, json, files, 204);
    StatusCode::NO_CONTENT.into_response()
}

impl Shared {
    fn acknowledge(&self, token: &str, response: &Value) {
        let id = self.next_id();
        let data = &response["data"];
        self.lock().originals.insert(
            token.to_owned(),
            json!({ "id": id, "content": data["content"].as_str().unwrap_or(""), "flags": data["flags"].as_u64().unwrap_or(0) }),
        );
    }
}

/// The CDN: an uploaded attachment's bytes; Discord signs these URLs, so no
/// token is asked for (and none must be sent).
async fn cdn_file(
    State(shared): State<Shared>,
    Path(path): Path<String>,
    headers: HeaderMap,
) -> Response {
    if headers.contains_key("authorization") {
        return StatusCode::BAD_REQUEST.into_response();
    }
    match shared.lock().cdn.get(&path).cloned() {
        Some((content_type, bytes)) => {
            ([(axum::http::header::CONTENT_TYPE, content_type)], bytes).into_response()
        }
        None => StatusCode::NOT_FOUND.into_response(),
    }
}

impl FakeDiscord {
    /// Hosts a file as a user's attachment would be; returns its URL.
    pub fn host_attachment(&self, name: &str, content_type: &str, bytes: Vec<u8>) -> String {
        let path = format!("{CHANNEL_ATTACHMENTS}/{name}");
        self.shared
            .lock()
            .cdn
            .insert(path.clone(), (content_type.to_owned(), bytes));
        format!("{}/attachments/{path}?ex=1&is=2&hm=signed", self.url)
    }

    /// `host:port` of the fake, as a file-host setting names it.
    pub fn host(&self) -> String {
        self.url.trim_start_matches("http://").to_owned()
    }

    /// Tells the fake that Discord received an interaction response over the
    /// HTTP endpoint, so the token's original message exists (Discord creates
    /// it from the response; the fake only sees it through the test).
    pub fn acknowledged(&self, token: &str, response: &Value) {
        self.shared.acknowledge(token, response);
    }
}

async fn register(State(shared): State<Shared>, request: Request) -> Response {
    let method = request.method().clone();
    let path = request.uri().path().to_owned();
    let headers = request.headers().clone();
    let (json, files) = match read_body(request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    if !shared.authorized(&headers) {
        shared.record(&method, path, &headers, json, files, 401);
        return error(StatusCode::UNAUTHORIZED, 0, "401: Unauthorized");
    }
    let commands: Vec<Value> = json
        .as_ref()
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default()
        .into_iter()
        .map(|mut c| {
            c["id"] = json!(shared.next_id());
            c
        })
        .collect();
    shared.record(&method, path, &headers, json, files, 200);
    axum::Json(commands).into_response()
}

async fn gateway_bot(State(shared): State<Shared>, method: Method, headers: HeaderMap) -> Response {
    shared.record(
        &method,
        "/api/v10/gateway/bot".into(),
        &headers,
        None,
        Vec::new(),
        200,
    );
    axum::Json(json!({
        "url": format!("{}/gateway", shared.base.replace("http://", "ws://")),
        "shards": 1,
        "session_start_limit": { "total": 1000, "remaining": 999, "reset_after": 14_400_000, "max_concurrency": 1 },
    }))
    .into_response()
}

/// The gateway: Hello, then READY after Identify, heartbeat ACKs, and the
/// dispatches the test pushes. Frames are uncompressed JSON text.
async fn gateway(
    State(shared): State<Shared>,
    upgrade: axum::extract::ws::WebSocketUpgrade,
) -> Response {
    upgrade.on_upgrade(move |socket| serve_gateway(shared, socket))
}

async fn serve_gateway(shared: Shared, mut socket: axum::extract::ws::WebSocket) {
    use axum::extract::ws::Message as Ws;
    let (sender, mut dispatches) = tokio::sync::mpsc::unbounded_channel::<Value>();
    let send = |payload: Value| Ws::Text(payload.to_string().into());
    if socket
        .send(send(
            json!({ "op": 10, "d": { "heartbeat_interval": 41_250 } }),
        ))
        .await
        .is_err()
    {
        return;
    }
    let mut sequence = 0u64;
    loop {
        tokio::select! {
            dispatch = dispatches.recv() => {
                let Some(mut dispatch) = dispatch else { break };
                sequence += 1;
                dispatch["s"] = json!(sequence);
                if socket.send(send(dispatch)).await.is_err() {
                    break;
                }
            }
            frame = socket.recv() => {
                let Some(Ok(Ws::Text(text))) = frame else {
                    if matches!(frame, Some(Ok(_))) { continue }
                    break;
                };
                let Ok(payload) = serde_json::from_str::<Value>(&text) else { continue };
                shared.lock().gateway_received.push(payload.clone());
                match payload["op"].as_u64() {
                    Some(1) => {
                        let _ = socket.send(send(json!({ "op": 11 }))).await;
                    }
                    Some(2) => {
                        sequence += 1;
                        let ready = json!({
                            "op": 0, "t": "READY", "s": sequence,
                            "d": {
                                "v": 10,
                                "user": { "id": "1200000000000000001", "username": "Word Up!", "discriminator": "0", "global_name": null, "avatar": null, "bot": true, "verified": true, "mfa_enabled": false, "flags": 0 },
                                "guilds": [],
                                "session_id": "fake-session",
                                "resume_gateway_url": format!("{}/gateway", shared.base.replace("http://", "ws://")),
                                "shard": [0, 1],
                                "application": { "id": "1200000000000000001", "flags": 0 },
                            }
                        });
                        if socket.send(send(ready)).await.is_err() {
                            break;
                        }
                        shared.lock().gateway = Some(sender.clone());
                    }
                    _ => {}
                }
            }
        }
    }
    shared.lock().gateway = None;
}
