//! CLIP (openai/clip-vit-base-patch32 by default) for judging images: text
//! and image features with CLIP's own preprocessing, the CLIP score
//! (100·max(cos, 0), as torchmetrics), reranking, and zero-shot concept checks.

use std::path::Path;

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use candle_transformers::models::clip::{ClipConfig, ClipModel, text_model, vision_model};
use image::RgbImage;
use serde::Deserialize;

use crate::error::{EngineError, Result};
use wordup_tokenizer::ClipTokenizer;

pub const MEAN: [f32; 3] = [0.481_454_66, 0.457_827_5, 0.408_210_73];
pub const STD: [f32; 3] = [0.268_629_54, 0.261_302_6, 0.275_777_1];

#[derive(Debug, Clone, Deserialize)]
struct TextConfig {
    hidden_size: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    max_position_embeddings: usize,
    vocab_size: usize,
    #[serde(default)]
    hidden_act: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
struct VisionConfig {
    hidden_size: usize,
    intermediate_size: usize,
    num_attention_heads: usize,
    num_hidden_layers: usize,
    image_size: usize,
    patch_size: usize,
    #[serde(default)]
    hidden_act: Option<String>,
}

fn default_logit_scale() -> f32 {
    2.6592
}

/// `config.json` of a transformers `CLIPModel`, the fields we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    text_config: TextConfig,
    vision_config: VisionConfig,
    projection_dim: usize,
    #[serde(default = "default_logit_scale")]
    logit_scale_init_value: f32,
}

impl Config {
    pub fn image_size(&self) -> usize {
        self.vision_config.image_size
    }

    fn to_candle(&self) -> Result<ClipConfig> {
        for act in [&self.text_config.hidden_act, &self.vision_config.hidden_act] {
            if act.as_deref().is_some_and(|a| a != "quick_gelu") {
                return Err(EngineError::UnsupportedModel(format!(
                    "CLIP activation {act:?}: only quick_gelu is supported"
                )));
            }
        }
        let t = &self.text_config;
        let v = &self.vision_config;
        Ok(ClipConfig {
            text_config: text_model::ClipTextConfig {
                vocab_size: t.vocab_size,
                embed_dim: t.hidden_size,
                activation: text_model::Activation::QuickGelu,
                intermediate_size: t.intermediate_size,
                max_position_embeddings: t.max_position_embeddings,
                pad_with: None,
                num_hidden_layers: t.num_hidden_layers,
                num_attention_heads: t.num_attention_heads,
                projection_dim: self.projection_dim,
            },
            vision_config: vision_model::ClipVisionConfig {
                embed_dim: v.hidden_size,
                activation: text_model::Activation::QuickGelu,
                intermediate_size: v.intermediate_size,
                num_hidden_layers: v.num_hidden_layers,
                num_attention_heads: v.num_attention_heads,
                projection_dim: self.projection_dim,
                num_channels: 3,
                image_size: v.image_size,
                patch_size: v.patch_size,
            },
            logit_scale_init_value: self.logit_scale_init_value,
            image_size: v.image_size,
        })
    }
}

/// CLIP's preprocessing: shortest side to `size` with Pillow's bicubic,
/// centre crop to `size`², scale to [0, 1], normalise with CLIP's mean and
/// std. Returns `[1, 3, size, size]`.
pub fn preprocess(image: &RgbImage, size: usize, device: &Device) -> Result<Tensor> {
    let (w, h) = image.dimensions();
    let size32 = size as u32;
    // transformers rounds the long side: int(long * short_target / short).
    let (rw, rh) = if w <= h {
        (size32, ((h as u64 * size as u64) / w.max(1) as u64) as u32)
    } else {
        (((w as u64 * size as u64) / h.max(1) as u64) as u32, size32)
    };
    let resized = crate::finish::resample::resize(
        image,
        rw.max(size32),
        rh.max(size32),
        crate::finish::resample::Filter::Bicubic,
    );
    let left = (resized.width() - size32) / 2;
    let top = (resized.height() - size32) / 2;
    let cropped = image::imageops::crop_imm(&resized, left, top, size32, size32).to_image();
    let mut data = vec![0f32; 3 * size * size];
    for (x, y, pixel) in cropped.enumerate_pixels() {
        for c in 0..3 {
            let value = f32::from(pixel.0[c]) / 255.0;
            data[c * size * size + y as usize * size + x as usize] = (value - MEAN[c]) / STD[c];
        }
    }
    Ok(Tensor::from_vec(data, (1, 3, size, size), device)?)
}

/// CLIP score: 100·max(cos(a, b), 0), as torchmetrics defines it.
pub fn clip_score(image_features: &Tensor, text_features: &Tensor) -> Result<f32> {
    let a = image_features.flatten_all()?.to_dtype(DType::F32)?;
    let b = text_features.flatten_all()?.to_dtype(DType::F32)?;
    let dot = (&a * &b)?.sum_all()?.to_scalar::<f32>()?;
    let na = a.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
    let nb = b.sqr()?.sum_all()?.sqrt()?.to_scalar::<f32>()?;
    Ok(100.0 * (dot / (na * nb).max(f32::EPSILON)).max(0.0))
}

/// Indices of the `keep` best-scoring candidates, best first; ties keep the
/// earlier candidate.
pub fn rerank(scores: &[f32], keep: usize) -> Vec<usize> {
    let mut order: Vec<usize> = (0..scores.len()).collect();
    order.sort_by(|&a, &b| scores[b].total_cmp(&scores[a]).then(a.cmp(&b)));
    order.truncate(keep);
    order
}

/// A loaded CLIP.
pub struct Clip {
    model: ClipModel,
    tokenizer: ClipTokenizer,
    image_size: usize,
    device: Device,
}

impl Clip {
    /// Loads a transformers CLIP directory: config.json, model.safetensors,
    /// vocab.json and merges.txt.
    pub fn load(dir: &Path, device: &Device) -> Result<Clip> {
        let config_path = dir.join("config.json");
        let text = std::fs::read_to_string(&config_path).map_err(|source| EngineError::Io {
            path: config_path.clone(),
            source,
        })?;
        let config: Config = serde_json::from_str(&text).map_err(|source| EngineError::Json {
            path: config_path,
            source,
        })?;
        let weights = candle_core::safetensors::load(dir.join("model.safetensors"), device)?;
        let vb = VarBuilder::from_tensors(weights, DType::F32, device);
        Ok(Clip {
            model: ClipModel::new(vb, &config.to_candle()?)?,
            tokenizer: ClipTokenizer::from_dir(dir)?,
            image_size: config.image_size(),
            device: device.clone(),
        })
    }

    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Projected text features `[1, projection_dim]`. Long texts are cut to
    /// CLIP's 77 tokens: scores compare against the prompt's beginning.
    pub fn text_features(&self, text: &str) -> Result<Tensor> {
        let mut ids = self.tokenizer.encode(text)?;
        if ids.len() > self.tokenizer.max_len {
            let end = ids[ids.len() - 1];
            ids.truncate(self.tokenizer.max_len - 1);
            ids.push(end);
        }
        let ids = Tensor::new(ids.as_slice(), &self.device)?.unsqueeze(0)?;
        Ok(self.model.get_text_features(&ids)?)
    }

    /// Projected image features `[1, projection_dim]`.
    pub fn image_features(&self, image: &RgbImage) -> Result<Tensor> {
        let pixels = preprocess(image, self.image_size, &self.device)?;
        self.image_features_of_pixels(&pixels)
    }

    pub fn image_features_of_pixels(&self, pixels: &Tensor) -> Result<Tensor> {
        Ok(self.model.get_image_features(pixels)?)
    }

    pub fn score(&self, image: &RgbImage, text: &str) -> Result<f32> {
        clip_score(&self.image_features(image)?, &self.text_features(text)?)
    }

    /// Zero-shot check: the concepts whose score for `image` reaches `threshold`.
    pub fn concepts_present(
        &self,
        image: &RgbImage,
        concepts: &[String],
        threshold: f32,
    ) -> Result<Vec<(String, f32)>> {
        let features = self.image_features(image)?;
        let mut hits = Vec::new();
        for concept in concepts {
            let score = clip_score(&features, &self.text_features(concept)?)?;
            if score >= threshold {
                hits.push((concept.clone(), score));
            }
        }
        Ok(hits)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rerank_keeps_the_best_in_order() {
        for (scores, keep, expected) in [
            (vec![10.0, 30.0, 20.0, 25.0], 2, vec![1, 3]),
            (vec![5.0, 5.0, 1.0], 2, vec![0, 1]),
            (vec![1.0], 4, vec![0]),
            (vec![], 1, vec![]),
        ] {
            assert_eq!(rerank(&scores, keep), expected, "{scores:?}");
        }
    }

    #[test]
    fn score_is_clipped_cosine_times_100() {
        let device = Device::Cpu;
        let a = Tensor::new(&[[1f32, 0.0]], &device).unwrap();
        let b = Tensor::new(&[[1f32, 1.0]], &device).unwrap();
        let c = Tensor::new(&[[-1f32, 0.0]], &device).unwrap();
        assert!((clip_score(&a, &b).unwrap() - 70.710_68).abs() < 1e-3);
        assert_eq!(clip_score(&a, &c).unwrap(), 0.0);
    }
}
