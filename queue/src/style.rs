//! Style presets that `--style` names and channels can default to. They live
//! with the job model because the adapters validate names and the engine
//! applies them.

/// A preset: words added to the prompt and to the negative prompt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Style {
    pub name: &'static str,
    pub prompt_suffix: &'static str,
    pub negative: &'static str,
}

pub const STYLES: &[Style] = &[
    Style {
        name: "photo",
        prompt_suffix: "professional photograph, natural light, sharp focus, 35mm",
        negative: "illustration, painting, drawing, cartoon",
    },
    Style {
        name: "cinematic",
        prompt_suffix: "cinematic still, dramatic lighting, shallow depth of field, film grain",
        negative: "flat lighting, cartoon",
    },
    Style {
        name: "anime",
        prompt_suffix: "anime illustration, cel shading, vibrant colors",
        negative: "photograph, realistic",
    },
    Style {
        name: "watercolor",
        prompt_suffix: "watercolor painting, soft washes, paper texture",
        negative: "photograph, 3d render",
    },
    Style {
        name: "sketch",
        prompt_suffix: "pencil sketch, graphite, cross-hatching, on paper",
        negative: "color, photograph",
    },
    Style {
        name: "3d",
        prompt_suffix: "3d render, octane, soft global illumination",
        negative: "flat, sketch",
    },
    Style {
        name: "pixel",
        prompt_suffix: "pixel art, 16-bit, limited palette",
        negative: "photograph, blurry",
    },
];

/// The preset with this name (case-insensitive).
pub fn style(name: &str) -> Option<&'static Style> {
    STYLES.iter().find(|s| s.name.eq_ignore_ascii_case(name))
}

/// Comma-separated preset names, for help and error messages.
pub fn style_names() -> String {
    STYLES.iter().map(|s| s.name).collect::<Vec<_>>().join(", ")
}

/// The prompt and negative prompt with a preset applied.
pub fn apply_style(
    style: Option<&Style>,
    prompt: &str,
    negative: Option<&str>,
) -> (String, Option<String>) {
    let Some(style) = style else {
        return (prompt.to_owned(), negative.map(str::to_owned));
    };
    let prompt = format!("{prompt}, {}", style.prompt_suffix);
    let negative = match negative {
        Some(n) if !n.trim().is_empty() => format!("{n}, {}", style.negative),
        _ => style.negative.to_owned(),
    };
    (prompt, Some(negative))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn applies_a_preset_to_both_prompts() {
        let photo = style("PHOTO");
        assert_eq!(photo.map(|s| s.name), Some("photo"));
        let (prompt, negative) = apply_style(photo, "a cat", Some("dogs"));
        assert!(prompt.starts_with("a cat, professional photograph"));
        assert_eq!(
            negative.as_deref(),
            Some("dogs, illustration, painting, drawing, cartoon")
        );
        assert_eq!(apply_style(None, "a cat", None), ("a cat".to_owned(), None));
        assert!(style("baroque").is_none());
    }
}
