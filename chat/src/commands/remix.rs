//! Remix: a grid's prompt, edited in a form, drawn as a strong variation of
//! one of its images. The Remix button opens the form (a Discord modal, a
//! Slack modal view) prefilled with the grid's /imagine; its submission is
//! the job.

use wordup_queue::{AspectRatio, GRID_IMAGES, ImagineRequest, Job, JobId, Request, VaryStrength};

use super::{Accepted, CommandError, Commands, Invocation, UserError, imagine, press::allowed};
use crate::grammar::{ImagineArgs, MAX_PROMPT_CHARS};

/// The form's field for the prompt, with its parameters.
pub const PROMPT_FIELD: &str = "prompt";
/// The form's field for the image to start from (1–4).
pub const IMAGE_FIELD: &str = "image";
/// The prompt field's limit: a prompt and room for its parameters.
pub const PROMPT_FIELD_CHARS: usize = MAX_PROMPT_CHARS + 500;
/// Longest chain of follow-ups walked back to its /imagine.
const MAX_CHAIN: usize = 32;

/// What the form is prefilled with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemixForm {
    pub job: JobId,
    /// The grid's /imagine as it could be typed.
    pub prompt: String,
}

/// The /imagine text of a stored request: its prompt and the parameters
/// that shape a drawing (not its seed: a remix draws with new ones).
pub fn imagine_text(request: &ImagineRequest) -> String {
    let args = ImagineArgs {
        prompt: request.prompt.clone(),
        negative_prompt: request.negative_prompt.clone(),
        aspect: Some(request.aspect).filter(|a| *a != AspectRatio::SQUARE),
        steps: request.steps,
        guidance: request.guidance,
        style: request.style.clone(),
        draft: request.draft,
        quality: Some(request.quality).filter(|q| *q > 1),
        chaos: Some(request.chaos).filter(|c| *c > 0),
        tile: request.tile,
        ..ImagineArgs::default()
    };
    args.to_string()
}

/// The image number typed in the form, 1–4, as an index.
pub fn image_index(text: &str) -> Result<u8, UserError> {
    text.trim()
        .parse::<u8>()
        .ok()
        .filter(|n| (1..=GRID_IMAGES).contains(n))
        .map(|n| n - 1)
        .ok_or_else(|| UserError::BadImageNumber(text.trim().chars().take(20).collect()))
}

impl Commands {
    /// The form for a Remix press on `job`'s grid, if `presser` may remix it.
    pub async fn remix_form(
        &self,
        invocation: &Invocation,
        job: JobId,
    ) -> Result<RemixForm, CommandError> {
        let parent = self.grid(job).await?;
        let channel = self
            .queue
            .channel_settings(&invocation.origin.platform, &invocation.origin.channel_id)
            .await?;
        allowed(&parent, true, &channel, &invocation.origin.user_id)?;
        let root = self.drawn_for(&parent).await?;
        Ok(RemixForm {
            job,
            prompt: imagine_text(&root),
        })
    }

    /// A submitted Remix form: the edited /imagine (through the grammar,
    /// the blocklist and the channel's defaults) drawn as a strong
    /// variation of image `image` of `job`'s grid.
    pub async fn remix(
        &self,
        invocation: &Invocation,
        job: JobId,
        image: &str,
        prompt: &str,
    ) -> Result<Accepted, CommandError> {
        if let Some(replayed) = self.replayed(&invocation.idempotency_key).await? {
            return Ok(replayed);
        }
        let index = image_index(image)?;
        let args = imagine::check(prompt, &self.config)?;
        imagine::needs_image(&args, false)?;
        let parent = self.grid(job).await?;
        let channel = self
            .queue
            .channel_settings(&invocation.origin.platform, &invocation.origin.channel_id)
            .await?;
        let stored = self.queue.has_image(job, i32::from(index)).await?;
        allowed(&parent, stored, &channel, &invocation.origin.user_id)?;
        let (request, tier, _) = imagine::plan(&args, &channel, &self.config, rand::random(), None);
        let Request::Imagine(remix) = request else {
            return Err(UserError::NotAFollowUp.into());
        };
        if let Some(tokenizer) = &self.config.tokenizer {
            imagine::within_token_limit(&remix, tokenizer)?;
        }
        let request = Request::Vary {
            parent: job,
            index,
            strength: VaryStrength::Strong,
            remix: Some(Box::new(remix)),
        };
        let batch_key = request.kind().to_owned();
        let job = invocation.job(
            &channel,
            invocation.idempotency_key.clone(),
            tier,
            request,
            batch_key,
        );
        self.enqueue_within_quota(&job).await
    }

    async fn grid(&self, job: JobId) -> Result<Job, CommandError> {
        self.queue.job(job).await?.ok_or_else(|| {
            UserError::UnknownGrid {
                days: self.config.retention_days,
            }
            .into()
        })
    }

    /// The /imagine a job drew for: its own, a remix's edited one, or its
    /// chain's root.
    async fn drawn_for(&self, job: &Job) -> Result<ImagineRequest, CommandError> {
        let gone = || UserError::UnknownGrid {
            days: self.config.retention_days,
        };
        let mut request = job.request.clone();
        for _ in 0..MAX_CHAIN {
            match request {
                Request::Imagine(root) => return Ok(root),
                Request::Vary {
                    remix: Some(remix), ..
                } => return Ok(*remix),
                other => {
                    let parent = other.parent().ok_or_else(gone)?;
                    request = self.queue.job(parent).await?.ok_or_else(gone)?.request;
                }
            }
        }
        Err(gone().into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::grammar::parse_imagine;

    #[test]
    fn the_form_holds_the_grids_imagine_without_its_seed() {
        let request = ImagineRequest {
            prompt: "a castle:: winter::2".into(),
            negative_prompt: Some("people".into()),
            aspect: AspectRatio {
                width: 16,
                height: 9,
            },
            seed: 42,
            steps: Some(4),
            guidance: None,
            style: Some("photo".into()),
            images: 4,
            model: None,
            draft: false,
            quality: 2,
            chaos: 30,
            tile: true,
            image_weight: None,
        };
        let text = imagine_text(&request);
        assert_eq!(
            text,
            "a castle:: winter::2 --ar 16:9 --no people --steps 4 --style photo --quality 2 --chaos 30 --tile"
        );
        // It parses back to the same drawing.
        let args = parse_imagine(&text).unwrap();
        assert_eq!(args.prompt, request.prompt);
        assert_eq!(args.aspect, Some(request.aspect));
        assert_eq!(args.seed, None);
        let plain = ImagineRequest {
            aspect: AspectRatio::SQUARE,
            negative_prompt: None,
            steps: None,
            style: None,
            quality: 1,
            chaos: 0,
            tile: false,
            ..request
        };
        assert_eq!(imagine_text(&plain), "a castle:: winter::2");
    }

    #[test]
    fn image_numbers_are_one_to_four() {
        for (text, expected) in [
            ("1", Ok(0)),
            (" 4 ", Ok(3)),
            ("0", Err(UserError::BadImageNumber("0".into()))),
            ("5", Err(UserError::BadImageNumber("5".into()))),
            ("two", Err(UserError::BadImageNumber("two".into()))),
            ("", Err(UserError::BadImageNumber(String::new()))),
        ] {
            assert_eq!(image_index(text), expected, "{text:?}");
        }
    }
}
