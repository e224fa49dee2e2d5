//! A prompt read back with CLIP: the vocabulary's terms found in it by text
//! and by CLIP text similarity, how much each comma-separated phrase weighs
//! in its meaning, and which phrases the images show least. The vocabulary's
//! CLIP features are computed once per CLIP model and cached on disk.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{D, DType, Device, Tensor};
use sha2::{Digest, Sha256};
use wordup_vocabulary::{Kind, Reading, Term, Vocabulary, phrases};

use super::clip::{Clip, clip_score};
use crate::error::{EngineError, Result};

/// Cosine similarity from which a phrase reads as a vocabulary term it does
/// not spell out ("sunset glow" as "golden hour"). CLIP's text features sit
/// close together (unrelated phrases ~0.7), so only near-synonyms pass.
pub const SIMILAR: f32 = 0.9;

/// The vocabulary's terms with their CLIP text features, one unit row each.
pub struct Lexicon {
    terms: Vec<Term>,
    features: Tensor,
}

impl Lexicon {
    /// The built-in vocabulary's features for `clip`, read from `cache`
    /// when an earlier run wrote them for the same model and terms, else
    /// computed (a few hundred text encodings) and written there.
    pub fn load(clip: &Clip, clip_id: &str, cache: Option<&Path>) -> Result<Lexicon> {
        let terms = Vocabulary::builtin().terms().to_vec();
        let file = cache.map(|dir| dir.join(cache_name(clip_id, &terms)));
        if let Some(features) = file.as_deref().and_then(|f| read_cached(f, clip.device()))
            && features.dim(0)? == terms.len()
        {
            return Ok(Lexicon { terms, features });
        }
        let rows = terms
            .iter()
            .map(|term| unit(&clip.text_features(&term.text)?))
            .collect::<Result<Vec<_>>>()?;
        let features = Tensor::cat(&rows, 0)?;
        if let Some(file) = file
            && let Err(error) = write_cached(&file, &features)
        {
            tracing::warn!(%error, path = %file.display(), "vocabulary features not cached");
        }
        Ok(Lexicon { terms, features })
    }

    /// The `k` terms of `kind` nearest to `features` (`[1, d]`, any scale),
    /// nearest first, with their cosine similarity.
    pub fn nearest(&self, features: &Tensor, kind: Kind, k: usize) -> Result<Vec<(&Term, f32)>> {
        let query = unit(features)?.to_device(self.features.device())?;
        let similarity: Vec<f32> = self
            .features
            .matmul(&query.t()?)?
            .flatten_all()?
            .to_vec1()?;
        let mut ranked: Vec<(&Term, f32)> = self
            .terms
            .iter()
            .zip(similarity)
            .filter(|(term, _)| term.kind == kind)
            .collect();
        ranked.sort_by(|a, b| b.1.total_cmp(&a.1));
        ranked.truncate(k);
        Ok(ranked)
    }

    /// The terms, in the vocabulary's order.
    pub fn terms(&self) -> &[Term] {
        &self.terms
    }

    /// `[terms, d]`, unit rows.
    pub fn features(&self) -> &Tensor {
        &self.features
    }

    pub fn len(&self) -> usize {
        self.terms.len()
    }

    pub fn is_empty(&self) -> bool {
        self.terms.is_empty()
    }
}

/// A phrase of a prompt and its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct Weighed {
    pub phrase: String,
    pub weight: f32,
}

/// The prompt read by text, then each phrase's nearest style, medium,
/// lighting and composition terms by CLIP where they are near enough.
pub fn read(clip: &Clip, lexicon: &Lexicon, prompt: &str) -> Result<Reading> {
    let mut reading = Vocabulary::builtin().read(prompt);
    for phrase in phrases(prompt) {
        let features = clip.text_features(&phrase)?;
        for kind in [Kind::Style, Kind::Medium, Kind::Lighting, Kind::Composition] {
            for (term, similarity) in lexicon.nearest(&features, kind, 1)? {
                if similarity >= SIMILAR && !reading.terms.contains(term) {
                    reading.terms.push(term.clone());
                }
            }
        }
    }
    Ok(reading)
}

/// How much of the prompt's meaning each phrase carries: the share of the
/// distance its removal moves the prompt's CLIP text features, heaviest
/// first. Fewer than two phrases: none to weigh.
pub fn weigh_in_text(clip: &Clip, prompt: &str) -> Result<Vec<Weighed>> {
    let parts = phrases(prompt);
    if parts.len() < 2 {
        return Ok(Vec::new());
    }
    let whole = unit(&clip.text_features(&parts.join(", "))?)?;
    let mut distances = Vec::with_capacity(parts.len());
    for i in 0..parts.len() {
        let rest = without(&parts, i);
        let cosine = cosine(&whole, &unit(&clip.text_features(&rest)?)?)?;
        distances.push((1.0 - cosine).max(0.0));
    }
    let total: f32 = distances.iter().sum();
    let mut weighed: Vec<Weighed> = parts
        .into_iter()
        .zip(distances)
        .map(|(phrase, d)| Weighed {
            phrase,
            weight: if total > 0.0 { d / total } else { 0.0 },
        })
        .collect();
    weighed.sort_by(|a, b| b.weight.total_cmp(&a.weight));
    Ok(weighed)
}

/// How much each phrase shows in the images: the CLIP score they lose, on
/// average, when the phrase is left out of the prompt. Least shown first;
/// a phrase at or below zero is not seen at all. Fewer than two phrases:
/// none to compare.
pub fn weigh_in_images(clip: &Clip, prompt: &str, images: &[Tensor]) -> Result<Vec<Weighed>> {
    let parts = phrases(prompt);
    if parts.len() < 2 || images.is_empty() {
        return Ok(Vec::new());
    }
    let mean_score = |text: &Tensor| -> Result<f32> {
        let mut sum = 0.0;
        for image in images {
            sum += clip_score(image, text)?;
        }
        Ok(sum / images.len() as f32)
    };
    let whole = mean_score(&clip.text_features(&parts.join(", "))?)?;
    let mut weighed = Vec::with_capacity(parts.len());
    for i in 0..parts.len() {
        let rest = mean_score(&clip.text_features(&without(&parts, i))?)?;
        weighed.push(Weighed {
            phrase: parts[i].clone(),
            weight: whole - rest,
        });
    }
    weighed.sort_by(|a, b| a.weight.total_cmp(&b.weight));
    Ok(weighed)
}

/// What a result says about how its prompt was read: the terms found, and
/// the phrase the images show least when one shows less than the rest.
pub fn read_back(reading: &Reading, shown: &[Weighed]) -> Option<String> {
    let mut parts = Vec::new();
    let summary = reading.summary();
    if !summary.is_empty() {
        parts.push(format!("read as {summary}"));
    }
    if let [least, next, ..] = shown
        && least.weight < next.weight
    {
        parts.push(format!(
            "least shown: \"{}\" ({:+.1})",
            least.phrase, least.weight
        ));
    }
    (!parts.is_empty()).then(|| parts.join(" · "))
}

/// Terms nearest an image's CLIP features, by kind, nearest first.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Nearest {
    pub subjects: Vec<String>,
    pub styles: Vec<String>,
    pub mediums: Vec<String>,
    pub lighting: Vec<String>,
    pub composition: Vec<String>,
}

impl Nearest {
    /// The vocabulary's terms nearest `features` (`[1, d]` image features).
    pub fn of(lexicon: &Lexicon, features: &Tensor) -> Result<Nearest> {
        let top = |kind, k| -> Result<Vec<String>> {
            Ok(lexicon
                .nearest(features, kind, k)?
                .into_iter()
                .map(|(term, _)| term.text.clone())
                .collect())
        };
        Ok(Nearest {
            subjects: top(Kind::Subject, 2)?,
            styles: top(Kind::Style, 3)?,
            mediums: top(Kind::Medium, 2)?,
            lighting: top(Kind::Lighting, 2)?,
            composition: top(Kind::Composition, 2)?,
        })
    }
}

/// `/describe`'s four prompt suggestions from the nearest terms, each
/// leading with a subject and mixing a different medium, style, light and
/// framing, so that the four differ. Terms a kind lacks are left out.
pub fn suggestions(nearest: &Nearest) -> Vec<String> {
    let pick = |terms: &[String], i: usize| terms.get(i).or(terms.first()).cloned();
    let style = |i: usize| pick(&nearest.styles, i).map(|s| format!("in the style of {s}"));
    let plans = [
        [
            pick(&nearest.subjects, 0),
            pick(&nearest.mediums, 0),
            pick(&nearest.lighting, 0),
            None,
        ],
        [
            pick(&nearest.subjects, 0),
            style(0),
            pick(&nearest.composition, 0),
            None,
        ],
        [
            pick(&nearest.subjects, 1),
            pick(&nearest.mediums, 1),
            style(1),
            pick(&nearest.lighting, 1),
        ],
        [
            pick(&nearest.subjects, 0),
            style(2),
            pick(&nearest.composition, 1),
            pick(&nearest.lighting, 0),
        ],
    ];
    plans
        .into_iter()
        .map(|parts| parts.into_iter().flatten().collect::<Vec<_>>().join(", "))
        .filter(|prompt| !prompt.is_empty())
        .collect()
}

/// `/describe`'s answer, plain text: the suggestions, numbered as the
/// buttons under it.
pub fn suggestions_text(prompts: &[String]) -> String {
    let mut lines = vec!["Prompts for this image (press a number to draw it):".to_owned()];
    lines.extend(
        prompts
            .iter()
            .enumerate()
            .map(|(i, p)| format!("{}. {p}", i + 1)),
    );
    lines.join("\n")
}

/// `/imagine-analyze`'s answer, plain text (the chat adapter escapes it):
/// how the prompt reads, and its phrases by weight; `weighed` is `None`
/// when the engine has no CLIP to weigh them with.
pub fn analysis_text(prompt: &str, reading: &Reading, weighed: Option<&[Weighed]>) -> String {
    let mut lines = vec![format!("How \"{}\" reads:", prompt.trim())];
    let summary = reading.summary();
    lines.push(if summary.is_empty() {
        "• no subject, style, medium, lighting or composition terms found".to_owned()
    } else {
        format!("• {summary}")
    });
    lines.push(match weighed {
        None => "• no CLIP on this engine, so the phrases could not be weighed".to_owned(),
        Some([]) => {
            "• one phrase: separate the prompt's parts with commas to weigh them".to_owned()
        }
        Some(weighed) => format!(
            "• phrases by weight: {}",
            weighed
                .iter()
                .map(|w| format!("\"{}\" {:.0}%", w.phrase, w.weight * 100.0))
                .collect::<Vec<_>>()
                .join(" · ")
        ),
    });
    lines.join("\n")
}

/// The phrases but the `i`th, as a prompt.
fn without(parts: &[String], i: usize) -> String {
    parts
        .iter()
        .enumerate()
        .filter(|(j, _)| *j != i)
        .map(|(_, p)| p.as_str())
        .collect::<Vec<_>>()
        .join(", ")
}

fn unit(features: &Tensor) -> Result<Tensor> {
    let features = features.to_dtype(DType::F32)?;
    let norm = features.sqr()?.sum_keepdim(D::Minus1)?.sqrt()?;
    Ok(features.broadcast_div(&(norm + 1e-12)?)?)
}

fn cosine(a: &Tensor, b: &Tensor) -> Result<f32> {
    Ok((a * b)?.sum_all()?.to_scalar::<f32>()?)
}

/// "vocabulary-<hash>.safetensors", the hash over the CLIP model's id and
/// every term: another model or another vocabulary never reads it.
fn cache_name(clip_id: &str, terms: &[Term]) -> String {
    let mut hash = Sha256::new();
    hash.update(clip_id.as_bytes());
    for term in terms {
        hash.update([0]);
        hash.update(term.kind.name().as_bytes());
        hash.update([1]);
        hash.update(term.text.as_bytes());
    }
    let digest = hash.finalize();
    let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
    format!("vocabulary-{hex}.safetensors")
}

fn read_cached(file: &Path, device: &Device) -> Option<Tensor> {
    let mut tensors = candle_core::safetensors::load(file, device).ok()?;
    tensors.remove("features")
}

fn write_cached(file: &Path, features: &Tensor) -> Result<()> {
    if let Some(dir) = file.parent() {
        std::fs::create_dir_all(dir).map_err(|source| EngineError::Io {
            path: dir.to_path_buf(),
            source,
        })?;
    }
    // Written aside and renamed: a reader never sees half a file, and two
    // engines writing at once each rename a whole one.
    let partial = PathBuf::from(format!("{}.{}.partial", file.display(), std::process::id()));
    let tensors = HashMap::from([("features".to_owned(), features.to_device(&Device::Cpu)?)]);
    candle_core::safetensors::save(&tensors, &partial)?;
    std::fs::rename(&partial, file).map_err(|source| EngineError::Io {
        path: file.to_path_buf(),
        source,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn weighed(phrase: &str, weight: f32) -> Weighed {
        Weighed {
            phrase: phrase.into(),
            weight,
        }
    }

    #[test]
    fn the_read_back_names_the_terms_and_the_phrase_shown_least() {
        let reading = Vocabulary::builtin().read("a lighthouse, watercolor, golden hour");
        for (shown, expected) in [
            (
                vec![],
                Some("read as subject: a lighthouse · medium: watercolor · lighting: golden hour"),
            ),
            (
                vec![weighed("golden hour", -0.4), weighed("watercolor", 1.5)],
                Some(
                    "read as subject: a lighthouse · medium: watercolor · lighting: golden hour · least shown: \"golden hour\" (-0.4)",
                ),
            ),
            // Every phrase as visible as the next: none singled out.
            (
                vec![weighed("golden hour", 1.0), weighed("watercolor", 1.0)],
                Some("read as subject: a lighthouse · medium: watercolor · lighting: golden hour"),
            ),
        ] {
            assert_eq!(
                read_back(&reading, &shown).as_deref(),
                expected,
                "{shown:?}"
            );
        }
        let nothing = Vocabulary::builtin().read("");
        assert_eq!(read_back(&nothing, &[]), None);
    }

    #[test]
    fn an_analysis_lists_the_reading_and_the_weights() {
        let reading = Vocabulary::builtin().read("a lighthouse, watercolor");
        let weighed = [weighed("a lighthouse", 0.614), weighed("watercolor", 0.386)];
        for (weights, last) in [
            (
                Some(&weighed[..]),
                "• phrases by weight: \"a lighthouse\" 61% · \"watercolor\" 39%",
            ),
            (
                Some(&[][..]),
                "• one phrase: separate the prompt's parts with commas to weigh them",
            ),
            (
                None,
                "• no CLIP on this engine, so the phrases could not be weighed",
            ),
        ] {
            let text = analysis_text(" a lighthouse, watercolor ", &reading, weights);
            let lines: Vec<&str> = text.lines().collect();
            assert_eq!(
                lines,
                [
                    "How \"a lighthouse, watercolor\" reads:",
                    "• subject: a lighthouse · medium: watercolor",
                    last
                ]
            );
        }
        let nothing = Vocabulary::builtin().read("");
        assert!(analysis_text("", &nothing, None).contains("no subject, style"));
    }

    #[test]
    fn four_different_suggestions_from_the_nearest_terms() {
        let terms = |t: &[&str]| t.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let nearest = Nearest {
            subjects: terms(&["a lighthouse", "a harbor"]),
            styles: terms(&["art nouveau", "ukiyo-e", "impressionism"]),
            mediums: terms(&["watercolor", "oil painting"]),
            lighting: terms(&["golden hour", "fog"]),
            composition: terms(&["wide shot", "aerial view"]),
        };
        assert_eq!(
            suggestions(&nearest),
            [
                "a lighthouse, watercolor, golden hour",
                "a lighthouse, in the style of art nouveau, wide shot",
                "a harbor, oil painting, in the style of ukiyo-e, fog",
                "a lighthouse, in the style of impressionism, aerial view, golden hour",
            ]
        );
        // One term of each kind: the picks repeat it rather than leave gaps.
        let single = Nearest {
            subjects: terms(&["a cat"]),
            styles: terms(&["pop art"]),
            ..Nearest::default()
        };
        assert_eq!(
            suggestions(&single),
            [
                "a cat",
                "a cat, in the style of pop art",
                "a cat, in the style of pop art",
                "a cat, in the style of pop art",
            ]
        );
        assert!(suggestions(&Nearest::default()).is_empty());
        assert_eq!(
            suggestions_text(&terms(&["a", "b"])),
            "Prompts for this image (press a number to draw it):\n1. a\n2. b"
        );
    }

    #[test]
    fn leaving_out_a_phrase_keeps_the_rest_in_order() {
        let parts: Vec<String> = ["a", "b", "c"].map(String::from).to_vec();
        assert_eq!(without(&parts, 0), "b, c");
        assert_eq!(without(&parts, 1), "a, c");
        assert_eq!(without(&parts, 2), "a, b");
    }

    #[test]
    fn the_cache_is_named_by_model_and_terms() {
        let terms = Vocabulary::builtin().terms().to_vec();
        let name = cache_name("openai/clip", &terms);
        assert!(name.starts_with("vocabulary-") && name.ends_with(".safetensors"));
        assert_eq!(name, cache_name("openai/clip", &terms));
        assert_ne!(name, cache_name("laion/clip", &terms));
        assert_ne!(name, cache_name("openai/clip", &terms[1..]));
    }
}
