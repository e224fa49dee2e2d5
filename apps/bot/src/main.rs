use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use prometheus_client::registry::Registry;
use slack_morphism::prelude::SlackSigningSecret;
use slack_morphism::signature_verifier::SlackEventSignatureVerifier;
use wordup_chat::ack::Pending;
use wordup_chat::commands::Commands;
use wordup_chat::discord::endpoint::{self, EndpointState};
use wordup_chat::discord::handler::DiscordApp;
use wordup_chat::discord::verify::RequestVerifier;
use wordup_chat::discord::{DiscordSettings, gateway, slash_commands};
use wordup_chat::metrics::{ApiMetrics, BotMetrics};
use wordup_chat::settings::CommandSettings;
use wordup_chat::slack::SlackSettings;
use wordup_chat::slack::endpoint::{self as slack_endpoint, SlackEndpointState};
use wordup_chat::slack::handler::SlackApp;
use wordup_chat::slack::socket as slack_socket;
use wordup_chat::web::PlaygroundSettings;
use wordup_chat::web::board::{self, BoardState};
use wordup_chat::web::playground::{self, PlaygroundState};
use wordup_runtime::health::Health;
use wordup_runtime::metrics::{self, MetricsState};
use wordup_runtime::settings::DatabaseSettings;
use wordup_runtime::telemetry;

/// Word Up!'s chat bot: turns /imagine into jobs on the Postgres queue.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    database: DatabaseSettings,
    /// Seconds a stopping listener waits for acked commands still being
    /// enqueued and for their follow-up messages.
    #[arg(
        long,
        global = true,
        env = "WORDUP_SHUTDOWN_DRAIN_SECS",
        default_value_t = 20.0
    )]
    shutdown_drain_secs: f64,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Apply database migrations, then exit.
    Migrate,
    /// Check Postgres and the queue, and print their health.
    Status,
    /// Return jobs whose worker died to the queue and delete finished jobs
    /// past retention; once, or every --every seconds.
    Maintain {
        #[arg(long)]
        every: Option<f64>,
    },
    /// Serve the platforms' HTTP endpoints: Discord's interactions
    /// (POST /discord/interactions) when WORDUP_DISCORD_PUBLIC_KEY is set,
    /// Slack's slash commands and interactivity (POST /slack/commands,
    /// /slack/interactions) when WORDUP_SLACK_SIGNING_SECRET is set.
    Serve {
        /// Address the platforms' requests arrive on (public).
        #[arg(long, env = "WORDUP_BIND", default_value = "0.0.0.0:8080")]
        bind: SocketAddr,
        /// Where /metrics, /healthz and /readyz are served (keep it private).
        #[arg(long, env = "WORDUP_METRICS_BIND", default_value = "0.0.0.0:9090")]
        metrics_bind: SocketAddr,
        #[command(flatten)]
        discord: DiscordSettings,
        #[command(flatten)]
        slack: SlackSettings,
        #[command(flatten)]
        commands: CommandSettings,
        #[command(flatten)]
        playground: PlaygroundSettings,
    },
    /// Receive Slack commands and button presses over Socket Mode instead
    /// (no public URL needed; needs WORDUP_SLACK_APP_TOKEN).
    SlackSocket {
        /// Where /metrics, /healthz and /readyz are served.
        #[arg(long, env = "WORDUP_METRICS_BIND", default_value = "0.0.0.0:9090")]
        metrics_bind: SocketAddr,
        #[command(flatten)]
        slack: SlackSettings,
        #[command(flatten)]
        commands: CommandSettings,
    },
    /// Receive Discord interactions over the gateway instead (no public URL needed).
    Gateway {
        /// Where /metrics, /healthz and /readyz are served.
        #[arg(long, env = "WORDUP_METRICS_BIND", default_value = "0.0.0.0:9090")]
        metrics_bind: SocketAddr,
        #[command(flatten)]
        discord: DiscordSettings,
        #[command(flatten)]
        commands: CommandSettings,
    },
    /// Register the slash commands, globally or in one guild (instant, for testing).
    RegisterCommands {
        #[arg(long)]
        guild: Option<String>,
        #[command(flatten)]
        discord: DiscordSettings,
    },
}

#[tokio::main]
async fn main() -> Result<()> {
    telemetry::init();
    let cli = Cli::parse();
    let queue = cli.database.connect_and_migrate().await?;
    // One registry for whichever listener runs, served on /metrics.
    let mut registry = Registry::with_prefix("wordup");
    let bot_metrics = BotMetrics::default();
    bot_metrics.register(&mut registry);
    let api_metrics = ApiMetrics::default();
    api_metrics.register(&mut registry);
    // Acked commands still being enqueued, and their follow-ups: a stopping
    // listener waits for them (bounded), so an ack never loses its job.
    let pending = Pending::default();
    let drain = Duration::try_from_secs_f64(cli.shutdown_drain_secs)
        .context("WORDUP_SHUTDOWN_DRAIN_SECS must be a non-negative number")?;
    match cli.command {
        Command::Migrate => println!("migrations applied"),
        Command::Status => print!("{}", Health::check(&queue).await?),
        Command::Maintain { every } => {
            let retention = cli.database.queue.retention()?;
            loop {
                let done = queue.maintain(retention).await?;
                tracing::info!(rescued = done.rescued, pruned = done.pruned, "maintenance");
                let Some(every) = every else { break };
                tokio::time::sleep(Duration::from_secs_f64(every.max(1.0))).await;
            }
        }
        Command::Serve {
            bind,
            metrics_bind,
            discord,
            slack,
            commands,
            playground,
        } => {
            let commands = Commands {
                queue: queue.clone(),
                config: commands.command_config(&cli.database.queue)?,
                pending: pending.clone(),
            };
            let mut router = axum::Router::new();
            if !discord.discord_public_key.is_empty() {
                let verifier = RequestVerifier::new(&discord.discord_public_key)?;
                let mut app = DiscordApp {
                    commands: commands.clone(),
                    rest: discord.rest()?,
                    images: discord.fetcher()?,
                };
                app.rest.counters = api_metrics.for_platform("discord");
                router = router.merge(endpoint::router(EndpointState {
                    app,
                    verifier,
                    metrics: bot_metrics.clone(),
                }));
                tracing::info!(path = endpoint::PATH, "serving Discord interactions");
            }
            if !slack.slack_signing_secret.expose().is_empty() {
                let mut app = slack_app(&slack, commands.clone())?;
                app.api.counters = api_metrics.for_platform("slack");
                let verifier = SlackEventSignatureVerifier::new(&SlackSigningSecret::new(
                    slack.slack_signing_secret.expose().to_owned(),
                ));
                router = router.merge(slack_endpoint::router(SlackEndpointState {
                    app,
                    verifier: std::sync::Arc::new(verifier),
                    metrics: bot_metrics.clone(),
                }));
                tracing::info!("serving Slack commands and interactivity");
            }
            // Boards: read-only pages behind signed links.
            let boards = commands.config.boards.clone();
            if let Some(boards) = &boards {
                router = router.merge(board::router(BoardState {
                    queue: queue.clone(),
                    secret: boards.secret.clone(),
                }));
                tracing::info!(url = %boards.base_url, "serving channel boards");
            }
            let playground = playground.listener();
            anyhow::ensure!(
                !discord.discord_public_key.is_empty()
                    || !slack.slack_signing_secret.expose().is_empty()
                    || boards.is_some()
                    || playground.is_some(),
                "nothing to serve: set WORDUP_DISCORD_PUBLIC_KEY, WORDUP_SLACK_SIGNING_SECRET, WORDUP_BOARD_SECRET and/or WORDUP_PLAYGROUND_PORT"
            );
            if let Some((addr, token)) = playground {
                let listener = tokio::net::TcpListener::bind(addr)
                    .await
                    .with_context(|| format!("cannot listen on {addr} for the playground"))?;
                let app = playground::router(PlaygroundState {
                    commands: commands.clone(),
                    token,
                });
                println!("playground: http://{}/", listener.local_addr()?);
                tracing::info!(%addr, "serving the playground");
                tokio::spawn(async move {
                    let served = axum::serve(listener, app)
                        .with_graceful_shutdown(wordup_runtime::signals::shutdown())
                        .await;
                    if let Err(e) = served {
                        tracing::error!(error = %e, "playground stopped");
                    }
                });
            }
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| format!("cannot listen on {bind}"))?;
            tracing::info!(%bind, "listening");
            // Internals stay off the public listener.
            spawn_metrics(metrics_bind, registry, queue);
            axum::serve(listener, router)
                .with_graceful_shutdown(wordup_runtime::signals::shutdown())
                .await?;
            pending.drain(drain).await;
        }
        Command::Gateway {
            metrics_bind,
            discord,
            commands,
        } => {
            let app = DiscordApp {
                commands: Commands {
                    queue: queue.clone(),
                    config: commands.command_config(&cli.database.queue)?,
                    pending: pending.clone(),
                },
                rest: discord.rest()?,
                images: discord.fetcher()?,
            };
            let mut app = app;
            app.rest.counters = api_metrics.for_platform("discord");
            spawn_metrics(metrics_bind, registry, queue);
            tokio::select! {
                result = gateway::run(app, &discord.discord_bot_token, &discord.discord_api_url) => result?,
                () = wordup_runtime::signals::shutdown() => {}
            }
            pending.drain(drain).await;
        }
        Command::SlackSocket {
            metrics_bind,
            slack,
            commands,
        } => {
            anyhow::ensure!(
                !slack.slack_app_token.expose().is_empty(),
                "WORDUP_SLACK_APP_TOKEN (xapp-…) is not set"
            );
            let app = slack_app(
                &slack,
                Commands {
                    queue: queue.clone(),
                    config: commands.command_config(&cli.database.queue)?,
                    pending: pending.clone(),
                },
            )?;
            let mut app = app;
            app.api.counters = api_metrics.for_platform("slack");
            spawn_metrics(metrics_bind, registry, queue);
            tokio::select! {
                result = slack_socket::run(app, slack.slack_app_token.clone()) => result?,
                () = wordup_runtime::signals::shutdown() => {}
            }
            pending.drain(drain).await;
        }
        Command::RegisterCommands { guild, discord } => {
            anyhow::ensure!(
                !discord.discord_application_id.is_empty(),
                "WORDUP_DISCORD_APPLICATION_ID is not set"
            );
            let registered = slash_commands::register(
                &discord.rest()?,
                &discord.discord_application_id,
                guild.as_deref(),
            )
            .await?;
            let names: Vec<&str> = registered
                .iter()
                .filter_map(|c| c.get("name")?.as_str())
                .collect();
            match guild {
                Some(guild) => println!("registered in guild {guild}: /{}", names.join(", /")),
                None => println!(
                    "registered globally (may take a while to show): /{}",
                    names.join(", /")
                ),
            }
        }
    }
    Ok(())
}

fn slack_app(slack: &SlackSettings, commands: Commands) -> Result<SlackApp> {
    Ok(SlackApp {
        commands,
        api: slack.api()?,
        images: slack.fetcher()?,
        settings_admins: slack
            .slack_settings_admins
            .iter()
            .filter(|id| !id.is_empty())
            .cloned()
            .collect(),
    })
}

fn spawn_metrics(bind: SocketAddr, registry: Registry, queue: wordup_queue::Queue) {
    let ready = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true));
    tokio::spawn(async move {
        if let Err(e) = metrics::serve(bind, MetricsState::new(registry, queue, ready)).await {
            tracing::error!(error = %e, "metrics server stopped");
        }
    });
}
