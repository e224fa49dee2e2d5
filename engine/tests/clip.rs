//! CLIP against transformers' CLIPModel on a tiny random CLIP, preprocessing
//! included (fixtures made by scripts/fixtures/make_clip_parity.py).
#![allow(clippy::unwrap_used)]

use wordup_engine_testkit::fixtures as common;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use common::max_diff;
use wordup_engine::judge::clip::{self, Clip};

fn dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/clip-tiny")
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(dir().join("reference.safetensors"), &Device::Cpu).unwrap()
}

const TEXTS: [&str; 3] = ["a photo of a cat", "a red fox in the snow", ""];

#[test]
fn preprocessing_matches_clip_image_processor_exactly() {
    let reference = reference();
    for i in 0..4 {
        let image = image::open(dir().join(format!("image_{i}.png")))
            .unwrap()
            .to_rgb8();
        let pixels = clip::preprocess(&image, 224, &Device::Cpu).unwrap();
        let diff = max_diff(&pixels, &reference[&format!("pixel_values_{i}")]);
        assert!(diff < 1e-5, "image {i}: max |diff| {diff}");
    }
}

#[test]
fn features_and_scores_match_transformers() {
    let reference = reference();
    let clip = Clip::load(&dir(), &Device::Cpu).unwrap();
    let texts: Vec<Tensor> = TEXTS
        .iter()
        .map(|t| clip.text_features(t).unwrap())
        .collect();
    for (j, features) in texts.iter().enumerate() {
        let diff = max_diff(features, &reference[&format!("text_embeds_{j}")]);
        assert!(diff < 1e-4, "text {j}: {diff}");
    }
    let scores = reference["clip_score"].to_vec2::<f32>().unwrap();
    for (i, row) in scores.iter().enumerate() {
        let image = image::open(dir().join(format!("image_{i}.png")))
            .unwrap()
            .to_rgb8();
        let features = clip.image_features(&image).unwrap();
        let diff = max_diff(&features, &reference[&format!("image_embeds_{i}")]);
        assert!(diff < 1e-4, "image {i}: {diff}");
        for (j, expected) in row.iter().enumerate() {
            let score = clip::clip_score(&features, &texts[j]).unwrap();
            assert!(
                (score - expected).abs() < 1e-3,
                "score({i},{j}) {score} vs {expected}"
            );
            assert!((clip.score(&image, TEXTS[j]).unwrap() - expected).abs() < 1e-3);
        }
    }
    // The scores are not all zero: the check above compared real values.
    assert!(scores.iter().flatten().filter(|s| **s > 1.0).count() >= 4);
}

#[test]
fn zero_shot_concepts_report_what_reaches_the_threshold() {
    let clip = Clip::load(&dir(), &Device::Cpu).unwrap();
    let image = image::open(dir().join("image_0.png")).unwrap().to_rgb8();
    let concepts: Vec<String> = TEXTS.iter().map(|t| t.to_string()).collect();
    let scores = reference()["clip_score"].to_vec2::<f32>().unwrap();
    let hits = clip.concepts_present(&image, &concepts, 8.0).unwrap();
    let expected: Vec<&str> = TEXTS
        .iter()
        .zip(&scores[0])
        .filter(|(_, s)| **s >= 8.0)
        .map(|(t, _)| *t)
        .collect();
    assert_eq!(
        hits.iter().map(|(c, _)| c.as_str()).collect::<Vec<_>>(),
        expected
    );
}
