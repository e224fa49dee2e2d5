//! Delivery by the platform a job came from: the [`Delivery`] the engine's
//! worker posts through, over the Discord and Slack adapters.

use wordup_queue::{Attachment, Delivery, DeliveryError, Job, Posted, Progress, ResultPost};

use crate::discord::delivery::DiscordDelivery;
use crate::slack::delivery::SlackDelivery;

/// A platform API error that may or may not succeed on a retry.
pub trait Transience: std::fmt::Display {
    fn is_transient(&self) -> bool;
}

/// A platform API error as a delivery failure: retried later, or final.
pub fn classify(e: impl Transience) -> DeliveryError {
    if e.is_transient() {
        DeliveryError::Transient(e.to_string())
    } else {
        DeliveryError::Permanent(e.to_string())
    }
}

/// Discord's and Slack's delivery; a platform without a token is `None`.
pub struct ChatDelivery {
    pub discord: Option<DiscordDelivery>,
    pub slack: Option<SlackDelivery>,
}

enum Platform<'a> {
    Discord(&'a DiscordDelivery),
    Slack(&'a SlackDelivery),
    /// The playground page ([`crate::web::playground`]): it reads results,
    /// progress and failures from Postgres, so delivering is recording.
    Web,
}

impl ChatDelivery {
    fn platform(&self, job: &Job) -> Result<Platform<'_>, DeliveryError> {
        // A missing token is transient: an engine configured for the
        // platform may claim the job on a later attempt.
        match (job.origin.platform.as_str(), &self.discord, &self.slack) {
            ("discord", Some(discord), _) => Ok(Platform::Discord(discord)),
            ("slack", _, Some(slack)) => Ok(Platform::Slack(slack)),
            (crate::web::playground::PLATFORM, _, _) => Ok(Platform::Web),
            (platform @ ("discord" | "slack"), _, _) => Err(DeliveryError::Transient(format!(
                "this engine has no {platform} bot token"
            ))),
            (other, _, _) => Err(DeliveryError::Permanent(format!(
                "no delivery for platform {other}"
            ))),
        }
    }
}

impl Delivery for ChatDelivery {
    fn attachment_limit(&self, job: &Job) -> u64 {
        match self.platform(job) {
            Ok(Platform::Discord(discord)) => discord.attachment_limit(job),
            // Slack takes files up to 1 GB.
            Ok(Platform::Slack(_)) => 1 << 30,
            // Pages show the stored images; the post itself holds nothing.
            Ok(Platform::Web) => 1 << 30,
            Err(_) => 10 * 1024 * 1024,
        }
    }

    fn nsfw_allowed(&self, job: &Job) -> bool {
        job.reply
            .get("nsfw_allowed")
            .and_then(serde_json::Value::as_bool)
            .unwrap_or(false)
    }

    async fn progress(&self, job: &Job, progress: &Progress, preview: Option<&Attachment>) {
        match self.platform(job) {
            Ok(Platform::Discord(discord)) => discord.progress(job, progress, preview).await,
            Ok(Platform::Slack(slack)) => slack.progress(job, progress, preview).await,
            Ok(Platform::Web) | Err(_) => {}
        }
    }

    async fn post(&self, job: &Job, post: &ResultPost) -> Result<Posted, DeliveryError> {
        let message_id = match self.platform(job)? {
            Platform::Discord(discord) => discord.post_result(job, post).await,
            Platform::Slack(slack) => slack.post_result(job, post).await,
            Platform::Web => Ok(crate::web::playground::message_id(job.id)),
        }?;
        Ok(Posted {
            channel_id: job.origin.channel_id.clone(),
            message_id,
        })
    }

    async fn answer(&self, job: &Job, text: &str, choices: u8) -> Result<Posted, DeliveryError> {
        let message_id = match self.platform(job)? {
            Platform::Discord(discord) => discord.answer(job, text, choices).await,
            Platform::Slack(slack) => slack.answer(job, text, choices).await,
            Platform::Web => Err(DeliveryError::Permanent(
                "the playground draws images only".into(),
            )),
        }?;
        Ok(Posted {
            channel_id: job.origin.channel_id.clone(),
            message_id,
        })
    }

    async fn notice(&self, job: &Job, key: &str, text: &str) -> Result<(), DeliveryError> {
        match self.platform(job)? {
            Platform::Discord(discord) => discord.notice(job, key, text).await,
            Platform::Slack(slack) => slack.notice(job, key, text).await,
            // The page shows a job's failure from the job itself.
            Platform::Web => Ok(()),
        }
    }
}
