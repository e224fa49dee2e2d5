//! A tiny random-weight Stable Diffusion model in the diffusers layout, for
//! tests across the workspace (the bot's end-to-end tests run the engine on
//! it). SD-2/SD-Turbo style: Euler with trailing spacing, v-prediction off,
//! "!" padding; 64×64 pixels natively, any multiple of 4 works.

use std::path::{Path, PathBuf};

use candle_core::{DType, Device};
use candle_nn::{VarBuilder, VarMap};
use serde_json::json;

use wordup_engine::error::{EngineError, Result};
use wordup_engine::sd::noise::NoiseStream;
use wordup_engine::sd::pipeline::{PipelineOptions, StableDiffusion};
use wordup_engine::sd::source::{ModelFiles, Variant};
use wordup_engine::sd::{taesd, text_encoder, unet, vae};
use wordup_tokenizer::ClipTokenizer;

const VOCAB: &str = include_str!("../../engine/tests/fixtures/sd2-tiny/tokenizer/vocab.json");
const MERGES: &str = include_str!("../../engine/tests/fixtures/sd2-tiny/tokenizer/merges.txt");

/// The tiny model written to a scratch directory and loaded on the CPU in
/// f32, for tests that draw with it; the directory goes when this drops.
pub struct ScratchTiny {
    dir: PathBuf,
    pub pipeline: StableDiffusion,
}

impl ScratchTiny {
    /// `name` keeps concurrent tests' directories apart.
    pub fn new(name: &str) -> Result<ScratchTiny> {
        let dir = crate::fixtures::scratch(name);
        write_tiny_model(&dir)?;
        let pipeline = load_on_cpu(&dir)?;
        Ok(ScratchTiny { dir, pipeline })
    }

    /// Another pipeline from the same files, for an owner that takes one.
    pub fn load(&self) -> Result<StableDiffusion> {
        load_on_cpu(&self.dir)
    }
}

fn load_on_cpu(dir: &Path) -> Result<StableDiffusion> {
    let files = ModelFiles::from_dir(dir, Variant::Full)?;
    let options = PipelineOptions {
        device: Device::Cpu,
        dtype: DType::F32,
        scheduler: None,
    };
    StableDiffusion::load(&files, &options)
}

impl Drop for ScratchTiny {
    fn drop(&mut self) {
        std::fs::remove_dir_all(&self.dir).ok();
    }
}

/// Writes the model into `dir` (created if missing).
pub fn write_tiny_model(dir: &Path) -> Result<()> {
    let vocab_size = serde_json::from_str::<serde_json::Value>(VOCAB)
        .ok()
        .and_then(|v| v.as_object().map(|m| m.len()))
        .unwrap_or(0);
    let text_config = json!({
        "architectures": ["CLIPTextModel"], "model_type": "clip_text_model",
        "hidden_size": 32, "intermediate_size": 37, "num_attention_heads": 4,
        "num_hidden_layers": 2, "max_position_embeddings": 77, "vocab_size": vocab_size,
        "hidden_act": "gelu", "layer_norm_eps": 1e-5, "projection_dim": 32,
        "bos_token_id": vocab_size - 2, "eos_token_id": vocab_size - 1, "pad_token_id": 0
    });
    let unet_config = json!({
        "_class_name": "UNet2DConditionModel",
        "block_out_channels": [32, 64], "layers_per_block": 1,
        "down_block_types": ["CrossAttnDownBlock2D", "DownBlock2D"],
        "up_block_types": ["UpBlock2D", "CrossAttnUpBlock2D"],
        "attention_head_dim": [2, 4], "cross_attention_dim": 32, "use_linear_projection": true,
        "in_channels": 4, "out_channels": 4, "sample_size": 32, "norm_num_groups": 32,
        "flip_sin_to_cos": true, "freq_shift": 0
    });
    let vae_config = json!({
        "_class_name": "AutoencoderKL",
        "block_out_channels": [32, 64], "layers_per_block": 1, "latent_channels": 4,
        "norm_num_groups": 32, "in_channels": 3, "out_channels": 3, "sample_size": 64,
        "scaling_factor": 0.18215
    });
    let scheduler_config = json!({
        "_class_name": "EulerDiscreteScheduler", "num_train_timesteps": 1000,
        "beta_start": 0.00085, "beta_end": 0.012, "beta_schedule": "scaled_linear",
        "prediction_type": "epsilon", "timestep_spacing": "trailing", "steps_offset": 1
    });
    let model_index = json!({
        "_class_name": "StableDiffusionPipeline",
        "scheduler": ["diffusers", "EulerDiscreteScheduler"],
        "text_encoder": ["transformers", "CLIPTextModel"],
        "tokenizer": ["transformers", "CLIPTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"]
    });
    let tokenizer_config = json!({"model_max_length": 77, "pad_token": "!", "do_lower_case": true});
    let special_tokens =
        json!({"pad_token": "!", "bos_token": "<|startoftext|>", "eos_token": "<|endoftext|>"});

    let write = |name: &str, contents: &str| -> Result<()> {
        let path = dir.join(name);
        if let Some(parent) = path.parent() {
            std::fs::create_dir_all(parent).map_err(|source| EngineError::Io {
                path: parent.to_path_buf(),
                source,
            })?;
        }
        std::fs::write(&path, contents).map_err(|source| EngineError::Io { path, source })
    };
    write("model_index.json", &model_index.to_string())?;
    write(
        "scheduler/scheduler_config.json",
        &scheduler_config.to_string(),
    )?;
    write("text_encoder/config.json", &text_config.to_string())?;
    write("unet/config.json", &unet_config.to_string())?;
    write("vae/config.json", &vae_config.to_string())?;
    write("tokenizer/vocab.json", VOCAB)?;
    write("tokenizer/merges.txt", MERGES)?;
    write(
        "tokenizer/tokenizer_config.json",
        &tokenizer_config.to_string(),
    )?;
    write(
        "tokenizer/special_tokens_map.json",
        &special_tokens.to_string(),
    )?;

    let text: text_encoder::Config = parse(dir, text_config)?;
    let unet: unet::Config = parse(dir, unet_config)?;
    let vae: vae::Config = parse(dir, vae_config)?;

    let save = |name: &str, build: &dyn Fn(VarBuilder) -> Result<()>| -> Result<()> {
        let varmap = VarMap::new();
        build(VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu))?;
        reseed(&varmap)?;
        varmap.save(dir.join(name))?;
        Ok(())
    };
    save("text_encoder/model.safetensors", &|vb| {
        text_encoder::TextEncoder::new(&text, vb)
            .map(drop)
            .map_err(Into::into)
    })?;
    save("unet/diffusion_pytorch_model.safetensors", &|vb| {
        unet.build(vb).map(drop)
    })?;
    save("vae/diffusion_pytorch_model.safetensors", &|vb| {
        vae::AutoEncoder::new(&vae, vb)
            .map(drop)
            .map_err(Into::into)
    })?;
    Ok(())
}

/// Writes a tiny random draft decoder (TAESD's structure, two levels) that
/// fits [`write_tiny_model`]'s latents: 4 channels, 2× upscaling. The
/// one-model layout: `config.json` and `diffusion_pytorch_model.safetensors`.
pub fn write_tiny_taesd(dir: &Path) -> Result<()> {
    let config = json!({
        "_class_name": "AutoencoderTiny",
        "act_fn": "relu", "in_channels": 3, "out_channels": 3, "latent_channels": 4,
        "encoder_block_out_channels": [8, 8], "decoder_block_out_channels": [8, 8],
        "num_encoder_blocks": [1, 1], "num_decoder_blocks": [1, 1],
        "upsampling_scaling_factor": 2, "upsample_fn": "nearest", "scaling_factor": 1.0
    });
    std::fs::create_dir_all(dir).map_err(|source| EngineError::Io {
        path: dir.to_path_buf(),
        source,
    })?;
    let path = dir.join("config.json");
    std::fs::write(&path, config.to_string()).map_err(|source| EngineError::Io { path, source })?;
    let config: taesd::Config = parse(dir, config)?;
    let varmap = VarMap::new();
    taesd::TinyAutoEncoder::new(
        &config,
        VarBuilder::from_varmap(&varmap, DType::F32, &Device::Cpu),
    )?;
    reseed(&varmap)?;
    varmap.save(dir.join("diffusion_pytorch_model.safetensors"))?;
    Ok(())
}

fn parse<T: serde::de::DeserializeOwned>(dir: &Path, value: serde_json::Value) -> Result<T> {
    serde_json::from_value(value).map_err(|source| EngineError::Json {
        path: dir.to_path_buf(),
        source,
    })
}

/// candle's CPU initialisers cannot be seeded: replace every value with a
/// seeded one of the same mean and spread, so the model is the same on every
/// run (and tests that look at its images are repeatable).
fn reseed(varmap: &VarMap) -> Result<()> {
    let data = varmap
        .data()
        .lock()
        .map_err(|_| EngineError::InvalidRequest("poisoned weights".into()))?;
    let mut names: Vec<&String> = data.keys().collect();
    names.sort();
    for (i, name) in names.into_iter().enumerate() {
        let var = &data[name];
        let values = var.as_tensor().flatten_all()?.to_vec1::<f32>()?;
        let n = values.len().max(1) as f32;
        let mean = values.iter().sum::<f32>() / n;
        let spread = (values.iter().map(|v| (v - mean) * (v - mean)).sum::<f32>() / n).sqrt();
        let spread = if spread > 0.0 { spread } else { 0.02 };
        let noise =
            NoiseStream::new(0x5eed + i as u64).tensor(var.dims(), &Device::Cpu, DType::F32)?;
        var.set(&noise.affine(f64::from(spread), f64::from(mean))?)?;
    }
    Ok(())
}

/// Rewrites a tokenizer folder as transformers 5 saves it: `tokenizer.json`
/// alone, `vocab.json` and `merges.txt` removed.
pub fn to_tokenizer_json_only(tokenizer_dir: &Path) -> Result<()> {
    let json = ClipTokenizer::from_dir(tokenizer_dir)?.to_json()?;
    let path = tokenizer_dir.join("tokenizer.json");
    std::fs::write(&path, json).map_err(|source| EngineError::Io { path, source })?;
    for name in ["vocab.json", "merges.txt"] {
        let path = tokenizer_dir.join(name);
        std::fs::remove_file(&path).map_err(|source| EngineError::Io { path, source })?;
    }
    Ok(())
}
