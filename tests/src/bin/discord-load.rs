//! Load benchmark for the Discord interactions endpoint: N concurrent
//! signed /imagine interactions against `wordup-bot serve` (a child process
//! on a fresh database), with the fake Discord for the follow-up edits.
//! Prints ack latency percentiles, the ratio of p99 to Discord's 3 s
//! deadline, and the number of jobs enqueued (which must equal N).

use std::time::{Duration, Instant};

use anyhow::{Result, ensure};
use clap::Parser;
use wordup_tests::interactions::{self, Member, new_interaction};
use wordup_tests::stack::Stack;

#[derive(Parser)]
#[command(about = "Concurrent signed /imagine interactions against wordup-bot serve")]
struct Args {
    #[arg(long, default_value_t = 200)]
    interactions: usize,
    /// Distinct users sending them (quotas are per user).
    #[arg(long, default_value_t = 50)]
    users: usize,
    /// Bot processes' pool size (WORDUP_DB_MAX_CONNECTIONS).
    #[arg(long, default_value_t = 10)]
    db_connections: u32,
}

const DEADLINE: Duration = Duration::from_secs(3);

#[tokio::main]
async fn main() -> Result<()> {
    let args = Args::parse();
    let mut stack = Stack::start().await?;
    stack.bot_env = vec![
        (
            "WORDUP_DB_MAX_CONNECTIONS".into(),
            args.db_connections.to_string(),
        ),
        ("WORDUP_MAX_ACTIVE_PER_USER".into(), "1000".into()),
    ];
    stack.start_bot().await?;
    let payloads: Vec<serde_json::Value> = (0..args.interactions)
        .map(|i| {
            let user = Member::new(
                &format!(
                    "{}",
                    1_300_000_000_000_000_000u64 + (i % args.users.max(1)) as u64
                ),
                "load",
            );
            let (id, token) = new_interaction();
            interactions::imagine(
                &id,
                &token,
                &user,
                &format!("load test prompt {i} --ar 16:9"),
            )
        })
        .collect();
    let stack = std::sync::Arc::new(stack);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for payload in payloads {
        let stack = stack.clone();
        tasks.push(tokio::spawn(async move {
            stack
                .signer
                .send(&stack.http, &stack.endpoint(), &payload)
                .await
        }));
    }
    let mut latencies = Vec::new();
    let mut deferred = 0;
    for task in tasks {
        let answer = task.await??;
        if answer.status == 200 && answer.body["type"] == 5 {
            deferred += 1;
        }
        latencies.push(answer.latency);
    }
    let wall = started.elapsed();
    latencies.sort();
    let pct = |p: f64| latencies[((latencies.len() as f64 - 1.0) * p).round() as usize];
    let jobs: i64 = sqlx::query_scalar("SELECT count(*) FROM jobs")
        .fetch_one(stack.queue.pool())
        .await?;
    let ms = |d: Duration| d.as_secs_f64() * 1000.0;
    println!(
        "| interactions | deferred acks | jobs enqueued | p50 ms | p90 ms | p99 ms | max ms | wall s |"
    );
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|");
    println!(
        "| {} | {deferred} | {jobs} | {:.1} | {:.1} | {:.1} | {:.1} | {:.2} |",
        args.interactions,
        ms(pct(0.5)),
        ms(pct(0.9)),
        ms(pct(0.99)),
        ms(*latencies.last().unwrap_or(&Duration::ZERO)),
        wall.as_secs_f64()
    );
    println!(
        "p99 / Discord's 3 s deadline = {:.3}",
        pct(0.99).as_secs_f64() / DEADLINE.as_secs_f64()
    );
    ensure!(
        jobs == args.interactions as i64,
        "expected exactly {} jobs, found {jobs}",
        args.interactions
    );
    ensure!(
        deferred == args.interactions,
        "{} interactions were not acked with a deferred response",
        args.interactions - deferred
    );
    Ok(())
}
