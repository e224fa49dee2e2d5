//! The output safety check: which images are withheld, and what the
//! requester is told about them.

use image::RgbImage;
use wordup_queue::{Delivery, Job};

use super::Worker;
use super::judge::Judged;
use super::render::Drawn;
use crate::error::EngineError;

/// Told when nothing is left to post.
pub(super) fn nothing_shown_text(drawn: usize) -> &'static str {
    if drawn == 1 {
        "the image was withheld by the safety check, so nothing was posted"
    } else {
        "all images were withheld by the safety check, so nothing was posted"
    }
}

/// Added to a result's description when some of its images were withheld:
/// " · image 2, 4 withheld by the safety check".
pub(super) fn withheld_note(withheld: &[bool]) -> Option<String> {
    let blocked: Vec<String> = withheld
        .iter()
        .enumerate()
        .filter(|(_, w)| **w)
        .map(|(i, _)| (i + 1).to_string())
        .collect();
    (!blocked.is_empty()).then(|| {
        format!(
            " · image {} withheld by the safety check",
            blocked.join(", ")
        )
    })
}

impl<D: Delivery> Worker<D> {
    /// Which images the safety check withholds: those open_nsfw flags
    /// (unless the destination allows NSFW) and those in which CLIP sees a
    /// blocked concept (an operator's policy, wherever the job came from).
    pub(super) async fn withheld(
        &self,
        job: &Job,
        drawn: &[Drawn],
        judged: &Judged,
    ) -> Result<Vec<bool>, EngineError> {
        let concepts: Vec<bool> = judged.concepts.iter().map(Option::is_some).collect();
        for (i, hit) in judged.concepts.iter().enumerate() {
            if let Some((concept, score)) = hit {
                tracing::info!(
                    image = i + 1,
                    concept,
                    score,
                    "withheld: CLIP sees a blocked concept"
                );
            }
        }
        let Some(safety) = self.safety.clone() else {
            return Ok(concepts);
        };
        if self.delivery.nsfw_allowed(job) {
            return Ok(concepts);
        }
        let images: Vec<RgbImage> = drawn.iter().map(|d| d.image.clone()).collect();
        let threshold = self.config.nsfw_threshold;
        let verdicts = tokio::task::spawn_blocking(move || safety.check(&images, threshold))
            .await
            .map_err(|e| EngineError::Image(format!("safety check panicked: {e}")))??;
        Ok(verdicts
            .iter()
            .zip(concepts)
            .map(|(v, concept)| v.withheld || concept)
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_requester_is_told_which_images_were_withheld() {
        assert_eq!(withheld_note(&[false, false, false, false]), None);
        assert_eq!(
            withheld_note(&[false, true, false, true]).as_deref(),
            Some(" · image 2, 4 withheld by the safety check")
        );
        assert!(nothing_shown_text(1).starts_with("the image was withheld"));
        assert!(nothing_shown_text(4).starts_with("all images were withheld"));
    }
}
