//! The whole product on one machine for end-to-end tests: a database, the
//! fake Discord, `wordup-bot serve` and `wordup-engine run` as child
//! processes (so they can be restarted and killed), on the tiny model.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::process::{Child, Command};
use wordup_queue::{Queue, QueueConfig};

use crate::fake_discord::FakeDiscord;
use crate::fake_slack::{self, FakeSlack};
use crate::interactions::{APPLICATION_ID, BOT_TOKEN, InteractionSigner};
use crate::pg::TestDb;
use crate::slack_requests::SIGNING_SECRET;

/// A binary of the workspace, built by `cargo test --workspace` (which the
/// README's test command runs) or `cargo build --workspace`.
pub fn workspace_bin(name: &str) -> Result<PathBuf> {
    let exe = std::env::current_exe()?;
    // Test binaries live in target/<profile>/deps, other binaries one up.
    let dir = exe.parent().context("binary has no directory")?;
    let dir = if dir.ends_with("deps") {
        dir.parent().unwrap_or(dir)
    } else {
        dir
    };
    let path = dir.join(name);
    anyhow::ensure!(
        path.is_file(),
        "{} is missing: build the workspace first (`cargo build --workspace`; scripts/test.sh does)",
        path.display()
    );
    Ok(path)
}

/// Where scripts/fetch-*.py put the real weights.
pub fn weights_dir() -> PathBuf {
    std::env::var_os("WORDUP_TEST_WEIGHTS")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target/weights"))
}

/// Where the tiny draft decoder lives, inside the tiny model's folder.
const DRAFT_DECODER_DIR: &str = "draft-decoder";

/// A port no one listens on now.
pub fn free_port() -> Result<u16> {
    Ok(std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port())
}

/// Fields drop in order: the processes go before the database they use.
pub struct Stack {
    bot: Option<Child>,
    engine: Option<Child>,
    /// Engines beside the first ([`Stack::start_another_engine`]).
    more_engines: Vec<Child>,
    pub db: TestDb,
    pub queue: Queue,
    pub fake: FakeDiscord,
    pub slack: FakeSlack,
    pub signer: InteractionSigner,
    pub http: reqwest::Client,
    pub lease_secs: f64,
    /// Extra environment for the bot.
    pub bot_env: Vec<(String, String)>,
    model_dir: PathBuf,
    bot_port: u16,
    bot_metrics_port: u16,
    engine_metrics_port: u16,
}

impl Stack {
    pub async fn start() -> Result<Stack> {
        Stack::start_on(TestDb::new().await?).await
    }

    /// The stack on a database of the caller's (on a server of its own, say).
    pub async fn start_on(db: TestDb) -> Result<Stack> {
        let queue = db.queue(QueueConfig::default(), 4).await?;
        let fake = FakeDiscord::start(BOT_TOKEN).await?;
        let slack = FakeSlack::start().await?;
        let model_dir = std::env::temp_dir().join(format!("wordup-tiny-{}", db.name()));
        wordup_engine_testkit::tiny::write_tiny_model(&model_dir)?;
        wordup_engine_testkit::tiny::write_tiny_taesd(&model_dir.join(DRAFT_DECODER_DIR))?;
        Ok(Stack {
            db,
            queue,
            fake,
            slack,
            signer: InteractionSigner::new(),
            http: reqwest::Client::new(),
            lease_secs: 3.0,
            bot_env: Vec::new(),
            model_dir,
            bot_port: free_port()?,
            bot_metrics_port: free_port()?,
            engine_metrics_port: free_port()?,
            bot: None,
            engine: None,
            more_engines: Vec::new(),
        })
    }

    /// The tiny model's folder (`WORDUP_MODEL` of the engines).
    pub fn model_dir(&self) -> PathBuf {
        self.model_dir.clone()
    }

    /// The tiny model's tokenizer folder (for `WORDUP_TOKENIZER_DIR`).
    pub fn tokenizer_dir(&self) -> PathBuf {
        self.model_dir.join("tokenizer")
    }

    pub fn endpoint(&self) -> String {
        format!("http://127.0.0.1:{}/discord/interactions", self.bot_port)
    }

    /// The bot's `/metrics`, `/healthz`, `/readyz` base (`WORDUP_METRICS_BIND`).
    pub fn bot_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.bot_metrics_port)
    }

    /// The bot's public listener (`WORDUP_BIND`), where the platforms call.
    pub fn public_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.bot_port)
    }

    /// The engine's `/metrics`, `/healthz`, `/readyz` base.
    pub fn engine_url(&self) -> String {
        format!("http://127.0.0.1:{}", self.engine_metrics_port)
    }

    /// Slack's slash-command endpoint on the bot.
    pub fn slack_commands(&self) -> String {
        format!("http://127.0.0.1:{}/slack/commands", self.bot_port)
    }

    pub fn slack_interactions(&self) -> String {
        format!("http://127.0.0.1:{}/slack/interactions", self.bot_port)
    }

    fn common_env(&self, command: &mut Command) {
        command
            .env("WORDUP_SLACK_BOT_TOKEN", fake_slack::BOT_TOKEN)
            .env("WORDUP_SLACK_API_URL", &self.slack.api_url)
            .env("DATABASE_URL", self.db.url())
            .env("WORDUP_DISCORD_BOT_TOKEN", BOT_TOKEN)
            .env("WORDUP_DISCORD_APPLICATION_ID", APPLICATION_ID)
            .env("WORDUP_DISCORD_API_URL", &self.fake.url)
            .env("WORDUP_DISCORD_FILE_HOSTS", self.fake.host())
            .env("WORDUP_SLACK_FILE_HOSTS", self.slack.host())
            .env("WORDUP_LEASE_SECS", self.lease_secs.to_string())
            .env(
                "WORDUP_LOG",
                std::env::var("WORDUP_TEST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .kill_on_drop(true);
    }

    /// Starts `wordup-bot gateway` against the fake's gateway.
    pub async fn start_gateway(&mut self) -> Result<()> {
        let mut command = Command::new(workspace_bin("wordup-bot")?);
        command
            .arg("gateway")
            .env("WORDUP_METRICS_BIND", format!("127.0.0.1:{}", free_port()?));
        self.common_env(&mut command);
        self.bot = Some(command.spawn().context("starting wordup-bot gateway")?);
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.fake.gateway_identified() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "wordup-bot never identified on the gateway"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Starts `wordup-bot slack-socket` (Socket Mode against the fake).
    pub async fn start_slack_socket(&mut self) -> Result<()> {
        let mut command = Command::new(workspace_bin("wordup-bot")?);
        command
            .arg("slack-socket")
            .env("WORDUP_SLACK_APP_TOKEN", fake_slack::APP_TOKEN);
        self.common_env(&mut command);
        self.bot = Some(
            command
                .spawn()
                .context("starting wordup-bot slack-socket")?,
        );
        let deadline = Instant::now() + Duration::from_secs(30);
        while !self.slack.socket_connected() {
            anyhow::ensure!(
                Instant::now() < deadline,
                "wordup-bot never connected over Socket Mode"
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Ok(())
    }

    /// Starts `wordup-bot serve` and waits until it answers.
    pub async fn start_bot(&mut self) -> Result<()> {
        let mut command = Command::new(workspace_bin("wordup-bot")?);
        command
            .arg("serve")
            .env("WORDUP_BIND", format!("127.0.0.1:{}", self.bot_port))
            .env(
                "WORDUP_METRICS_BIND",
                format!("127.0.0.1:{}", self.bot_metrics_port),
            )
            .env("WORDUP_DISCORD_PUBLIC_KEY", self.signer.public_key_hex())
            .env("WORDUP_SLACK_SIGNING_SECRET", SIGNING_SECRET);
        self.common_env(&mut command);
        for (name, value) in &self.bot_env {
            command.env(name, value);
        }
        self.bot = Some(command.spawn().context("starting wordup-bot")?);
        // The public listener is bound before the metrics server starts.
        let health = format!("{}/healthz", self.bot_url());
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(response) = self.http.get(&health).send().await
                && response.status().is_success()
            {
                return Ok(());
            }
            anyhow::ensure!(Instant::now() < deadline, "wordup-bot did not come up");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// Sends the bot SIGTERM without waiting for it to exit.
    pub fn signal_bot(&self) -> Result<()> {
        terminate(self.bot.as_ref().context("the bot is not running")?)
    }

    /// Whether the bot process has exited.
    pub fn bot_exited(&mut self) -> bool {
        self.bot
            .as_mut()
            .is_none_or(|bot| bot.try_wait().ok().flatten().is_some())
    }

    /// Stops the bot as an orchestrator would (SIGTERM), and waits.
    pub async fn stop_bot(&mut self) -> Result<()> {
        if let Some(mut bot) = self.bot.take() {
            terminate(&bot)?;
            tokio::time::timeout(Duration::from_secs(10), bot.wait()).await??;
        }
        Ok(())
    }

    /// Starts `wordup-engine run` on the tiny model, with its tiny draft
    /// decoder and the real upscaler and safety weights.
    pub async fn start_engine(&mut self, extra_env: &[(&str, &str)]) -> Result<()> {
        let command = self.engine_command(self.engine_metrics_port, extra_env)?;
        self.engine = Some(spawn_engine(command)?);
        Ok(())
    }

    /// Starts one more engine beside the first (its metrics on a port of its own).
    pub async fn start_another_engine(&mut self, extra_env: &[(&str, &str)]) -> Result<()> {
        let command = self.engine_command(free_port()?, extra_env)?;
        self.more_engines.push(spawn_engine(command)?);
        Ok(())
    }

    /// Whether every engine started is still running.
    pub fn engines_running(&mut self) -> bool {
        self.engine
            .iter_mut()
            .chain(self.more_engines.iter_mut())
            .all(|engine| engine.try_wait().ok().flatten().is_none())
    }

    fn engine_command(&self, metrics_port: u16, extra_env: &[(&str, &str)]) -> Result<Command> {
        let weights = weights_dir();
        let mut command = Command::new(workspace_bin("wordup-engine")?);
        command
            .arg("run")
            .env("WORDUP_MODEL", &self.model_dir)
            .env(
                "WORDUP_DRAFT_DECODER",
                self.model_dir.join(DRAFT_DECODER_DIR),
            )
            .env(
                "WORDUP_UPSCALER_WEIGHTS",
                weights.join("RealESRGAN_x4plus.safetensors"),
            )
            .env(
                "WORDUP_SAFETY_WEIGHTS",
                weights.join("open_nsfw.safetensors"),
            )
            .env(
                "WORDUP_CLIP_MODEL",
                wordup_engine_testkit::fixtures::fixtures().join("clip-tiny"),
            )
            .env("WORDUP_POLL_SECS", "0.5")
            .env("WORDUP_METRICS_BIND", format!("127.0.0.1:{metrics_port}"))
            .env("WORDUP_PROGRESS_EDIT_SECS", "0.3");
        self.common_env(&mut command);
        for (name, value) in extra_env {
            command.env(name, value);
        }
        Ok(command)
    }

    /// SIGKILL: no destructors, no release; only the lease is left.
    pub async fn kill_engine(&mut self) -> Result<()> {
        if let Some(mut engine) = self.engine.take() {
            engine.start_kill()?;
            engine.wait().await?;
        }
        Ok(())
    }

    pub async fn stop_engine(&mut self) -> Result<std::process::ExitStatus> {
        let mut engine = self.engine.take().context("no engine running")?;
        terminate(&engine)?;
        Ok(tokio::time::timeout(Duration::from_secs(60), engine.wait()).await??)
    }
}

fn spawn_engine(mut command: Command) -> Result<Child> {
    command.spawn().context("starting wordup-engine")
}

fn terminate(child: &Child) -> Result<()> {
    let pid = child.id().context("process already reaped")?;
    let status = std::process::Command::new("kill")
        .args(["-TERM", &pid.to_string()])
        .status()?;
    anyhow::ensure!(status.success(), "kill -TERM {pid} failed");
    Ok(())
}

impl Drop for Stack {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.model_dir);
    }
}
