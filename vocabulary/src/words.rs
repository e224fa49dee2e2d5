//! Text as words compared with one another: a word is a run of letters,
//! digits and apostrophes, so hyphens, spaces and other punctuation all
//! separate words alike ("close-up" and "close up" are the same two words).
//! A word's key is its text in lower case, without apostrophes and accents
//! ("Bird's" → "birds", "Cézanne" → "cezanne").

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// One word of a text: where it is and what it compares as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Word {
    /// Byte range of the word in its text.
    pub start: usize,
    pub end: usize,
    pub key: String,
}

/// The words of `text` in order; runs with nothing to compare (a lone
/// apostrophe) are skipped.
pub(crate) fn words(text: &str) -> Vec<Word> {
    let mut words = Vec::new();
    let mut start = None;
    for (at, c) in text.char_indices().chain([(text.len(), ' ')]) {
        let in_word = c.is_alphanumeric() || is_apostrophe(c) || is_combining_mark(c);
        match (start, in_word) {
            (None, true) => start = Some(at),
            (Some(from), false) => {
                let key = key(&text[from..at]);
                if !key.is_empty() {
                    words.push(Word {
                        start: from,
                        end: at,
                        key,
                    });
                }
                start = None;
            }
            _ => {}
        }
    }
    words
}

/// The keys of a text's words, as a term is compared.
pub(crate) fn keys(text: &str) -> Vec<String> {
    words(text).into_iter().map(|word| word.key).collect()
}

fn key(word: &str) -> String {
    word.nfkd()
        .filter(|&c| !is_combining_mark(c) && !is_apostrophe(c))
        .flat_map(char::to_lowercase)
        .collect()
}

fn is_apostrophe(c: char) -> bool {
    matches!(c, '\'' | '\u{2019}')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_on_anything_but_letters_digits_and_apostrophes() {
        assert_eq!(
            keys("Close-up; bird's-eye  VIEW, 35mm f/1.8"),
            ["close", "up", "birds", "eye", "view", "35mm", "f", "1", "8"]
        );
        assert_eq!(keys("Cézanne’s café"), ["cezannes", "cafe"]);
        // A decomposed accent stays inside its word.
        assert_eq!(keys("Ce\u{301}zanne"), ["cezanne"]);
        assert_eq!(keys(" ' - "), Vec::<String>::new());
    }

    #[test]
    fn words_keep_their_place_in_the_text() {
        let text = "a sci-fi city";
        let spans: Vec<&str> = words(text).iter().map(|w| &text[w.start..w.end]).collect();
        assert_eq!(spans, ["a", "sci", "fi", "city"]);
    }
}
