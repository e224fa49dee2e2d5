//! The prompt blocklist, checked before a job is enqueued.

use unicode_normalization::UnicodeNormalization;
use wordup_tokenizer::html;

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
    let unescaped = html::unescape(&html::unescape(text));
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
