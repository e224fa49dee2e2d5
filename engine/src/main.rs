use anyhow::Result;
use clap::{Parser, Subcommand};
use wordup_bot::health::Health;
use wordup_bot::settings::DatabaseSettings;
use wordup_bot::telemetry;

/// Word Up!'s image engine: claims jobs from the Postgres queue and runs them.
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
    /// Check Postgres and the queue, and print their health.
    Status,
}

#[tokio::main]
async fn main() -> Result<()> {
    telemetry::init();
    let cli = Cli::parse();
    let queue = cli.database.connect_and_migrate().await?;
    match cli.command {
        Command::Status => print!("{}", Health::check(&queue).await?),
    }
    Ok(())
}
