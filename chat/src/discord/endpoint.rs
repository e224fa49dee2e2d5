//! The HTTP interactions endpoint: verify, parse, handle, answer.

use std::sync::Arc;

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use serenity::all::Interaction;

use super::handler::DiscordApp;
use super::verify::RequestVerifier;
use crate::metrics::BotMetrics;

pub const PATH: &str = "/discord/interactions";

#[derive(Clone)]
pub struct EndpointState {
    pub app: DiscordApp,
    pub verifier: RequestVerifier,
    pub metrics: BotMetrics,
}

/// A verified body as an interaction, and whether Discord marks its channel
/// NSFW (serenity's model drops `channel.nsfw`, so it is read first).
pub fn parse_interaction(body: &[u8]) -> Result<(Interaction, bool), serde_json::Error> {
    serde_json::from_slice::<serde_json::Value>(body).and_then(|raw| {
        let nsfw = raw["channel"]["nsfw"].as_bool().unwrap_or(false);
        serde_json::from_value::<Interaction>(raw).map(|interaction| (interaction, nsfw))
    })
}

pub fn router(state: EndpointState) -> Router {
    Router::new()
        .route(PATH, post(interactions))
        .with_state(Arc::new(state))
}

async fn interactions(
    State(state): State<Arc<EndpointState>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let started = std::time::Instant::now();
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Err(refusal) = state.verifier.verify(
        header("x-signature-ed25519"),
        header("x-signature-timestamp"),
        &body,
        chrono::Utc::now().timestamp(),
    ) {
        tracing::debug!(%refusal, "refused an interaction");
        state
            .metrics
            .observe("discord", "unauthorized", started.elapsed());
        return (StatusCode::UNAUTHORIZED, "invalid request signature").into_response();
    }
    let (interaction, channel_nsfw) = match parse_interaction(&body) {
        Ok(parsed) => parsed,
        Err(e) => {
            tracing::warn!(error = %e, "unreadable interaction");
            state
                .metrics
                .observe("discord", "malformed", started.elapsed());
            return (StatusCode::BAD_REQUEST, "unreadable interaction").into_response();
        }
    };
    let handled = state.app.handle(interaction, channel_nsfw).await;
    if let Some(after) = handled.after {
        state.app.commands.pending.spawn(after);
    }
    state
        .metrics
        .observe("discord", "answered", started.elapsed());
    axum::Json(handled.response).into_response()
}
