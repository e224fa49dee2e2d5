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

/// The vocabulary's features: computed once, cached per model, read back
/// the same; a cache file that is not ours is replaced.
#[test]
fn the_vocabulary_features_are_cached_per_model() {
    use wordup_engine::judge::reading::{self, Lexicon};
    use wordup_vocabulary::Kind;

    let clip = Clip::load(&dir(), &Device::Cpu).unwrap();
    let cache = common::scratch("lexicon-cache");
    let built = Lexicon::load(&clip, "tiny", Some(&cache)).unwrap();
    let files: Vec<_> = std::fs::read_dir(&cache)
        .unwrap()
        .map(|e| e.unwrap().path())
        .collect();
    assert_eq!(files.len(), 1, "{files:?}");
    let cached = Lexicon::load(&clip, "tiny", Some(&cache)).unwrap();
    assert_eq!(max_diff(built.features(), cached.features()), 0.0);
    assert_eq!(
        built.len(),
        wordup_vocabulary::Vocabulary::builtin().terms().len()
    );

    // Each row is the term's own text features, normalised.
    let i = built
        .terms()
        .iter()
        .position(|t| t.text == "watercolor")
        .unwrap();
    let direct = clip.text_features("watercolor").unwrap();
    let nearest = built.nearest(&direct, Kind::Medium, 1).unwrap();
    assert_eq!(nearest[0].0.text, "watercolor");
    assert!((nearest[0].1 - 1.0).abs() < 1e-5, "{}", nearest[0].1);
    let row = built.features().get(i).unwrap();
    let norm: f32 = row.sqr().unwrap().sum_all().unwrap().to_scalar().unwrap();
    assert!((norm - 1.0).abs() < 1e-5);

    // Another model's id is another file; a damaged file is rebuilt.
    Lexicon::load(&clip, "other", Some(&cache)).unwrap();
    assert_eq!(std::fs::read_dir(&cache).unwrap().count(), 2);
    std::fs::write(&files[0], b"not safetensors").unwrap();
    let rebuilt = Lexicon::load(&clip, "tiny", Some(&cache)).unwrap();
    assert_eq!(max_diff(built.features(), rebuilt.features()), 0.0);

    // Weights: a prompt of one phrase has none; of several, they sum to 1.
    assert!(reading::weigh_in_text(&clip, "a cat").unwrap().is_empty());
    let weighed = reading::weigh_in_text(&clip, "a cat, in the rain, watercolor").unwrap();
    assert_eq!(weighed.len(), 3);
    let total: f32 = weighed.iter().map(|w| w.weight).sum();
    assert!((total - 1.0).abs() < 1e-4, "{weighed:?}");
    assert!(weighed.windows(2).all(|w| w[0].weight >= w[1].weight));
    std::fs::remove_dir_all(&cache).ok();
}
