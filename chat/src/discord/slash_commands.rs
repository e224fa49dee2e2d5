//! The application commands we register, and their registration.

use serde_json::{Value, json};
use serenity::all::{
    CommandOptionType, CommandType, CreateCommand, CreateCommandOption, Permissions,
};
use wordup_queue::style::STYLES;

use super::rest::{DiscordRest, RestError};
use crate::grammar::{MAX_PROMPT_CHARS, MAX_QUALITY};

pub fn definitions() -> Vec<CreateCommand> {
    let mut style = CreateCommandOption::new(
        CommandOptionType::String,
        "style",
        "Default style preset for prompts that name none",
    )
    .add_string_choice("none", "none");
    for preset in STYLES {
        style = style.add_string_choice(preset.name, preset.name);
    }
    vec![
        CreateCommand::new("imagine")
            .description("Draw four images from a prompt (--ar, --no, --seed, --style, ...)")
            .add_option(
                CreateCommandOption::new(
                    CommandOptionType::String,
                    "prompt",
                    "What to draw, with optional parameters",
                )
                .required(true)
                // Room for parameters after the prompt itself.
                .max_length(u16::try_from(MAX_PROMPT_CHARS + 500).unwrap_or(u16::MAX)),
            )
            .add_option(CreateCommandOption::new(
                CommandOptionType::Attachment,
                "image",
                "An image to start from (PNG, JPEG or WebP, up to 10 MB); --iw 0–2 sets how much stays",
            )),
        CreateCommand::new("imagine-analyze")
            .description("How a prompt reads and what each phrase weighs, without drawing")
            .add_option(
                CreateCommandOption::new(
                    CommandOptionType::String,
                    "prompt",
                    "The prompt, its parts separated by commas",
                )
                .required(true)
                .max_length(u16::try_from(MAX_PROMPT_CHARS + 500).unwrap_or(u16::MAX)),
            ),
        CreateCommand::new("describe")
            .description("Four prompts for an image, each with a button that draws it")
            .add_option(
                CreateCommandOption::new(
                    CommandOptionType::Attachment,
                    "image",
                    "A PNG, JPEG or WebP image (up to 10 MB)",
                )
                .required(true),
            ),
        CreateCommand::new("board")
            .description("A private link to this channel's board: every result, votes, downloads")
            .dm_permission(false),
        // A message command: right-click a message with an image → Apps.
        CreateCommand::new("Describe").kind(CommandType::Message),
        CreateCommand::new("settings")
            .description("Show or change this channel's Word Up! settings")
            .default_member_permissions(Permissions::MANAGE_CHANNELS)
            .dm_permission(false)
            .add_option(style)
            .add_option(
                CreateCommandOption::new(CommandOptionType::String, "tier", "Default tier")
                    .add_string_choice("fast", "fast")
                    .add_string_choice("relax", "relax"),
            )
            .add_option(
                CreateCommandOption::new(
                    CommandOptionType::Integer,
                    "quality",
                    "Default --quality: candidates drawn per image shown, the best kept by CLIP",
                )
                .min_int_value(1)
                .max_int_value(u64::from(MAX_QUALITY)),
            )
            .add_option(CreateCommandOption::new(
                CommandOptionType::Boolean,
                "restrict_buttons",
                "Only the requester may press a grid's buttons",
            ))
            .add_option(CreateCommandOption::new(
                CommandOptionType::Boolean,
                "nsfw",
                "Allow NSFW output (only in channels marked NSFW)",
            )),
        CreateCommand::new("queue").description("Your jobs and their places in line"),
        CreateCommand::new("cancel")
            .description("Stop one of your queued or running jobs")
            .add_option(
                CreateCommandOption::new(
                    CommandOptionType::Integer,
                    "job",
                    "The job's number (from /queue); your only job when left out",
                )
                .min_int_value(1),
            ),
        CreateCommand::new("help").description("How to use Word Up!"),
    ]
}

/// Overwrites the application's commands, globally or in one guild (guild
/// commands update at once; global ones can take a while to show).
pub async fn register(
    rest: &DiscordRest,
    application_id: &str,
    guild: Option<&str>,
) -> Result<Vec<Value>, RestError> {
    let path = match guild {
        Some(guild) => format!("/applications/{application_id}/guilds/{guild}/commands"),
        None => format!("/applications/{application_id}/commands"),
    };
    let body = json!(definitions());
    let registered = rest.put(&path, &body).await?;
    Ok(registered.as_array().cloned().unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn definitions_fit_discords_limits() {
        let defs = serde_json::to_value(definitions()).unwrap();
        for def in defs.as_array().unwrap() {
            let name = def["name"].as_str().unwrap();
            assert!((1..=32).contains(&name.chars().count()), "{name}");
            // A slash command's name: lowercase letters, digits, `-` or `_`;
            // a message command's is shown as written and has no description.
            let slash = def["type"].as_u64().unwrap_or(1) == 1;
            if slash {
                assert!(
                    name.chars().all(|c| c.is_ascii_lowercase()
                        || c.is_ascii_digit()
                        || c == '-'
                        || c == '_'),
                    "{name}"
                );
            }
            let description = def["description"].as_str().unwrap_or_default();
            assert!(description.len() <= 100, "{name}");
            assert_eq!(description.is_empty(), !slash, "{name}");
            for option in def["options"].as_array().into_iter().flatten() {
                assert!(option["choices"].as_array().is_none_or(|c| c.len() <= 25));
                assert!(
                    option["description"].as_str().unwrap().len() <= 100,
                    "{name}"
                );
            }
        }
        assert_eq!(defs[0]["options"][0]["max_length"], 1500);
    }
}
