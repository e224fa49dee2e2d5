//! The chat side's metrics: the bot's ack latency and interaction counts,
//! and the platform API clients' requests, 429s and retries.

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

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
