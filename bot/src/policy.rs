//! The prompt blocklist, checked before a job is enqueued.

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
/// matches whole words only.
fn normalize(text: &str) -> String {
    let words: Vec<String> = text
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .map(str::to_lowercase)
        .collect();
    format!(" {} ", words.join(" "))
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
}
