//! Per-channel settings.

use crate::Queue;
use crate::error::Result;
use crate::model::Tier;

/// A channel's settings; [`ChannelSettings::default`] for a channel never configured.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelSettings {
    pub default_style: Option<String>,
    pub default_tier: Option<Tier>,
    /// `--quality` where a prompt names none.
    pub default_quality: Option<u32>,
    pub restrict_buttons: bool,
    pub allow_nsfw: bool,
}

/// A change to a channel's settings; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChannelSettingsUpdate {
    /// `Some(None)` clears the default style.
    pub default_style: Option<Option<String>>,
    pub default_tier: Option<Tier>,
    pub default_quality: Option<u32>,
    pub restrict_buttons: Option<bool>,
    pub allow_nsfw: Option<bool>,
}

#[derive(sqlx::FromRow)]
struct ChannelRow {
    default_style: Option<String>,
    default_tier: Option<String>,
    default_quality: Option<i16>,
    restrict_buttons: bool,
    allow_nsfw: bool,
}

impl From<ChannelRow> for ChannelSettings {
    fn from(row: ChannelRow) -> ChannelSettings {
        ChannelSettings {
            default_style: row.default_style,
            default_tier: row.default_tier.as_deref().and_then(Tier::parse),
            default_quality: row.default_quality.and_then(|q| u32::try_from(q).ok()),
            restrict_buttons: row.restrict_buttons,
            allow_nsfw: row.allow_nsfw,
        }
    }
}

impl Queue {
    pub async fn channel_settings(
        &self,
        platform: &str,
        channel_id: &str,
    ) -> Result<ChannelSettings> {
        let row: Option<ChannelRow> = sqlx::query_as(
            "SELECT default_style, default_tier, default_quality, restrict_buttons, allow_nsfw
             FROM channel_settings WHERE platform = $1 AND channel_id = $2",
        )
        .bind(platform)
        .bind(channel_id)
        .fetch_optional(&self.pool)
        .await?;
        Ok(row.map(ChannelSettings::from).unwrap_or_default())
    }

    /// Applies `update` in one statement and returns the settings after it:
    /// concurrent updates of a channel never lose one another's changes.
    pub async fn update_channel_settings(
        &self,
        platform: &str,
        channel_id: &str,
        update: &ChannelSettingsUpdate,
    ) -> Result<ChannelSettings> {
        let row: ChannelRow = sqlx::query_as(
            "INSERT INTO channel_settings
                 (platform, channel_id, default_style, default_tier, restrict_buttons, allow_nsfw,
                  default_quality)
             VALUES ($1, $2, CASE WHEN $3 THEN $4 END, $5, COALESCE($6, false), COALESCE($7, false),
                     $8)
             ON CONFLICT (platform, channel_id) DO UPDATE SET
                 default_style = CASE WHEN $3 THEN $4 ELSE channel_settings.default_style END,
                 default_tier = COALESCE($5, channel_settings.default_tier),
                 restrict_buttons = COALESCE($6, channel_settings.restrict_buttons),
                 allow_nsfw = COALESCE($7, channel_settings.allow_nsfw),
                 default_quality = COALESCE($8, channel_settings.default_quality),
                 updated_at = now()
             RETURNING default_style, default_tier, default_quality, restrict_buttons, allow_nsfw",
        )
        .bind(platform)
        .bind(channel_id)
        .bind(update.default_style.is_some())
        .bind(update.default_style.clone().flatten())
        .bind(update.default_tier.map(Tier::as_str))
        .bind(update.restrict_buttons)
        .bind(update.allow_nsfw)
        .bind(update.default_quality.and_then(|q| i16::try_from(q).ok()))
        .fetch_one(&self.pool)
        .await?;
        Ok(row.into())
    }
}
