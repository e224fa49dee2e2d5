#![allow(clippy::unwrap_used)]
//! The deployment files against the code: the Grafana dashboard only plots
//! metrics that the binaries export.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;

use prometheus_client::registry::Registry;
use wordup_chat::metrics::{ApiMetrics, BotMetrics};
use wordup_engine::worker::metrics::WorkerMetrics;
use wordup_runtime::metrics::MetricsState;
use wordup_tests::pg::TestDb;

/// Every sample name our /metrics serves, from a live bot-style endpoint
/// with the engine's and bot's metrics registered.
async fn exported_names() -> BTreeSet<String> {
    let db = TestDb::new().await.unwrap();
    let queue = db
        .queue(wordup_queue::QueueConfig::default(), 2)
        .await
        .unwrap();
    let mut registry = Registry::with_prefix("wordup");
    let worker = WorkerMetrics::default();
    worker.register(&mut registry);
    // Families only show once they have a member.
    worker.count_job("imagine", "done");
    worker.observe_stage("denoising", std::time::Duration::from_millis(1));
    let bot = BotMetrics::default();
    bot.register(&mut registry);
    bot.observe("discord", "answered", std::time::Duration::from_millis(1));
    let api = ApiMetrics::default();
    api.register(&mut registry);
    api.for_platform("discord").retries.inc();
    let state = MetricsState::new(registry, queue, Arc::new(AtomicBool::new(true)));
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = listener.local_addr().unwrap();
    drop(listener);
    tokio::spawn(wordup_runtime::metrics::serve(bind, state));
    let url = format!("http://{bind}/metrics");
    let mut text = String::new();
    for _ in 0..50 {
        if let Ok(response) = reqwest::get(&url).await {
            text = response.text().await.unwrap();
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| l.split(['{', ' ']).next().unwrap().to_owned())
        .collect()
}

#[tokio::test]
async fn the_dashboard_plots_only_exported_metrics() {
    let exported = exported_names().await;
    assert!(exported.contains("wordup_queue_depth"), "{exported:?}");
    let dashboard: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../deploy/grafana/wordup.json"
        ))
        .unwrap(),
    )
    .unwrap();
    let mut plotted = BTreeSet::new();
    for panel in dashboard["panels"].as_array().unwrap() {
        for target in panel["targets"].as_array().unwrap() {
            let expr = target["expr"].as_str().unwrap();
            for word in expr.split(|c: char| !(c.is_ascii_alphanumeric() || c == '_')) {
                if word.starts_with("wordup_") {
                    plotted.insert(word.to_owned());
                }
            }
        }
    }
    assert!(plotted.len() >= 12, "{plotted:?}");
    let missing: Vec<_> = plotted.difference(&exported).collect();
    assert!(missing.is_empty(), "plotted but not exported: {missing:?}");
}

#[tokio::test]
async fn readiness_says_not_ready_and_nothing_more() {
    // A pool that never reaches a server: the error text holds its address.
    let pool = sqlx::postgres::PgPoolOptions::new()
        .acquire_timeout(std::time::Duration::from_millis(500))
        .connect_lazy("postgres://wordup:hunter2@127.0.0.1:1/wordup")
        .unwrap();
    let queue = wordup_queue::Queue::from_pool(pool, wordup_queue::QueueConfig::default());
    let state = MetricsState::new(
        Registry::with_prefix("wordup"),
        queue,
        std::sync::Arc::new(AtomicBool::new(true)),
    );
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let bind = listener.local_addr().unwrap();
    drop(listener);
    tokio::spawn(wordup_runtime::metrics::serve(bind, state));
    let url = format!("http://{bind}/readyz");
    let response = loop {
        if let Ok(response) = reqwest::get(&url).await {
            break response;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    };
    assert_eq!(response.status().as_u16(), 503);
    assert_eq!(response.text().await.unwrap(), "not ready");
}
