//! Text shown in chat.

/// At most `max_chars` characters of `text`, with "…" when cut: prompts
/// can be long, and messages, Block Kit text and lists have limits.
pub fn shorten(text: &str, max_chars: usize) -> String {
    let mut chars = text.chars();
    let cut: String = chars.by_ref().take(max_chars).collect();
    if chars.next().is_some() {
        format!("{cut}…")
    } else {
        cut
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cuts_by_characters_and_marks_the_cut() {
        assert_eq!(shorten("abc", 3), "abc");
        assert_eq!(shorten("abcd", 3), "abc…");
        assert_eq!(shorten(&"é".repeat(201), 200).chars().count(), 201);
        assert_eq!(shorten("", 5), "");
    }
}
