//! `/imagine-settings key=value ...`: Slack has no command options, so
//! settings changes are typed.

use crate::commands::UserError;
use crate::commands::settings::SettingsChange;

/// Parses `style=anime tier=relax quality=2 buttons=requester nsfw=off`.
pub fn parse(text: &str) -> Result<SettingsChange, UserError> {
    let mut change = SettingsChange::default();
    for word in text.split_whitespace() {
        let (key, value) = word.split_once('=').ok_or_else(|| {
            UserError::BadSetting(format!(
                "\"{word}\" is not key=value; use style=, tier=, quality=, buttons= or nsfw="
            ))
        })?;
        let flag = |on: &str, off: &str| match value.to_ascii_lowercase() {
            v if v == on => Ok(true),
            v if v == off => Ok(false),
            _ => Err(UserError::BadSetting(format!(
                "{key} must be {on} or {off}, got \"{value}\""
            ))),
        };
        match key.to_ascii_lowercase().as_str() {
            "style" => change.style = Some(value.to_owned()),
            "tier" => change.tier = Some(value.to_owned()),
            "quality" => {
                change.quality = Some(value.parse().map_err(|_| {
                    UserError::BadSetting(format!(
                        "quality must be a whole number, got \"{value}\""
                    ))
                })?);
            }
            "buttons" => change.restrict_buttons = Some(flag("requester", "anyone")?),
            "nsfw" => change.allow_nsfw = Some(flag("on", "off")?),
            _ => {
                return Err(UserError::BadSetting(format!(
                    "unknown setting \"{key}\"; use style, tier, quality, buttons or nsfw"
                )));
            }
        }
    }
    Ok(change)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_typed_settings() {
        assert_eq!(parse("").unwrap(), SettingsChange::default());
        assert_eq!(
            parse("style=anime tier=relax quality=3 buttons=requester nsfw=OFF").unwrap(),
            SettingsChange {
                style: Some("anime".into()),
                tier: Some("relax".into()),
                quality: Some(3),
                restrict_buttons: Some(true),
                allow_nsfw: Some(false),
            }
        );
        for bad in [
            "style",
            "colour=red",
            "buttons=me",
            "nsfw=yes",
            "quality=high",
        ] {
            assert!(matches!(parse(bad), Err(UserError::BadSetting(_))), "{bad}");
        }
    }
}
