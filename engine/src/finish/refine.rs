//! Finishing one image: the GAN upscale (×4, or ×2 by resizing the ×4
//! result) and the "subtle" and "creative" upscales, which pass the ×2
//! result through img2img at low and higher strength to add detail.

use candle_core::Device;
use image::RgbImage;

use crate::error::{EngineError, Result};
use crate::finish::upscale::{Tiling, Upscaler};
use crate::sd::images;
use crate::sd::pipeline::{Generation, ProgressFn, StableDiffusion};

/// img2img strengths of the refining upscales.
pub const SUBTLE_STRENGTH: f64 = 0.3;
pub const CREATIVE_STRENGTH: f64 = 0.55;

/// ×`scale` (2 or 4) with the GAN; ×2 is the ×4 result resized with Lanczos.
pub fn gan_upscale(
    upscaler: &Upscaler,
    image: &RgbImage,
    scale: u32,
    tiling: Tiling,
    on_tile: &mut dyn FnMut(usize, usize) -> Result<()>,
) -> Result<RgbImage> {
    if scale != 2 && scale != 4 {
        return Err(EngineError::InvalidRequest(format!(
            "upscale factor must be 2 or 4, got {scale}"
        )));
    }
    let input = images::from_rgb(image, image.width(), image.height(), &Device::Cpu)?;
    let output = upscaler.upscale4(&input, tiling, on_tile)?;
    let mut result = images::to_rgb(&output)?
        .pop()
        .ok_or_else(|| EngineError::Image("the upscaler returned nothing".into()))?;
    if scale == 2 {
        result = image::imageops::resize(
            &result,
            image.width() * 2,
            image.height() * 2,
            image::imageops::FilterType::Lanczos3,
        );
    }
    Ok(result)
}

/// img2img over an upscaled image at `strength`, keeping its size (snapped
/// down to what the model can make).
#[allow(clippy::too_many_arguments)]
pub fn refine(
    pipeline: &StableDiffusion,
    image: &RgbImage,
    prompt: &str,
    negative_prompt: Option<&str>,
    seed: u64,
    steps: usize,
    guidance: f64,
    strength: f64,
    progress: &mut ProgressFn,
) -> Result<RgbImage> {
    let multiple = pipeline.size_multiple() as u32;
    let (width, height) = (
        image.width() / multiple * multiple,
        image.height() / multiple * multiple,
    );
    if width == 0 || height == 0 {
        return Err(EngineError::InvalidRequest(format!(
            "a {}x{} image is too small to refine",
            image.width(),
            image.height()
        )));
    }
    let input = images::from_rgb(image, width, height, &pipeline.device)?;
    let generation = Generation {
        prompt: prompt.to_owned(),
        negative_prompt: negative_prompt.map(str::to_owned),
        width: width as usize,
        height: height as usize,
        steps,
        guidance,
        seeds: vec![seed],
        chaos: 0.0,
        // The GAN upscale before it pads with zeros: its edges do not wrap.
        tile: false,
    };
    let output = pipeline.img2img(&generation, &input, strength, progress)?;
    images::to_rgb(&output)?
        .pop()
        .ok_or_else(|| EngineError::Image("img2img returned nothing".into()))
}

/// Steps for img2img so that at least `min_run` steps run at `strength`.
pub fn steps_for_strength(min_run: usize, strength: f64) -> usize {
    let strength = strength.clamp(0.05, 1.0);
    ((min_run as f64 / strength).ceil() as usize).max(min_run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enough_steps_run_at_any_strength() {
        for (min_run, strength, expected) in [(2, 0.3, 7), (2, 0.55, 4), (4, 1.0, 4), (1, 0.01, 20)]
        {
            let steps = steps_for_strength(min_run, strength);
            assert_eq!(steps, expected, "{min_run} at {strength}");
            assert!(
                steps - crate::sd::scheduler::img2img_start(steps, strength.max(0.05)) >= min_run
            );
        }
    }
}
