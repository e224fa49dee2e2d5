//! The Discord adapter: the interactions endpoint and gateway, the
//! commands' Discord shapes, and delivery of results.

pub mod delivery;
pub mod endpoint;
pub mod gateway;
pub mod handler;
pub mod once;
pub mod reply;
pub mod rest;
pub mod slash_commands;
pub mod verify;

use wordup_runtime::secret::Secret;

/// Discord settings, from the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct DiscordSettings {
    /// The application's public key (General Information in the developer
    /// portal), for the interactions endpoint's signatures.
    #[arg(long, env = "WORDUP_DISCORD_PUBLIC_KEY", default_value = "")]
    pub discord_public_key: String,
    /// The bot's token (Bot page of the developer portal).
    #[arg(
        long,
        env = "WORDUP_DISCORD_BOT_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    pub discord_bot_token: Secret,
    /// The application's id.
    #[arg(long, env = "WORDUP_DISCORD_APPLICATION_ID", default_value = "")]
    pub discord_application_id: String,
    /// Discord's base URL; tests point it at a stand-in.
    #[arg(long, env = "WORDUP_DISCORD_API_URL", default_value = rest::DISCORD_URL)]
    pub discord_api_url: String,
    /// Hosts /describe fetches attachments from (comma-separated); tests
    /// point it at a stand-in.
    #[arg(
        long,
        env = "WORDUP_DISCORD_FILE_HOSTS",
        value_delimiter = ',',
        default_value = "cdn.discordapp.com,media.discordapp.net"
    )]
    pub discord_file_hosts: Vec<String>,
}

impl DiscordSettings {
    /// Fetching attachments users point at: the file hosts, no token
    /// (attachment URLs are signed).
    pub fn fetcher(&self) -> anyhow::Result<crate::commands::describe::Fetcher> {
        crate::commands::describe::Fetcher::new(
            crate::fetch::FetchPolicy::discord().with_hosts(
                self.discord_file_hosts
                    .iter()
                    .filter(|h| !h.is_empty())
                    .cloned(),
            ),
        )
    }

    pub fn rest(&self) -> anyhow::Result<rest::DiscordRest> {
        anyhow::ensure!(
            !self.discord_bot_token.expose().is_empty(),
            "WORDUP_DISCORD_BOT_TOKEN is not set"
        );
        Ok(rest::DiscordRest::new(
            &self.discord_api_url,
            self.discord_bot_token.clone(),
        )?)
    }
}
