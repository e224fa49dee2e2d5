//! A Postgres database per test, on the server that `scripts/postgres.sh`
//! brings up. `DATABASE_URL` names a database on it whose role may create
//! databases; each [`TestDb`] creates its own and drops it when dropped.

use std::str::FromStr;
use std::sync::atomic::{AtomicU32, Ordering};

use anyhow::{Context, Result};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, Executor};
use wordup_queue::{Queue, QueueConfig};

pub const DEFAULT_DATABASE_URL: &str = "postgres://wordup:wordup@127.0.0.1:5432/wordup";

pub fn database_url() -> String {
    std::env::var("DATABASE_URL").unwrap_or_else(|_| DEFAULT_DATABASE_URL.to_owned())
}

/// A fresh, migrated database, dropped with the value.
pub struct TestDb {
    admin: PgConnectOptions,
    /// The server's URL as given, for [`TestDb::url`].
    server_url: String,
    name: String,
    pub options: PgConnectOptions,
}

impl TestDb {
    /// A database on the shared server (`DATABASE_URL`).
    pub async fn new() -> Result<TestDb> {
        TestDb::on_server(&database_url()).await
    }

    /// A database on the server of `server_url`, whose role may create databases.
    pub async fn on_server(server_url: &str) -> Result<TestDb> {
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let admin = PgConnectOptions::from_str(server_url)
            .context("DATABASE_URL is not a Postgres URL")?
            .disable_statement_logging();
        let name = format!(
            "wordup_test_{}_{}_{}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed),
            rand::random::<u32>()
        );
        let mut conn = admin
            .connect()
            .await
            .context("cannot reach Postgres: run ./scripts/postgres.sh and set DATABASE_URL")?;
        conn.execute(format!("CREATE DATABASE {name}").as_str())
            .await
            .with_context(|| format!("creating database {name}"))?;
        conn.close().await?;
        let options = admin.clone().database(&name);
        let db = TestDb {
            admin,
            server_url: server_url.to_owned(),
            name,
            options,
        };
        db.queue(QueueConfig::default(), 2).await?.migrate().await?;
        Ok(db)
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// A URL for child processes.
    pub fn url(&self) -> String {
        let mut url = url::Url::parse(&self.server_url).expect("the server URL parsed before");
        url.set_path(&self.name);
        url.to_string()
    }

    pub async fn queue(&self, config: QueueConfig, max_connections: u32) -> Result<Queue> {
        Ok(Queue::connect_with(self.options.clone(), max_connections, config).await?)
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let admin = self.admin.clone();
        let name = self.name.clone();
        // Async drop is not a thing: drop the database from a thread of its own.
        let dropper = std::thread::spawn(move || {
            let Ok(runtime) = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            else {
                return;
            };
            runtime.block_on(async move {
                if let Ok(mut conn) = admin.connect().await {
                    let _ = conn
                        .execute(format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)").as_str())
                        .await;
                }
            });
        });
        let _ = dropper.join();
    }
}
