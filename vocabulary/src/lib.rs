//! The prompt vocabulary: a few hundred common terms of five kinds
//! (subjects, styles, mediums, lighting, composition) that the product uses
//! to read a prompt back to its team and to describe images.
//!
//! The terms live in `data/<kind>.txt`, one term per line with `#`
//! comments, built into the crate. The chat side reads a prompt by its text
//! ([`read_by_text`], rules in [`reading`]); the engine is to rank the same
//! terms against an image by CLIP similarity.

use std::collections::HashMap;
use std::fmt;
use std::sync::LazyLock;

pub mod reading;
mod words;

pub use reading::{Reading, phrases, read_by_text};

/// What a term says about a picture.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Kind {
    /// What is pictured: "cat", "lighthouse", "portrait of a woman".
    Subject,
    /// An art style, movement or artist: "art nouveau", "Van Gogh".
    Style,
    /// What it is made with or as: "watercolor", "3d render".
    Medium,
    /// Light and time of day: "golden hour", "rim light".
    Lighting,
    /// Framing and camera: "close-up", "85mm lens", "bokeh".
    Composition,
}

impl Kind {
    pub const ALL: [Kind; 5] = [
        Kind::Subject,
        Kind::Style,
        Kind::Medium,
        Kind::Lighting,
        Kind::Composition,
    ];

    /// The label for one term of this kind: "style".
    pub fn name(self) -> &'static str {
        match self {
            Kind::Subject => "subject",
            Kind::Style => "style",
            Kind::Medium => "medium",
            Kind::Lighting => "lighting",
            Kind::Composition => "composition",
        }
    }

    /// The label for a list of several terms of this kind: "styles".
    /// Lighting and composition stay as they are ("lighting: dusk, rim light").
    pub fn plural(self) -> &'static str {
        match self {
            Kind::Subject => "subjects",
            Kind::Style => "styles",
            Kind::Medium => "mediums",
            Kind::Lighting => "lighting",
            Kind::Composition => "composition",
        }
    }

    /// The built-in list of this kind, as its data file holds it.
    fn data(self) -> &'static str {
        match self {
            Kind::Subject => include_str!("../data/subjects.txt"),
            Kind::Style => include_str!("../data/styles.txt"),
            Kind::Medium => include_str!("../data/mediums.txt"),
            Kind::Lighting => include_str!("../data/lighting.txt"),
            Kind::Composition => include_str!("../data/composition.txt"),
        }
    }
}

impl fmt::Display for Kind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A term of the vocabulary, or a style a prompt names that the vocabulary
/// does not hold ("in the style of Hokusai").
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Term {
    pub kind: Kind,
    /// As the vocabulary writes it ("close-up", "Van Gogh"), or for a style
    /// the vocabulary does not hold, as the prompt writes it.
    pub text: String,
}

/// The terms, and an index from a term's first word to the terms that
/// start with it.
#[derive(Debug)]
pub struct Vocabulary {
    terms: Vec<Term>,
    /// Each term's word keys, by index into `terms`.
    keys: Vec<Vec<String>>,
    by_first_word: HashMap<String, Vec<usize>>,
}

static BUILTIN: LazyLock<Vocabulary> = LazyLock::new(|| {
    Vocabulary::new(Kind::ALL.into_iter().flat_map(|kind| {
        lines(kind.data()).map(move |text| Term {
            kind,
            text: text.to_owned(),
        })
    }))
});

impl Vocabulary {
    /// The vocabulary built into the crate, parsed on first use.
    pub fn builtin() -> &'static Vocabulary {
        &BUILTIN
    }

    /// Every term, kind by kind in [`Kind::ALL`]'s order, each kind in its
    /// data file's order.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Term> {
        self.terms.iter().filter(move |term| term.kind == kind)
    }

    /// Reads `prompt` by its text against this vocabulary; see [`reading`].
    pub fn read(&self, prompt: &str) -> Reading {
        reading::read(self, prompt)
    }

    /// Terms without a word to match (punctuation alone) are left out.
    fn new(terms: impl IntoIterator<Item = Term>) -> Vocabulary {
        let mut vocabulary = Vocabulary {
            terms: Vec::new(),
            keys: Vec::new(),
            by_first_word: HashMap::new(),
        };
        for term in terms {
            let keys = words::keys(&term.text);
            let Some(first) = keys.first() else { continue };
            let index = vocabulary.terms.len();
            vocabulary
                .by_first_word
                .entry(first.clone())
                .or_default()
                .push(index);
            vocabulary.terms.push(term);
            vocabulary.keys.push(keys);
        }
        vocabulary
    }

    /// The longest term that starts at `words[at]`, as (term index, number
    /// of words); on a tie, the one listed first. Every word but the last
    /// matches exactly; the last also with "s" or "es" added ("cats",
    /// "foxes", "Monet's").
    fn term_at(&self, words: &[words::Word], at: usize) -> Option<(usize, usize)> {
        let first = &words.get(at)?.key;
        let stems = [
            Some(first.as_str()),
            first.strip_suffix('s'),
            first.strip_suffix("es"),
        ];
        let mut best: Option<(usize, usize)> = None;
        for index in stems
            .into_iter()
            .flatten()
            .filter_map(|stem| self.by_first_word.get(stem))
            .flatten()
        {
            let keys = &self.keys[*index];
            let Some(found) = words.get(at..at + keys.len()) else {
                continue;
            };
            let last = keys.len() - 1;
            let matches = found.iter().zip(keys).enumerate().all(|(i, (word, key))| {
                word.key == *key
                    || (i == last
                        && matches!(word.key.strip_prefix(key.as_str()), Some("s" | "es")))
            });
            let better = best.is_none_or(|(best_index, best_len)| {
                keys.len() > best_len || (keys.len() == best_len && *index < best_index)
            });
            if matches && better {
                best = Some((*index, keys.len()));
            }
        }
        best
    }
}

/// The terms of a data file: its lines without `#` comments, trimmed, empty
/// ones dropped.
fn lines(data: &str) -> impl Iterator<Item = &str> {
    data.lines()
        .map(|line| line.split('#').next().unwrap_or_default().trim())
        .filter(|line| !line.is_empty())
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use super::*;

    /// How many terms each kind should hold: enough to describe most
    /// prompts, few enough to rank all of them per image.
    fn expected_size(kind: Kind) -> std::ops::RangeInclusive<usize> {
        match kind {
            Kind::Subject => 120..=160,
            Kind::Style => 80..=120,
            Kind::Medium => 50..=70,
            Kind::Lighting => 40..=50,
            Kind::Composition => 50..=70,
        }
    }

    #[test]
    fn every_data_file_parses_to_its_size() {
        for kind in Kind::ALL {
            let listed = lines(kind.data()).count();
            let built = Vocabulary::builtin().of_kind(kind).count();
            assert_eq!(built, listed, "{kind}: a term without words");
            assert!(
                expected_size(kind).contains(&built),
                "{kind}: {built} terms, expected {:?}",
                expected_size(kind)
            );
        }
    }

    #[test]
    fn no_term_is_listed_twice_within_or_across_kinds() {
        let vocabulary = Vocabulary::builtin();
        let mut seen: HashMap<String, &Term> = HashMap::new();
        for (term, keys) in vocabulary.terms.iter().zip(&vocabulary.keys) {
            if let Some(other) = seen.insert(keys.join(" "), term) {
                panic!("{term:?} and {other:?} read the same");
            }
        }
        // A plural is the same term: its singular matches it already.
        for (key, term) in &seen {
            for suffix in ["s", "es"] {
                if let Some(other) = seen.get(&format!("{key}{suffix}")) {
                    panic!("{other:?} is a plural of {term:?}");
                }
            }
        }
    }

    #[test]
    fn every_term_can_be_found_in_a_prompt() {
        for term in Vocabulary::builtin().terms() {
            let text = &term.text;
            // Phrases split on these, so a term holding one never matches.
            assert!(!text.contains([',', ';']), "{term:?}");
            assert_eq!(text.trim(), text, "{term:?}");
            // Terms are written bare, and "in the style of" is read before
            // any term: no term starts with an article or a connector.
            let first = &words::keys(text)[0];
            assert!(!reading::is_article(first), "{term:?}");
            assert!(!reading::is_connector(first), "{term:?}");
            let found = read_by_text(text);
            assert_eq!(found.terms, std::slice::from_ref(term), "{term:?}");
        }
    }

    #[test]
    fn kinds_have_labels() {
        let labels: Vec<(&str, &str)> = Kind::ALL
            .into_iter()
            .map(|kind| (kind.name(), kind.plural()))
            .collect();
        assert_eq!(
            labels,
            [
                ("subject", "subjects"),
                ("style", "styles"),
                ("medium", "mediums"),
                ("lighting", "lighting"),
                ("composition", "composition"),
            ]
        );
        assert_eq!(Kind::Medium.to_string(), "medium");
    }

    #[test]
    fn comments_and_blank_lines_are_not_terms() {
        let data = "# heading\n\n  cat  \ndog # a comment\n   # indented\n";
        assert_eq!(lines(data).collect::<Vec<_>>(), ["cat", "dog"]);
    }
}
