//! `--draft`: the pipeline decodes with the draft decoder (TAESD) instead of
//! the VAE, from the same latents; a draft image's kept latents decode with
//! the VAE to the image a full run draws. On the tiny random-weight model and
//! a tiny TAESD that fits it (both written by the testkit).
#![allow(clippy::unwrap_used)]

use wordup_engine_testkit::fixtures as common;

use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};
use common::{max_diff, scratch};
use wordup_engine::error::EngineError;
use wordup_engine::finish::upscale::Tiling;
use wordup_engine::ops::conv::PaddingMode;
use wordup_engine::sd::images;
use wordup_engine::sd::pipeline::{Decoder, Generation, PipelineOptions, StableDiffusion, Stage};
use wordup_engine::sd::source::{ModelFiles, SingleModelFiles, Variant};
use wordup_engine::sd::taesd::TinyAutoEncoder;
use wordup_engine::worker::render::Models;
use wordup_engine_testkit::tiny;
use wordup_queue::{AspectRatio, ImagineRequest};

fn cpu_f32() -> PipelineOptions {
    PipelineOptions {
        device: Device::Cpu,
        dtype: DType::F32,
        scheduler: None,
    }
}

/// The tiny model and its tiny draft decoder, written once per test.
struct Tiny {
    model: PathBuf,
    taesd: PathBuf,
}

impl Tiny {
    fn new(name: &str) -> Tiny {
        let model = scratch(&format!("draft-{name}"));
        tiny::write_tiny_model(&model).unwrap();
        let taesd = model.join("draft-decoder");
        tiny::write_tiny_taesd(&taesd).unwrap();
        Tiny { model, taesd }
    }

    fn pipeline(&self) -> StableDiffusion {
        let files = ModelFiles::from_dir(&self.model, Variant::Full).unwrap();
        StableDiffusion::load(&files, &cpu_f32()).unwrap()
    }

    fn with_draft_decoder(&self) -> StableDiffusion {
        let mut pipeline = self.pipeline();
        pipeline.set_draft_decoder(load_taesd(&self.taesd)).unwrap();
        pipeline
    }
}

impl Drop for Tiny {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.model).ok();
    }
}

fn load_taesd(dir: &Path) -> TinyAutoEncoder {
    let files = SingleModelFiles::from_dir(dir, Variant::Full).unwrap();
    TinyAutoEncoder::load(&files, &cpu_f32()).unwrap()
}

fn generation() -> Generation {
    Generation {
        prompt: "a red fox in the snow".into(),
        negative_prompt: None,
        width: 64,
        height: 48,
        steps: 2,
        guidance: 0.0,
        seeds: vec![7, 8],
        chaos: 0.0,
        tile: false,
    }
}

#[test]
fn a_draft_is_the_draft_decoders_decode_of_the_same_latents() {
    let tiny = Tiny::new("decode");
    let pipeline = tiny.with_draft_decoder();
    let mut no_progress = |_, _, _, _: Option<&Tensor>| Ok(());
    let full = pipeline
        .txt2img_with(&generation(), Decoder::Full, &mut no_progress)
        .unwrap();
    let draft = pipeline
        .txt2img_with(&generation(), Decoder::Draft, &mut no_progress)
        .unwrap();
    assert_eq!(draft.images.dims(), [2, 3, 48, 64]);
    assert_eq!(draft.latents.dims(), [2, 4, 24, 32]);
    assert_eq!(max_diff(&draft.latents, &full.latents), 0.0);

    // Exactly what TAESD, loaded on its own, makes of those latents (the
    // UNet's, not divided by the VAE's 0.18215), in [0, 1].
    let direct = load_taesd(&tiny.taesd)
        .decode_unet_latents(&draft.latents)
        .unwrap()
        .affine(0.5, 0.5)
        .unwrap()
        .clamp(0f32, 1f32)
        .unwrap();
    assert_eq!(max_diff(&draft.images, &direct), 0.0);

    // And not the VAE's picture.
    let apart = max_diff(&draft.images, &full.images);
    assert!(apart > 0.05, "draft and full decodes {apart} apart");
    // The full decode is the plain txt2img's.
    let plain = pipeline.txt2img(&generation(), &mut no_progress).unwrap();
    assert_eq!(max_diff(&plain, &full.images), 0.0);
    assert_eq!(
        max_diff(&pipeline.decode(&draft.latents).unwrap(), &full.images),
        0.0
    );
}

#[test]
fn a_draft_without_a_draft_decoder_is_refused_before_denoising() {
    let tiny = Tiny::new("none");
    let pipeline = tiny.pipeline();
    assert!(!pipeline.has_draft_decoder());
    let mut steps = 0;
    let error = pipeline
        .txt2img_with(&generation(), Decoder::Draft, &mut |_, _, _, _| {
            steps += 1;
            Ok(())
        })
        .unwrap_err();
    assert!(
        matches!(&error, EngineError::InvalidRequest(text) if text.contains("no draft decoder")),
        "{error}"
    );
    assert_eq!(steps, 0, "nothing drawn");
    let latents = Tensor::zeros((1, 4, 8, 8), DType::F32, &Device::Cpu).unwrap();
    assert!(pipeline.decode_with(&latents, Decoder::Draft).is_err());
}

#[test]
fn a_draft_decoder_that_does_not_fit_the_model_is_refused() {
    let tiny = Tiny::new("misfit");
    let mut pipeline = tiny.pipeline();
    // The TAESD parity fixture upscales 8×; the tiny model's VAE 2×.
    let misfit = load_taesd(&common::fixtures().join("taesd-tiny"));
    let error = pipeline.set_draft_decoder(misfit).unwrap_err();
    assert!(
        matches!(&error, EngineError::UnsupportedModel(text) if text.contains("8×") && text.contains("2×")),
        "{error}"
    );
    assert!(!pipeline.has_draft_decoder());
}

#[test]
fn kept_draft_latents_decode_to_the_full_runs_image() {
    let tiny = Tiny::new("render");
    let models = Models {
        pipeline: tiny.with_draft_decoder(),
        upscaler: None,
        tiling: Tiling { tile: 64, pad: 4 },
    };
    let request = ImagineRequest {
        prompt: "a lighthouse at dusk".into(),
        negative_prompt: None,
        aspect: AspectRatio::SQUARE,
        seed: 11,
        steps: Some(2),
        guidance: None,
        style: None,
        images: 2,
        model: None,
        draft: true,
        quality: 1,
        chaos: 0,
        tile: false,
        image_weight: None,
    };
    let mut no_progress = |_, _, _, _: Option<&Tensor>| Ok(());
    let drafts = models
        .imagine(&request, 11, 2, Decoder::Draft, &mut no_progress)
        .unwrap();
    let full = models
        .imagine(&request, 11, 2, Decoder::Full, &mut no_progress)
        .unwrap();
    for (draft, full) in drafts.iter().zip(&full) {
        assert_eq!(draft.decoder(), Decoder::Draft);
        assert_eq!(full.decoder(), Decoder::Full);
        assert!(draft.image != full.image, "a draft is TAESD's picture");
        let latents = draft.draft_latents.as_deref().unwrap();
        let decoded = models
            .full_decode(latents, PaddingMode::Zeros, &mut no_progress)
            .unwrap();
        // The VAE decodes one image alone here and two at once in the full
        // run: the pictures agree to within a rounding step.
        let worst = decoded
            .as_raw()
            .iter()
            .zip(full.image.as_raw())
            .map(|(a, b)| a.abs_diff(*b))
            .max()
            .unwrap();
        assert!(worst <= 1, "{worst} levels apart");
    }
}

/// Previews: each step after the first reports its estimate of the finished
/// latents; the draft decoder pictures it, or the linear map without one.
#[test]
fn a_preview_pictures_each_steps_estimate() {
    let tiny = Tiny::new("preview");
    let pipeline = tiny.with_draft_decoder();
    let mut reports: Vec<(usize, usize, Option<Tensor>)> = Vec::new();
    let generation = Generation {
        steps: 3,
        ..generation()
    };
    let drawn = pipeline
        .txt2img_with(
            &generation,
            Decoder::Draft,
            &mut |stage, step, total, denoised| {
                if stage == Stage::Denoising {
                    reports.push((step, total, denoised.cloned()));
                }
                Ok(())
            },
        )
        .unwrap();
    let estimates: Vec<(usize, bool)> = reports.iter().map(|(s, _, d)| (*s, d.is_some())).collect();
    assert_eq!(estimates, [(0, false), (1, true), (2, true), (3, false)]);

    let estimate = reports[2].2.clone().unwrap();
    let preview = pipeline.preview(&estimate).unwrap();
    assert_eq!(preview.len(), 2);
    assert_eq!(preview[0].dimensions(), (64, 48));
    // The draft decoder's picture of the estimate, as a draft result is of
    // the final latents.
    let decoded =
        images::to_rgb(&pipeline.decode_with(&estimate, Decoder::Draft).unwrap()).unwrap();
    assert_eq!(preview, decoded);
    // A later estimate is nearer the result than an earlier one.
    let final_images = images::to_rgb(&drawn.images).unwrap();
    let distance = |a: &image::RgbImage, b: &image::RgbImage| -> f64 {
        a.as_raw()
            .iter()
            .zip(b.as_raw())
            .map(|(x, y)| (f64::from(*x) - f64::from(*y)).abs())
            .sum()
    };
    let early = pipeline.preview(reports[1].2.as_ref().unwrap()).unwrap();
    assert!(distance(&preview[0], &final_images[0]) < distance(&early[0], &final_images[0]));

    // Without a draft decoder: the linear map, at the same size.
    let linear = tiny.pipeline().preview(&estimate).unwrap();
    assert_eq!(linear[0].dimensions(), (64, 48));
    assert_ne!(linear, preview);
}
