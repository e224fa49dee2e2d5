//! `/metrics` (Prometheus text format), `/healthz` and `/readyz` for both
//! binaries: the queue's depth by tier, and whatever else a binary
//! registers (the bot's and the engine's own metrics).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use wordup_queue::Queue;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabels {
    pub tier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct WaitingLabels {
    pub platform: String,
}

/// The queue's depth, read at each scrape.
#[derive(Debug, Clone, Default)]
struct QueueGauges {
    queued: Family<TierLabels, Gauge>,
    running: Gauge,
    oldest_wait_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
    waiting_for_engine: Family<WaitingLabels, Gauge>,
}

#[derive(Clone)]
pub struct MetricsState {
    registry: Arc<Registry>,
    queue: Queue,
    gauges: QueueGauges,
    /// Whatever besides Postgres readiness needs (the engine: models loaded).
    ready: Arc<AtomicBool>,
}

impl MetricsState {
    /// Adds the queue gauges to `registry` and freezes it.
    pub fn new(mut registry: Registry, queue: Queue, ready: Arc<AtomicBool>) -> MetricsState {
        let gauges = QueueGauges::default();
        registry.register(
            "queue_depth",
            "Jobs waiting, by tier",
            gauges.queued.clone(),
        );
        registry.register("queue_running", "Jobs running", gauges.running.clone());
        registry.register(
            "queue_waiting_for_engine",
            "Queued jobs of a platform that no live engine serves",
            gauges.waiting_for_engine.clone(),
        );
        registry.register(
            "queue_oldest_wait_seconds",
            "How long the oldest claimable job has waited",
            gauges.oldest_wait_seconds.clone(),
        );
        MetricsState {
            registry: Arc::new(registry),
            queue,
            gauges,
            ready,
        }
    }
}

/// `/metrics`, `/healthz`, `/readyz`.
pub fn router(state: MetricsState) -> Router {
    Router::new()
        .route("/metrics", get(metrics))
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .with_state(state)
}

async fn metrics(State(state): State<MetricsState>) -> Response {
    match state.queue.depth().await {
        Ok(depth) => {
            for (tier, n) in [("fast", depth.fast_queued), ("relax", depth.relax_queued)] {
                state
                    .gauges
                    .queued
                    .get_or_create(&TierLabels { tier: tier.into() })
                    .set(n);
            }
            state.gauges.running.set(depth.running);
            state.gauges.oldest_wait_seconds.set(depth.oldest_wait_secs);
        }
        Err(e) => tracing::warn!(error = %e, "queue depth unavailable for /metrics"),
    }
    match state.queue.waiting_for_an_engine().await {
        Ok(waiting) => {
            state.gauges.waiting_for_engine.clear();
            for (platform, n) in waiting {
                state
                    .gauges
                    .waiting_for_engine
                    .get_or_create(&WaitingLabels { platform })
                    .set(n);
            }
        }
        Err(e) => tracing::warn!(error = %e, "engine coverage unavailable for /metrics"),
    }
    let mut text = String::new();
    if prometheus_client::encoding::text::encode(&mut text, &state.registry).is_err() {
        return StatusCode::INTERNAL_SERVER_ERROR.into_response();
    }
    (
        [(
            "content-type",
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
        .into_response()
}

async fn readyz(State(state): State<MetricsState>) -> Response {
    if !state.ready.load(Ordering::Relaxed) {
        return (StatusCode::SERVICE_UNAVAILABLE, "starting").into_response();
    }
    // Ready or not, nothing more: the reason goes to the log, not to
    // whoever can reach the port.
    match sqlx::query("SELECT 1").execute(state.queue.pool()).await {
        Ok(_) => "ready".into_response(),
        Err(e) => {
            tracing::warn!(error = %e, "not ready: Postgres does not answer");
            (StatusCode::SERVICE_UNAVAILABLE, "not ready").into_response()
        }
    }
}

/// Serves [`router`] on its own port (for processes without another HTTP server).
pub async fn serve(bind: std::net::SocketAddr, state: MetricsState) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(bind)
        .await
        .map_err(|e| anyhow::anyhow!("cannot listen on {bind} for /metrics: {e}"))?;
    tracing::info!(%bind, "serving /metrics, /healthz and /readyz");
    axum::serve(listener, router(state)).await?;
    Ok(())
}
