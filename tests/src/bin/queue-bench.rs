//! Queue benchmark: burn-down throughput of no-op jobs and pickup latency
//! with LISTEN/NOTIFY. Prints `RESULT wordup …` lines on stdout (the format
//! `scripts/bench-queue.sh` reads) and a human table on stderr.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use clap::Parser;
use wordup_queue::{JobId, NewJob, Queue, QueueConfig, Tier};
use wordup_tests::jobs::job;
use wordup_tests::pg::TestDb;

#[derive(Parser)]
#[command(about = "Benchmark the Word Up! queue on the Postgres of DATABASE_URL")]
struct Args {
    /// No-op jobs per burn-down run.
    #[arg(long, default_value_t = 100_000)]
    jobs: usize,
    /// Sequential enqueues for the pickup-latency run.
    #[arg(long, default_value_t = 1_000)]
    latency_jobs: usize,
    #[arg(long, value_delimiter = ',', default_value = "1,4,16")]
    workers: Vec<u32>,
    #[arg(long, value_delimiter = ',', default_value = "1,10")]
    batches: Vec<u32>,
    /// Client runtime threads; 1 runs every worker on one thread, which
    /// saves cross-thread wake-ups when Postgres shares the machine.
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Print the claim's EXPLAIN ANALYZE on a full backlog.
    #[arg(long)]
    explain: bool,
    /// Claim as an engine that serves only these platforms (comma-separated),
    /// as `wordup-engine run` does; unset: every platform.
    #[arg(long, value_delimiter = ',')]
    serving: Vec<String>,
}

fn main() -> Result<()> {
    let args = Args::parse();
    let runtime = if args.threads == 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(run(args))
}

async fn run(args: Args) -> Result<()> {
    let db = TestDb::new()
        .await
        .context("creating the benchmark database")?;
    let max_workers = args.workers.iter().copied().max().unwrap_or(1);
    let mut queue = db.queue(QueueConfig::default(), max_workers + 4).await?;
    if !args.serving.is_empty() {
        queue = queue.serving(args.serving.clone());
    }
    let version: String = sqlx::query_scalar("SHOW server_version")
        .fetch_one(queue.pool())
        .await?;
    eprintln!("PostgreSQL {version}, {} jobs per run", args.jobs);

    let mut explained = !args.explain;
    for &workers in &args.workers {
        for &batch in &args.batches {
            reset(&queue).await?;
            fill(&queue, args.jobs).await?;
            if !explained {
                eprintln!(
                    "claim plan on a {}-job backlog:\n{}",
                    args.jobs,
                    queue.explain_claim(batch).await?
                );
                explained = true;
            }
            let seconds = burn_down(&queue, args.jobs, workers, batch).await?;
            let rate = args.jobs as f64 / seconds;
            eprintln!(
                "burn-down workers={workers:>2} batch={batch:>2}: {rate:>9.0} jobs/s ({seconds:.2} s)"
            );
            println!(
                "RESULT wordup burn workers={workers} batch={batch} jobs={} seconds={seconds:.3} jobs_per_s={rate:.1}",
                args.jobs
            );
        }
    }

    reset(&queue).await?;
    let mut latencies = pickup_latencies(&queue, args.latency_jobs).await?;
    latencies.sort_by(f64::total_cmp);
    let [p50, p95, p99] = [0.50, 0.95, 0.99].map(|q| percentile(&latencies, q));
    eprintln!(
        "pickup latency over {} jobs: p50 {p50:.2} ms, p95 {p95:.2} ms, p99 {p99:.2} ms",
        latencies.len()
    );
    println!(
        "RESULT wordup latency n={} p50_ms={p50:.3} p95_ms={p95:.3} p99_ms={p99:.3}",
        latencies.len()
    );
    Ok(())
}

async fn reset(queue: &Queue) -> Result<()> {
    sqlx::query("TRUNCATE jobs CASCADE")
        .execute(queue.pool())
        .await?;
    sqlx::query("VACUUM ANALYZE jobs")
        .execute(queue.pool())
        .await?;
    Ok(())
}

/// A backlog of `n` no-op jobs from 100 users, all of one batch key.
async fn fill(queue: &Queue, n: usize) -> Result<()> {
    let jobs: Vec<NewJob> = (0..n)
        .map(|i| job(&format!("user-{}", i % 100), Tier::Fast, "noop"))
        .collect();
    for chunk in jobs.chunks(5_000) {
        queue.enqueue_many(chunk).await?;
    }
    sqlx::query("ANALYZE jobs").execute(queue.pool()).await?;
    Ok(())
}

/// Seconds until `workers` claimers, each claiming up to `batch` at a time
/// and settling them, have completed all `n` jobs.
async fn burn_down(queue: &Queue, n: usize, workers: u32, batch: u32) -> Result<f64> {
    let done = Arc::new(AtomicU64::new(0));
    let start = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..workers {
        let queue = queue.clone();
        let done = done.clone();
        tasks.push(tokio::spawn(async move {
            // A worker's loop: settle the previous batch and claim the next
            // in one statement.
            let mut settle: Vec<(JobId, i32)> = Vec::new();
            loop {
                let settled = queue.settle_and_claim(&settle, batch).await?;
                anyhow::ensure!(
                    settled.stale.is_empty(),
                    "stale completions: {:?}",
                    settled.stale
                );
                done.fetch_add(settle.len() as u64, Ordering::Relaxed);
                if settled.claimed.is_empty() {
                    return anyhow::Ok(());
                }
                settle = settled
                    .claimed
                    .iter()
                    .map(|job| (job.id(), job.attempt()))
                    .collect();
            }
        }));
    }
    for task in tasks {
        task.await??;
    }
    let seconds = start.elapsed().as_secs_f64();
    let completed = done.load(Ordering::Relaxed);
    anyhow::ensure!(completed == n as u64, "completed {completed} of {n} jobs");
    Ok(seconds)
}

/// Milliseconds from each enqueue's commit to its claim by an idle worker
/// woken by NOTIFY (the poll interval is far longer than any latency).
async fn pickup_latencies(queue: &Queue, n: usize) -> Result<Vec<f64>> {
    let (claimed_tx, mut claimed_rx) = tokio::sync::mpsc::unbounded_channel();
    let mut waker = queue.waker(Duration::from_secs(5)).await?;
    let worker = {
        let queue = queue.clone();
        tokio::spawn(async move {
            for _ in 0..n {
                let jobs = queue.claim_next(&mut waker, 1).await?;
                let at = Instant::now();
                queue.complete(jobs[0].id(), jobs[0].attempt()).await?;
                let _ = claimed_tx.send((jobs[0].id(), at));
            }
            anyhow::Ok(())
        })
    };
    // Let the worker reach its wait before the first enqueue.
    tokio::time::sleep(Duration::from_millis(200)).await;
    let mut latencies = Vec::with_capacity(n);
    for i in 0..n {
        let id = queue
            .enqueue(&job(&format!("user-{i}"), Tier::Fast, "noop"))
            .await?
            .id;
        let committed = Instant::now();
        let (claimed, at) = claimed_rx.recv().await.context("worker stopped")?;
        anyhow::ensure!(claimed == id, "claimed {claimed}, expected {id}");
        latencies.push(at.saturating_duration_since(committed).as_secs_f64() * 1e3);
    }
    worker.await??;
    Ok(latencies)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = (q * (sorted.len() - 1) as f64).round() as usize;
    sorted[rank.min(sorted.len() - 1)]
}
