//! Weighted multi-prompts (`a castle:: winter::2 fog::-0.5`): a prompt split
//! at `::` into parts, each with a weight. They live with the job model
//! because the adapters refuse bad weights before a job is enqueued and the
//! engine encodes the parts.
//!
//! Semantics: `::` ends a part; a number right after it (up to the next
//! space) is that part's weight, else the weight is 1. Text after the last
//! `::` is a part of weight 1. Each part is encoded alone and the
//! embeddings are combined as `Σ wᵢ·Eᵢ / Σ wᵢ`, so a negative weight pulls
//! away from its part; the weights must add up to more than 0. A prompt
//! without `::` is one part, encoded as before.

/// Most parts in one prompt: each costs a text-encoder pass.
pub const MAX_PARTS: usize = 8;
/// Largest weight, either sign.
pub const MAX_WEIGHT: f32 = 10.0;

/// One part of a prompt and its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedPart {
    pub text: String,
    pub weight: f32,
}

/// Why a prompt's weights were refused; shown to the user as is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WeightError {
    #[error("a `::` has no words before it; write `words::weight`, e.g. `a castle:: fog::0.5`")]
    EmptyPart,
    #[error("the prompt has {0} `::` parts; the limit is {MAX_PARTS}")]
    TooManyParts(usize),
    #[error("`::{0}` is not a weight: use a number from -{MAX_WEIGHT} to {MAX_WEIGHT}")]
    BadWeight(String),
    #[error(
        "the weights add up to {0}, and they must add up to more than 0 (a negative weight only subtracts)"
    )]
    NotPositive(f32),
}

/// Whether `prompt` is a weighted multi-prompt (has a `::`).
pub fn is_weighted(prompt: &str) -> bool {
    prompt.contains("::")
}

/// The parts of `prompt` and their weights; one part of weight 1 for a
/// prompt without `::`.
pub fn weighted_parts(prompt: &str) -> Result<Vec<WeightedPart>, WeightError> {
    let mut parts = Vec::new();
    let mut rest = prompt;
    while let Some(at) = rest.find("::") {
        let text = rest[..at].trim();
        let after = &rest[at + 2..];
        // The weight runs up to the next space; a word there that is not a
        // number starts the next part (`a:: b`), unless it looks like one.
        let end = after.find(char::is_whitespace).unwrap_or(after.len());
        let token = &after[..end];
        let (weight, next) = if token.is_empty() {
            (1.0, after)
        } else if let Ok(weight) = token.parse::<f32>() {
            if !weight.is_finite() || weight.abs() > MAX_WEIGHT {
                return Err(WeightError::BadWeight(token.to_owned()));
            }
            (weight, &after[end..])
        } else if token.starts_with(['-', '+', '.'])
            || token.starts_with(|c: char| c.is_ascii_digit())
        {
            return Err(WeightError::BadWeight(token.to_owned()));
        } else {
            (1.0, after)
        };
        if text.is_empty() {
            return Err(WeightError::EmptyPart);
        }
        parts.push(WeightedPart {
            text: text.to_owned(),
            weight,
        });
        rest = next;
    }
    let last = rest.trim();
    if !last.is_empty() {
        parts.push(WeightedPart {
            text: last.to_owned(),
            weight: 1.0,
        });
    }
    if parts.is_empty() {
        return Err(WeightError::EmptyPart);
    }
    if parts.len() > MAX_PARTS {
        return Err(WeightError::TooManyParts(parts.len()));
    }
    let total: f32 = parts.iter().map(|p| p.weight).sum();
    if total <= 0.0 {
        return Err(WeightError::NotPositive(total));
    }
    Ok(parts)
}

/// `prompt` with `edit` applied to each part's text, the weights kept (a
/// style's suffix goes on every part, so that each is encoded styled). A
/// prompt without `::`, or with weights [`weighted_parts`] refuses, is
/// edited whole.
pub fn edit_parts(prompt: &str, edit: impl Fn(&str) -> String) -> String {
    match weighted_parts(prompt) {
        Ok(parts) if is_weighted(prompt) => write_parts(
            &parts
                .into_iter()
                .map(|part| WeightedPart {
                    text: edit(&part.text),
                    ..part
                })
                .collect::<Vec<_>>(),
        ),
        _ => edit(prompt),
    }
}

/// The prompt as plain words, for what reads text without weights (CLIP's
/// scores, the read-back): the parts with a positive weight joined by ", ".
/// A prompt without `::`, or with weights [`weighted_parts`] refuses, is
/// returned as it is.
pub fn plain_text(prompt: &str) -> String {
    match weighted_parts(prompt) {
        Ok(parts) if is_weighted(prompt) => parts
            .iter()
            .filter(|part| part.weight > 0.0)
            .map(|part| part.text.as_str())
            .collect::<Vec<_>>()
            .join(", "),
        _ => prompt.to_owned(),
    }
}

/// Parts written back as a prompt that [`weighted_parts`] reads as them:
/// every weight explicit, and a space before each `::` so that a part
/// ending in `:` keeps it.
fn write_parts(parts: &[WeightedPart]) -> String {
    parts
        .iter()
        .map(|part| format!("{} ::{}", part.text, part.weight))
        .collect::<Vec<_>>()
        .join(" ")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parts(list: &[(&str, f32)]) -> Vec<WeightedPart> {
        list.iter()
            .map(|&(text, weight)| WeightedPart {
                text: text.to_owned(),
                weight,
            })
            .collect()
    }

    #[test]
    fn splits_at_double_colons_with_their_weights() {
        for (prompt, expected) in [
            ("a castle", parts(&[("a castle", 1.0)])),
            (
                "a castle:: winter::2 fog::-0.5",
                parts(&[("a castle", 1.0), ("winter", 2.0), ("fog", -0.5)]),
            ),
            (
                "hot dog::1.5 food::",
                parts(&[("hot dog", 1.5), ("food", 1.0)]),
            ),
            ("space:: ship", parts(&[("space", 1.0), ("ship", 1.0)])),
            ("space::ship", parts(&[("space", 1.0), ("ship", 1.0)])),
            (
                "red fox::3 snow::+1 in the trees",
                parts(&[("red fox", 3.0), ("snow", 1.0), ("in the trees", 1.0)]),
            ),
            ("a:: b::0", parts(&[("a", 1.0), ("b", 0.0)])),
            // A single colon is prompt text.
            ("ratio 16:9 poster", parts(&[("ratio 16:9 poster", 1.0)])),
        ] {
            assert_eq!(weighted_parts(prompt), Ok(expected), "{prompt}");
        }
        assert!(is_weighted("a::b") && !is_weighted("a: b"));
    }

    #[test]
    fn refuses_weights_that_cannot_work() {
        for (prompt, expected) in [
            ("::2 a cat", WeightError::EmptyPart),
            ("a cat:: ::3", WeightError::EmptyPart),
            ("::", WeightError::EmptyPart),
            ("a::-1", WeightError::NotPositive(-1.0)),
            ("a::1 b::-1", WeightError::NotPositive(0.0)),
            ("a::11", WeightError::BadWeight("11".into())),
            ("a::-2x b", WeightError::BadWeight("-2x".into())),
            ("a::1.2.3", WeightError::BadWeight("1.2.3".into())),
            ("a::NaN", WeightError::BadWeight("NaN".into())),
            (
                "a:: b:: c:: d:: e:: f:: g:: h:: i",
                WeightError::TooManyParts(9),
            ),
        ] {
            assert_eq!(weighted_parts(prompt), Err(expected), "{prompt}");
        }
    }

    #[test]
    fn errors_say_what_to_write() {
        let text = weighted_parts("a::-3").unwrap_err().to_string();
        assert!(text.contains("more than 0"), "{text}");
    }

    #[test]
    fn written_parts_read_back_as_themselves() {
        for list in [
            parts(&[("a castle", 1.0), ("winter", 2.0), ("fog", -0.5)]),
            parts(&[("ends in a colon:", 1.5), (":starts with one", 1.0)]),
            parts(&[("a", 1.0), ("-3 cats", 0.25), ("b", 0.0)]),
        ] {
            let written = write_parts(&list);
            assert_eq!(weighted_parts(&written), Ok(list), "{written}");
        }
    }

    #[test]
    fn edits_each_part_and_keeps_the_weights() {
        let styled = |text: &str| format!("{text}, watercolor");
        for (prompt, expected) in [
            ("a castle", "a castle, watercolor"),
            (
                "a castle:: winter::2 fog::-0.5",
                "a castle, watercolor ::1 winter, watercolor ::2 fog, watercolor ::-0.5",
            ),
            // Refused weights are the engine's to report; the text is edited whole.
            ("a::-1", "a::-1, watercolor"),
        ] {
            assert_eq!(edit_parts(prompt, styled), expected, "{prompt}");
        }
    }

    #[test]
    fn plain_text_drops_the_markup_and_the_subtracted_parts() {
        for (prompt, expected) in [
            ("a castle", "a castle"),
            ("ratio 16:9 poster", "ratio 16:9 poster"),
            ("a castle:: winter::2 fog::-0.5", "a castle, winter"),
            ("hot dog::1.5 food:: bun::0", "hot dog, food"),
            ("a::-1", "a::-1"),
        ] {
            assert_eq!(plain_text(prompt), expected, "{prompt}");
        }
    }
}
