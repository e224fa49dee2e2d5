//! Reading a prompt by its text alone: which vocabulary terms it names, and
//! what is left of its first phrase as its subject.
//!
//! The rules, in order:
//!
//! - **Phrases.** The prompt is split at commas and semicolons; each phrase
//!   is trimmed and empty ones are dropped ([`phrases`]). Nothing else
//!   splits it (not " and "), and no term spans two phrases. Parameters
//!   such as `--ar 16:9` are not prompt text: the caller strips them first.
//! - **Words.** A word is a run of letters, digits and apostrophes, compared
//!   in lower case without apostrophes and accents. Hyphens and spaces
//!   separate words alike, so "close up" reads as "close-up", "birds eye
//!   view" as "bird's-eye view" and "Cezanne" as "Cézanne".
//! - **Terms** match whole words only: "portrait" is not found in
//!   "portraiture", nor "cat" in "category". The last word of a term also
//!   matches with "s" or "es" added ("cats", "foxes", "Monet's"); nothing
//!   else is stemmed. Where several terms start at a word, the longest wins
//!   ("Rembrandt lighting" over "Rembrandt", "post-impressionism" over
//!   "impressionism"), and its words are not read again.
//! - **"in the style of".** The words after it, up to the end of the phrase
//!   or the next connector ("in", "at", "with", "by", …, but not "and"), name
//!   styles: the terms found there other than subjects, and each other run
//!   of words between them and the "and"s is a style the vocabulary does not
//!   hold, kept as written without a leading article ("in the style of
//!   Hokusai" gives the style "Hokusai"; "in the style of the Hudson River
//!   School" gives "Hudson River School", its "river" no subject).
//! - **Order.** Each term is listed once, where it first appears; the terms
//!   of a kind are in prompt order.
//! - **Subject.** The first phrase that has words left once its style,
//!   medium, lighting and composition terms and its "in the style of …" are
//!   taken out (subject terms stay). The words before a term followed by
//!   "of" go with it, as they describe it ("a beautiful portrait of a young
//!   woman" gives "a young woman"). Next to what was taken out, connectors,
//!   "of", "style", "aesthetic", "light" and "lighting" go too, and so does
//!   an article followed by nothing or by another article ("a watercolor of
//!   a lighthouse at golden hour" gives "a lighthouse"). What is left stays
//!   as written, its pieces joined by one space.

use std::collections::HashSet;

use crate::words::{self, Word};
use crate::{Kind, Term, Vocabulary};

/// What a prompt's text names.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Reading {
    /// What is left of the first phrase without its style, medium,
    /// lighting and composition words; `None` when nothing is.
    pub subject: Option<String>,
    /// The terms found, each once, in prompt order.
    pub terms: Vec<Term>,
}

impl Reading {
    /// The terms of one kind, in prompt order.
    pub fn of_kind(&self, kind: Kind) -> impl Iterator<Item = &Term> {
        self.terms.iter().filter(move |term| term.kind == kind)
    }

    /// One line for chat, plain text for the caller to escape: the subject,
    /// then the styles, mediums, lighting and composition found, kinds with
    /// nothing omitted; empty when nothing was found.
    ///
    /// `subject: a lighthouse · style: art nouveau · mediums: watercolor, ink`
    pub fn summary(&self) -> String {
        let mut parts = Vec::new();
        if let Some(subject) = &self.subject {
            parts.push(format!("{}: {subject}", Kind::Subject.name()));
        }
        for kind in [Kind::Style, Kind::Medium, Kind::Lighting, Kind::Composition] {
            let texts: Vec<&str> = self.of_kind(kind).map(|term| term.text.as_str()).collect();
            match texts.as_slice() {
                [] => {}
                [one] => parts.push(format!("{}: {one}", kind.name())),
                several => parts.push(format!("{}: {}", kind.plural(), several.join(", "))),
            }
        }
        parts.join(" · ")
    }
}

/// The prompt's phrases: split at commas and semicolons, trimmed, empty ones
/// dropped.
pub fn phrases(prompt: &str) -> Vec<String> {
    split(prompt).map(str::to_owned).collect()
}

/// Reads `prompt` against the built-in vocabulary; the rules are in the
/// module doc.
pub fn read_by_text(prompt: &str) -> Reading {
    Vocabulary::builtin().read(prompt)
}

pub(crate) fn read(vocabulary: &Vocabulary, prompt: &str) -> Reading {
    let mut reading = Reading::default();
    let mut seen = HashSet::new();
    for phrase in split(prompt) {
        let words = words::words(phrase);
        let mut taken = vec![false; words.len()];
        let mut found = Vec::new();
        let mut at = 0;
        while at < words.len() {
            if starts_style_of(&words, at) {
                let end =
                    read_style_of(vocabulary, phrase, &words, at + STYLE_OF.len(), &mut found);
                taken[at..end].fill(true);
                at = end;
            } else if let Some((index, len)) = vocabulary.term_at(&words, at) {
                let term = &vocabulary.terms[index];
                if term.kind != Kind::Subject {
                    taken[at..at + len].fill(true);
                }
                found.push(term.clone());
                at += len;
            } else {
                at += 1;
            }
        }
        for term in found {
            if seen.insert((term.kind, words::keys(&term.text))) {
                reading.terms.push(term);
            }
        }
        if reading.subject.is_none() {
            reading.subject = subject(phrase, &words, &taken);
        }
    }
    reading
}

fn split(prompt: &str) -> impl Iterator<Item = &str> {
    prompt
        .split([',', ';'])
        .map(str::trim)
        .filter(|phrase| !phrase.is_empty())
}

const STYLE_OF: [&str; 4] = ["in", "the", "style", "of"];

fn starts_style_of(words: &[Word], at: usize) -> bool {
    words.get(at..at + STYLE_OF.len()).is_some_and(|found| {
        found
            .iter()
            .zip(STYLE_OF)
            .all(|(word, key)| word.key == key)
    })
}

/// Reads the styles named after "in the style of" from `words[from]` on
/// into `found`; returns where they end.
fn read_style_of(
    vocabulary: &Vocabulary,
    phrase: &str,
    words: &[Word],
    from: usize,
    found: &mut Vec<Term>,
) -> usize {
    let mut unknown: Option<usize> = None;
    let flush = |unknown: &mut Option<usize>, end: usize, found: &mut Vec<Term>| {
        if let Some(start) = unknown.take() {
            found.push(Term {
                kind: Kind::Style,
                text: phrase[words[start].start..words[end - 1].end].to_owned(),
            });
        }
    };
    let mut at = from;
    while let Some(word) = words.get(at) {
        if word.key == "and" {
            flush(&mut unknown, at, found);
            at += 1;
        } else if is_connector(&word.key) {
            break;
        } else if let Some((index, len)) = vocabulary
            .term_at(words, at)
            .filter(|&(index, _)| vocabulary.terms[index].kind != Kind::Subject)
        {
            flush(&mut unknown, at, found);
            found.push(vocabulary.terms[index].clone());
            at += len;
        } else {
            if unknown.is_none() && !is_article(&word.key) {
                unknown = Some(at);
            }
            at += 1;
        }
    }
    flush(&mut unknown, at, found);
    at
}

/// What is left of `phrase` without its `taken` words and the filler next
/// to them.
fn subject(phrase: &str, words: &[Word], taken: &[bool]) -> Option<String> {
    let mut kept: Vec<bool> = taken.iter().map(|taken| !taken).collect();
    let len = words.len();
    // Before a term followed by "of", the words describe the term.
    let mut piece_start = 0;
    let mut at = 0;
    while at < len {
        if !taken[at] {
            at += 1;
            continue;
        }
        let run_start = at;
        while at < len && taken[at] {
            at += 1;
        }
        if words.get(at).is_some_and(|word| word.key == "of") {
            kept[piece_start..run_start].fill(false);
        }
        piece_start = at;
    }
    loop {
        let mut changed = false;
        for at in 0..len {
            if !kept[at] {
                continue;
            }
            let key = &words[at].key;
            let drop = if is_filler(key) {
                (at > 0 && !kept[at - 1]) || (at + 1 < len && !kept[at + 1])
            } else if is_article(key) {
                match (at + 1..len).find(|&next| kept[next]) {
                    None => at + 1 < len,
                    Some(next) => next > at + 1 && is_article(&words[next].key),
                }
            } else {
                false
            };
            if drop {
                kept[at] = false;
                changed = true;
            }
        }
        if !changed {
            break;
        }
    }
    let mut pieces = Vec::new();
    let mut at = 0;
    while at < len {
        if !kept[at] {
            at += 1;
            continue;
        }
        let start = at;
        while at + 1 < len && kept[at + 1] {
            at += 1;
        }
        pieces.push(&phrase[words[start].start..words[at].end]);
        at += 1;
    }
    (!pieces.is_empty()).then(|| pieces.join(" "))
}

/// Words that join a phrase's parts: they end an "in the style of" list
/// (except "and", which continues it) and go with a term taken out next to
/// them.
pub(crate) fn is_connector(key: &str) -> bool {
    matches!(
        key,
        "and"
            | "or"
            | "in"
            | "at"
            | "on"
            | "with"
            | "by"
            | "during"
            | "under"
            | "from"
            | "for"
            | "as"
            | "into"
    )
}

/// Words that go with a term taken out next to them.
fn is_filler(key: &str) -> bool {
    is_connector(key)
        || matches!(
            key,
            "of" | "style" | "styles" | "styled" | "aesthetic" | "light" | "lighting"
        )
}

pub(crate) fn is_article(key: &str) -> bool {
    matches!(key, "a" | "an" | "the")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `expected` is the reading's summary, and after " + " its subject
    /// terms when it has any.
    fn check(prompt: &str, expected: &str) {
        let reading = read_by_text(prompt);
        let mut shown = reading.summary();
        let subjects: Vec<&str> = reading
            .of_kind(Kind::Subject)
            .map(|term| term.text.as_str())
            .collect();
        if !subjects.is_empty() {
            shown = format!("{shown} + {}", subjects.join(", "));
        }
        assert_eq!(shown, expected, "prompt: {prompt:?}");
    }

    #[test]
    fn readings() {
        let cases = [
            // One term of each kind, one phrase each.
            (
                "a lighthouse, art nouveau, watercolor, golden hour, wide shot",
                "subject: a lighthouse · style: art nouveau · medium: watercolor \
                 · lighting: golden hour · composition: wide shot + lighthouse",
            ),
            // Terms taken out of the subject with the words around them.
            (
                "a watercolor painting of a lighthouse at golden hour",
                "subject: a lighthouse · medium: watercolor painting · lighting: golden hour \
                 + lighthouse",
            ),
            ("a photo of a cat", "subject: a cat · medium: photo + cat"),
            (
                "a beautiful portrait of a young woman with red hair, sharp focus",
                "subject: a young woman with red hair · composition: portrait, sharp focus \
                 + young woman",
            ),
            (
                "a girl in a watercolor style",
                "subject: a girl · medium: watercolor",
            ),
            (
                "cyberpunk city street at night, neon lights, wide angle",
                "subject: city street · style: cyberpunk · lighting: night, neon light \
                 · composition: wide angle + city, street",
            ),
            (
                "a castle in anime style",
                "subject: a castle · style: anime + castle",
            ),
            (
                "the Mona Lisa by Van Gogh",
                "subject: the Mona Lisa · style: Van Gogh",
            ),
            // A style the vocabulary does not hold, and known ones after "in the style of".
            (
                "Portrait of a woman in the style of Hokusai",
                "subject: Portrait of a woman · style: Hokusai + portrait of a woman",
            ),
            (
                "a wave in the style of Hokusai and Van Gogh, in the style of the Hudson River School",
                "subject: a wave · styles: Hokusai, Van Gogh, Hudson River School",
            ),
            (
                "a harbour in the style of Winslow Homer with soft light",
                "subject: a harbour · style: Winslow Homer · lighting: soft light",
            ),
            ("a cat in the style of", "subject: a cat + cat"),
            // Whole words only: not inside another word.
            (
                "portraiture of a catalogue of dogmas",
                "subject: portraiture of a catalogue of dogmas",
            ),
            // Plurals and possessives of a term's last word.
            (
                "two cats and a dog, Monet's foxes, close ups",
                "subject: two cats and a dog · style: Monet · composition: close-up \
                 + cat, dog, fox",
            ),
            // Upper case, hyphens and spaces, apostrophes and accents.
            (
                "A CAT, OIL PAINTING, VOLUMETRIC LIGHTING",
                "subject: A CAT · medium: oil painting · lighting: volumetric lighting + cat",
            ),
            (
                "close up of a red fox; birds eye view; ukiyo e",
                "subject: a red fox · style: ukiyo-e · composition: close-up, bird's-eye view \
                 + fox",
            ),
            (
                "a cafe in the style of Cezanne, Salvador Dali",
                "subject: a cafe · styles: Cézanne, Salvador Dalí + cafe",
            ),
            // The longest term wins.
            (
                "Rembrandt lighting on an old man, in the style of Rembrandt",
                "subject: an old man · style: Rembrandt · lighting: Rembrandt lighting \
                 + old man",
            ),
            (
                "post-impressionism, 85mm lens, city skyline",
                "subject: city skyline · style: post-impressionism · composition: 85mm lens \
                 + city skyline",
            ),
            // Duplicates once, in the case first written.
            (
                "a cat, watercolor, Watercolor, a cat in watercolor, in the style of hokusai, Hokusai",
                "subject: a cat · style: hokusai · medium: watercolor + cat",
            ),
            // The subject is the first phrase with something left.
            (
                "cinematic, wide shot, a fox in the snow",
                "subject: a fox in the snow · style: cinematic · composition: wide shot + fox",
            ),
            // Nothing to read.
            ("", ""),
            (" , ;; ,", ""),
            (
                "watercolor, golden hour",
                "medium: watercolor · lighting: golden hour",
            ),
        ];
        for (prompt, expected) in cases {
            check(prompt, expected);
        }
    }

    #[test]
    fn phrases_split_at_commas_and_semicolons_only() {
        assert_eq!(
            phrases(" a cat and a dog,watercolor ;; close-up , "),
            ["a cat and a dog", "watercolor", "close-up"]
        );
        assert!(phrases("").is_empty());
    }

    #[test]
    fn a_style_the_vocabulary_lacks_is_a_style_as_written() {
        let reading = read_by_text("a fox in the style of HOKUSAI's prints");
        assert_eq!(
            reading.terms,
            [
                Term {
                    kind: Kind::Subject,
                    text: "fox".to_owned()
                },
                Term {
                    kind: Kind::Style,
                    text: "HOKUSAI's prints".to_owned()
                },
            ]
        );
    }
}
