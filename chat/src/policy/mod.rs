//! The prompt blocklist, checked before a job is enqueued.

mod html_entities;

use unicode_normalization::UnicodeNormalization;

/// Terms refused in prompts, matched as whole words, ignoring case and punctuation.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Blocklist {
    terms: Vec<String>,
}

impl Blocklist {
    /// From a comma-separated list; blank entries are ignored.
    pub fn parse(list: &str) -> Blocklist {
        Blocklist {
            terms: list
                .split(',')
                .map(normalize)
                .filter(|t| !t.trim().is_empty())
                .collect(),
        }
    }

    /// The first blocked term the text contains.
    pub fn find(&self, text: &str) -> Option<&str> {
        let text = normalize(text);
        self.terms
            .iter()
            .find(|term| text.contains(term.as_str()))
            .map(|term| term.trim())
    }

    pub fn len(&self) -> usize {
        self.terms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// Lowercase words separated by single spaces, padded so that `contains`
/// matches whole words only, after [`fold`]. Words are split as CLIP's
/// tokenizer splits them: runs of letters, and each digit alone, so that
/// "gore2" holds the word "gore".
fn normalize(text: &str) -> String {
    let folded = fold(text);
    let mut words: Vec<String> = Vec::new();
    let mut in_letters = false;
    for c in folded.chars() {
        if c.is_alphabetic() {
            if !in_letters {
                words.push(String::new());
            }
            if let Some(word) = words.last_mut() {
                word.push(c);
            }
            in_letters = true;
        } else {
            if c.is_numeric() {
                words.push(c.to_string());
            }
            in_letters = false;
        }
    }
    format!(" {} ", words.join(" "))
}

/// Text as the engine's tokenizer reads it, so that nothing it would read
/// as a blocked word passes the check: HTML entities decoded (CLIP's
/// tokenizer unescapes twice, so `&amp;#103;` is a "g" too), compatibility
/// forms folded (NFKC: full-width and mathematical letters, ligatures),
/// invisible format characters (zero-width spaces and joiners, soft hyphens)
/// dropped, and lower case.
pub fn fold(text: &str) -> String {
    let unescaped = unescape_html(&unescape_html(text));
    unescaped
        .nfkc()
        .filter(|c| !is_invisible(*c))
        .flat_map(char::to_lowercase)
        .collect::<String>()
        // Lower-casing can make new compatibility forms (rare); fold again.
        .nfkc()
        .collect()
}

/// Format characters that render as nothing but split a word for a naive match.
fn is_invisible(c: char) -> bool {
    matches!(
        c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
            | '\u{180B}'..='\u{180F}'
            | '\u{200B}'..='\u{200F}'
            | '\u{202A}'..='\u{202E}'
            | '\u{2060}'..='\u{206F}'
            | '\u{3164}'
            | '\u{FE00}'..='\u{FE0F}'
            | '\u{FEFF}'
            | '\u{FFA0}'
            | '\u{1D173}'..='\u{1D17A}'
            | '\u{E0000}'..='\u{E0FFF}'
    )
}

/// Decodes HTML character references as Python's `html.unescape` does
/// (which CLIP's tokenizer applies): `&name;` for every HTML5 name, the
/// legacy names without ';' (also as a prefix: `&ampx` is "&x"), and
/// decimal and hex references with or without ';'. Unlike Python, numeric
/// references to C1 controls are not mapped through cp1252 and invalid code
/// points become U+FFFD rather than nothing; neither yields a letter.
fn unescape_html(text: &str) -> String {
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
    html_entities::ENTITIES
        .binary_search_by(|(known, _)| (*known).cmp(name))
        .ok()
        .map(|i| html_entities::ENTITIES[i].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_whole_words_only() {
        let list = Blocklist::parse("gore, Blood Bath ,,");
        assert_eq!(list.len(), 2);
        for (text, expected) in [
            ("a quiet forest", None),
            ("GORE everywhere", Some("gore")),
            ("al gore's speech", Some("gore")),
            ("gorilla in the mist", None),
            ("a blood-bath!", Some("blood bath")),
            ("blood and bath", None),
        ] {
            assert_eq!(list.find(text), expected, "{text}");
        }
        assert!(Blocklist::parse(" , ").is_empty());
    }

    #[test]
    fn written_differently_is_still_blocked() {
        let list = Blocklist::parse("gore");
        for text in [
            "lots of ｇｏｒｅ",             // full-width letters
            "lots of &#103;ore",            // a decimal reference
            "lots of &#x67;ore",            // a hex reference
            "lots of &amp;#103;ore",        // escaped twice
            "lots of g\u{200B}ore",         // a zero-width space
            "lots of go\u{00AD}re",         // a soft hyphen
            "lots of g\u{2060}o\u{FEFF}re", // word joiner, byte-order mark
            "lots of 𝐠𝐨𝐫𝐞",                 // mathematical bold
            "lots of &gopf;ore",            // a named reference to 𝕘
            "LOTS OF ＧＯＲＥ",
            "lots of gore2", // CLIP reads "gore" "2"
            "lots of gore²", // NFKC: "gore2"
        ] {
            assert_eq!(list.find(text), Some("gore"), "{text:?}");
        }
        for text in ["gorgeous", "&#103;orilla", "a & b; g ore"] {
            assert_eq!(list.find(text), None, "{text:?}");
        }
    }

    #[test]
    fn folding_keeps_what_is_not_a_reference() {
        for (text, expected) in [
            ("Tom & Jerry", "tom & jerry"),
            // As Python's html.unescape reads them.
            ("&notanentity; x", "¬anentity; x"),
            (
                "&#103ore &ampx &#xZZ; &#99999999;",
                "gore &x &#xzz; \u{FFFD}",
            ),
            ("café", "café"),
        ] {
            assert_eq!(fold(text), expected, "{text:?}");
        }
    }
}
