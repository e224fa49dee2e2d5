//! The Stable Diffusion pipeline: prompt → embeddings → denoising loop →
//! VAE decode, for txt2img and img2img, with classifier-free guidance. A
//! txt2img may decode with the draft decoder (TAESD) instead of the VAE.

use std::path::Path;

use candle_core::{DType, Device, IndexOp, Tensor};
use candle_nn::VarBuilder;
use image::imageops::FilterType;
use serde::de::DeserializeOwned;

use crate::error::{EngineError, Result};
use crate::ops::conv::{PaddingMode, PaddingSwitch};
use crate::sd::noise::NoiseStream;
use crate::sd::scheduler::{self, Scheduler, SchedulerConfig, SchedulerKind};
use crate::sd::source::ModelFiles;
use crate::sd::taesd::TinyAutoEncoder;
use crate::sd::text_encoder::{self, TextEncoder};
use crate::sd::weights;
use crate::sd::{chaos, images, preview, unet, vae};
use wordup_queue::prompt::WeightedPart;
use wordup_tokenizer::ClipTokenizer;

/// What a loaded pipeline runs on.
#[derive(Debug, Clone)]
pub struct PipelineOptions {
    pub device: Device,
    pub dtype: DType,
    /// Overrides the scheduler the model's config names.
    pub scheduler: Option<SchedulerKind>,
}

/// Stages reported to a progress callback.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stage {
    Encoding,
    Denoising,
    Decoding,
    /// GAN upscaling, tile by tile.
    Upscaling,
}

impl Stage {
    pub fn name(self) -> &'static str {
        match self {
            Stage::Encoding => "encoding",
            Stage::Denoising => "denoising",
            Stage::Decoding => "decoding",
            Stage::Upscaling => "upscaling",
        }
    }
}

/// Progress callback: stage, step, total, and while denoising, once a step
/// has run, that step's estimate of the finished latents (for a preview,
/// [`StableDiffusion::preview`]). Returning an error (say
/// [`EngineError::Cancelled`]) stops the run.
pub type ProgressFn<'a> = dyn FnMut(Stage, usize, usize, Option<&Tensor>) -> Result<()> + 'a;

/// One generation: a batch of images sharing a prompt, a seed per image.
#[derive(Debug, Clone, PartialEq)]
pub struct Generation {
    /// May be a weighted multi-prompt (`a castle:: fog::-0.5`;
    /// `wordup_queue::prompt`).
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub width: usize,
    pub height: usize,
    pub steps: usize,
    /// Classifier-free guidance scale; ≤ 1 runs without it.
    pub guidance: f64,
    pub seeds: Vec<u64>,
    /// How far each image's conditioning wanders, 0–1 ([`chaos`]).
    pub chaos: f64,
    /// `--tile`: circular padding in every UNet and decoder convolution
    /// (and the VAE encoder's for img2img), so the images tile seamlessly.
    pub tile: bool,
}

/// Which decoder turns latents into pixels.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Decoder {
    /// The model's own VAE.
    #[default]
    Full,
    /// The draft decoder ([`StableDiffusion::set_draft_decoder`]): about 1/18
    /// of the VAE decoder's FLOPs, softer detail.
    Draft,
}

/// A txt2img's images and the latents they were decoded from.
#[derive(Debug, Clone)]
pub struct Drawing {
    /// `[n, 3, H, W]` in [0, 1], f32.
    pub images: Tensor,
    /// `[n, C, h, w]`, as the UNet left them (before any decoder's scaling).
    pub latents: Tensor,
}

/// Conditioning for a batch: prompt embeddings, and the negative ones when
/// guidance is on. Each `[1, tokens, hidden]`, shared by every image, but
/// the prompt's may be `[n, tokens, hidden]`, one per image ([`chaos`]).
#[derive(Debug, Clone)]
pub struct Conditioning {
    pub prompt: Tensor,
    pub negative: Option<Tensor>,
}

pub struct StableDiffusion {
    pub tokenizer: ClipTokenizer,
    pub text_encoder: TextEncoder,
    pub unet: unet::UNet,
    pub vae: vae::AutoEncoder,
    /// The draft decoder, when one is loaded and fits this model.
    draft_decoder: Option<TinyAutoEncoder>,
    pub scheduler_config: SchedulerConfig,
    pub scheduler_kind: SchedulerKind,
    pub unet_config: unet::Config,
    pub device: Device,
    pub dtype: DType,
}

pub(crate) fn read_json<T: DeserializeOwned>(path: &Path) -> Result<T> {
    let text = std::fs::read_to_string(path).map_err(|source| EngineError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    serde_json::from_str(&text).map_err(|source| EngineError::Json {
        path: path.to_path_buf(),
        source,
    })
}

pub(crate) fn weights<'a>(path: &Path, options: &PipelineOptions) -> Result<VarBuilder<'a>> {
    // Read rather than mmap: candle's mmap constructor is unsafe, and the
    // workspace forbids unsafe code.
    let tensors = candle_core::safetensors::load(path, &options.device)?;
    Ok(VarBuilder::from_tensors(
        tensors,
        options.dtype,
        &options.device,
    ))
}

/// What a pipeline is made of, however it was made: from a model's files
/// ([`StableDiffusion::load`]) or with random weights (a benchmark's).
pub struct Parts {
    pub tokenizer: ClipTokenizer,
    pub text_encoder: TextEncoder,
    pub unet: unet::UNet,
    pub unet_config: unet::Config,
    pub vae: vae::AutoEncoder,
    pub scheduler_config: SchedulerConfig,
}

impl StableDiffusion {
    pub fn load(files: &ModelFiles, options: &PipelineOptions) -> Result<StableDiffusion> {
        let root = &files.root;
        let scheduler_config: SchedulerConfig =
            read_json(&root.join("scheduler/scheduler_config.json"))?;
        let text_config: text_encoder::Config = read_json(&root.join("text_encoder/config.json"))?;
        let unet_config: unet::Config = read_json(&root.join("unet/config.json"))?;
        let vae_config: vae::Config = read_json(&root.join("vae/config.json"))?;
        let tokenizer = ClipTokenizer::from_dir(&root.join("tokenizer"))?;
        let text_encoder =
            TextEncoder::new(&text_config, weights(&files.text_encoder_weights, options)?)?;
        let unet = unet_config.build(weights(&files.unet_weights, options)?)?;
        let vae = vae::AutoEncoder::new(&vae_config, weights(&files.vae_weights, options)?)?;
        let parts = Parts {
            tokenizer,
            text_encoder,
            unet,
            unet_config,
            vae,
            scheduler_config,
        };
        Ok(StableDiffusion::from_parts(parts, options))
    }

    /// A pipeline over models already built on `options`' device and dtype.
    pub fn from_parts(parts: Parts, options: &PipelineOptions) -> StableDiffusion {
        let scheduler_config = parts.scheduler_config;
        let scheduler_kind = match options.scheduler {
            Some(kind) => kind,
            None => {
                SchedulerKind::from_class_name(&scheduler_config.class_name).unwrap_or_else(|| {
                    tracing::warn!(
                        scheduler = scheduler_config.class_name,
                        "scheduler not implemented; using DDIM over the same noise schedule"
                    );
                    SchedulerKind::Ddim
                })
            }
        };
        StableDiffusion {
            tokenizer: parts.tokenizer,
            text_encoder: parts.text_encoder,
            unet: parts.unet,
            vae: parts.vae,
            draft_decoder: None,
            scheduler_config,
            scheduler_kind,
            unet_config: parts.unet_config,
            device: options.device.clone(),
            dtype: options.dtype,
        }
    }

    /// Adds a draft decoder for [`Decoder::Draft`]. Refused unless it reads
    /// this model's latents (their channels) and makes images of the VAE's
    /// size from them.
    /// Whether UNet steps on a CUDA device may replay as CUDA graphs (on by
    /// default; see `ops::cuda_graph`).
    pub fn set_cuda_graphs(&mut self, on: bool) {
        self.unet.set_cuda_graphs(on);
    }

    pub fn set_draft_decoder(&mut self, draft: TinyAutoEncoder) -> Result<()> {
        let (channels, scale) = (self.vae.config.latent_channels, self.vae_scale());
        let (draft_channels, draft_scale) =
            (draft.config.latent_channels, draft.config.scale_factor());
        if (draft_channels, draft_scale) != (channels, scale) {
            return Err(EngineError::UnsupportedModel(format!(
                "the draft decoder reads {draft_channels}-channel latents and upscales them \
                 {draft_scale}×, but this model's latents have {channels} channels and its \
                 VAE upscales {scale}×"
            )));
        }
        self.draft_decoder = Some(draft);
        Ok(())
    }

    /// Whether [`Decoder::Draft`] is available.
    pub fn has_draft_decoder(&self) -> bool {
        self.draft_decoder.is_some()
    }

    /// Pixels per latent along a side.
    pub fn vae_scale(&self) -> usize {
        self.vae.config.scale_factor()
    }

    /// Image sides must be multiples of this.
    pub fn size_multiple(&self) -> usize {
        self.vae_scale() << self.unet_config.block_out_channels.len().saturating_sub(1)
    }

    /// The side the model was trained at, in pixels.
    pub fn native_side(&self) -> usize {
        self.unet_config.sample_size.unwrap_or(64) * self.vae_scale()
    }

    /// Pads every convolution of the UNet, the VAE and the draft decoder
    /// with `mode` while the guard lives. The models are shared, so this is
    /// for one generation at a time (a worker's).
    pub fn padding(&self, mode: PaddingMode) -> PaddingGuard<'_> {
        let switches = [self.unet.padding(), self.vae.padding()]
            .into_iter()
            .chain(self.draft_decoder.as_ref().map(TinyAutoEncoder::padding));
        PaddingGuard {
            restore: switches.map(|switch| (switch, switch.set(mode))).collect(),
        }
    }

    pub fn scheduler(&self, steps: usize) -> Scheduler {
        Scheduler::new(self.scheduler_kind, &self.scheduler_config, steps)
    }

    /// Text embeddings `[1, 77·chunks, hidden]` of `text`, at least `min_chunks` chunks.
    pub fn encode_text(&self, text: &str, min_chunks: usize) -> Result<Tensor> {
        self.encode_chunks(&self.tokenizer.encode_chunks(text, min_chunks)?)
    }

    /// Text embeddings of padded token chunks, concatenated along the sequence.
    fn encode_chunks(&self, chunks: &[Vec<u32>]) -> Result<Tensor> {
        let encoded = chunks
            .iter()
            .map(|ids| {
                let ids = Tensor::new(ids.as_slice(), &self.device)?.unsqueeze(0)?;
                Ok(self.text_encoder.forward(&ids)?)
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Tensor::cat(&encoded, 1)?)
    }

    /// Prompt and negative-prompt embeddings with the same number of
    /// chunks. A weighted multi-prompt's parts are encoded alone, all padded
    /// to that number, and combined by their weights ([`weights`]); the
    /// negative prompt is the unconditional side as ever.
    pub fn condition(
        &self,
        prompt: &str,
        negative: Option<&str>,
        guidance: f64,
    ) -> Result<Conditioning> {
        let parts = weights::parts(prompt)?;
        let PromptIds {
            parts: part_ids,
            negative: negative_ids,
        } = self.prompt_ids(&parts, negative, guidance)?;
        let embeddings = part_ids
            .iter()
            .map(|ids| self.encode_chunks(ids))
            .collect::<Result<Vec<_>>>()?;
        let part_weights: Vec<f32> = parts.iter().map(|part| part.weight).collect();
        Ok(Conditioning {
            prompt: weights::combine(&embeddings, &part_weights)?,
            negative: negative_ids
                .map(|ids| self.encode_chunks(&ids))
                .transpose()?,
        })
    }

    /// Chunks of 77 tokens [`StableDiffusion::condition`] encodes for each
    /// side: conditionings of different lengths cannot share a batch.
    pub fn condition_chunks(
        &self,
        prompt: &str,
        negative: Option<&str>,
        guidance: f64,
    ) -> Result<usize> {
        let ids = self.prompt_ids(&weights::parts(prompt)?, negative, guidance)?;
        Ok(ids.parts.first().map_or(1, Vec::len))
    }

    /// Token chunks of each part and of the negative prompt (guidance on),
    /// every side padded to the same number of chunks with empty ones
    /// (start, end, padding), as encoding "" gives.
    fn prompt_ids(
        &self,
        parts: &[WeightedPart],
        negative: Option<&str>,
        guidance: f64,
    ) -> Result<PromptIds> {
        let mut part_ids = parts
            .iter()
            .map(|part| Ok(self.tokenizer.encode_chunks(&part.text, 1)?))
            .collect::<Result<Vec<_>>>()?;
        let mut negative_ids = if guidance > 1.0 {
            Some(self.tokenizer.encode_chunks(negative.unwrap_or(""), 1)?)
        } else {
            None
        };
        let chunks = part_ids
            .iter()
            .chain(&negative_ids)
            .map(Vec::len)
            .max()
            .unwrap_or(1);
        let empty = self.tokenizer.encode_chunks("", 1)?.remove(0);
        for ids in part_ids.iter_mut().chain(&mut negative_ids) {
            ids.resize(chunks, empty.clone());
        }
        Ok(PromptIds {
            parts: part_ids,
            negative: negative_ids,
        })
    }

    fn check_size(&self, width: usize, height: usize) -> Result<()> {
        let multiple = self.size_multiple();
        if width == 0
            || height == 0
            || !width.is_multiple_of(multiple)
            || !height.is_multiple_of(multiple)
        {
            return Err(EngineError::InvalidRequest(format!(
                "{width}x{height} is not a size this model can make: both sides must be positive multiples of {multiple}"
            )));
        }
        Ok(())
    }

    /// Initial latents `[n, C, h, w]`, one seeded stream per image, returned
    /// with the streams for later noise (ancestral steps, img2img).
    pub fn seeded_noise(
        &self,
        seeds: &[u64],
        width: usize,
        height: usize,
    ) -> Result<(Tensor, Vec<NoiseStream>)> {
        let mut streams: Vec<NoiseStream> =
            seeds.iter().map(|seed| NoiseStream::new(*seed)).collect();
        let latents = self.draw_noise(&mut streams, &self.latent_shape(width, height))?;
        Ok((latents, streams))
    }

    /// The next `[n, ..shape]` batch of noise: one tensor from each image's stream.
    fn draw_noise(&self, streams: &mut [NoiseStream], shape: &[usize]) -> Result<Tensor> {
        let noise = streams
            .iter_mut()
            .map(|stream| stream.tensor(shape, &self.device, self.dtype))
            .collect::<candle_core::Result<Vec<_>>>()?;
        Ok(Tensor::stack(&noise, 0)?)
    }

    fn latent_shape(&self, width: usize, height: usize) -> [usize; 3] {
        let scale = self.vae_scale();
        [self.unet_config.in_channels, height / scale, width / scale]
    }

    /// txt2img: images `[n, 3, H, W]` in [0, 1], one per seed.
    pub fn txt2img(&self, generation: &Generation, progress: &mut ProgressFn) -> Result<Tensor> {
        Ok(self
            .txt2img_with(generation, Decoder::Full, progress)?
            .images)
    }

    /// txt2img decoded by `decoder`, with the latents kept.
    pub fn txt2img_with(
        &self,
        generation: &Generation,
        decoder: Decoder,
        progress: &mut ProgressFn,
    ) -> Result<Drawing> {
        let mut drawings =
            self.txt2img_batch(std::slice::from_ref(generation), decoder, progress)?;
        Ok(drawings.remove(0))
    }

    /// txt2img of several generations as one batch through the UNet and the
    /// decoder, a drawing per generation; each image comes out as it would
    /// alone (its own conditioning, chaos, guidance scale and seed). The
    /// generations must share size, steps, `tile`, whether guidance is on,
    /// and their conditionings' length ([`StableDiffusion::condition_chunks`]).
    /// Progress reports the whole batch's estimates, generations in order.
    pub fn txt2img_batch(
        &self,
        generations: &[Generation],
        decoder: Decoder,
        progress: &mut ProgressFn,
    ) -> Result<Vec<Drawing>> {
        // Refused before the denoising it would waste.
        if decoder == Decoder::Draft && self.draft_decoder.is_none() {
            return Err(no_draft_decoder());
        }
        let Some(first) = generations.first() else {
            return Err(EngineError::InvalidRequest(
                "no generations asked for".into(),
            ));
        };
        self.check_size(first.width, first.height)?;
        let shape = |g: &Generation| (g.width, g.height, g.steps, g.tile, g.guidance > 1.0);
        if generations.iter().any(|g| shape(g) != shape(first)) {
            return Err(EngineError::InvalidRequest(
                "generations of different sizes, steps, tiling or guidance cannot share a batch"
                    .into(),
            ));
        }
        if generations.iter().any(|g| g.seeds.is_empty()) {
            return Err(EngineError::InvalidRequest("no images asked for".into()));
        }
        let _padding = self.padding(PaddingMode::tiled(first.tile));
        progress(Stage::Encoding, 0, 1, None)?;
        let mut sides = Vec::with_capacity(generations.len());
        for g in generations {
            let conditioning =
                self.condition(&g.prompt, g.negative_prompt.as_deref(), g.guidance)?;
            sides.push(chaos::jitter(&conditioning, g.guidance, &g.seeds, g.chaos)?);
        }
        let (conditioning, guidance) = match sides.as_slice() {
            [one] => one.clone(),
            _ => batch_conditioning(&sides, generations)?,
        };
        let seeds: Vec<u64> = generations.iter().flat_map(|g| g.seeds.clone()).collect();
        let (noise, mut streams) = self.seeded_noise(&seeds, first.width, first.height)?;
        let scheduler = self.scheduler(first.steps);
        let latents = noise.affine(scheduler.init_noise_sigma(), 0.0)?;
        let latents = self.denoise(
            latents,
            &conditioning,
            &guidance,
            &scheduler,
            0,
            &mut streams,
            progress,
        )?;
        progress(Stage::Decoding, 0, 1, None)?;
        // Decoded a generation at a time: the decoder's memory grows with
        // its batch, and batching it gains little.
        let mut offset = 0;
        generations
            .iter()
            .map(|g| {
                let n = g.seeds.len();
                let latents = latents.narrow(0, offset, n)?;
                offset += n;
                Ok(Drawing {
                    images: self.decode_with(&latents, decoder)?,
                    latents,
                })
            })
            .collect()
    }

    /// img2img: `images` `[n, 3, H, W]` in [0, 1] (one per seed, or one for
    /// all), re-noised to `strength` and denoised towards the prompt.
    pub fn img2img(
        &self,
        generation: &Generation,
        images: &Tensor,
        strength: f64,
        progress: &mut ProgressFn,
    ) -> Result<Tensor> {
        self.check_size(generation.width, generation.height)?;
        let scheduler = self.scheduler(generation.steps);
        let start = scheduler::img2img_start(scheduler.timesteps().len(), strength);
        if start >= scheduler.timesteps().len() {
            return Err(EngineError::InvalidRequest(format!(
                "strength {strength} with {} steps runs no step; raise either",
                generation.steps
            )));
        }
        let _padding = self.padding(PaddingMode::tiled(generation.tile));
        progress(Stage::Encoding, 0, 1, None)?;
        let conditioning = self.condition(
            &generation.prompt,
            generation.negative_prompt.as_deref(),
            generation.guidance,
        )?;
        let (conditioning, guidance) = chaos::jitter(
            &conditioning,
            generation.guidance,
            &generation.seeds,
            generation.chaos,
        )?;
        let n = generation.seeds.len();
        let images = match images.dim(0)? {
            1 if n > 1 => images.repeat((n, 1, 1, 1))?,
            m if m == n => images.clone(),
            m => {
                return Err(EngineError::InvalidRequest(format!(
                    "{m} input images for {n} seeds"
                )));
            }
        };
        let shape = self.latent_shape(generation.width, generation.height);
        let mut streams: Vec<NoiseStream> = generation
            .seeds
            .iter()
            .map(|s| NoiseStream::new(*s))
            .collect();
        let encode_noise = self.draw_noise(&mut streams, &shape)?;
        let add_noise = self.draw_noise(&mut streams, &shape)?;
        let latents =
            self.noised_image_latents(&images, &encode_noise, &add_noise, &scheduler, start)?;
        let latents = self.denoise(
            latents,
            &conditioning,
            &guidance,
            &scheduler,
            start,
            &mut streams,
            progress,
        )?;
        progress(Stage::Decoding, 0, 1, None)?;
        self.decode(&latents)
    }

    /// img2img's starting point: images in [0, 1] encoded, sampled with
    /// `encode_noise`, scaled, and noised with `add_noise` to step `start`.
    pub fn noised_image_latents(
        &self,
        images: &Tensor,
        encode_noise: &Tensor,
        add_noise: &Tensor,
        scheduler: &Scheduler,
        start: usize,
    ) -> Result<Tensor> {
        let pixels = images.to_dtype(self.dtype)?.affine(2.0, -1.0)?;
        let latents = self
            .vae
            .encode(&pixels)?
            .sample_with(encode_noise)?
            .affine(self.vae.config.scaling_factor, 0.0)?;
        Ok(scheduler.add_noise(&latents, add_noise, start)?)
    }

    /// The denoising loop from step `start`: latents in, latents out.
    /// `guidance` holds one scale for every image or one per image.
    #[allow(clippy::too_many_arguments)]
    pub fn denoise(
        &self,
        mut latents: Tensor,
        conditioning: &Conditioning,
        guidance: &[f64],
        scheduler: &Scheduler,
        start: usize,
        streams: &mut [NoiseStream],
        progress: &mut ProgressFn,
    ) -> Result<Tensor> {
        let n = latents.dim(0)?;
        let per_image = |t: &Tensor| -> Result<Tensor> {
            match t.dim(0)? {
                1 => Ok(t.repeat((n, 1, 1))?),
                m if m == n => Ok(t.clone()),
                m => Err(EngineError::InvalidRequest(format!(
                    "{m} conditionings for {n} images"
                ))),
            }
        };
        let embeddings = match &conditioning.negative {
            Some(negative) => {
                Tensor::cat(&[per_image(negative)?, per_image(&conditioning.prompt)?], 0)?
            }
            None => per_image(&conditioning.prompt)?,
        }
        .to_dtype(self.dtype)?;
        // One scale multiplies as a scalar, as it always has; several
        // broadcast over their images.
        let scales = match guidance {
            [_] => None,
            scales if scales.len() == n => {
                let scales: Vec<f32> = scales.iter().map(|&s| s as f32).collect();
                Some(Tensor::from_vec(scales, (n, 1, 1, 1), &self.device)?.to_dtype(self.dtype)?)
            }
            scales => {
                return Err(EngineError::InvalidRequest(format!(
                    "{} guidance scales for {n} images",
                    scales.len()
                )));
            }
        };
        let guided = conditioning.negative.is_some();
        let timesteps = scheduler.timesteps().to_vec();
        let total = timesteps.len() - start;
        let mut denoised: Option<Tensor> = None;
        for (done, (step, &timestep)) in timesteps.iter().enumerate().skip(start).enumerate() {
            progress(Stage::Denoising, done, total, denoised.as_ref())?;
            let input = if guided {
                Tensor::cat(&[&latents, &latents], 0)?
            } else {
                latents.clone()
            };
            let input = scheduler.scale_model_input(&input, step)?;
            let prediction = self.unet.forward(&input, timestep, &embeddings)?;
            let prediction = if guided {
                let uncond = prediction.i(..n)?;
                let cond = prediction.i(n..)?;
                let delta = (cond - &uncond)?;
                let steer = match &scales {
                    Some(scales) => delta.broadcast_mul(scales)?,
                    None => (delta * guidance[0])?,
                };
                (&uncond + steer)?
            } else {
                prediction
            };
            let step_noise = if scheduler.needs_noise() {
                let shape = latents.dims()[1..].to_vec();
                Some(self.draw_noise(streams, &shape)?)
            } else {
                None
            };
            let stepped = scheduler.step(&prediction, step, &latents, step_noise.as_ref())?;
            latents = stepped.sample;
            denoised = Some(stepped.denoised);
        }
        progress(Stage::Denoising, total, total, None)?;
        Ok(latents)
    }

    /// Latents → images `[n, 3, H, W]` in [0, 1], f32, with the VAE.
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        self.decode_with(latents, Decoder::Full)
    }

    /// The UNet's latents → images `[n, 3, H, W]` in [0, 1], f32, with
    /// `decoder`. Each decoder unscales the latents with its own factors
    /// (the VAE's 0.18215; TAESD takes them as they are).
    pub fn decode_with(&self, latents: &Tensor, decoder: Decoder) -> Result<Tensor> {
        let images = match (decoder, &self.draft_decoder) {
            (Decoder::Full, _) => {
                let scaled = latents.affine(1.0 / self.vae.config.scaling_factor, 0.0)?;
                self.vae.decode(&scaled)?
            }
            (Decoder::Draft, Some(draft)) => draft.decode_unet_latents(latents)?,
            (Decoder::Draft, None) => return Err(no_draft_decoder()),
        };
        Ok(images
            .to_dtype(DType::F32)?
            .affine(0.5, 0.5)?
            .clamp(0f32, 1f32)?)
    }
}

impl StableDiffusion {
    /// Small images of a denoising estimate (`[n, C, h, w]` UNet latents),
    /// each side at most [`preview::PREVIEW_SIDE`]: the draft decoder on
    /// pooled latents when loaded, else the linear latent-to-RGB map.
    pub fn preview(&self, denoised: &Tensor) -> Result<Vec<image::RgbImage>> {
        let (_, _, h, w) = denoised.dims4()?;
        let scale = self.vae_scale();
        let pool = preview::pool_factor(h, w, scale);
        let pixels = match &self.draft_decoder {
            Some(draft) => {
                let small = if pool > 1 {
                    denoised.avg_pool2d(pool)?
                } else {
                    denoised.clone()
                };
                draft
                    .decode_unet_latents(&small)?
                    .to_dtype(DType::F32)?
                    .affine(0.5, 0.5)?
                    .clamp(0f32, 1f32)?
            }
            None => preview::linear_rgb(denoised)?,
        };
        let side = |latent: usize| (latent * scale / pool).max(1) as u32;
        images::to_rgb(&pixels)?
            .into_iter()
            .map(|image| {
                let (width, height) = (side(w), side(h));
                Ok(if image.dimensions() == (width, height) {
                    image
                } else {
                    image::imageops::resize(&image, width, height, FilterType::Triangle)
                })
            })
            .collect()
    }
}

/// Token chunks of a prompt's parts and of its negative prompt, all of one length.
struct PromptIds {
    parts: Vec<Vec<Vec<u32>>>,
    negative: Option<Vec<Vec<u32>>>,
}

/// One conditioning and one guidance scale per image for the generations'
/// (conditioning, scales) pairs, in order.
fn batch_conditioning(
    sides: &[(Conditioning, Vec<f64>)],
    generations: &[Generation],
) -> Result<(Conditioning, Vec<f64>)> {
    let per_image = |t: &Tensor, n: usize| -> Result<Tensor> {
        Ok(match t.dim(0)? {
            1 => t.repeat((n, 1, 1))?,
            _ => t.clone(),
        })
    };
    let mut prompts = Vec::with_capacity(sides.len());
    let mut negatives = Vec::with_capacity(sides.len());
    let mut scales = Vec::new();
    for ((conditioning, guidance), g) in sides.iter().zip(generations) {
        let n = g.seeds.len();
        prompts.push(per_image(&conditioning.prompt, n)?);
        if let Some(negative) = &conditioning.negative {
            negatives.push(per_image(negative, n)?);
        }
        match guidance.as_slice() {
            [one] => scales.extend(std::iter::repeat_n(*one, n)),
            many => scales.extend_from_slice(many),
        }
    }
    let tokens = prompts[0].dim(1)?;
    if prompts.iter().any(|p| p.dim(1).ok() != Some(tokens)) {
        return Err(EngineError::InvalidRequest(
            "prompts of different lengths cannot share a batch".into(),
        ));
    }
    // One scale for all multiplies as a scalar, as a lone generation's does.
    if scales.iter().all(|&s| s == scales[0]) {
        scales.truncate(1);
    }
    Ok((
        Conditioning {
            prompt: Tensor::cat(&prompts, 0)?,
            negative: (!negatives.is_empty())
                .then(|| Tensor::cat(&negatives, 0))
                .transpose()?,
        },
        scales,
    ))
}

/// The padding [`StableDiffusion::padding`] set, in force until this drops;
/// then every switch goes back to what it was, so guards nest.
#[must_use = "the padding lasts only as long as the guard"]
pub struct PaddingGuard<'a> {
    restore: Vec<(&'a PaddingSwitch, PaddingMode)>,
}

impl Drop for PaddingGuard<'_> {
    fn drop(&mut self) {
        for (switch, mode) in self.restore.drain(..).rev() {
            switch.set(mode);
        }
    }
}

fn no_draft_decoder() -> EngineError {
    EngineError::InvalidRequest("no draft decoder is loaded on this engine".into())
}
