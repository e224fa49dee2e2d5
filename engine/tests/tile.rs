//! `--tile`: circular padding in every UNet, VAE and draft-decoder
//! convolution makes the pipeline a function on the torus. Rolling the
//! initial noise rolls the picture (and only with tiling on), and a tiled
//! picture rolled by half its size shows no seam where its edges meet. On
//! the tiny random-weight model and its tiny draft decoder.
#![allow(clippy::unwrap_used)]

use wordup_engine_testkit::fixtures as common;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use common::{max_diff, scratch};
use wordup_engine::finish::upscale::Tiling;
use wordup_engine::ops::conv::PaddingMode;
use wordup_engine::sd::images;
use wordup_engine::sd::pipeline::{Decoder, Generation, PipelineOptions, StableDiffusion};
use wordup_engine::sd::source::{ModelFiles, SingleModelFiles, Variant};
use wordup_engine::sd::taesd::TinyAutoEncoder;
use wordup_engine::worker::render::Models;
use wordup_engine_testkit::tiny;
use wordup_queue::{AspectRatio, ImagineRequest, VaryStrength};

fn cpu_f32() -> PipelineOptions {
    PipelineOptions {
        device: Device::Cpu,
        dtype: DType::F32,
        scheduler: None,
    }
}

/// The tiny model with its draft decoder, in a scratch directory.
struct Tiny {
    dir: PathBuf,
}

impl Tiny {
    fn new(name: &str) -> Tiny {
        let dir = scratch(&format!("tile-{name}"));
        tiny::write_tiny_model(&dir).unwrap();
        tiny::write_tiny_taesd(&dir.join("draft-decoder")).unwrap();
        Tiny { dir }
    }

    fn pipeline(&self) -> StableDiffusion {
        let files = ModelFiles::from_dir(&self.dir, Variant::Full).unwrap();
        let mut pipeline = StableDiffusion::load(&files, &cpu_f32()).unwrap();
        let draft = SingleModelFiles::from_dir(&self.dir.join("draft-decoder"), Variant::Full);
        let draft = TinyAutoEncoder::load(&draft.unwrap(), &cpu_f32()).unwrap();
        pipeline.set_draft_decoder(draft).unwrap();
        pipeline
    }
}

impl Drop for Tiny {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

fn generation(tile: bool) -> Generation {
    Generation {
        prompt: "a mossy stone wall".into(),
        negative_prompt: None,
        width: 64,
        height: 48,
        steps: 2,
        guidance: 0.0,
        seeds: vec![5],
        chaos: 0.0,
        tile,
    }
}

/// `xs` `[n, c, h, w]` rolled by `dy` rows down and `dx` columns right, as
/// `torch.roll(xs, (dy, dx), (2, 3))`.
fn roll(xs: &Tensor, dy: usize, dx: usize) -> Tensor {
    let along = |xs: &Tensor, dim: usize, by: usize| {
        let n = xs.dim(dim).unwrap();
        let by = by % n;
        Tensor::cat(
            &[
                xs.narrow(dim, n - by, by).unwrap(),
                xs.narrow(dim, 0, n - by).unwrap(),
            ],
            dim,
        )
        .unwrap()
    };
    along(&along(xs, 2, dy), 3, dx)
}

/// Latents from `noise` after the whole denoising loop, then the images
/// both decoders make of them, all with `padding`.
fn draw_from(pipeline: &StableDiffusion, noise: &Tensor, padding: PaddingMode) -> [Tensor; 3] {
    let _padding = pipeline.padding(padding);
    let scheduler = pipeline.scheduler(2);
    let conditioning = pipeline.condition("a mossy stone wall", None, 0.0).unwrap();
    let latents = pipeline
        .denoise(
            noise.affine(scheduler.init_noise_sigma(), 0.0).unwrap(),
            &conditioning,
            &[0.0],
            &scheduler,
            0,
            &mut [],
            &mut |_, _, _, _| Ok(()),
        )
        .unwrap();
    let full = pipeline.decode_with(&latents, Decoder::Full).unwrap();
    let draft = pipeline.decode_with(&latents, Decoder::Draft).unwrap();
    [latents, full, draft]
}

/// On the torus, the pipeline commutes with rolls by whole steps of its
/// coarsest level: the UNet's latents roll with the noise, the pictures by
/// the decoders' scale. With zero padding the edges break that.
#[test]
fn tiled_pipeline_rolls_with_its_noise() {
    let tiny = Tiny::new("equivariant");
    let pipeline = tiny.pipeline();
    let (noise, _) = pipeline.seeded_noise(&[5], 64, 48).unwrap();
    // The UNet downsamples 2×, so its coarsest grid moves by whole cells.
    let (dy, dx) = (2, 6);
    let scale = pipeline.vae_scale();
    let rolled_noise = roll(&noise, dy, dx);

    let plain = draw_from(&pipeline, &noise, PaddingMode::Circular);
    let rolled = draw_from(&pipeline, &rolled_noise, PaddingMode::Circular);
    for (what, (plain, rolled)) in ["latents", "VAE image", "draft image"]
        .iter()
        .zip(plain.iter().zip(&rolled))
    {
        let by = if *what == "latents" { 1 } else { scale };
        let diff = max_diff(&roll(plain, dy * by, dx * by), rolled);
        assert!(diff < 1e-4, "tiled {what}: {diff} off the rolled one");
    }

    let plain = draw_from(&pipeline, &noise, PaddingMode::Zeros);
    let rolled = draw_from(&pipeline, &rolled_noise, PaddingMode::Zeros);
    for (what, (plain, rolled)) in ["latents", "VAE image", "draft image"]
        .iter()
        .zip(plain.iter().zip(&rolled))
    {
        let by = if *what == "latents" { 1 } else { scale };
        let diff = max_diff(&roll(plain, dy * by, dx * by), rolled);
        assert!(diff > 1e-2, "zero-padded {what} rolls along ({diff})");
    }
}

/// The VAE encoder wraps too (img2img's start), its asymmetric
/// downsampling pad included: a rolled picture encodes to rolled latents.
#[test]
fn tiled_vae_encoder_rolls_with_its_image() {
    let tiny = Tiny::new("encoder");
    let pipeline = tiny.pipeline();
    let image = Tensor::randn(0f32, 0.5, (1, 3, 48, 64), &Device::Cpu).unwrap();
    let scale = pipeline.vae_scale();
    let (dy, dx) = (2, 3);
    let encode = |image: &Tensor, padding| {
        let _padding = pipeline.padding(padding);
        pipeline.vae.encode(image).unwrap().mean
    };
    let rolled_image = roll(&image, dy * scale, dx * scale);
    let diff = max_diff(
        &roll(&encode(&image, PaddingMode::Circular), dy, dx),
        &encode(&rolled_image, PaddingMode::Circular),
    );
    assert!(diff < 1e-4, "tiled encode: {diff} off the rolled one");
    let diff = max_diff(
        &roll(&encode(&image, PaddingMode::Zeros), dy, dx),
        &encode(&rolled_image, PaddingMode::Zeros),
    );
    assert!(diff > 1e-2, "zero-padded encode rolls along ({diff})");
}

/// Mean absolute difference between neighbouring pixels across the middle
/// of `image` (the column pair at its centre, or the row pair) and across
/// every neighbouring pair, over all channels: (seam, interior).
fn seam_and_interior(image: &image::RgbImage, horizontal: bool) -> (f64, f64) {
    let (w, h) = image.dimensions();
    let step = |x: u32, y: u32| -> f64 {
        let (a, b) = if horizontal {
            (image.get_pixel(x, y), image.get_pixel(x + 1, y))
        } else {
            (image.get_pixel(y, x), image.get_pixel(y, x + 1))
        };
        a.0.iter()
            .zip(b.0)
            .map(|(&a, b)| (f64::from(a) - f64::from(b)).abs())
            .sum::<f64>()
            / 3.0
    };
    // `along` runs across the seam, `across` along it.
    let (along, across) = if horizontal { (w, h) } else { (h, w) };
    let middle = along / 2 - 1;
    let seam = (0..across).map(|y| step(middle, y)).sum::<f64>() / f64::from(across);
    let interior = (0..along - 1)
        .flat_map(|x| (0..across).map(move |y| (x, y)))
        .map(|(x, y)| step(x, y))
        .sum::<f64>()
        / f64::from((along - 1) * across);
    (seam, interior)
}

/// An image rolled by half its size, so that its old edges meet in the
/// middle: how much larger the steps across them are than elsewhere, the
/// larger of the horizontal and the vertical ratio.
fn seam(image: &image::RgbImage) -> f64 {
    let (w, h) = image.dimensions();
    let tensor = images::from_rgb(image, w, h, &Device::Cpu).unwrap();
    let rolled = images::to_rgb(&roll(&tensor, h as usize / 2, w as usize / 2))
        .unwrap()
        .remove(0);
    [true, false]
        .into_iter()
        .map(|horizontal| {
            let (seam, interior) = seam_and_interior(&rolled, horizontal);
            seam / interior.max(1e-9)
        })
        .fold(0.0, f64::max)
}

/// The criterion: no step across the old edges larger than 1.5×
/// the image's mean step.
fn assert_seamless(image: &image::RgbImage, what: &str) {
    let seam = seam(image);
    assert!(seam <= 1.5, "{what}: a seam {seam:.2}× the mean step");
}

fn request(tile: bool) -> ImagineRequest {
    ImagineRequest {
        prompt: "a mossy stone wall".into(),
        negative_prompt: None,
        aspect: AspectRatio::SQUARE,
        seed: 3,
        steps: Some(2),
        guidance: None,
        style: None,
        images: 2,
        model: None,
        draft: false,
        quality: 1,
        chaos: 0,
        tile,
        image_weight: None,
    }
}

/// The test, through the worker's renderer: a `--tile` grid, its
/// draft and its variations tile without a seam.
#[test]
fn tiled_images_show_no_seam_when_rolled_by_half() {
    let tiny = Tiny::new("seam");
    let models = Models {
        pipeline: tiny.pipeline(),
        upscaler: None,
        tiling: Tiling { tile: 64, pad: 4 },
    };
    let mut no_progress = |_, _, _, _: Option<&Tensor>| Ok(());
    let tiled = request(true);
    let grid = models
        .imagine(&tiled, 3, 2, Decoder::Full, &mut no_progress)
        .unwrap();
    let drafts = models
        .imagine(&tiled, 3, 2, Decoder::Draft, &mut no_progress)
        .unwrap();
    for (i, drawn) in grid.iter().enumerate() {
        assert_seamless(&drawn.image, &format!("image {i}"));
    }
    for (i, drawn) in drafts.iter().enumerate() {
        assert_seamless(&drawn.image, &format!("draft {i}"));
        // A draft's U and V start from its VAE decode, tiled like the grid.
        let latents = drawn.draft_latents.as_deref().unwrap();
        let decoded = models
            .full_decode(latents, PaddingMode::Circular, &mut no_progress)
            .unwrap();
        assert_seamless(&decoded, &format!("draft {i} decoded by the VAE"));
    }
    let variations = models
        .vary(
            &tiled,
            &grid[0].image,
            VaryStrength::Strong,
            9,
            2,
            &mut no_progress,
        )
        .unwrap();
    for (i, drawn) in variations.iter().enumerate() {
        assert_seamless(&drawn.image, &format!("variation {i}"));
    }

    // The criterion sees the seams of plain drafts (the tiny VAE's images
    // are too noisy to show theirs).
    let plain_drafts = models
        .imagine(&request(false), 3, 2, Decoder::Draft, &mut no_progress)
        .unwrap();
    for (i, drawn) in plain_drafts.iter().enumerate() {
        let seam = seam(&drawn.image);
        assert!(seam > 1.5, "plain draft {i}: no seam ({seam:.2}×)");
    }

    // The switch goes back with the generation: a plain request after a
    // tiled one draws what it draws on a fresh pipeline.
    let plain = models
        .imagine(&request(false), 3, 2, Decoder::Full, &mut no_progress)
        .unwrap();
    let fresh = Models {
        pipeline: tiny.pipeline(),
        upscaler: None,
        tiling: Tiling { tile: 64, pad: 4 },
    }
    .imagine(&request(false), 3, 2, Decoder::Full, &mut no_progress)
    .unwrap();
    for (plain, fresh) in plain.iter().zip(&fresh) {
        assert!(
            plain.image == fresh.image,
            "a plain image after a tiled one"
        );
        assert!(
            plain.image != grid[0].image && plain.image != grid[1].image,
            "a plain image is not the tiled one"
        );
    }
}

/// txt2img and img2img set the padding for their own run only, and by
/// `Generation::tile` alone.
#[test]
fn a_generation_pads_as_it_asks_and_restores_the_padding() {
    let tiny = Tiny::new("generation");
    let pipeline = tiny.pipeline();
    let mut no_progress = |_, _, _, _: Option<&Tensor>| Ok(());
    let plain = pipeline
        .txt2img(&generation(false), &mut no_progress)
        .unwrap();
    let tiled = pipeline
        .txt2img(&generation(true), &mut no_progress)
        .unwrap();
    assert!(max_diff(&plain, &tiled) > 1e-2, "tiling changed nothing");
    assert_eq!(pipeline.unet.padding().mode(), PaddingMode::Zeros);
    assert_eq!(pipeline.vae.padding().mode(), PaddingMode::Zeros);

    // Inside a tiled guard, a plain generation is still plain, and the
    // guard's mode is back after it.
    {
        let _tiled = pipeline.padding(PaddingMode::Circular);
        let again = pipeline
            .txt2img(&generation(false), &mut no_progress)
            .unwrap();
        assert_eq!(max_diff(&plain, &again), 0.0);
        assert_eq!(pipeline.unet.padding().mode(), PaddingMode::Circular);
    }
    assert_eq!(pipeline.unet.padding().mode(), PaddingMode::Zeros);

    let source =
        images::from_rgb(&images::to_rgb(&tiled).unwrap()[0], 64, 48, &Device::Cpu).unwrap();
    let strength = 0.7;
    let img2img = |tile| {
        pipeline
            .img2img(
                &Generation {
                    steps: 4,
                    ..generation(tile)
                },
                &source,
                strength,
                &mut |_, _, _, _| Ok(()),
            )
            .unwrap()
    };
    let tiled_variation = img2img(true);
    assert!(max_diff(&img2img(false), &tiled_variation) > 1e-2);
    assert_seamless(
        &images::to_rgb(&tiled_variation).unwrap()[0],
        "a tiled img2img",
    );
    assert_eq!(pipeline.vae.padding().mode(), PaddingMode::Zeros);
}
