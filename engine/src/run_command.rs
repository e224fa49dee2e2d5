//! `wordup-engine run` (part of the binary, not the library): the queue
//! worker with delivery wired to the chat platforms.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use prometheus_client::registry::Registry;
use wordup_bot::delivery::{Attachment, DeliveryError, ResultKind, ResultPost};
use wordup_bot::discord::DiscordSettings;
use wordup_bot::discord::delivery::DiscordDelivery;
use wordup_bot::metrics::{ApiMetrics, MetricsState};
use wordup_bot::settings::DatabaseSettings;
use wordup_bot::slack::SlackSettings;
use wordup_bot::slack::delivery::SlackDelivery;
use wordup_engine::metrics::WorkerMetrics;
use wordup_engine::pipeline::StableDiffusion;
use wordup_engine::render::Models;
use wordup_engine::safety::OpenNsfw;
use wordup_engine::source::ModelSource;
use wordup_engine::upscale::{self, Tiling, Upscaler};
use wordup_engine::worker::{
    Delivery, DeliveryFailure, Finished, FinishedKind, Posted, Worker, WorkerConfig,
};
use wordup_queue::{Job, Progress};

use crate::{FinishArgs, ModelArgs, fetch};

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    database: DatabaseSettings,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    finish: FinishArgs,
    #[command(flatten)]
    discord: DiscordSettings,
    #[command(flatten)]
    slack: SlackSettings,
    /// Jobs claimed at once (jobs sharing a batch key).
    #[arg(long, env = "WORDUP_ENGINE_BATCH", default_value_t = 1)]
    batch: u32,
    /// Seconds between polls when no notification arrives.
    #[arg(long, env = "WORDUP_POLL_SECS", default_value_t = 5.0)]
    poll_secs: f64,
    /// Least seconds between progress edits shown to users (Discord asks for ~3).
    #[arg(long, env = "WORDUP_PROGRESS_EDIT_SECS", default_value_t = 3.0)]
    progress_edit_secs: f64,
    /// Where /metrics, /healthz and /readyz are served (ready once the
    /// models are loaded and Postgres answers).
    #[arg(long, env = "WORDUP_METRICS_BIND", default_value = "0.0.0.0:9090")]
    metrics_bind: std::net::SocketAddr,
    /// Run without the output safety check (development only: images are
    /// then posted unchecked).
    #[arg(long, env = "WORDUP_NO_SAFETY_CHECK")]
    no_safety_check: bool,
}

pub async fn run(args: RunArgs) -> Result<()> {
    let queue = args.database.connect_and_migrate().await?;
    let lease = args.database.queue.queue_config()?.lease;
    // Metrics first, so that an orchestrator sees the engine alive (not
    // ready) while the models load.
    let worker_metrics = Arc::new(WorkerMetrics::default());
    let mut registry = Registry::with_prefix("wordup");
    worker_metrics.register(&mut registry);
    let api_metrics = ApiMetrics::default();
    api_metrics.register(&mut registry);
    let discord = if args.discord.discord_bot_token.expose().is_empty() {
        tracing::warn!("WORDUP_DISCORD_BOT_TOKEN is not set: Discord jobs will fail to post");
        None
    } else {
        let mut rest = args.discord.rest()?;
        rest.counters = api_metrics.for_platform("discord");
        Some(DiscordDelivery::new(rest))
    };
    let slack = if args.slack.enabled() {
        let mut api = args.slack.api()?;
        api.counters = api_metrics.for_platform("slack");
        Some(SlackDelivery {
            api,
            queue: queue.clone(),
        })
    } else {
        tracing::warn!("WORDUP_SLACK_BOT_TOKEN is not set: Slack jobs will fail to post");
        None
    };
    let ready = Arc::new(AtomicBool::new(false));
    let state = MetricsState::new(registry, queue.clone(), ready.clone());
    let bind = args.metrics_bind;
    tokio::spawn(async move {
        if let Err(e) = wordup_bot::metrics::serve(bind, state).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    let (files, options) = fetch(&args.model, false).await?;
    let pipeline = StableDiffusion::load(&files, &options).context("loading the model")?;
    let upscaler = if args.finish.upscaler_weights.is_file() {
        Some(Upscaler::load(
            &args.finish.upscaler_weights,
            &upscale::Config::default(),
            &options.device,
            candle_core::DType::F32,
        )?)
    } else {
        tracing::warn!(
            path = %args.finish.upscaler_weights.display(),
            "no upscaler weights: U buttons will fail with a message"
        );
        None
    };
    let safety = if args.no_safety_check {
        tracing::warn!("the output safety check is off");
        None
    } else {
        anyhow::ensure!(
            args.finish.safety_weights.is_file(),
            "no safety-check weights at {} (run `python3 scripts/fetch-opennsfw.py target/weights`, set WORDUP_SAFETY_WEIGHTS, or pass --no-safety-check for development)",
            args.finish.safety_weights.display()
        );
        Some(Arc::new(OpenNsfw::load(
            &args.finish.safety_weights,
            &candle_core::Device::Cpu,
        )?))
    };
    let secs = |name: &str, v: f64| {
        Duration::try_from_secs_f64(v)
            .with_context(|| format!("{name} must be a non-negative number"))
    };
    let worker = Worker {
        queue,
        models: Arc::new(Models {
            pipeline,
            upscaler,
            tiling: Tiling {
                tile: args.finish.upscale_tile,
                pad: 10,
            },
        }),
        safety,
        delivery: Arc::new(ChatDelivery { discord, slack }),
        config: WorkerConfig {
            batch: args.batch.max(1),
            poll: secs("WORDUP_POLL_SECS", args.poll_secs)?,
            heartbeat: lease / 3,
            progress_every: secs("WORDUP_PROGRESS_EDIT_SECS", args.progress_edit_secs)?,
            nsfw_threshold: args.finish.nsfw_threshold,
            model_id: ModelSource::parse(&args.model.model, args.model.revision.as_deref()).id(),
        },
        metrics: worker_metrics.clone(),
    };
    worker_metrics.ready.set(1);
    ready.store(true, Ordering::Relaxed);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wordup_bot::signals::shutdown().await;
        tracing::info!("stopping: finishing the job in hand, releasing the rest");
        let _ = stop.send(true);
    });
    worker.run(stopped).await?;
    Ok(())
}

/// Delivery by the platform a job came from.
struct ChatDelivery {
    discord: Option<DiscordDelivery>,
    slack: Option<SlackDelivery>,
}

enum Platform<'a> {
    Discord(&'a DiscordDelivery),
    Slack(&'a SlackDelivery),
}

impl ChatDelivery {
    fn platform(&self, job: &Job) -> Result<Platform<'_>, DeliveryFailure> {
        // A missing token is transient: an engine configured for the
        // platform may claim the job on a later attempt.
        match (job.origin.platform.as_str(), &self.discord, &self.slack) {
            ("discord", Some(discord), _) => Ok(Platform::Discord(discord)),
            ("slack", _, Some(slack)) => Ok(Platform::Slack(slack)),
            (platform @ ("discord" | "slack"), _, _) => Err(DeliveryFailure::Transient(format!(
                "this engine has no {platform} bot token"
            ))),
            (other, _, _) => Err(DeliveryFailure::Permanent(format!(
                "no delivery for platform {other}"
            ))),
        }
    }
}

fn failure(e: DeliveryError) -> DeliveryFailure {
    match e {
        DeliveryError::Transient(e) => DeliveryFailure::Transient(e),
        DeliveryError::Permanent(e) => DeliveryFailure::Permanent(e),
    }
}

impl Delivery for ChatDelivery {
    fn attachment_limit(&self, job: &Job) -> u64 {
        match self.platform(job) {
            Ok(Platform::Discord(discord)) => discord.attachment_limit(job),
            // Slack takes files up to 1 GB.
            Ok(Platform::Slack(_)) => 1 << 30,
            Err(_) => 10 * 1024 * 1024,
        }
    }

    fn nsfw_allowed(&self, job: &Job) -> bool {
        job.reply
            .get("nsfw_allowed")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }

    async fn progress(&self, job: &Job, progress: &Progress) {
        match self.platform(job) {
            Ok(Platform::Discord(discord)) => discord.progress(job, progress).await,
            Ok(Platform::Slack(slack)) => slack.progress(job, progress).await,
            Err(_) => {}
        }
    }

    async fn post(&self, job: &Job, finished: &Finished) -> Result<Posted, DeliveryFailure> {
        let post = ResultPost {
            kind: match finished.kind {
                FinishedKind::Grid => ResultKind::Grid,
                FinishedKind::Single => ResultKind::Upscaled,
            },
            prompt: finished.prompt.clone(),
            what: finished.what.clone(),
            attachment: Attachment {
                filename: finished.filename.clone(),
                mime: finished.mime,
                bytes: finished.bytes.clone(),
                alt: finished.alt.clone(),
            },
        };
        let message_id = match self.platform(job)? {
            Platform::Discord(discord) => discord.post_result(job, &post).await,
            Platform::Slack(slack) => slack.post_result(job, &post).await,
        }
        .map_err(failure)?;
        Ok(Posted {
            channel_id: job.origin.channel_id.clone(),
            message_id,
        })
    }

    async fn notice(&self, job: &Job, text: &str) -> Result<(), DeliveryFailure> {
        match self.platform(job)? {
            Platform::Discord(discord) => discord.notice(job, text).await,
            Platform::Slack(slack) => slack.notice(job, text).await,
        }
        .map_err(failure)
    }
}
