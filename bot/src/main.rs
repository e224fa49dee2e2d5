use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Parser, Subcommand};
use wordup_bot::commands::Commands;
use wordup_bot::discord::endpoint::{self, EndpointState};
use wordup_bot::discord::handler::DiscordApp;
use wordup_bot::discord::verify::RequestVerifier;
use wordup_bot::discord::{DiscordSettings, gateway, slash_commands};
use wordup_bot::health::Health;
use wordup_bot::settings::{CommandSettings, DatabaseSettings};
use wordup_bot::telemetry;

/// Word Up!'s chat bot: turns /imagine into jobs on the Postgres queue.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(flatten)]
    database: DatabaseSettings,
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
    /// Serve Discord's interactions endpoint over HTTP (POST /discord/interactions).
    Serve {
        /// Address to listen on.
        #[arg(long, env = "WORDUP_BIND", default_value = "0.0.0.0:8080")]
        bind: SocketAddr,
        #[command(flatten)]
        discord: DiscordSettings,
        #[command(flatten)]
        commands: CommandSettings,
    },
    /// Receive Discord interactions over the gateway instead (no public URL needed).
    Gateway {
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
            discord,
            commands,
        } => {
            let verifier = RequestVerifier::new(&discord.discord_public_key)?;
            let app = DiscordApp {
                commands: Commands {
                    queue,
                    config: commands.command_config(&cli.database.queue)?,
                },
                rest: discord.rest()?,
            };
            let router = endpoint::router(EndpointState { app, verifier });
            let listener = tokio::net::TcpListener::bind(bind)
                .await
                .with_context(|| format!("cannot listen on {bind}"))?;
            tracing::info!(%bind, path = endpoint::PATH, "serving Discord interactions");
            axum::serve(listener, router)
                .with_graceful_shutdown(wordup_bot::signals::shutdown())
                .await?;
        }
        Command::Gateway { discord, commands } => {
            let app = DiscordApp {
                commands: Commands {
                    queue,
                    config: commands.command_config(&cli.database.queue)?,
                },
                rest: discord.rest()?,
            };
            tokio::select! {
                result = gateway::run(app, &discord.discord_bot_token) => result?,
                () = wordup_bot::signals::shutdown() => {}
            }
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
