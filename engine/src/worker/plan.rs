//! What a job draws, with its inputs fetched from the queue: the /imagine
//! request at the root of its chain and, for follow-ups, the parent's image
//! (for a draft image, its latents, to decode with the full VAE).

use image::RgbImage;
use wordup_queue::{
    Delivery, GRID_IMAGES, ImagineRequest, Job, JobId, Request, ResultKind, UpscaleMode,
    VaryStrength,
};

use super::Worker;
use super::render::job_seed;
use super::settle::Outcome;
use crate::sd::pipeline::Decoder;

/// Longest chain of follow-ups walked back to its /imagine.
const MAX_CHAIN: usize = 32;

/// What a job draws, with its inputs fetched.
pub(super) struct Plan {
    /// The /imagine at the root of the job's chain.
    pub root: ImagineRequest,
    pub draw: Draw,
    /// What the result is, for its message ("seed 42 · 16:9").
    pub what: String,
}

pub(super) enum Draw {
    Grid {
        first_seed: u64,
        decoder: Decoder,
        /// Images drawn: the grid's four, or more for CLIP to pick from
        /// (`--quality`).
        candidates: u32,
        /// The prompt's image, for an /imagine with one: drawn from by img2img.
        image: Option<RgbImage>,
    },
    Variations {
        source: Source,
        strength: VaryStrength,
        first_seed: u64,
    },
    Upscale {
        source: Source,
        mode: UpscaleMode,
        seed: u64,
    },
}

impl Draw {
    pub fn kind(&self) -> ResultKind {
        match self {
            Draw::Grid { .. } | Draw::Variations { .. } => ResultKind::Grid,
            Draw::Upscale { .. } => ResultKind::Upscaled,
        }
    }
}

/// A follow-up's input: the parent's image.
pub(super) enum Source {
    /// As stored.
    Image(RgbImage),
    /// A draft image's latents, decoded with the model's full VAE before
    /// use: an upscale or variation of a draft starts from full quality.
    DraftLatents(Vec<u8>),
}

/// What a grid for `root` is decoded with, and what its message adds about
/// that. A `--draft` job on an engine without a draft decoder is decoded in
/// full with a note, not failed: the requester gets pictures either way,
/// only slower, and need not ask again.
pub(super) fn grid_decoder(
    root: &ImagineRequest,
    draft_available: bool,
) -> (Decoder, &'static str) {
    match (root.draft, draft_available) {
        (false, _) => (Decoder::Full, ""),
        (true, true) => (Decoder::Draft, " · draft"),
        (true, false) => (
            Decoder::Full,
            " · full quality: no draft decoder on this engine",
        ),
    }
}

/// What a grid drawn from an image adds to its message: the image weight,
/// and that `--draft` does not apply (img2img decodes in full).
fn image_note(root: &ImagineRequest) -> &'static str {
    if root.draft {
        " · from your image · full quality: --draft is for prompts without an image"
    } else {
        " · from your image"
    }
}

/// Candidates drawn per image shown for `--quality K`, and what the message
/// adds about it: K with CLIP to pick the best, else 1 with a note (the
/// requester still gets a grid).
pub(super) fn grid_candidates(quality: u32, clip_available: bool) -> (u32, String) {
    let shown = u32::from(GRID_IMAGES);
    match (quality, clip_available) {
        (0 | 1, _) => (1, String::new()),
        (k, true) => (k, format!(" · best {shown} of {} by CLIP", k * shown)),
        (_, false) => (1, " · --quality skipped: no CLIP on this engine".to_owned()),
    }
}

/// The first seed a job draws with: its own for /imagine, else one derived
/// from the job id (the same on every attempt).
pub(super) fn first_seed(job: &Job) -> u64 {
    match &job.request {
        Request::Imagine(request) => request.seed,
        _ => job_seed(job.id.0),
    }
}

/// What a job's result is, as its message says.
pub(super) fn what(request: &Request, first_seed: u64) -> String {
    match request {
        Request::Imagine(r) => format!("seed {} · {}:{}", r.seed, r.aspect.width, r.aspect.height),
        Request::Reroll { .. } => format!("re-roll · seed {first_seed}"),
        Request::Vary {
            index,
            remix: Some(_),
            ..
        } => format!("remix of image {}", index + 1),
        Request::Vary {
            index, strength, ..
        } => format!(
            "{} variations of image {}",
            match strength {
                VaryStrength::Subtle => "subtle",
                VaryStrength::Strong => "strong",
            },
            index + 1
        ),
        Request::Upscale { index, mode, .. } => match mode {
            UpscaleMode::Plain => format!("image {} upscaled ×4", index + 1),
            UpscaleMode::Subtle => format!("image {} upscaled (subtle)", index + 1),
            UpscaleMode::Creative => format!("image {} upscaled (creative)", index + 1),
        },
        Request::Analyze { .. } => "the prompt weighed".to_owned(),
        Request::Describe {} => "the image described".to_owned(),
        Request::Unreadable { .. } => "a job this engine cannot read".to_owned(),
    }
}

impl<D: Delivery> Worker<D> {
    /// Fetches a job's inputs.
    pub(super) async fn plan(&self, job: &Job) -> Result<Plan, Outcome> {
        let seed = first_seed(job);
        let mut what = what(&job.request, seed);
        let (root, draw) = match &job.request {
            // The claim fails these; a job read back otherwise is failed here.
            Request::Unreadable { error } => {
                return Err(Outcome::permanent(format!(
                    "{}: {error}",
                    wordup_queue::UNREADABLE_JOB
                )));
            }
            Request::Imagine(request) => {
                let image = self.prompt_image(job, request).await?;
                self.grid(request.clone(), seed, image, &mut what)
            }
            Request::Analyze { .. } | Request::Describe {} => {
                return Err(Outcome::permanent("an answer in text draws nothing"));
            }
            // A re-roll draws its chain's /imagine again, --draft and its
            // image included.
            Request::Reroll { parent } => {
                let root = self.root_job(*parent).await?;
                let Request::Imagine(request) = &root.request else {
                    return Err(Outcome::permanent("the original job cannot be read"));
                };
                let image = self.prompt_image(&root, request).await?;
                self.grid(request.clone(), seed, image, &mut what)
            }
            // A remix draws the variation for its edited /imagine.
            Request::Vary {
                parent,
                index,
                strength,
                remix,
            } => (
                match remix {
                    Some(remix) => (**remix).clone(),
                    None => self.root_request(*parent).await?,
                },
                Draw::Variations {
                    source: self.parent_source(*parent, *index).await?,
                    strength: *strength,
                    first_seed: seed,
                },
            ),
            Request::Upscale {
                parent,
                index,
                mode,
            } => (
                self.root_request(*parent).await?,
                Draw::Upscale {
                    source: self.parent_source(*parent, *index).await?,
                    mode: *mode,
                    seed,
                },
            ),
        };
        Ok(Plan { root, draw, what })
    }

    /// A grid for `root`, with what its decoder and `--quality` add to the
    /// message.
    fn grid(
        &self,
        root: ImagineRequest,
        first_seed: u64,
        image: Option<RgbImage>,
        what: &mut String,
    ) -> (ImagineRequest, Draw) {
        let (decoder, note) = match &image {
            Some(_) => (Decoder::Full, image_note(&root)),
            None => grid_decoder(&root, self.models.pipeline.has_draft_decoder()),
        };
        what.push_str(note);
        let (per_image, note) = grid_candidates(root.quality, self.clip.is_some());
        what.push_str(&note);
        (
            root,
            Draw::Grid {
                first_seed,
                decoder,
                candidates: u32::from(GRID_IMAGES) * per_image,
                image,
            },
        )
    }

    /// The image of an /imagine that has one: its input, kept under its
    /// idempotency key when it was asked for.
    async fn prompt_image(
        &self,
        job: &Job,
        request: &ImagineRequest,
    ) -> Result<Option<RgbImage>, Outcome> {
        if request.image_weight.is_none() {
            return Ok(None);
        }
        let stored = match &job.idempotency_key {
            Some(key) => self.queue.input(key).await?,
            None => None,
        };
        let Some(png) = stored else {
            return Err(Outcome::permanent(
                "the prompt's image is no longer available (past retention)",
            ));
        };
        image::load_from_memory(&png)
            .map(|i| Some(i.to_rgb8()))
            .map_err(|e| Outcome::permanent(format!("the prompt's image is unreadable: {e}")))
    }

    /// The /imagine request at the root of a chain of follow-ups.
    async fn root_request(&self, id: JobId) -> Result<ImagineRequest, Outcome> {
        match self.root_job(id).await?.request {
            Request::Imagine(request) => Ok(request),
            _ => Err(Outcome::permanent("the original job cannot be read")),
        }
    }

    /// The /imagine job at the root of a chain of follow-ups.
    async fn root_job(&self, mut id: JobId) -> Result<Job, Outcome> {
        for _ in 0..MAX_CHAIN {
            let Some(job) = self.queue.job(id).await? else {
                return Err(Outcome::permanent(
                    "the original job is no longer available (past retention)",
                ));
            };
            match &job.request {
                Request::Imagine(_) => return Ok(job),
                Request::Unreadable { .. } => {
                    return Err(Outcome::permanent("the original job cannot be read"));
                }
                other => match other.parent() {
                    Some(parent) => id = parent,
                    None => break,
                },
            }
        }
        Err(Outcome::permanent("the chain of follow-ups is too long"))
    }

    /// The image a follow-up works from. A draft image's latents are kept
    /// with it (`job_images.draft_latents`) and decoded again with the full
    /// VAE, rather than the draft's generation re-run without `--draft`:
    /// that is one VAE pass instead of the text encoder, every UNet step and
    /// the VAE, and it is exactly the picture the draft previewed even when
    /// another engine (another device or dtype) takes the follow-up, where a
    /// re-run could drift.
    async fn parent_source(&self, parent: JobId, index: u8) -> Result<Source, Outcome> {
        let Some(stored) = self.queue.image(parent, i32::from(index)).await? else {
            return Err(Outcome::permanent(format!(
                "image {} of job {parent} is not available",
                index + 1
            )));
        };
        if let Some(latents) = stored.draft_latents {
            return Ok(Source::DraftLatents(latents));
        }
        image::load_from_memory(&stored.png)
            .map(|i| Source::Image(i.to_rgb8()))
            .map_err(|e| Outcome::permanent(format!("stored image is unreadable: {e}")))
    }
}

#[cfg(test)]
mod tests {
    use wordup_queue::AspectRatio;

    use super::*;

    #[test]
    fn each_kind_of_job_says_what_it_drew() {
        let parent = JobId(3);
        let imagine = Request::Imagine(ImagineRequest {
            prompt: "a fox".into(),
            negative_prompt: None,
            aspect: AspectRatio {
                width: 16,
                height: 9,
            },
            seed: 42,
            steps: None,
            guidance: None,
            style: None,
            images: 4,
            model: None,
            draft: false,
            quality: 1,
            chaos: 0,
            tile: false,
            image_weight: None,
        });
        for (request, expected) in [
            (imagine, "seed 42 · 16:9"),
            (Request::Reroll { parent }, "re-roll · seed 7"),
            (
                Request::Vary {
                    parent,
                    index: 1,
                    strength: VaryStrength::Subtle,
                    remix: None,
                },
                "subtle variations of image 2",
            ),
            (
                Request::Upscale {
                    parent,
                    index: 3,
                    mode: UpscaleMode::Plain,
                },
                "image 4 upscaled ×4",
            ),
            (
                Request::Upscale {
                    parent,
                    index: 0,
                    mode: UpscaleMode::Creative,
                },
                "image 1 upscaled (creative)",
            ),
        ] {
            assert_eq!(what(&request, 7), expected);
        }
    }

    #[test]
    fn quality_draws_more_candidates_only_with_clip_to_pick() {
        for (quality, clip, expected) in [
            (1, true, (1, "")),
            (0, false, (1, "")),
            (2, true, (2, " · best 4 of 8 by CLIP")),
            (4, true, (4, " · best 4 of 16 by CLIP")),
            (
                3,
                false,
                (1, " · --quality skipped: no CLIP on this engine"),
            ),
        ] {
            let (per_image, note) = grid_candidates(quality, clip);
            assert_eq!((per_image, note.as_str()), expected, "{quality} {clip}");
        }
    }

    #[test]
    fn a_draft_grid_is_drawn_with_the_draft_decoder_where_there_is_one() {
        let request = |draft| ImagineRequest {
            prompt: "a fox".into(),
            negative_prompt: None,
            aspect: AspectRatio::SQUARE,
            seed: 1,
            steps: None,
            guidance: None,
            style: None,
            images: 4,
            model: None,
            draft,
            quality: 1,
            chaos: 0,
            tile: false,
            image_weight: None,
        };
        assert_eq!(grid_decoder(&request(false), true), (Decoder::Full, ""));
        assert_eq!(grid_decoder(&request(false), false), (Decoder::Full, ""));
        assert_eq!(
            grid_decoder(&request(true), true),
            (Decoder::Draft, " · draft")
        );
        let (decoder, note) = grid_decoder(&request(true), false);
        assert_eq!(decoder, Decoder::Full);
        assert!(note.contains("no draft decoder"), "{note}");
    }
}
