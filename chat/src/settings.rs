//! The command settings, from environment variables (or flags), parsed once
//! at start-up. Every variable is listed in `.env.example`.

use anyhow::{Context, Result};
use wordup_runtime::secret::Secret;
use wordup_runtime::settings::QueueSettings;

use crate::web::link::BoardLinks;

/// Quotas and policy for commands, from the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct CommandSettings {
    /// Jobs one user may have waiting or running at once.
    #[arg(long, env = "WORDUP_MAX_ACTIVE_PER_USER", default_value_t = 10)]
    pub max_active_per_user: i64,
    /// Jobs one user may start per UTC day.
    #[arg(long, env = "WORDUP_MAX_JOBS_PER_DAY", default_value_t = 200)]
    pub max_jobs_per_day: i64,
    /// Tier for prompts and channels that name none: fast or relax.
    #[arg(long, env = "WORDUP_DEFAULT_TIER", default_value = "fast")]
    pub default_tier: String,
    /// Comma-separated terms refused in prompts (whole words, any case).
    #[arg(long, env = "WORDUP_BLOCKED_TERMS", default_value = "")]
    pub blocked_terms: String,
    /// The model's `tokenizer/` folder (vocab.json and merges.txt, or
    /// tokenizer.json): prompts over the model's token limit are refused at
    /// once. Unset: the engine refuses them when it draws.
    #[arg(long, env = "WORDUP_TOKENIZER_DIR")]
    pub tokenizer_dir: Option<std::path::PathBuf>,
    /// Signs the links /board hands out (any long random string); changing
    /// it revokes every link. Empty: no boards.
    #[arg(long, env = "WORDUP_BOARD_SECRET", default_value = "")]
    pub board_secret: Secret,
    /// The address people open board links at: where `wordup-bot serve` is
    /// reached from a browser.
    #[arg(
        long,
        env = "WORDUP_PUBLIC_URL",
        default_value = "http://127.0.0.1:8080"
    )]
    pub public_url: String,
    /// How long a board link works, in hours.
    #[arg(long, env = "WORDUP_BOARD_LINK_HOURS", default_value_t = 168)]
    pub board_link_hours: u32,
}

impl CommandSettings {
    /// Board links, when a secret is set.
    pub fn boards(&self) -> Option<BoardLinks> {
        let secret = self.board_secret.expose();
        (!secret.is_empty()).then(|| BoardLinks {
            secret: std::sync::Arc::new(secret.as_bytes().to_vec()),
            base_url: self.public_url.clone(),
            lifetime: chrono::Duration::hours(i64::from(self.board_link_hours)),
        })
    }

    pub fn command_config(&self, queue: &QueueSettings) -> Result<crate::commands::CommandConfig> {
        let default_tier = wordup_queue::Tier::parse(&self.default_tier).with_context(|| {
            format!(
                "WORDUP_DEFAULT_TIER must be fast or relax, got {}",
                self.default_tier
            )
        })?;
        anyhow::ensure!(
            self.max_active_per_user >= 1 && self.max_jobs_per_day >= 1,
            "WORDUP_MAX_ACTIVE_PER_USER and WORDUP_MAX_JOBS_PER_DAY must be at least 1"
        );
        anyhow::ensure!(
            self.board_link_hours >= 1,
            "WORDUP_BOARD_LINK_HOURS must be at least 1"
        );
        Ok(crate::commands::CommandConfig {
            boards: self.boards(),
            max_active_per_user: self.max_active_per_user,
            max_jobs_per_day: self.max_jobs_per_day,
            default_tier,
            blocklist: crate::policy::Blocklist::parse(&self.blocked_terms),
            retention_days: queue.retention_days,
            tokenizer: match &self.tokenizer_dir {
                Some(dir) => Some(std::sync::Arc::new(
                    wordup_tokenizer::ClipTokenizer::from_dir(dir).with_context(|| {
                        format!("WORDUP_TOKENIZER_DIR: no tokenizer in {}", dir.display())
                    })?,
                )),
                None => None,
            },
        })
    }
}
