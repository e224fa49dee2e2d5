//! /help.

use wordup_queue::style;

use crate::grammar::{
    MAX_CHAOS, MAX_GUIDANCE, MAX_IMAGE_WEIGHT, MAX_PERMUTATIONS, MAX_PROMPT_CHARS, MAX_QUALITY,
    MAX_STEPS,
};

/// The help text; `settings_command` is how the platform names /settings.
pub fn text(settings_command: &str, queue_command: &str, cancel_command: &str) -> String {
    format!(
        "**/imagine** `<prompt> [parameters]` draws four images (prompt up to {MAX_PROMPT_CHARS} characters). Parameters:\n\
         • `--ar W:H` aspect ratio (up to 4:1) • `--no <words>` keep out • `--seed N` repeatable • `--steps N` (1–{MAX_STEPS}) • `--guidance G` (0–{MAX_GUIDANCE})\n\
         • `--style <preset>` one of {}\n\
         • `--quality K` K×4 candidates, the best four by CLIP (1–{MAX_QUALITY}; K times slower)\n\
         • `--chaos N` more variety across the grid (0–{MAX_CHAOS}) • `--tile` a seamless texture\n\
         • `--draft` quick preview with a tiny decoder; U and V on it work from its full-quality decode\n\
         • `--fast` / `--relax` which line to wait in\n\
         • `a castle:: fog::-0.5` weighs parts (negative subtracts) • `a {{red, blue}} bird` one job per option (up to {MAX_PERMUTATIONS})\n\
         • attach an image (Slack: the Imagine from this image shortcut) to start from it; `--iw W` how much stays (0–{MAX_IMAGE_WEIGHT}, default 1)\n\
         Under a grid: **U1–U4** upscale, **V1–V4** variations, **🔄** re-roll, **🎛️ Remix** edit the prompt and redraw from an image, **❌** delete (yours, or any if you manage the channel).\n\
         **/imagine-analyze** `<prompt>` how a prompt reads and what each phrase weighs, without drawing.\n\
         **/describe** an image (attachment, or the Describe shortcut on a message) suggests four prompts with buttons that draw them.\n\
         **{queue_command}** your jobs; **{cancel_command}** `[job]` stops one of yours; **{settings_command}** this channel's defaults.",
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
            "--chaos",
            "--tile",
            "--iw",
            "::",
            "{red, blue}",
            "Remix",
        ] {
            assert!(text.contains(parameter), "{parameter}");
        }
        assert!(text.contains("full-quality decode"), "{text}");
        assert!(text.contains("up to 12)"), "{text}");
    }
}
