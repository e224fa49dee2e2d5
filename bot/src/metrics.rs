//! `/metrics` (Prometheus text format), `/healthz` and `/readyz` for both
//! binaries: the bot's ack latency and interaction counts, the queue's
//! depth by tier, delivery retries, and whatever else a binary registers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;
use wordup_queue::Queue;

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct AckLabels {
    pub platform: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct OutcomeLabels {
    pub platform: String,
    /// answered, unauthorized, malformed.
    pub outcome: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TierLabels {
    pub tier: String,
}

#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct PlatformLabels {
    pub platform: String,
}

/// Counters of one platform's API client (shared with the families they
/// were taken from, once registered).
#[derive(Debug, Clone, Default)]
pub struct ApiCounters {
    pub requests: Counter,
    pub rate_limited: Counter,
    pub retries: Counter,
}

/// The API clients' counters, one family each, labelled by platform.
#[derive(Debug, Clone, Default)]
pub struct ApiMetrics {
    requests: Family<PlatformLabels, Counter>,
    rate_limited: Family<PlatformLabels, Counter>,
    retries: Family<PlatformLabels, Counter>,
}

impl ApiMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "api_requests",
            "Calls to the platform's API",
            self.requests.clone(),
        );
        registry.register(
            "api_rate_limited",
            "429 answers from the platform's API",
            self.rate_limited.clone(),
        );
        registry.register(
            "delivery_retries",
            "Platform API calls retried (after a 429, a 5xx or a connection failure)",
            self.retries.clone(),
        );
    }

    /// Counters for one platform's client, counting into these families.
    pub fn for_platform(&self, platform: &str) -> ApiCounters {
        let labels = PlatformLabels {
            platform: platform.to_owned(),
        };
        ApiCounters {
            requests: self.requests.get_or_create(&labels).clone(),
            rate_limited: self.rate_limited.get_or_create(&labels).clone(),
            retries: self.retries.get_or_create(&labels).clone(),
        }
    }
}

#[derive(Debug, Clone)]
pub struct BotMetrics {
    pub ack_seconds: Family<AckLabels, Histogram, fn() -> Histogram>,
    pub interactions: Family<OutcomeLabels, Counter>,
}

fn ack_histogram() -> Histogram {
    // 1 ms to ~8 s: Discord and Slack allow 3 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 14))
}

impl Default for BotMetrics {
    fn default() -> Self {
        BotMetrics {
            ack_seconds: Family::new_with_constructor(ack_histogram),
            interactions: Family::default(),
        }
    }
}

impl BotMetrics {
    pub fn register(&self, registry: &mut Registry) {
        registry.register(
            "ack_seconds",
            "Time from an interaction's arrival to our answer",
            self.ack_seconds.clone(),
        );
        registry.register(
            "interactions",
            "Interactions received, by outcome",
            self.interactions.clone(),
        );
    }

    pub fn observe(&self, platform: &str, outcome: &str, took: std::time::Duration) {
        self.interactions
            .get_or_create(&OutcomeLabels {
                platform: platform.to_owned(),
                outcome: outcome.to_owned(),
            })
            .inc();
        if outcome == "answered" {
            self.ack_seconds
                .get_or_create(&AckLabels {
                    platform: platform.to_owned(),
                })
                .observe(took.as_secs_f64());
        }
    }
}

/// The queue's depth, read at each scrape.
#[derive(Debug, Clone, Default)]
struct QueueGauges {
    queued: Family<TierLabels, Gauge>,
    running: Gauge,
    oldest_wait_seconds: Gauge<f64, std::sync::atomic::AtomicU64>,
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
    match sqlx::query("SELECT 1").execute(state.queue.pool()).await {
        Ok(_) => "ready".into_response(),
        Err(e) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("postgres unreachable: {e}"),
        )
            .into_response(),
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
