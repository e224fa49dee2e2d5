//! The Slack adapter: slash commands and interactivity over HTTP or Socket
//! Mode, results in the thread of a parent message.

pub mod api;
pub mod blocks;
pub mod delivery;
pub mod endpoint;
pub mod handler;
pub mod once;
pub mod reply;
pub mod settings_text;
pub mod socket;

use wordup_runtime::secret::Secret;

/// Slack settings, from the environment.
#[derive(Debug, Clone, clap::Args)]
pub struct SlackSettings {
    /// Signing secret (Basic Information), for the HTTP endpoints.
    #[arg(
        long,
        env = "WORDUP_SLACK_SIGNING_SECRET",
        hide_env_values = true,
        default_value = ""
    )]
    pub slack_signing_secret: Secret,
    /// Bot token (xoxb-…, OAuth & Permissions).
    #[arg(
        long,
        env = "WORDUP_SLACK_BOT_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    pub slack_bot_token: Secret,
    /// App-level token (xapp-…, with connections:write), for Socket Mode.
    #[arg(
        long,
        env = "WORDUP_SLACK_APP_TOKEN",
        hide_env_values = true,
        default_value = ""
    )]
    pub slack_app_token: Secret,
    /// Slack's Web API base URL; tests point it at a stand-in.
    #[arg(long, env = "WORDUP_SLACK_API_URL", default_value = api::SLACK_API_URL)]
    pub slack_api_url: String,
    /// Slack user ids allowed to change channel settings (comma-separated);
    /// empty lets anyone in the channel (Slack sends no roles with commands).
    /// They may also delete anyone's result with ❌.
    #[arg(long, env = "WORDUP_SLACK_SETTINGS_ADMINS", value_delimiter = ',')]
    pub slack_settings_admins: Vec<String>,
    /// Hosts the Describe shortcut fetches files from, with the bot token
    /// (comma-separated); tests point it at a stand-in.
    #[arg(
        long,
        env = "WORDUP_SLACK_FILE_HOSTS",
        value_delimiter = ',',
        default_value = "files.slack.com"
    )]
    pub slack_file_hosts: Vec<String>,
}

impl SlackSettings {
    pub fn enabled(&self) -> bool {
        !self.slack_bot_token.expose().is_empty()
    }

    /// Fetching files users point at: the file hosts, with the bot token.
    pub fn fetcher(&self) -> anyhow::Result<crate::commands::describe::Fetcher> {
        crate::commands::describe::Fetcher::new(
            crate::fetch::FetchPolicy::slack(self.slack_bot_token.clone()).with_hosts(
                self.slack_file_hosts
                    .iter()
                    .filter(|h| !h.is_empty())
                    .cloned(),
            ),
        )
    }

    pub fn api(&self) -> anyhow::Result<api::SlackApi> {
        anyhow::ensure!(self.enabled(), "WORDUP_SLACK_BOT_TOKEN is not set");
        Ok(api::SlackApi::new(
            &self.slack_api_url,
            self.slack_bot_token.clone(),
        )?)
    }
}
