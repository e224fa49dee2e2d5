//! CLIP's view of a job's images: each image's score for the prompt asked,
//! the best of a `--quality` draw, the concept check's hits (a second
//! safety signal beside open_nsfw), and the prompt read back.

use candle_core::Tensor;
use image::RgbImage;
use wordup_queue::Delivery;
use wordup_queue::prompt::plain_text;

use super::Worker;
use super::deliver::listed;
use super::render::Drawn;
use crate::error::EngineError;
use crate::judge::ClipJudge;
use crate::judge::clip::{self, Clip};
use crate::judge::reading;

/// What CLIP made of a job's images, one entry per image.
#[derive(Debug, Clone, Default)]
pub(super) struct Judged {
    /// CLIP score for the prompt; empty without CLIP.
    pub scores: Vec<f32>,
    /// The first blocked concept CLIP sees in each image, with its score.
    pub concepts: Vec<Option<(String, f32)>>,
    /// Each image's CLIP features; empty without CLIP.
    pub features: Vec<Tensor>,
}

impl Judged {
    fn none(images: usize) -> Judged {
        Judged {
            scores: Vec::new(),
            concepts: vec![None; images],
            features: Vec::new(),
        }
    }

    pub fn score(&self, index: usize) -> Option<f32> {
        self.scores.get(index).copied()
    }

    /// The scores to show: none without CLIP, and none for withheld images.
    pub fn shown(&self, withheld: &[bool]) -> Vec<Option<f32>> {
        self.scores
            .iter()
            .zip(withheld)
            .map(|(score, w)| (!w).then_some(*score))
            .collect()
    }

    /// Keeps the images at `indices`, in that order.
    pub fn select(&self, indices: &[usize]) -> Judged {
        Judged {
            scores: indices
                .iter()
                .filter_map(|&i| self.scores.get(i).copied())
                .collect(),
            concepts: indices.iter().map(|&i| self.concepts[i].clone()).collect(),
            features: indices
                .iter()
                .filter_map(|&i| self.features.get(i).cloned())
                .collect(),
        }
    }
}

/// " · CLIP 31.2" for one image, " · CLIP 28.1 / 30.4 / – / 29.9" for a
/// grid (in reading order, "–" where an image is withheld); nothing
/// without scores.
pub(super) fn scores_note(scores: &[Option<f32>]) -> String {
    if scores.is_empty() {
        return String::new();
    }
    format!(" · CLIP {}", listed(scores, " / "))
}

/// Judges `images` against `prompt` and `concepts` with `clip` (blocking).
fn judge(
    clip: &Clip,
    images: &[RgbImage],
    prompt: &str,
    concepts: &[String],
    threshold: f32,
) -> crate::error::Result<Judged> {
    let text = clip.text_features(prompt)?;
    let concept_features: Vec<Tensor> = concepts
        .iter()
        .map(|c| clip.text_features(c))
        .collect::<crate::error::Result<_>>()?;
    let mut judged = Judged::default();
    for image in images {
        let features = clip.image_features(image)?;
        judged.scores.push(clip::clip_score(&features, &text)?);
        judged.features.push(features.clone());
        let mut seen = None;
        for (concept, concept_text) in concepts.iter().zip(&concept_features) {
            let score = clip::clip_score(&features, concept_text)?;
            if score >= threshold {
                seen = Some((concept.clone(), score));
                break;
            }
        }
        judged.concepts.push(seen);
    }
    Ok(judged)
}

/// The read-back of `prompt` for images with `features` (blocking).
fn read_back(
    judge: &ClipJudge,
    prompt: &str,
    features: &[Tensor],
) -> crate::error::Result<Option<String>> {
    let reading = reading::read(&judge.clip, &judge.lexicon, prompt)?;
    let shown = reading::weigh_in_images(&judge.clip, prompt, features)?;
    Ok(reading::read_back(&reading, &shown))
}

impl<D: Delivery> Worker<D> {
    /// CLIP's scores of `drawn` for `prompt` and the blocked concepts it
    /// sees; nothing without CLIP.
    pub(super) async fn judge(&self, prompt: &str, drawn: &[Drawn]) -> Result<Judged, EngineError> {
        let Some(clip) = self.clip.clone() else {
            return Ok(Judged::none(drawn.len()));
        };
        let images: Vec<RgbImage> = drawn.iter().map(|d| d.image.clone()).collect();
        // CLIP reads words, not `::` weights.
        let prompt = plain_text(prompt);
        let concepts = self.config.blocked_concepts.clone();
        let threshold = self.config.concept_threshold;
        tokio::task::spawn_blocking(move || {
            judge(&clip.clip, &images, &prompt, &concepts, threshold)
        })
        .await
        .map_err(|e| EngineError::Image(format!("CLIP panicked: {e}")))?
    }

    /// How the prompt was read, and which phrase the shown images show
    /// least; nothing without CLIP. A failure here costs the note, not the
    /// result.
    pub(super) async fn read_back(
        &self,
        prompt: &str,
        judged: &Judged,
        withheld: &[bool],
    ) -> Option<String> {
        let clip = self.clip.clone()?;
        let prompt = plain_text(prompt);
        let shown: Vec<Tensor> = judged
            .features
            .iter()
            .zip(withheld)
            .filter(|(_, w)| !**w)
            .map(|(f, _)| f.clone())
            .collect();
        let read = tokio::task::spawn_blocking(move || read_back(&clip, &prompt, &shown)).await;
        match read {
            Ok(Ok(note)) => note,
            Ok(Err(error)) => {
                tracing::warn!(%error, "the prompt was not read back");
                None
            }
            Err(error) => {
                tracing::warn!(%error, "reading the prompt back panicked");
                None
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scores_are_listed_in_reading_order() {
        for (scores, expected) in [
            (vec![], ""),
            (vec![Some(31.25)], " · CLIP 31.2"),
            (
                vec![Some(28.06), Some(30.4), None, Some(29.96)],
                " · CLIP 28.1 / 30.4 / – / 30.0",
            ),
        ] {
            assert_eq!(scores_note(&scores), expected, "{scores:?}");
        }
    }

    #[test]
    fn selecting_keeps_scores_and_concepts_together() {
        let judged = Judged {
            scores: vec![1.0, 2.0, 3.0],
            concepts: vec![None, Some(("gore".into(), 30.0)), None],
            features: Vec::new(),
        };
        let kept = judged.select(&[2, 1]);
        assert_eq!(kept.scores, [3.0, 2.0]);
        assert_eq!(kept.concepts, [None, Some(("gore".into(), 30.0))]);
        assert_eq!(Judged::none(2).select(&[1]).concepts, [None]);
        assert_eq!(kept.shown(&[false, true]), [Some(3.0), None]);
        assert!(Judged::none(2).shown(&[false, false]).is_empty());
    }
}
