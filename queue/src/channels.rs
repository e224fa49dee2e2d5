//! Per-channel settings.

use crate::Queue;
use crate::error::Result;
use crate::model::Tier;

/// A channel's settings; [`ChannelSettings::default`] for a channel never configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelSettings {
    pub default_style: Option<String>,
    pub default_tier: Option<Tier>,
    pub restrict_buttons: bool,
    pub allow_nsfw: bool,
}

#[derive(sqlx::FromRow)]
struct ChannelRow {
    default_style: Option<String>,
    default_tier: Option<String>,
    restrict_buttons: bool,
    allow_nsfw: bool,
}

impl Queue {
    pub async fn channel_settings(
        &self,
        platform: &str,
        channel_id: &str,
    ) -> Result<ChannelSettings> {
        let row: Option<ChannelRow> = sqlx::query_as(
            "SELECT default_style, default_tier, restrict_buttons, allow_nsfw
             FROM channel_settings WHERE platform = $1 AND channel_id = $2",
        )
        .bind(platform)
        .bind(channel_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row
            .map(|row| ChannelSettings {
                default_style: row.default_style,
                default_tier: row.default_tier.as_deref().and_then(Tier::parse),
                restrict_buttons: row.restrict_buttons,
                allow_nsfw: row.allow_nsfw,
            })
            .unwrap_or_default())
    }

    pub async fn set_channel_settings(
        &self,
        platform: &str,
        channel_id: &str,
        settings: &ChannelSettings,
    ) -> Result<()> {
        sqlx::query(
            "INSERT INTO channel_settings
                 (platform, channel_id, default_style, default_tier, restrict_buttons, allow_nsfw)
             VALUES ($1, $2, $3, $4, $5, $6)
             ON CONFLICT (platform, channel_id) DO UPDATE SET
                 default_style = excluded.default_style,
                 default_tier = excluded.default_tier,
                 restrict_buttons = excluded.restrict_buttons,
                 allow_nsfw = excluded.allow_nsfw,
                 updated_at = now()",
        )
        .bind(platform)
        .bind(channel_id)
        .bind(&settings.default_style)
        .bind(settings.default_tier.map(Tier::as_str))
        .bind(settings.restrict_buttons)
        .bind(settings.allow_nsfw)
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
