//! /imagine: parse, check the policy and quotas, enqueue.

use image::RgbImage;
use wordup_queue::style::{apply_style, style};
use wordup_queue::{AspectRatio, ChannelSettings, GRID_IMAGES, ImagineRequest, Request, Tier};
use wordup_tokenizer::ClipTokenizer;

use super::describe::kept_png;
use super::{Accepted, CommandConfig, CommandError, Commands, Invocation, UserError};
use crate::grammar::{self, ImagineArgs};

/// `--iw` when a prompt's image has none: the image and the words count alike.
pub const DEFAULT_IMAGE_WEIGHT: f32 = 1.0;

/// Aspect ratios an image prompt's shape is rounded to when `--ar` is not given.
const IMAGE_ASPECTS: [(u32, u32); 11] = [
    (1, 1),
    (5, 4),
    (4, 5),
    (4, 3),
    (3, 4),
    (3, 2),
    (2, 3),
    (16, 9),
    (9, 16),
    (2, 1),
    (1, 2),
];

/// The aspect ratio nearest an image's shape (by the log of the ratio).
pub fn nearest_aspect((width, height): (u32, u32)) -> AspectRatio {
    let ratio = (f64::from(width.max(1)) / f64::from(height.max(1))).ln();
    let (width, height) = IMAGE_ASPECTS
        .into_iter()
        .min_by(|a, b| {
            let off = |(w, h): (u32, u32)| (ratio - (f64::from(w) / f64::from(h)).ln()).abs();
            off(*a).total_cmp(&off(*b))
        })
        .unwrap_or((1, 1));
    AspectRatio { width, height }
}

/// What to enqueue for parsed arguments in a channel. `random_seed` is used
/// when the prompt names none; `image` is the size of the prompt's image,
/// when it has one.
pub fn plan(
    args: &ImagineArgs,
    channel: &ChannelSettings,
    config: &CommandConfig,
    random_seed: u32,
    image: Option<(u32, u32)>,
) -> (Request, Tier, String) {
    let aspect = args
        .aspect
        .or(image.map(nearest_aspect))
        .unwrap_or(AspectRatio::SQUARE);
    let request = ImagineRequest {
        prompt: args.prompt.clone(),
        negative_prompt: args.negative_prompt.clone(),
        aspect,
        seed: args.seed.unwrap_or(u64::from(random_seed)),
        steps: args.steps,
        guidance: args.guidance,
        style: args.style.clone().or_else(|| channel.default_style.clone()),
        images: u32::from(GRID_IMAGES),
        model: None,
        draft: args.draft,
        quality: args.quality.or(channel.default_quality).unwrap_or(1),
        chaos: args.chaos.unwrap_or(0),
        tile: args.tile,
        image_weight: image.map(|_| args.image_weight.unwrap_or(DEFAULT_IMAGE_WEIGHT)),
    };
    let tier = args
        .tier
        .or(channel.default_tier)
        .unwrap_or(config.default_tier);
    let steps = args
        .steps
        .map_or_else(|| "default".to_owned(), |s| s.to_string());
    // Jobs claimed together could share one decode only with the same
    // decoder: a draft's key differs from the full one's.
    let decoder = if args.draft { ":draft" } else { "" };
    // Tiled convolutions and img2img from an image draw apart from the rest.
    let tile = if args.tile { ":tile" } else { "" };
    let from_image = if image.is_some() { ":image" } else { "" };
    let batch_key = format!(
        "imagine:{}x{}:{steps}{decoder}{tile}{from_image}",
        aspect.width, aspect.height
    );
    (Request::Imagine(request), tier, batch_key)
}

/// Checks `/imagine`'s text without touching the database: its
/// permutations expanded, each prompt through the grammar and the
/// blocklist. One prompt for text without braces.
pub fn check_all(text: &str, config: &CommandConfig) -> Result<Vec<ImagineArgs>, UserError> {
    let prompts = grammar::expand_permutations(text)?;
    if prompts.len() == 1 {
        return Ok(vec![check(text, config)?]);
    }
    prompts
        .iter()
        .map(|prompt| {
            check(prompt, config).map_err(|error| UserError::InPermutation {
                prompt: prompt.clone(),
                error: Box::new(error),
            })
        })
        .collect()
}

/// The jobs of a permutation prompt: those queued, in order, and the one
/// that was refused, if any (a quota reached part way: the rest are not tried).
#[derive(Debug)]
pub struct Group {
    /// Each prompt as typed (canonical form, parameters included) and its job.
    pub queued: Vec<(String, Accepted)>,
    pub refused: Option<(String, CommandError)>,
}

/// Refuses `--iw` on a prompt without an image.
pub fn needs_image(args: &ImagineArgs, has_image: bool) -> Result<(), UserError> {
    if args.image_weight.is_some() && !has_image {
        return Err(UserError::ImageWeightWithoutImage);
    }
    Ok(())
}

/// The idempotency key of the `index`th job (from 0) of a permutation prompt.
pub fn member_key(key: &str, index: usize) -> String {
    format!("{key}#{}", index + 1)
}

/// Checks the prompt without touching the database: grammar and blocklist.
pub fn check(text: &str, config: &CommandConfig) -> Result<ImagineArgs, UserError> {
    let args = grammar::parse_imagine(text)?;
    if let Some(term) = config.blocklist.find(&args.prompt) {
        return Err(UserError::BlockedTerm(term.to_owned()));
    }
    Ok(args)
}

/// Refuses a prompt (or negative prompt) that the engine would refuse for
/// its length, counted as the engine reads it: with its style applied, by
/// the model's own tokenizer. Checked before the job is enqueued, so an
/// over-long prompt costs no quota.
pub fn within_token_limit(
    request: &ImagineRequest,
    tokenizer: &ClipTokenizer,
) -> Result<(), UserError> {
    let preset = request.style.as_deref().and_then(style);
    let (prompt, negative) =
        apply_style(preset, &request.prompt, request.negative_prompt.as_deref());
    let limit = tokenizer.token_limit();
    for text in std::iter::once(prompt.as_str()).chain(negative.as_deref()) {
        // A text the tokenizer cannot read is left to the engine to report.
        if let Ok(tokens) = tokenizer.count(text)
            && tokens > limit
        {
            return Err(UserError::TooManyTokens { tokens, limit });
        }
    }
    Ok(())
}

impl Commands {
    /// /imagine, with the prompt's image when it has one (kept as the
    /// job's input before the job exists, so no claim finds it missing).
    pub async fn imagine(
        &self,
        invocation: &Invocation,
        args: &ImagineArgs,
        image: Option<&RgbImage>,
    ) -> Result<Accepted, CommandError> {
        needs_image(args, image.is_some())?;
        if let Some(replayed) = self.replayed(&invocation.idempotency_key).await? {
            return Ok(replayed);
        }
        let channel = self
            .queue
            .channel_settings(&invocation.origin.platform, &invocation.origin.channel_id)
            .await?;
        let (request, tier, batch_key) = plan(
            args,
            &channel,
            &self.config,
            rand::random(),
            image.map(RgbImage::dimensions),
        );
        if let (Some(tokenizer), Request::Imagine(imagine)) = (&self.config.tokenizer, &request) {
            within_token_limit(imagine, tokenizer)?;
        }
        if let Some(image) = image {
            self.queue
                .put_input(&invocation.idempotency_key, &kept_png(image)?)
                .await?;
        }
        let job = invocation.job(
            &channel,
            invocation.idempotency_key.clone(),
            tier,
            request,
            batch_key,
        );
        self.enqueue_within_quota(&job).await
    }

    /// A permutation prompt: one job per expanded prompt, each under its
    /// own key and through the quota like any /imagine. Every prompt's
    /// token count is checked before the first is enqueued.
    pub async fn imagine_group(
        &self,
        invocation: &Invocation,
        all: &[ImagineArgs],
        image: Option<&RgbImage>,
    ) -> Result<Group, CommandError> {
        for args in all {
            needs_image(args, image.is_some())?;
        }
        let kept = image.map(kept_png).transpose()?;
        let channel = self
            .queue
            .channel_settings(&invocation.origin.platform, &invocation.origin.channel_id)
            .await?;
        let mut planned = Vec::with_capacity(all.len());
        for (index, args) in all.iter().enumerate() {
            let (request, tier, batch_key) = plan(
                args,
                &channel,
                &self.config,
                rand::random(),
                image.map(RgbImage::dimensions),
            );
            if let (Some(tokenizer), Request::Imagine(imagine)) = (&self.config.tokenizer, &request)
            {
                within_token_limit(imagine, tokenizer).map_err(|error| {
                    UserError::InPermutation {
                        prompt: args.prompt.clone(),
                        error: Box::new(error),
                    }
                })?;
            }
            let key = member_key(&invocation.idempotency_key, index);
            planned.push((args.to_string(), key, tier, request, batch_key));
        }
        let mut group = Group {
            queued: Vec::with_capacity(all.len()),
            refused: None,
        };
        for (prompt, key, tier, request, batch_key) in planned {
            let outcome = match self.replayed(&key).await? {
                Some(replayed) => Ok(replayed),
                None => {
                    if let Some(png) = &kept {
                        self.queue.put_input(&key, png).await?;
                    }
                    let job = invocation.job(&channel, key, tier, request, batch_key);
                    self.enqueue_within_quota(&job).await
                }
            };
            match outcome {
                Ok(accepted) => group.queued.push((prompt, accepted)),
                Err(e) if group.queued.is_empty() => return Err(e),
                Err(e) => {
                    group.refused = Some((prompt, e));
                    break;
                }
            }
        }
        Ok(group)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::policy::Blocklist;

    fn config() -> CommandConfig {
        CommandConfig {
            max_active_per_user: 5,
            max_jobs_per_day: 50,
            default_tier: Tier::Fast,
            blocklist: Blocklist::parse("gore"),
            retention_days: 30.0,
            tokenizer: None,
            boards: None,
        }
    }

    #[test]
    fn over_long_prompts_are_refused_with_their_count() {
        let dir = concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../engine/tests/fixtures/clip-tokenizer"
        );
        let tokenizer = ClipTokenizer::from_dir(std::path::Path::new(dir)).unwrap();
        let request = |prompt: String, style: Option<&str>| ImagineRequest {
            prompt,
            negative_prompt: None,
            aspect: AspectRatio::SQUARE,
            seed: 1,
            steps: None,
            guidance: None,
            style: style.map(str::to_owned),
            images: 4,
            model: None,
            draft: false,
            quality: 1,
            chaos: 0,
            tile: false,
            image_weight: None,
        };
        // "fox" is one token of CLIP's vocabulary.
        assert_eq!(
            within_token_limit(&request("fox ".repeat(300), None), &tokenizer),
            Ok(())
        );
        assert_eq!(
            within_token_limit(&request("fox ".repeat(301), None), &tokenizer),
            Err(UserError::TooManyTokens {
                tokens: 301,
                limit: 300
            })
        );
        // The style's words count too, as the engine reads them.
        assert!(matches!(
            within_token_limit(&request("fox ".repeat(299), Some("photo")), &tokenizer),
            Err(UserError::TooManyTokens { .. })
        ));
    }

    #[test]
    fn plans_use_channel_defaults_under_the_prompts_own_choices() {
        let channel = ChannelSettings {
            default_style: Some("anime".into()),
            default_tier: Some(Tier::Relax),
            default_quality: Some(2),
            ..ChannelSettings::default()
        };
        for (text, style, tier, seed, batch_key, draft, quality) in [
            (
                "a cat",
                Some("anime"),
                Tier::Relax,
                77,
                "imagine:1x1:default",
                false,
                2,
            ),
            (
                "a cat --style photo --fast --seed 3 --ar 16:9 --steps 2 --quality 4",
                Some("photo"),
                Tier::Fast,
                3,
                "imagine:16x9:2",
                false,
                4,
            ),
            (
                "a cat --draft --ar 16:9 --steps 2 --quality 1",
                Some("anime"),
                Tier::Relax,
                77,
                "imagine:16x9:2:draft",
                true,
                1,
            ),
        ] {
            let args = check(text, &config()).unwrap();
            let (request, got_tier, key) = plan(&args, &channel, &config(), 77, None);
            let Request::Imagine(request) = request else {
                panic!("not an imagine")
            };
            assert_eq!(request.style.as_deref(), style, "{text}");
            assert_eq!(request.seed, seed, "{text}");
            assert_eq!(request.images, u32::from(GRID_IMAGES));
            assert_eq!(request.draft, draft, "{text}");
            assert_eq!(request.quality, quality, "{text}");
            assert_eq!((got_tier, key.as_str()), (tier, batch_key), "{text}");
        }
        let (request, tier, _) = plan(
            &check("x", &config()).unwrap(),
            &ChannelSettings::default(),
            &config(),
            1,
            None,
        );
        assert_eq!(tier, Tier::Fast);
        assert!(matches!(request, Request::Imagine(r) if r.quality == 1));
    }

    #[test]
    fn blocked_terms_are_refused_before_the_queue() {
        assert_eq!(
            check("so much GORE", &config()),
            Err(UserError::BlockedTerm("gore".into()))
        );
        assert!(matches!(
            check("a --bad", &config()),
            Err(UserError::Grammar(_))
        ));
    }
}
