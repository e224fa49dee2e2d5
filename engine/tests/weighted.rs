//! Weighted multi-prompts (`a castle:: winter::2 fog::-0.5`): each part
//! encoded alone and combined as Σ wᵢ·Eᵢ / Σ wᵢ. Against transformers on the
//! tiny SD text encoders (fixture made by
//! scripts/fixtures/make_weighted_prompt_parity.py), and against our own
//! encoder for what the fixture does not cover (guidance, chunks).
#![allow(clippy::unwrap_used)]

use wordup_engine_testkit::fixtures as common;

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};
use common::{fixtures, max_diff};
use wordup_engine::sd::pipeline::{PipelineOptions, StableDiffusion};
use wordup_engine::sd::source::{ModelFiles, Variant};
use wordup_engine::sd::weights;

/// parity.rs's tolerance for a single module call.
const MODULE_TOLERANCE: f32 = 1e-4;

fn pipeline(name: &str) -> StableDiffusion {
    let files = ModelFiles::from_dir(&fixtures().join(name), Variant::Full).unwrap();
    let options = PipelineOptions {
        device: Device::Cpu,
        dtype: DType::F32,
        scheduler: None,
    };
    StableDiffusion::load(&files, &options).unwrap()
}

struct Reference {
    tensors: HashMap<String, Tensor>,
    meta: serde_json::Value,
}

impl Reference {
    fn load() -> Reference {
        let root = fixtures().join("weighted-prompt");
        Reference {
            tensors: candle_core::safetensors::load(
                root.join("reference.safetensors"),
                &Device::Cpu,
            )
            .unwrap(),
            meta: serde_json::from_str(
                &std::fs::read_to_string(root.join("reference.json")).unwrap(),
            )
            .unwrap(),
        }
    }

    fn tensor(&self, name: &str) -> &Tensor {
        self.tensors
            .get(name)
            .unwrap_or_else(|| panic!("no reference tensor {name}"))
    }

    fn ids(&self, name: &str) -> Vec<u32> {
        let ids = self.tensor(name).flatten_all().unwrap();
        ids.to_vec1::<i64>()
            .unwrap()
            .into_iter()
            .map(|id| id as u32)
            .collect()
    }

    fn text(&self, key: &str) -> &str {
        self.meta[key].as_str().unwrap()
    }
}

fn assert_close(what: &str, got: &Tensor, expected: &Tensor) {
    let diff = max_diff(got, expected);
    assert!(
        diff <= MODULE_TOLERANCE,
        "{what}: max |diff| {diff:e} > {MODULE_TOLERANCE:e}"
    );
}

#[test]
fn weighted_prompts_match_transformers() {
    let reference = Reference::load();
    let (prompt, negative) = (reference.text("prompt"), reference.text("negative_prompt"));
    let parts = reference.meta["parts"].as_array().unwrap();
    for model in ["sd1-tiny", "sd2-tiny"] {
        let pipeline = pipeline(model);
        // The parts we split are the fixture's, and tokenized alike.
        let ours = weights::parts(prompt).unwrap();
        assert_eq!(ours.len(), parts.len());
        for (i, (part, expected)) in ours.iter().zip(parts).enumerate() {
            assert_eq!(part.text, expected["text"].as_str().unwrap());
            assert_eq!(f64::from(part.weight), expected["weight"].as_f64().unwrap());
            let chunks = pipeline.tokenizer.encode_chunks(&part.text, 1).unwrap();
            assert_eq!(
                chunks,
                [reference.ids(&format!("{model}.tokens.part_{i}"))],
                "{model} tokens of {:?}",
                part.text
            );
        }

        let guided = pipeline.condition(prompt, Some(negative), 7.5).unwrap();
        let expected = reference.tensor(&format!("{model}.weighted"));
        assert_close(&format!("{model} weighted"), &guided.prompt, expected);
        assert_close(
            &format!("{model} negative"),
            guided.negative.as_ref().unwrap(),
            reference.tensor(&format!("{model}.text.negative")),
        );

        // Without guidance (SD-Turbo): the same positive side, no negative.
        let unguided = pipeline.condition(prompt, Some(negative), 0.0).unwrap();
        assert!(unguided.negative.is_none());
        assert_eq!(max_diff(&unguided.prompt, &guided.prompt), 0.0);
    }
}

#[test]
fn weights_combine_the_positive_side_and_leave_the_negative_alone() {
    let pipeline = pipeline("sd2-tiny");
    let negative = Some("blurry, low quality");
    let weighted = pipeline
        .condition("a castle:: winter::2 fog::-0.5", negative, 7.5)
        .unwrap();
    let plain = pipeline.condition("a castle", negative, 7.5).unwrap();
    assert_eq!(
        max_diff(
            weighted.negative.as_ref().unwrap(),
            plain.negative.as_ref().unwrap()
        ),
        0.0
    );
    let parts: Vec<Tensor> = ["a castle", "winter", "fog"]
        .iter()
        .map(|text| pipeline.encode_text(text, 1).unwrap())
        .collect();
    let expected = weights::combine(&parts, &[1.0, 2.0, -0.5]).unwrap();
    assert_eq!(max_diff(&weighted.prompt, &expected), 0.0);
    // The weights matter: the combination is none of its parts.
    for part in &parts {
        assert!(max_diff(&weighted.prompt, part) > 1e-3);
    }
}

#[test]
fn a_prompt_without_weights_is_encoded_as_it_always_was() {
    let pipeline = pipeline("sd1-tiny");
    for prompt in ["a castle", "  ratio 16:9 poster ", ""] {
        let conditioning = pipeline.condition(prompt, Some("fog"), 7.5).unwrap();
        let alone = pipeline.encode_text(prompt, 1).unwrap();
        assert_eq!(max_diff(&conditioning.prompt, &alone), 0.0, "{prompt:?}");
    }
}

#[test]
fn every_part_and_the_negative_get_as_many_chunks_as_the_longest() {
    let pipeline = pipeline("sd1-tiny");
    let long = "a castle on a hill, snow on the battlements, crows in the sky, ".repeat(4);
    let long = long.as_str();
    let chunks = pipeline.tokenizer.encode_chunks(long, 1).unwrap().len();
    assert!(
        chunks >= 2,
        "the long part needs {chunks} chunks; it must need two"
    );
    let conditioning = pipeline
        .condition(&format!("winter::2 {long}::1"), Some("fog"), 7.5)
        .unwrap();
    let tokens = 77 * chunks;
    assert_eq!(conditioning.prompt.dims(), [1, tokens, 32]);
    assert_eq!(
        conditioning.negative.as_ref().unwrap().dims(),
        [1, tokens, 32]
    );
    let expected = weights::combine(
        &[
            pipeline.encode_text("winter", chunks).unwrap(),
            pipeline.encode_text(long, chunks).unwrap(),
        ],
        &[2.0, 1.0],
    )
    .unwrap();
    assert_eq!(max_diff(&conditioning.prompt, &expected), 0.0);
    assert_eq!(
        max_diff(
            conditioning.negative.as_ref().unwrap(),
            &pipeline.encode_text("fog", chunks).unwrap()
        ),
        0.0
    );
}

#[test]
fn refused_weights_are_an_invalid_request() {
    let pipeline = pipeline("sd2-tiny");
    let error = pipeline.condition("a::1 b::-1", None, 0.0).unwrap_err();
    assert!(error.to_string().contains("more than 0"), "{error}");
}
