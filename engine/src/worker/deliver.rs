//! The result as a chat platform takes it (the picture, its file fitted to
//! the upload limit, alt text), posted through the [`Delivery`] and recorded
//! so that a retried attempt does not post again.

use image::RgbImage;
use wordup_queue::{Attachment, Delivery, ImagineRequest, Job, JobId, ResultKind, ResultPost};

use super::Worker;
use super::render::{Drawn, Resolved};
use super::settle::Outcome;
use crate::error::EngineError;
use crate::finish::output;

/// The key a job's result post is recorded under.
pub const RESULT_POST: &str = "result";

/// What stands in for a withheld image in a grid.
const WITHHELD_TILE: image::Rgb<u8> = image::Rgb([96, 96, 96]);

/// The picture to post: one image, or the grid with withheld images greyed out.
pub(super) fn picture(
    kind: ResultKind,
    drawn: &[Drawn],
    withheld: &[bool],
) -> Result<RgbImage, EngineError> {
    match kind {
        ResultKind::Upscaled => Ok(drawn[0].image.clone()),
        ResultKind::Grid => grid(drawn.iter().map(|d| &d.image), withheld),
    }
}

/// Images in a 2×2 grid, withheld ones greyed out.
pub(super) fn grid<'a>(
    images: impl Iterator<Item = &'a RgbImage>,
    withheld: &[bool],
) -> Result<RgbImage, EngineError> {
    let tiles: Vec<RgbImage> = images
        .zip(withheld)
        .map(|(image, w)| {
            if *w {
                RgbImage::from_pixel(image.width(), image.height(), WITHHELD_TILE)
            } else {
                image.clone()
            }
        })
        .collect();
    output::grid(&tiles, 2)
}

/// The attachment's alt text, with CLIP's scores when there are any, within
/// both platforms' limits (Slack's 1000 characters is the smaller).
pub(super) fn alt_text(kind: ResultKind, prompt: &str, scores: &[Option<f32>]) -> String {
    let what = match kind {
        ResultKind::Grid => output::GRID_ALT,
        ResultKind::Upscaled => output::IMAGE_ALT,
    };
    if scores.is_empty() {
        return output::capped_alt(what, prompt);
    }
    let plural = if scores.len() == 1 { "" } else { "s" };
    output::capped_alt(
        &format!("{what} (CLIP score{plural} {})", listed(scores, ", ")),
        prompt,
    )
}

/// Scores to one decimal, "–" for an image not shown.
pub(super) fn listed(scores: &[Option<f32>], separator: &str) -> String {
    scores
        .iter()
        .map(|s| s.map_or("–".to_owned(), |s| format!("{s:.1}")))
        .collect::<Vec<_>>()
        .join(separator)
}

/// "wordup-42-grid.png"
pub(super) fn filename(job: JobId, kind: ResultKind, extension: &str) -> String {
    let stem = match kind {
        ResultKind::Grid => "grid",
        ResultKind::Upscaled => "image",
    };
    format!("wordup-{job}-{stem}.{extension}")
}

impl<D: Delivery> Worker<D> {
    /// The result as a post: the picture as a file within the job's upload
    /// limit, with the provenance of its first image.
    #[allow(clippy::too_many_arguments)]
    pub(super) fn result_post(
        &self,
        job: &Job,
        root: &ImagineRequest,
        resolved: &Resolved,
        what: String,
        kind: ResultKind,
        picture: &RgbImage,
        first: &Drawn,
        scores: &[Option<f32>],
    ) -> Result<ResultPost, EngineError> {
        let provenance = self.provenance(resolved, first, scores.first().copied().flatten());
        let png = output::encode_png(picture, &provenance)?;
        let limit = usize::try_from(self.delivery.attachment_limit(job)).unwrap_or(usize::MAX);
        let fitted = output::fit_to_limit(png, picture, limit, &provenance.xmp())?;
        Ok(ResultPost {
            kind,
            prompt: root.prompt.clone(),
            what,
            reading: None,
            attachment: Attachment {
                filename: filename(job.id, kind, fitted.format.extension()),
                mime: fitted.format.mime(),
                bytes: fitted.bytes,
                alt: alt_text(kind, &root.prompt, scores),
            },
        })
    }

    /// Posts the result and records where it went.
    pub(super) async fn deliver(&self, job: &Job, post: &ResultPost) -> Outcome {
        let timed = std::time::Instant::now();
        let posted = match self.delivery.post(job, post).await {
            Ok(posted) => posted,
            Err(e) => {
                self.metrics.delivery_failures.inc();
                return e.into();
            }
        };
        self.metrics.observe_stage("delivering", timed.elapsed());
        match self
            .queue
            .record_post(
                job.id,
                RESULT_POST,
                &job.origin.platform,
                &posted.channel_id,
                &posted.message_id,
            )
            .await
        {
            Ok(_) => Outcome::Done,
            Err(e) => e.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drawn(value: u8) -> Drawn {
        Drawn {
            image: RgbImage::from_pixel(4, 4, image::Rgb([value; 3])),
            seed: u64::from(value),
            draft_latents: None,
        }
    }

    #[test]
    fn a_grid_greys_out_withheld_images_and_an_upscale_is_the_image() {
        let images: Vec<Drawn> = (1..=4).map(|i| drawn(i * 50)).collect();
        let grid = picture(ResultKind::Grid, &images, &[false, true, false, false]).unwrap();
        assert_eq!(grid.dimensions(), (8, 8));
        assert_eq!(grid.get_pixel(0, 0), &image::Rgb([50; 3]));
        assert_eq!(grid.get_pixel(4, 0), &WITHHELD_TILE);
        assert_eq!(grid.get_pixel(4, 4), &image::Rgb([200; 3]));
        let single = picture(ResultKind::Upscaled, &images[..1], &[false]).unwrap();
        assert_eq!(single.dimensions(), (4, 4));
    }

    #[test]
    fn files_are_named_by_job_and_kind() {
        assert_eq!(
            filename(JobId(42), ResultKind::Grid, "png"),
            "wordup-42-grid.png"
        );
        assert_eq!(
            filename(JobId(7), ResultKind::Upscaled, "webp"),
            "wordup-7-image.webp"
        );
    }

    #[test]
    fn alt_text_fits_every_platform_whatever_the_prompt() {
        let long = "word ".repeat(400);
        for kind in [ResultKind::Grid, ResultKind::Upscaled] {
            let scores = [Some(31.0); 4];
            assert!(
                alt_text(kind, &long, &scores).chars().count() <= 1000,
                "{kind:?}"
            );
        }
        assert_eq!(
            alt_text(ResultKind::Grid, "a fox", &[]),
            "Four AI-generated images in a grid: a fox"
        );
        assert_eq!(
            alt_text(ResultKind::Upscaled, "a fox", &[]),
            "AI-generated image: a fox"
        );
        assert_eq!(
            alt_text(ResultKind::Upscaled, "a fox", &[Some(30.25)]),
            "AI-generated image (CLIP score 30.2): a fox"
        );
        assert_eq!(
            alt_text(
                ResultKind::Grid,
                "a fox",
                &[Some(28.06), None, Some(25.0), Some(29.96)]
            ),
            "Four AI-generated images in a grid (CLIP scores 28.1, –, 25.0, 30.0): a fox"
        );
    }
}
