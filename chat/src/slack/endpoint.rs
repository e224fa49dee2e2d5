//! The HTTP endpoints Slack calls: slash commands and interactivity, each
//! verified (signature and a timestamp at most 5 minutes old) first.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use slack_morphism::prelude::{SlackCommandEvent, SlackInteractionEvent};
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;

use super::handler::SlackApp;
use crate::ack::Handled;
use crate::metrics::BotMetrics;

pub const COMMANDS_PATH: &str = "/slack/commands";
pub const INTERACTIONS_PATH: &str = "/slack/interactions";

#[derive(Clone)]
pub struct SlackEndpointState {
    pub app: SlackApp,
    pub verifier: Arc<SlackEventSignatureVerifier>,
    pub metrics: BotMetrics,
}

/// A verified slash-command body (form-encoded).
pub fn parse_command(body: &str) -> Result<SlackCommandEvent, serde_urlencoded::de::Error> {
    serde_urlencoded::from_str(body)
}

/// A verified interactivity body: a form whose `payload` field is JSON.
pub fn parse_interaction(body: &str) -> Option<SlackInteractionEvent> {
    serde_urlencoded::from_str::<Vec<(String, String)>>(body)
        .ok()?
        .into_iter()
        .find(|(k, _)| k == "payload")
        .and_then(|(_, payload)| serde_json::from_str(&payload).ok())
}

pub fn router(state: SlackEndpointState) -> Router {
    Router::new()
        .route(COMMANDS_PATH, post(commands))
        .route(INTERACTIONS_PATH, post(interactions))
        .with_state(Arc::new(state))
}

/// The verified body as text; `None` answers 401.
fn verified<'a>(
    state: &SlackEndpointState,
    headers: &HeaderMap,
    body: &'a Bytes,
) -> Option<&'a str> {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    let (Some(signature), Some(timestamp)) = (
        header(SlackEventSignatureVerifier::SLACK_SIGNED_HASH_HEADER),
        header(SlackEventSignatureVerifier::SLACK_SIGNED_TIMESTAMP),
    ) else {
        return None;
    };
    let body = std::str::from_utf8(body).ok()?;
    match state.verifier.verify(signature, body, timestamp) {
        Ok(()) => Some(body),
        Err(e) => {
            tracing::debug!(error = %e, "refused a Slack request");
            None
        }
    }
}

fn refuse() -> Response {
    (StatusCode::UNAUTHORIZED, "invalid request signature").into_response()
}

fn respond(state: &SlackEndpointState, started: std::time::Instant, handled: Handled) -> Response {
    state
        .metrics
        .observe("slack", "answered", started.elapsed());
    if let Some(after) = handled.after {
        state.app.commands.pending.spawn(after);
    }
    if handled.response.is_null() {
        StatusCode::OK.into_response()
    } else {
        axum::Json(handled.response).into_response()
    }
}

async fn commands(
    State(state): State<Arc<SlackEndpointState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let Some(body) = verified(&state, &headers, &body) else {
        state
            .metrics
            .observe("slack", "unauthorized", started.elapsed());
        return refuse();
    };
    let event = match parse_command(body) {
        Ok(event) => event,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable slash command");
            return (StatusCode::BAD_REQUEST, "unreadable slash command").into_response();
        }
    };
    respond(&state, started, state.app.command(event).await)
}

async fn interactions(
    State(state): State<Arc<SlackEndpointState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let Some(body) = verified(&state, &headers, &body) else {
        state
            .metrics
            .observe("slack", "unauthorized", started.elapsed());
        return refuse();
    };
    let Some(event) = parse_interaction(body) else {
        tracing::warn!("unreadable interaction payload");
        return (StatusCode::BAD_REQUEST, "unreadable interaction").into_response();
    };
    respond(&state, started, state.app.interaction(event).await)
}
