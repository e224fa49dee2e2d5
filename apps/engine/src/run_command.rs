//! `wordup-engine run` (part of the binary, not the library): the queue
//! worker with delivery wired to the chat platforms.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::Args;
use prometheus_client::registry::Registry;
use wordup_chat::delivery::ChatDelivery;
use wordup_chat::discord::DiscordSettings;
use wordup_chat::discord::delivery::DiscordDelivery;
use wordup_chat::metrics::ApiMetrics;
use wordup_chat::slack::SlackSettings;
use wordup_chat::slack::delivery::SlackDelivery;
use wordup_engine::finish::upscale::{self, Tiling, Upscaler};
use wordup_engine::judge::ClipJudge;
use wordup_engine::judge::reading::Lexicon;
use wordup_engine::judge::safety::OpenNsfw;
use wordup_engine::sd::pipeline::StableDiffusion;
use wordup_engine::sd::source::{self, ModelSource};
use wordup_engine::worker::metrics::WorkerMetrics;
use wordup_engine::worker::render::Models;
use wordup_engine::worker::warm_up;
use wordup_engine::worker::{Worker, WorkerConfig};
use wordup_runtime::metrics::MetricsState;
use wordup_runtime::settings::DatabaseSettings;

use crate::{FinishArgs, JudgeArgs, ModelArgs, add_draft_decoder, fetch, load_clip};

#[derive(Args)]
pub struct RunArgs {
    #[command(flatten)]
    database: DatabaseSettings,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    judge: JudgeArgs,
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
    /// Show no previews in progress edits (each costs a small decode and a
    /// safety check while denoising).
    #[arg(long, env = "WORDUP_NO_PREVIEWS")]
    no_previews: bool,
    /// Where /metrics, /healthz and /readyz are served (ready once the
    /// models are loaded and Postgres answers).
    #[arg(long, env = "WORDUP_METRICS_BIND", default_value = "0.0.0.0:9090")]
    metrics_bind: std::net::SocketAddr,
    /// Run without the output safety check (development only: images are
    /// then posted unchecked).
    #[arg(long, env = "WORDUP_NO_SAFETY_CHECK")]
    no_safety_check: bool,
    /// Take jobs without first drawing a throwaway grid on a GPU (which
    /// settles each shape's kernels and CUDA graph before the first job).
    #[arg(long, env = "WORDUP_NO_WARM_UP")]
    no_warm_up: bool,
}

pub async fn run(args: RunArgs) -> Result<()> {
    // Before anything is connected or loaded: a policy that could not act.
    anyhow::ensure!(
        args.judge.clip.as_deref() != Some("off") || args.judge.concepts().is_empty(),
        "WORDUP_BLOCKED_CONCEPTS is set but WORDUP_CLIP_MODEL is off: the concept check needs CLIP"
    );
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
        tracing::warn!(
            "WORDUP_DISCORD_BOT_TOKEN is not set: Discord jobs are left to other engines"
        );
        None
    } else {
        let mut rest = args.discord.rest()?;
        rest.counters = api_metrics.for_platform("discord");
        Some(DiscordDelivery::new(rest, queue.clone()))
    };
    let slack = if args.slack.enabled() {
        let mut api = args.slack.api()?;
        api.counters = api_metrics.for_platform("slack");
        Some(SlackDelivery::new(api, queue.clone()))
    } else {
        tracing::warn!("WORDUP_SLACK_BOT_TOKEN is not set: Slack jobs are left to other engines");
        None
    };
    // Claim only what this engine can post; other jobs wait for an engine
    // that can (and /queue and the metrics say so). Every engine serves the
    // playground: its results need no token.
    let platforms: Vec<String> = [
        ("discord", discord.is_some()),
        ("slack", slack.is_some()),
        (wordup_chat::web::playground::PLATFORM, true),
    ]
    .into_iter()
    .filter(|(_, served)| *served)
    .map(|(platform, _)| platform.to_owned())
    .collect();
    tracing::info!(?platforms, "claiming jobs of these platforms");
    let queue = queue.serving(platforms);
    let ready = Arc::new(AtomicBool::new(false));
    let state = MetricsState::new(registry, queue.clone(), ready.clone());
    let bind = args.metrics_bind;
    tokio::spawn(async move {
        if let Err(e) = wordup_runtime::metrics::serve(bind, state).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
    let (files, options) = fetch(&args.model, false).await?;
    let mut pipeline = StableDiffusion::load(&files, &options).context("loading the model")?;
    args.model.apply_gpu_settings(&mut pipeline);
    // Without its draft decoder the engine still serves every job: --draft
    // ones are then decoded in full, and their results say so.
    let draft_decoder_id =
        match add_draft_decoder(&mut pipeline, &args.model, &options, false).await {
            Ok(Some(id)) => {
                tracing::info!(draft_decoder = %id, "draft decoder loaded");
                Some(id)
            }
            Ok(None) => {
                tracing::info!(
                    "no draft decoder (WORDUP_DRAFT_DECODER=off): --draft jobs are decoded in full"
                );
                None
            }
            Err(error) => {
                tracing::warn!(
                    error = format!("{error:#}"),
                    "no draft decoder: --draft jobs are decoded in full"
                );
                None
            }
        };
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
    let clip = worker_clip(
        &args.judge,
        pipeline.unet_config.cross_attention_dim,
        &options.device,
    )
    .await?;
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
        clip,
        delivery: Arc::new(ChatDelivery { discord, slack }),
        config: WorkerConfig {
            batch: args.batch.max(1),
            poll: secs("WORDUP_POLL_SECS", args.poll_secs)?,
            heartbeat: lease / 3,
            progress_every: secs("WORDUP_PROGRESS_EDIT_SECS", args.progress_edit_secs)?,
            previews: !args.no_previews,
            blocked_concepts: args.judge.concepts(),
            concept_threshold: args.judge.concept_threshold,
            nsfw_threshold: args.finish.nsfw_threshold,
            model_id: ModelSource::parse(&args.model.model, args.model.revision.as_deref()).id(),
            draft_decoder_id,
        },
        metrics: worker_metrics.clone(),
    };
    if !options.device.is_cpu() && !args.no_warm_up {
        tracing::info!("warming up: a throwaway grid before taking jobs");
        match warm_up::warm_up(worker.models.clone(), worker.config.batch).await {
            Ok(drawings) => {
                for drawing in drawings {
                    let secs = drawing.took.as_secs_f64();
                    tracing::info!(grids = drawing.grids, secs, "warmed up");
                }
            }
            // Not fatal: a job drawn the same way reports its own error.
            Err(error) => tracing::warn!(%error, "the warm-up drawing failed"),
        }
    }
    worker_metrics.ready.set(1);
    ready.store(true, Ordering::Relaxed);
    let (stop, stopped) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        wordup_runtime::signals::shutdown().await;
        tracing::info!("stopping: finishing the job in hand, releasing the rest");
        let _ = stop.send(true);
    });
    worker.run(stopped).await?;
    Ok(())
}

/// The worker's CLIP with the vocabulary's features: the one named, else
/// the one matching the model's text encoder; none when `off`. Without it
/// results carry no scores or read-back and `--quality` draws without
/// reranking; the concept check cannot do without.
async fn worker_clip(
    judge: &JudgeArgs,
    cross_attention_dim: usize,
    device: &candle_core::Device,
) -> Result<Option<Arc<ClipJudge>>> {
    let concepts = judge.concepts();
    let spec = match judge.clip.as_deref() {
        // Refused with blocked concepts at the start of `run`.
        Some("off") => {
            tracing::info!("no CLIP (WORDUP_CLIP_MODEL=off): results carry no scores");
            return Ok(None);
        }
        Some(spec) => spec,
        None => source::clip_for(cross_attention_dim),
    };
    let loaded = async {
        let clip = load_clip(spec, device).await?;
        let lexicon = Lexicon::load(&clip, spec, Some(&judge.cache_dir))
            .context("the vocabulary's CLIP features")?;
        anyhow::Ok(ClipJudge { clip, lexicon })
    };
    match loaded.await {
        Ok(judge) => {
            tracing::info!(clip = spec, terms = judge.lexicon.len(), "CLIP loaded");
            Ok(Some(Arc::new(judge)))
        }
        Err(error) if concepts.is_empty() => {
            tracing::warn!(
                error = format!("{error:#}"),
                "no CLIP: results carry no scores and --quality draws without reranking"
            );
            Ok(None)
        }
        Err(error) => Err(error.context("the concept check (WORDUP_BLOCKED_CONCEPTS) needs CLIP")),
    }
}
