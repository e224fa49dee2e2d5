//! What each kind of job draws: /imagine and re-roll grids, variations of
//! one image, upscales. Synchronous and CPU/GPU-bound: the worker runs it on
//! a blocking thread.

use image::RgbImage;
use wordup_queue::prompt::edit_parts;
use wordup_queue::style::{apply_style, style};
use wordup_queue::{GRID_IMAGES, ImagineRequest, UpscaleMode, VaryStrength};

use crate::error::{EngineError, Result};
use crate::finish::refine;
use crate::finish::upscale::{Tiling, Upscaler};
use crate::ops::conv::PaddingMode;
use crate::sd::pipeline::{Decoder, Drawing, Generation, ProgressFn, StableDiffusion, Stage};
use crate::sd::scheduler::TimestepSpacing;
use crate::sd::size;
use crate::sd::{images, latents};

/// img2img strengths of V buttons: how far a variation may wander.
pub const VARY_SUBTLE_STRENGTH: f64 = 0.35;
pub const VARY_STRONG_STRENGTH: f64 = 0.7;

/// The models a worker holds.
pub struct Models {
    pub pipeline: StableDiffusion,
    /// `None` when no upscaler weights are configured: upscales then fail
    /// with a message saying so.
    pub upscaler: Option<Upscaler>,
    pub tiling: Tiling,
}

/// One image a job made, with the seed that made it.
#[derive(Debug, Clone)]
pub struct Drawn {
    pub image: RgbImage,
    pub seed: u64,
    /// Set when the draft decoder made the image: the latents it was
    /// decoded from ([`latents::to_bytes`]), kept for a full decode later.
    pub draft_latents: Option<Vec<u8>>,
}

impl Drawn {
    /// The decoder that made the image.
    pub fn decoder(&self) -> Decoder {
        if self.draft_latents.is_some() {
            Decoder::Draft
        } else {
            Decoder::Full
        }
    }
}

/// What grids must share to be drawn in one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchShape {
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    /// Classifier-free guidance on (any scale above 1).
    pub guided: bool,
    pub tile: bool,
    pub decoder: Decoder,
    /// Chunks of 77 tokens in the conditioning.
    pub chunks: usize,
}

/// `count` seeds from `first_seed` on, one per image.
fn seeds_from(first_seed: u64, count: u32) -> Vec<u64> {
    (0..u64::from(count))
        .map(|i| first_seed.wrapping_add(i))
        .collect()
}

/// A drawing's images with their seeds; a draft's keep their latents.
fn drawn_images(drawing: &Drawing, seeds: &[u64], decoder: Decoder) -> Result<Vec<Drawn>> {
    images::to_rgb(&drawing.images)?
        .into_iter()
        .zip(seeds)
        .enumerate()
        .map(|(i, (image, &seed))| {
            let draft_latents = match decoder {
                Decoder::Draft => Some(latents::to_bytes(&drawing.latents.get(i)?)?),
                Decoder::Full => None,
            };
            Ok(Drawn {
                image,
                seed,
                draft_latents,
            })
        })
        .collect()
}

/// Prompt, negative prompt, steps and guidance resolved against the model.
#[derive(Debug, Clone, PartialEq)]
pub struct Resolved {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub steps: usize,
    pub guidance: f64,
}

/// Steps and guidance where a request names none, by model kind: distilled
/// (trailing-spacing, SD-Turbo-like) models want 1 step and no guidance;
/// others 25 steps at 7.5.
pub fn default_steps_and_guidance(pipeline: &StableDiffusion) -> (usize, f64) {
    if pipeline.scheduler_config.timestep_spacing == TimestepSpacing::Trailing {
        (1, 0.0)
    } else {
        (25, 7.5)
    }
}

impl Models {
    /// Prompt, steps and guidance for a request: its style applied (to
    /// each part of a weighted prompt, so that every part is drawn in it),
    /// and the model's defaults where it names none.
    pub fn resolve(&self, request: &ImagineRequest) -> Resolved {
        let (steps, guidance) = default_steps_and_guidance(&self.pipeline);
        let preset = request.style.as_deref().and_then(style);
        // Without a style the prompt stays as written, weights and all.
        let prompt = match preset {
            Some(_) => edit_parts(&request.prompt, |text| apply_style(preset, text, None).0),
            None => request.prompt.clone(),
        };
        let (_, negative_prompt) =
            apply_style(preset, &request.prompt, request.negative_prompt.as_deref());
        Resolved {
            prompt,
            negative_prompt,
            steps: request.steps.map_or(steps, |s| s as usize),
            guidance: request.guidance.map_or(guidance, f64::from),
        }
    }

    fn native_budget(&self) -> u32 {
        let side = self.pipeline.native_side() as u32;
        side * side
    }

    /// A grid's images for a prompt: `count` images from `first_seed` on,
    /// decoded by `decoder` (draft images keep their latents). Drawn a
    /// grid's worth at a time, so that `--quality`'s extra candidates cost
    /// time, not a larger batch's memory; each seed draws the same image
    /// whatever batch it is in.
    pub fn imagine(
        &self,
        request: &ImagineRequest,
        first_seed: u64,
        count: u32,
        decoder: Decoder,
        progress: &mut ProgressFn,
    ) -> Result<Vec<Drawn>> {
        let seeds = seeds_from(first_seed, count);
        let mut drawn = Vec::with_capacity(seeds.len());
        for batch in seeds.chunks(usize::from(GRID_IMAGES)) {
            let generation = self.generation(request, batch.to_vec());
            let drawing = self.pipeline.txt2img_with(&generation, decoder, progress)?;
            drawn.extend(drawn_images(&drawing, batch, decoder)?);
        }
        Ok(drawn)
    }

    /// Several /imagine grids (request, first seed) drawn as one batch, a
    /// grid's images each, as [`Models::imagine`] draws them one by one.
    /// They must share [`Models::batch_shape`].
    pub fn imagine_together(
        &self,
        grids: &[(&ImagineRequest, u64)],
        decoder: Decoder,
        progress: &mut ProgressFn,
    ) -> Result<Vec<Vec<Drawn>>> {
        let generations: Vec<Generation> = grids
            .iter()
            .map(|(request, first_seed)| {
                self.generation(request, seeds_from(*first_seed, u32::from(GRID_IMAGES)))
            })
            .collect();
        let drawings = self
            .pipeline
            .txt2img_batch(&generations, decoder, progress)?;
        drawings
            .iter()
            .zip(&generations)
            .map(|(drawing, generation)| drawn_images(drawing, &generation.seeds, decoder))
            .collect()
    }

    /// What a grid of `request` must share with others to be drawn in one
    /// batch with them ([`Models::imagine_together`]).
    pub fn batch_shape(&self, request: &ImagineRequest, decoder: Decoder) -> Result<BatchShape> {
        let g = self.generation(request, Vec::new());
        Ok(BatchShape {
            width: g.width,
            height: g.height,
            steps: g.steps,
            guided: g.guidance > 1.0,
            tile: g.tile,
            decoder,
            chunks: self.pipeline.condition_chunks(
                &g.prompt,
                g.negative_prompt.as_deref(),
                g.guidance,
            )?,
        })
    }

    /// The generation of `seeds` for an /imagine request, at the model's
    /// size for its aspect.
    fn generation(&self, request: &ImagineRequest, seeds: Vec<u64>) -> Generation {
        let resolved = self.resolve(request);
        let (width, height) = size::dimensions(
            (request.aspect.width, request.aspect.height),
            self.native_budget(),
            self.pipeline.size_multiple() as u32,
        );
        Generation {
            prompt: resolved.prompt,
            negative_prompt: resolved.negative_prompt,
            width: width as usize,
            height: height as usize,
            steps: resolved.steps,
            guidance: resolved.guidance,
            seeds,
            chaos: chaos_amount(request.chaos),
            tile: request.tile,
        }
    }

    /// A draft image's latents ([`Drawn::draft_latents`]) decoded with the
    /// model's full VAE, padded as the draft was drawn (circular for `--tile`).
    pub fn full_decode(
        &self,
        draft_latents: &[u8],
        padding: PaddingMode,
        progress: &mut ProgressFn,
    ) -> Result<RgbImage> {
        progress(Stage::Decoding, 0, 1, None)?;
        let latents =
            latents::from_bytes(draft_latents, &self.pipeline.device, self.pipeline.dtype)?;
        let channels = self.pipeline.vae.config.latent_channels;
        if latents.dim(0)? != channels {
            return Err(EngineError::InvalidRequest(format!(
                "the draft's latents have {} channels, and this engine's model reads {channels}",
                latents.dim(0)?
            )));
        }
        let decoded = {
            let _padding = self.pipeline.padding(padding);
            self.pipeline.decode(&latents.unsqueeze(0)?)?
        };
        progress(Stage::Decoding, 1, 1, None)?;
        images::to_rgb(&decoded)?
            .into_iter()
            .next()
            .ok_or_else(|| EngineError::Image("the VAE decoded no image".into()))
    }

    /// Variations of `source`: img2img towards the original prompt (tiled
    /// if it was, so that a variation of a texture still tiles).
    pub fn vary(
        &self,
        request: &ImagineRequest,
        source: &RgbImage,
        strength: VaryStrength,
        first_seed: u64,
        count: u32,
        progress: &mut ProgressFn,
    ) -> Result<Vec<Drawn>> {
        let strength = match strength {
            VaryStrength::Subtle => VARY_SUBTLE_STRENGTH,
            VaryStrength::Strong => VARY_STRONG_STRENGTH,
        };
        // Variations come out at the model's native size, whatever the
        // source's (an upscaled image is shrunk back first).
        let (width, height) = size::dimensions(
            (source.width(), source.height()),
            self.native_budget(),
            self.pipeline.size_multiple() as u32,
        );
        let seeds = seeds_from(first_seed, count);
        let input = images::from_rgb(source, width, height, &self.pipeline.device)?;
        self.img2img_batch(request, &input, strength, (width, height), &seeds, progress)
    }

    /// A grid drawn from an image prompt: the image cropped to the request's
    /// aspect ratio, and img2img at the strength its `--iw` maps to;
    /// `count` images from `first_seed` on, a grid's worth at a time.
    pub fn imagine_from_image(
        &self,
        request: &ImagineRequest,
        source: &RgbImage,
        first_seed: u64,
        count: u32,
        progress: &mut ProgressFn,
    ) -> Result<Vec<Drawn>> {
        let strength = image_prompt_strength(request.image_weight.unwrap_or(1.0));
        let (width, height) = size::dimensions(
            (request.aspect.width, request.aspect.height),
            self.native_budget(),
            self.pipeline.size_multiple() as u32,
        );
        let cropped = crop_to_aspect(source, width, height);
        let input = images::from_rgb(&cropped, width, height, &self.pipeline.device)?;
        let seeds = seeds_from(first_seed, count);
        let mut drawn = Vec::with_capacity(seeds.len());
        for batch in seeds.chunks(usize::from(GRID_IMAGES)) {
            drawn.extend(self.img2img_batch(
                request,
                &input,
                strength,
                (width, height),
                batch,
                progress,
            )?);
        }
        Ok(drawn)
    }

    /// img2img of one input image `[1, 3, H, W]` for each seed, towards the request's prompt.
    fn img2img_batch(
        &self,
        request: &ImagineRequest,
        input: &candle_core::Tensor,
        strength: f64,
        (width, height): (u32, u32),
        seeds: &[u64],
        progress: &mut ProgressFn,
    ) -> Result<Vec<Drawn>> {
        let generation = self.generation(request, seeds.to_vec());
        let generation = Generation {
            width: width as usize,
            height: height as usize,
            steps: refine::steps_for_strength(generation.steps.max(2), strength),
            // Variations and image prompts stay near their source: chaos
            // is for grids drawn from noise.
            chaos: 0.0,
            ..generation
        };
        let output = self
            .pipeline
            .img2img(&generation, input, strength, progress)?;
        Ok(images::to_rgb(&output)?
            .into_iter()
            .zip(seeds)
            .map(|(image, &seed)| Drawn {
                image,
                seed,
                draft_latents: None,
            })
            .collect())
    }

    /// One image upscaled: the GAN ×4, or ×2 then refined with img2img.
    pub fn upscale(
        &self,
        resolved: &Resolved,
        source: &RgbImage,
        mode: UpscaleMode,
        seed: u64,
        progress: &mut ProgressFn,
    ) -> Result<RgbImage> {
        let upscaler = self.upscaler.as_ref().ok_or_else(|| {
            EngineError::InvalidRequest(
                "upscaling is not available on this engine (no upscaler weights)".into(),
            )
        })?;
        let mut on_tile = |done: usize, total: usize| progress(Stage::Upscaling, done, total, None);
        match mode {
            UpscaleMode::Plain => {
                refine::gan_upscale(upscaler, source, 4, self.tiling, &mut on_tile)
            }
            UpscaleMode::Subtle | UpscaleMode::Creative => {
                let doubled = refine::gan_upscale(upscaler, source, 2, self.tiling, &mut on_tile)?;
                let strength = if mode == UpscaleMode::Subtle {
                    refine::SUBTLE_STRENGTH
                } else {
                    refine::CREATIVE_STRENGTH
                };
                refine::refine(
                    &self.pipeline,
                    &doubled,
                    &resolved.prompt,
                    resolved.negative_prompt.as_deref(),
                    seed,
                    refine::steps_for_strength(resolved.steps.max(2), strength),
                    resolved.guidance,
                    strength,
                    progress,
                )
            }
        }
    }
}

/// img2img strength for an image prompt's `--iw` (0–2): how far the
/// drawing may move from the image. 0 keeps nothing of it (strength 1: as
/// from noise), 1 (the default) 0.55, 2 keeps the most (0.1).
pub fn image_prompt_strength(image_weight: f32) -> f64 {
    1.0 - 0.45 * f64::from(image_weight.clamp(0.0, 2.0))
}

/// The largest centred part of `image` with the aspect ratio of `width`×`height`.
fn crop_to_aspect(image: &RgbImage, width: u32, height: u32) -> RgbImage {
    let (w, h) = image.dimensions();
    // Compare w/h against width/height without division.
    let (crop_w, crop_h) = if u64::from(w) * u64::from(height) > u64::from(h) * u64::from(width) {
        (
            (u64::from(h) * u64::from(width) / u64::from(height)).max(1) as u32,
            h,
        )
    } else {
        (
            w,
            (u64::from(w) * u64::from(height) / u64::from(width)).max(1) as u32,
        )
    };
    image::imageops::crop_imm(image, (w - crop_w) / 2, (h - crop_h) / 2, crop_w, crop_h).to_image()
}

/// The request's `--chaos` (0–100) as [`Generation::chaos`] (0–1).
pub fn chaos_amount(chaos: u32) -> f64 {
    f64::from(chaos.min(100)) / 100.0
}

/// A seed for a job that has none of its own (re-rolls, variations): the
/// same for every attempt of the job, so a retry draws the same images.
pub fn job_seed(job_id: i64) -> u64 {
    // SplitMix64's finalizer: neighbouring ids give unrelated seeds.
    let mut z = (job_id as u64).wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    (z ^ (z >> 31)) & u64::from(u32::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn image_weights_map_to_strengths() {
        for (weight, strength) in [(0.0, 1.0), (1.0, 0.55), (2.0, 0.1), (5.0, 0.1), (-1.0, 1.0)] {
            assert!(
                (image_prompt_strength(weight) - strength).abs() < 1e-9,
                "{weight}"
            );
        }
    }

    #[test]
    fn image_prompts_are_cropped_to_the_requested_shape() {
        for ((w, h), (tw, th), expected) in [
            ((400, 200), (512, 512), (200, 200)),
            ((200, 400), (512, 512), (200, 200)),
            ((300, 300), (768, 512), (300, 200)),
            ((640, 360), (640, 360), (640, 360)),
        ] {
            let image = RgbImage::new(w, h);
            assert_eq!(
                crop_to_aspect(&image, tw, th).dimensions(),
                expected,
                "{w}×{h} → {tw}×{th}"
            );
        }
        // The centre is kept.
        let mut image = RgbImage::new(30, 10);
        image.put_pixel(15, 5, image::Rgb([255, 0, 0]));
        assert_eq!(crop_to_aspect(&image, 1, 1).get_pixel(5, 5).0, [255, 0, 0]);
    }

    #[test]
    fn job_seeds_are_stable_and_spread() {
        assert_eq!(job_seed(1), job_seed(1));
        assert_ne!(job_seed(1), job_seed(2));
        assert!(job_seed(i64::MAX) <= u64::from(u32::MAX));
    }

    #[test]
    fn chaos_is_a_fraction() {
        for (chaos, expected) in [(0, 0.0), (25, 0.25), (100, 1.0), (400, 1.0)] {
            assert_eq!(chaos_amount(chaos), expected, "{chaos}");
        }
    }
}
