//! What a Discord job keeps for its replies: the interaction's token (for
//! the ack's edits while it lives) and the upload limit.

use chrono::{DateTime, Duration, Utc};
use serde::{Deserialize, Serialize};
use serenity::model::id::InteractionId;

/// Discord's interaction tokens live 15 minutes; we stop using them a little before.
pub const TOKEN_LIFETIME: Duration = Duration::seconds(15 * 60 - 30);
/// Discord's upload limit without boosts, when an interaction does not say.
pub const DEFAULT_ATTACHMENT_LIMIT: u64 = 10 * 1024 * 1024;

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DiscordReply {
    pub application_id: String,
    pub interaction_id: String,
    /// Valid for 15 minutes from the interaction.
    pub token: String,
    pub attachment_size_limit: u64,
    /// The message a button was pressed on, to reply to.
    #[serde(default)]
    pub reply_to: Option<String>,
    /// The ack is shared by a group of jobs (a permutation prompt) and says
    /// what each is: no job edits it, and results and notices are messages.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub shared_ack: bool,
}

impl DiscordReply {
    /// The reply data of a job, if it came from Discord.
    pub fn of(reply: &serde_json::Value) -> Option<DiscordReply> {
        serde_json::from_value(reply.get("discord")?.clone()).ok()
    }

    pub fn to_value(&self, nsfw_allowed: bool) -> serde_json::Value {
        serde_json::json!({ "discord": self, "nsfw_allowed": nsfw_allowed })
    }

    /// When the interaction was created, from its snowflake id.
    pub fn created_at(&self) -> Option<DateTime<Utc>> {
        let id: u64 = self.interaction_id.parse().ok()?;
        let ms = (id >> 22) + 1_420_070_400_000;
        DateTime::from_timestamp_millis(i64::try_from(ms).ok()?)
    }

    /// Whether the token may still be used at `now`.
    pub fn token_alive(&self, now: DateTime<Utc>) -> bool {
        self.created_at()
            .is_some_and(|created| now < created + TOKEN_LIFETIME)
    }

    pub fn attachment_limit(&self) -> u64 {
        if self.attachment_size_limit == 0 {
            DEFAULT_ATTACHMENT_LIMIT
        } else {
            self.attachment_size_limit
        }
    }
}

/// A snowflake for `at`, as Discord makes them (for tests and fakes).
pub fn snowflake_at(at: DateTime<Utc>, sequence: u64) -> InteractionId {
    let ms = u64::try_from(at.timestamp_millis() - 1_420_070_400_000).unwrap_or(0);
    InteractionId::new((ms << 22) | (sequence & 0x3f_ffff))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_expire_fifteen_minutes_after_the_interaction() {
        let created = DateTime::from_timestamp(1_780_000_000, 0).unwrap();
        let reply = DiscordReply {
            application_id: "1".into(),
            interaction_id: snowflake_at(created, 5).to_string(),
            token: "t".into(),
            attachment_size_limit: 0,
            reply_to: None,
            shared_ack: false,
        };
        assert_eq!(reply.created_at(), Some(created));
        assert!(reply.token_alive(created + Duration::minutes(14)));
        assert!(!reply.token_alive(created + Duration::minutes(15)));
        assert_eq!(reply.attachment_limit(), DEFAULT_ATTACHMENT_LIMIT);
        let value = reply.to_value(true);
        assert_eq!(DiscordReply::of(&value), Some(reply));
        assert_eq!(value["nsfw_allowed"], true);
        // Discord's documented example snowflake: 2016-04-30 11:18:25.796 UTC.
        let example = DiscordReply {
            interaction_id: "175928847299117063".into(),
            ..DiscordReply::of(&value).unwrap()
        };
        assert_eq!(
            example.created_at().unwrap().timestamp_millis(),
            1_462_015_105_796
        );
    }
}
