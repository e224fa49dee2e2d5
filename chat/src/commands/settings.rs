//! /settings: a channel's default style, tier and quality, who may press buttons,
//! and whether NSFW output is allowed (only where the platform marks the
//! channel NSFW).

use wordup_queue::{ChannelSettings, ChannelSettingsUpdate, Tier, style};

use super::{CommandError, Commands, UserError};
use crate::grammar::MAX_QUALITY;

/// Changes asked for; `None` leaves a setting as it is.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SettingsChange {
    /// `Some("none")` clears the default style.
    pub style: Option<String>,
    pub tier: Option<String>,
    /// `--quality` where a prompt names none.
    pub quality: Option<i64>,
    pub restrict_buttons: Option<bool>,
    pub allow_nsfw: Option<bool>,
}

impl SettingsChange {
    pub fn is_empty(&self) -> bool {
        *self == SettingsChange::default()
    }
}

/// The update a change asks for, or why it is refused.
pub fn validate(
    change: &SettingsChange,
    channel_nsfw: bool,
) -> Result<ChannelSettingsUpdate, UserError> {
    let default_style = match &change.style {
        None => None,
        Some(name) if name.eq_ignore_ascii_case("none") => Some(None),
        Some(name) => Some(Some(
            style::style(name)
                .ok_or_else(|| {
                    UserError::BadSetting(format!(
                        "unknown style \"{name}\"; choose one of {} or none",
                        style::style_names()
                    ))
                })?
                .name
                .to_owned(),
        )),
    };
    let default_tier = match &change.tier {
        None => None,
        Some(tier) => Some(Tier::parse(&tier.to_ascii_lowercase()).ok_or_else(|| {
            UserError::BadSetting(format!("unknown tier \"{tier}\"; choose fast or relax"))
        })?),
    };
    let default_quality = match change.quality {
        None => None,
        Some(q) => Some(
            u32::try_from(q)
                .ok()
                .filter(|q| (1..=MAX_QUALITY).contains(q))
                .ok_or_else(|| {
                    UserError::BadSetting(format!(
                        "quality {q} is not valid; choose a whole number from 1 to {MAX_QUALITY}"
                    ))
                })?,
        ),
    };
    if change.allow_nsfw == Some(true) && !channel_nsfw {
        return Err(UserError::NsfwChannelOnly);
    }
    Ok(ChannelSettingsUpdate {
        default_style,
        default_tier,
        default_quality,
        restrict_buttons: change.restrict_buttons,
        allow_nsfw: change.allow_nsfw,
    })
}

pub fn render(settings: &ChannelSettings, channel_nsfw: bool) -> String {
    format!(
        "Settings for this channel:\n• default style: {}\n• default tier: {}\n• default quality: {}\n• buttons: {}\n• NSFW output: {}",
        settings.default_style.as_deref().unwrap_or("none"),
        settings.default_tier.map_or("server default", Tier::as_str),
        match settings.default_quality {
            None | Some(1) => "1 (draw what is shown)".to_owned(),
            Some(q) => format!("{q} (best 4 of {} by CLIP)", 4 * q),
        },
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
        if change.is_empty() {
            let current = self.queue.channel_settings(platform, channel_id).await?;
            return Ok(render(&current, channel_nsfw));
        }
        let update = validate(change, channel_nsfw)?;
        let next = self
            .queue
            .update_channel_settings(platform, channel_id, &update)
            .await?;
        Ok(format!("Saved. {}", render(&next, channel_nsfw)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_are_validated() {
        let change = |style: Option<&str>, tier: Option<&str>, nsfw: Option<bool>| SettingsChange {
            style: style.map(str::to_owned),
            tier: tier.map(str::to_owned),
            quality: None,
            restrict_buttons: Some(true),
            allow_nsfw: nsfw,
        };
        let update = validate(&change(Some("Anime"), Some("relax"), None), false).unwrap();
        assert_eq!(update.default_style, Some(Some("anime".to_owned())));
        assert_eq!(update.default_tier, Some(Tier::Relax));
        assert_eq!(update.restrict_buttons, Some(true));
        assert_eq!(update.allow_nsfw, None);
        let cleared = validate(&change(Some("none"), None, None), false).unwrap();
        assert_eq!(cleared.default_style, Some(None));
        assert_eq!(cleared.default_tier, None);
        assert!(matches!(
            validate(&change(Some("baroque"), None, None), false),
            Err(UserError::BadSetting(_))
        ));
        assert!(matches!(
            validate(&change(None, Some("turbo"), None), false),
            Err(UserError::BadSetting(_))
        ));
        assert_eq!(
            validate(&change(None, None, Some(true)), false),
            Err(UserError::NsfwChannelOnly)
        );
        assert_eq!(
            validate(&change(None, None, Some(true)), true)
                .unwrap()
                .allow_nsfw,
            Some(true)
        );
        assert_eq!(
            validate(&change(None, None, Some(false)), false)
                .unwrap()
                .allow_nsfw,
            Some(false)
        );
    }

    #[test]
    fn a_default_quality_is_one_to_four() {
        for (quality, expected) in [
            (1, Ok(Some(1))),
            (4, Ok(Some(4))),
            (0, Err(())),
            (5, Err(())),
        ] {
            let change = SettingsChange {
                quality: Some(quality),
                ..SettingsChange::default()
            };
            let update = validate(&change, false)
                .map(|u| u.default_quality)
                .map_err(drop);
            assert_eq!(update, expected, "{quality}");
        }
        let shown = |q| {
            render(
                &ChannelSettings {
                    default_quality: q,
                    ..ChannelSettings::default()
                },
                false,
            )
        };
        assert!(shown(None).contains("default quality: 1 (draw what is shown)"));
        assert!(shown(Some(3)).contains("default quality: 3 (best 4 of 12 by CLIP)"));
    }
}
