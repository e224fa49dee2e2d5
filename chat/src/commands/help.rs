//! /help.

use wordup_queue::style;

use crate::grammar::{MAX_GUIDANCE, MAX_PROMPT_CHARS, MAX_QUALITY, MAX_STEPS};

/// The help text; `settings_command` is how the platform names /settings.
pub fn text(settings_command: &str, queue_command: &str, cancel_command: &str) -> String {
    format!(
        "**/imagine** `<prompt> [parameters]` draws four images from your prompt (up to {MAX_PROMPT_CHARS} characters).\n\
         Parameters:\n\
         • `--ar W:H` aspect ratio, e.g. `--ar 16:9` (up to 4:1 either way)\n\
         • `--no <words>` what to keep out of the picture\n\
         • `--seed N` repeatable results (0–4294967295)\n\
         • `--steps N` denoising steps (1–{MAX_STEPS})\n\
         • `--guidance G` how closely to follow the prompt (0–{MAX_GUIDANCE})\n\
         • `--style <preset>` one of {}\n\
         • `--quality K` draws K×4 candidates and shows the best four by CLIP score (1–{MAX_QUALITY}; K times slower)\n\
         • `--draft` a quick preview: decoded by a tiny decoder with ~18× fewer FLOPs than the full one, softer in detail; U and V on a draft work from its full-quality decode, 🔄 stays a draft\n\
         • `--fast` / `--relax` which line to wait in (relax waits behind fast, never forever)\n\
         Under a grid: **U1–U4** upscale an image, **V1–V4** make variations of one, **🔄** re-rolls, **❌** deletes it (yours, or any if you manage the channel).\n\
         **/imagine-analyze** `<prompt>` says how a prompt reads (subject, style, medium, lighting, composition) and what each comma-separated phrase weighs, without drawing.\n\
         **/describe** an image (Discord: the attachment option or Apps → Describe on a message; Slack: the Describe shortcut) suggests four prompts, each with a button that draws it.\n\
         **{queue_command}** shows your jobs and places in line; **{cancel_command}** `[job]` stops one of yours (queued or running); **{settings_command}** shows or changes this channel's defaults.",
        style::style_names()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn help_explains_every_parameter_within_a_discord_message() {
        let text = text("/settings", "/queue", "/cancel");
        // Discord refuses message content over 2000 characters.
        assert!(text.chars().count() <= 2000, "{}", text.chars().count());
        for parameter in [
            "--ar",
            "--no",
            "--seed",
            "--steps",
            "--guidance",
            "--quality",
            "--style",
            "--draft",
            "--fast",
            "--relax",
        ] {
            assert!(text.contains(parameter), "{parameter}");
        }
        assert!(text.contains("full-quality decode"), "{text}");
    }
}
