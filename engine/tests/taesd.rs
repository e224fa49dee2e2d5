//! The Tiny AutoEncoder against diffusers' `AutoencoderTiny` on a tiny
//! random-weight model with TAESD's block structure, loaded through our
//! real loading code (fixture made by scripts/fixtures/make_taesd_parity.py).
#![allow(clippy::unwrap_used)]

use wordup_engine_testkit::fixtures as common;

use std::collections::HashMap;
use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use common::max_diff;
use wordup_engine::error::EngineError;
use wordup_engine::sd::pipeline::PipelineOptions;
use wordup_engine::sd::source::{SingleModelFiles, Variant};
use wordup_engine::sd::taesd::{Activation, Config, TinyAutoEncoder};

/// Max absolute difference, f32 on the CPU (float32 against float64 in
/// PyTorch: 7e-6 on the decoder's output).
const TOLERANCE: f32 = 1e-4;

fn fixture_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/taesd-tiny")
}

fn cpu_f32() -> PipelineOptions {
    PipelineOptions {
        device: Device::Cpu,
        dtype: DType::F32,
        scheduler: None,
    }
}

fn load() -> (TinyAutoEncoder, HashMap<String, Tensor>) {
    let files = SingleModelFiles::from_dir(&fixture_dir(), Variant::Full).unwrap();
    let model = TinyAutoEncoder::load(&files, &cpu_f32()).unwrap();
    let reference =
        candle_core::safetensors::load(fixture_dir().join("reference.safetensors"), &Device::Cpu)
            .unwrap();
    (model, reference)
}

/// (max, mean) absolute difference.
fn differences(got: &Tensor, expected: &Tensor) -> (f32, f32) {
    let mean = (got - expected)
        .unwrap()
        .abs()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap();
    (max_diff(got, expected), mean)
}

#[test]
fn decoder_matches_diffusers() {
    let (model, reference) = load();
    let decoded = model.decode(&reference["decode_input"]).unwrap();
    let (max, mean) = differences(&decoded, &reference["decode_output"]);
    eprintln!("decode: max |diff| {max:e}, mean {mean:e}");
    assert!(
        max <= TOLERANCE,
        "decode: max |diff| {max:e} > {TOLERANCE:e}"
    );
    // TAESD's scaling factor is 1: the UNet's latents go in as they are.
    let from_unet = model
        .decode_unet_latents(&reference["decode_input"])
        .unwrap();
    assert_eq!(max_diff(&from_unet, &decoded), 0.0);
}

#[test]
fn encoder_matches_diffusers() {
    let (model, reference) = load();
    let encoded = model.encode(&reference["encode_input"]).unwrap();
    let (max, mean) = differences(&encoded, &reference["encode_output"]);
    eprintln!("encode: max |diff| {max:e}, mean {mean:e}");
    assert!(
        max <= TOLERANCE,
        "encode: max |diff| {max:e} > {TOLERANCE:e}"
    );
}

#[test]
fn unet_latents_are_unscaled_with_the_models_own_factors() {
    let (mut model, reference) = load();
    model.config.scaling_factor = 0.5;
    model.config.shift_factor = 0.25;
    let latents = &reference["decode_input"];
    let expected = model.decode(&latents.affine(2.0, 0.25).unwrap()).unwrap();
    let got = model.decode_unet_latents(latents).unwrap();
    assert_eq!(max_diff(&got, &expected), 0.0);
}

#[test]
fn decodes_in_f16_close_to_f32() {
    let (model, reference) = load();
    let files = SingleModelFiles::from_dir(&fixture_dir(), Variant::PreferFp16).unwrap();
    let half = TinyAutoEncoder::load(
        &files,
        &PipelineOptions {
            dtype: DType::F16,
            ..cpu_f32()
        },
    )
    .unwrap();
    let latents = reference["decode_input"].to_dtype(DType::F16).unwrap();
    let decoded = half.decode(&latents).unwrap();
    assert_eq!(decoded.dtype(), DType::F16);
    let expected = model.decode(&reference["decode_input"]).unwrap();
    let (max, mean) = differences(&decoded.to_dtype(DType::F32).unwrap(), &expected);
    assert!(max < 0.1 && mean < 0.01, "f16: max {max}, mean {mean}");
}

#[test]
fn missing_optional_fields_take_diffusers_defaults() {
    // diffusers 0.42's `AutoencoderTiny.__init__` defaults, which are also
    // madebyollin/taesd's architecture.
    let config: Config = serde_json::from_str(r#"{"_class_name": "AutoencoderTiny"}"#).unwrap();
    assert_eq!(config.in_channels, 3);
    assert_eq!(config.out_channels, 3);
    assert_eq!(config.encoder_block_out_channels, [64, 64, 64, 64]);
    assert_eq!(config.decoder_block_out_channels, [64, 64, 64, 64]);
    assert_eq!(config.act_fn, Activation::Relu);
    assert_eq!(config.upsample_fn, "nearest");
    assert_eq!(config.latent_channels, 4);
    assert_eq!(config.upsampling_scaling_factor, 2);
    assert_eq!(config.num_encoder_blocks, [1, 3, 3, 3]);
    assert_eq!(config.num_decoder_blocks, [3, 3, 3, 1]);
    assert_eq!(config.latent_magnitude, 3.0);
    assert_eq!(config.latent_shift, 0.5);
    assert!(!config.force_upcast);
    assert_eq!(config.scaling_factor, 1.0);
    assert_eq!(config.shift_factor, 0.0);
    assert_eq!(config, Config::default());
    assert_eq!(config.scale_factor(), 8);
    assert_eq!(config.encoder_scale_factor(), 8);
    config.check().unwrap();

    // Fields given override them; activations in any case, as diffusers.
    let config: Config = serde_json::from_str(
        r#"{"act_fn": "SiLU", "num_decoder_blocks": [2, 2, 1], "decoder_block_out_channels": [16, 16, 16], "latent_magnitude": 2.5}"#,
    )
    .unwrap();
    assert_eq!(config.act_fn, Activation::Silu);
    assert_eq!(config.num_decoder_blocks, [2, 2, 1]);
    assert_eq!(config.scale_factor(), 4);
    assert_eq!(config.latent_magnitude, 2.5);
    assert_eq!(config.num_encoder_blocks, [1, 3, 3, 3]);
}

#[test]
fn configs_diffusers_cannot_run_are_refused() {
    let unknown = serde_json::from_str::<Config>(r#"{"act_fn": "tanh"}"#).unwrap_err();
    assert!(unknown.to_string().contains("unknown act_fn"), "{unknown}");
    for json in [
        r#"{"decoder_block_out_channels": [64, 32, 32, 32]}"#,
        r#"{"num_decoder_blocks": [3, 3, 3]}"#,
        r#"{"upsample_fn": "bilinear"}"#,
    ] {
        let config: Config = serde_json::from_str(json).unwrap();
        assert!(
            matches!(config.check(), Err(EngineError::UnsupportedModel(_))),
            "{json}"
        );
    }
}

#[test]
fn a_folder_without_weights_is_refused_with_the_names() {
    let dir = common::scratch("taesd-no-weights");
    std::fs::copy(fixture_dir().join("config.json"), dir.join("config.json")).unwrap();
    let error = SingleModelFiles::from_dir(&dir, Variant::PreferFp16).unwrap_err();
    let text = error.to_string();
    assert!(
        text.contains(
            "diffusion_pytorch_model.fp16.safetensors or diffusion_pytorch_model.safetensors"
        ),
        "{text}"
    );
    assert!(!text.contains("config.json"), "{text}");
    std::fs::remove_dir_all(dir).ok();
}
