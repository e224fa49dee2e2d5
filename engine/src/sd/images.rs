//! Tensors to and from images.

use candle_core::{DType, Device, Tensor};
use image::RgbImage;

use crate::error::{EngineError, Result};

/// `[n, 3, H, W]` in [0, 1] → RGB images.
pub fn to_rgb(images: &Tensor) -> Result<Vec<RgbImage>> {
    let (n, channels, height, width) = images.dims4()?;
    if channels != 3 {
        return Err(EngineError::Image(format!(
            "{channels} channels, expected 3"
        )));
    }
    let bytes = images
        .to_dtype(DType::F32)?
        .affine(255.0, 0.5)?
        .clamp(0f32, 255f32)?
        .permute((0, 2, 3, 1))?
        .to_dtype(DType::U8)?
        .flatten_all()?
        .to_vec1::<u8>()?;
    let per_image = height * width * 3;
    (0..n)
        .map(|i| {
            RgbImage::from_raw(
                width as u32,
                height as u32,
                bytes[i * per_image..(i + 1) * per_image].to_vec(),
            )
            .ok_or_else(|| EngineError::Image("buffer size mismatch".into()))
        })
        .collect()
}

/// An RGB image, resized to `width`×`height` when it differs, as `[1, 3, H, W]` in [0, 1].
pub fn from_rgb(image: &RgbImage, width: u32, height: u32, device: &Device) -> Result<Tensor> {
    let resized;
    let image = if image.dimensions() == (width, height) {
        image
    } else {
        resized =
            image::imageops::resize(image, width, height, image::imageops::FilterType::Lanczos3);
        &resized
    };
    let data: Vec<f32> = image
        .as_raw()
        .iter()
        .map(|&b| f32::from(b) / 255.0)
        .collect();
    Ok(
        Tensor::from_vec(data, (height as usize, width as usize, 3), device)?
            .permute((2, 0, 1))?
            .unsqueeze(0)?,
    )
}
