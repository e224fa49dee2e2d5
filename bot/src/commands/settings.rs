//! /settings: a channel's default style and tier, who may press buttons,
//! and whether NSFW output is allowed (only where the platform marks the
//! channel NSFW).

use wordup_queue::{ChannelSettings, Tier, style};

use super::{CommandError, Commands, UserError};

/// Changes asked for; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsChange {
    /// `Some("none")` clears the default style.
    pub style: Option<String>,
    pub tier: Option<String>,
    pub restrict_buttons: Option<bool>,
    pub allow_nsfw: Option<bool>,
}

impl SettingsChange {
    pub fn is_empty(&self) -> bool {
        *self == SettingsChange::default()
    }
}

/// The settings after a change, or why the change is refused.
pub fn apply(
    current: &ChannelSettings,
    change: &SettingsChange,
    channel_nsfw: bool,
) -> Result<ChannelSettings, UserError> {
    let mut next = current.clone();
    if let Some(name) = &change.style {
        next.default_style = if name.eq_ignore_ascii_case("none") {
            None
        } else {
            Some(
                style::style(name)
                    .ok_or_else(|| {
                        UserError::BadSetting(format!(
                            "unknown style \"{name}\"; choose one of {} or none",
                            style::style_names()
                        ))
                    })?
                    .name
                    .to_owned(),
            )
        };
    }
    if let Some(tier) = &change.tier {
        next.default_tier = Some(Tier::parse(&tier.to_ascii_lowercase()).ok_or_else(|| {
            UserError::BadSetting(format!("unknown tier \"{tier}\"; choose fast or relax"))
        })?);
    }
    if let Some(restrict) = change.restrict_buttons {
        next.restrict_buttons = restrict;
    }
    if let Some(allow) = change.allow_nsfw {
        if allow && !channel_nsfw {
            return Err(UserError::NsfwChannelOnly);
        }
        next.allow_nsfw = allow;
    }
    Ok(next)
}

pub fn render(settings: &ChannelSettings, channel_nsfw: bool) -> String {
    format!(
        "Settings for this channel:\n• default style: {}\n• default tier: {}\n• buttons: {}\n• NSFW output: {}",
        settings.default_style.as_deref().unwrap_or("none"),
        settings.default_tier.map_or("server default", Tier::as_str),
        if settings.restrict_buttons {
            "only the requester"
        } else {
            "anyone"
        },
        match (settings.allow_nsfw, channel_nsfw) {
            (true, true) => "allowed",
            (true, false) => "blocked (the channel is no longer marked NSFW)",
            (false, _) => "blocked",
        }
    )
}

impl Commands {
    /// Shows the channel's settings, after applying `change` if it has any.
    pub async fn settings(
        &self,
        platform: &str,
        channel_id: &str,
        channel_nsfw: bool,
        change: &SettingsChange,
    ) -> Result<String, CommandError> {
        let current = self.queue.channel_settings(platform, channel_id).await?;
        if change.is_empty() {
            return Ok(render(&current, channel_nsfw));
        }
        let next = apply(&current, change, channel_nsfw)?;
        self.queue
            .set_channel_settings(platform, channel_id, &next)
            .await?;
        Ok(format!("Saved. {}", render(&next, channel_nsfw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_validated() {
        let current = ChannelSettings::default();
        let change = |style: Option<&str>, tier: Option<&str>, nsfw: Option<bool>| SettingsChange {
            style: style.map(str::to_owned),
            tier: tier.map(str::to_owned),
            restrict_buttons: Some(true),
            allow_nsfw: nsfw,
        };
        let next = apply(&current, &change(Some("Anime"), Some("relax"), None), false).unwrap();
        assert_eq!(next.default_style.as_deref(), Some("anime"));
        assert_eq!(next.default_tier, Some(Tier::Relax));
        assert!(next.restrict_buttons);
        let cleared = apply(&next, &change(Some("none"), None, None), false).unwrap();
        assert_eq!(cleared.default_style, None);
        assert!(matches!(
            apply(&current, &change(Some("baroque"), None, None), false),
            Err(UserError::BadSetting(_))
        ));
        assert!(matches!(
            apply(&current, &change(None, Some("turbo"), None), false),
            Err(UserError::BadSetting(_))
        ));
        assert_eq!(
            apply(&current, &change(None, None, Some(true)), false),
            Err(UserError::NsfwChannelOnly)
        );
        assert!(
            apply(&current, &change(None, None, Some(true)), true)
                .unwrap()
                .allow_nsfw
        );
        assert!(
            !apply(&current, &change(None, None, Some(false)), false)
                .unwrap()
                .allow_nsfw
        );
    }
}
