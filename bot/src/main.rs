use std::time::Duration;

use anyhow::Result;
use clap::{Parser, Subcommand};
use wordup_bot::health::Health;
use wordup_bot::settings::DatabaseSettings;
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
    }
    Ok(())
}
