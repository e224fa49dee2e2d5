//! HTML character references, decoded as Python's `html.unescape` decodes
//! them: CLIP's reference tokenizer applies it (twice) to every prompt, so
//! the tokenizer and the prompt policy both read text this way.

use crate::html_entities::ENTITIES;

/// Decodes HTML character references as Python's `html.unescape` does
/// (which CLIP's reference tokenizer applies to prompts): `&name;` for every HTML5 name, the
/// legacy names without ';' (also as a prefix: `&ampx` is "&x"), and
/// decimal and hex references with or without ';'. Unlike Python, numeric
/// references to C1 controls are not mapped through cp1252 and invalid code
/// points become U+FFFD rather than nothing; neither yields a letter.
pub fn unescape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(at) = rest.find('&') {
        out.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        match decode_reference(rest) {
            Some((decoded, used)) => {
                out.push_str(&decoded);
                rest = &rest[used..];
            }
            None => out.push('&'),
        }
    }
    out.push_str(rest);
    out
}

/// The reference at the start of `text` (just after its '&'): what it
/// stands for and how many bytes it spans.
fn decode_reference(text: &str) -> Option<(String, usize)> {
    if let Some(number) = text.strip_prefix('#') {
        let (digits, radix, skip) = match number.strip_prefix(['x', 'X']) {
            Some(hex) => (leading(hex, |c| c.is_ascii_hexdigit()), 16, 2),
            None => (leading(number, |c| c.is_ascii_digit()), 10, 1),
        };
        if digits.is_empty() {
            return None;
        }
        let semicolon = usize::from(text[skip + digits.len()..].starts_with(';'));
        let decoded = u32::from_str_radix(digits, radix)
            .ok()
            .filter(|code| *code != 0)
            .and_then(char::from_u32)
            .unwrap_or(char::REPLACEMENT_CHARACTER);
        return Some((decoded.to_string(), skip + digits.len() + semicolon));
    }
    let name = leading(text, |c| {
        !matches!(c, '\t' | '\n' | '\x0C' | ' ' | '<' | '&' | '#' | ';')
    });
    let name = &name[..name.char_indices().nth(32).map_or(name.len(), |(i, _)| i)];
    if name.is_empty() {
        return None;
    }
    if text[name.len()..].starts_with(';')
        && let Some(decoded) = entity(&text[..=name.len()])
    {
        return Some((decoded.to_owned(), name.len() + 1));
    }
    // The longest legacy name that `name` starts with (as HTML reads it).
    (2..=name.len())
        .rev()
        .filter(|len| name.is_char_boundary(*len))
        .find_map(|len| entity(&name[..len]).map(|decoded| (decoded.to_owned(), len)))
}

/// The longest prefix of `text` whose characters all satisfy `keep`.
fn leading(text: &str, keep: impl Fn(char) -> bool) -> &str {
    let end = text.find(|c: char| !keep(c)).unwrap_or(text.len());
    &text[..end]
}

fn entity(name: &str) -> Option<&'static str> {
    ENTITIES
        .binary_search_by(|(known, _)| (*known).cmp(name))
        .ok()
        .map(|i| ENTITIES[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn references_decode_as_python_decodes_them() {
        for (text, expected) in [
            ("fish &amp; chips", "fish & chips"),
            ("&#103;ore &#x67;ore &#103ore", "gore gore gore"),
            ("&gopf; &notin; &notit;", "\u{1D558} \u{2209} \u{AC}it;"),
            ("&ampx AT&T &unknown; &", "&x AT&T &unknown; &"),
            ("&#xZZ; &#99999999;", "&#xZZ; \u{FFFD}"),
        ] {
            assert_eq!(unescape(text), expected, "{text:?}");
        }
    }
}
