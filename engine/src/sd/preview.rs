//! Previews of a job in progress: the denoising estimate turned into small
//! images, by the draft decoder at reduced size when one is loaded, else by
//! a linear map from latent channels to RGB (nearly free, blurrier).

use candle_core::{DType, Tensor};

use crate::error::{EngineError, Result};

/// Largest side of one image in a preview, in pixels.
pub const PREVIEW_SIDE: usize = 256;

/// How much latents of `height`×`width` are average-pooled before a decoder
/// with `scale` pixels per latent makes a preview: enough that the longer
/// side stays within [`PREVIEW_SIDE`], since decoding costs grow with area.
pub fn pool_factor(height: usize, width: usize, scale: usize) -> usize {
    let longest = height.max(width) * scale.max(1);
    longest.div_ceil(PREVIEW_SIDE).max(1)
}

/// SD 1.x/2.x latents (as the UNet sees them, scaled by 0.18215) to RGB,
/// one row per latent channel: the factors ComfyUI's previews use. Good
/// enough to show composition and colour; not a decoder.
const SD_LATENT_RGB: [[f32; 3]; 4] = [
    [0.3512, 0.2297, 0.3227],
    [0.3250, 0.4974, 0.2350],
    [-0.2829, 0.1762, 0.2721],
    [-0.2120, -0.2616, -0.7177],
];

/// `[n, 4, h, w]` latents → `[n, 3, h, w]` in [0, 1] by [`SD_LATENT_RGB`].
pub fn linear_rgb(latents: &Tensor) -> Result<Tensor> {
    let (_, channels, _, _) = latents.dims4()?;
    if channels != SD_LATENT_RGB.len() {
        return Err(EngineError::Image(format!(
            "no latent-to-RGB map for {channels} latent channels"
        )));
    }
    let factors: Vec<f32> = SD_LATENT_RGB.iter().flatten().copied().collect();
    // [3, 4] applied over the channel axis, as a 1×1 convolution would.
    let map = Tensor::from_vec(factors, (4, 3), latents.device())?
        .t()?
        .reshape((3, 4, 1, 1))?;
    let rgb = latents.to_dtype(DType::F32)?.conv2d(&map, 0, 1, 1, 1)?;
    Ok(rgb.affine(0.5, 0.5)?.clamp(0f32, 1f32)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::{Device, IndexOp};

    #[test]
    fn pooling_keeps_the_longer_side_within_the_preview() {
        for ((h, w, scale), factor) in [
            ((32, 32, 8), 1),
            ((64, 64, 8), 2),
            ((64, 112, 8), 4),
            ((128, 128, 8), 4),
            ((8, 8, 8), 1),
            ((33, 20, 8), 2),
        ] {
            assert_eq!(pool_factor(h, w, scale), factor, "{h}×{w}");
            assert!(h.max(w) * scale / factor <= PREVIEW_SIDE);
        }
    }

    #[test]
    fn each_latent_channel_adds_its_row_of_colour() {
        let device = Device::Cpu;
        for (latent, expected) in [
            ([0.0f32; 4], [0.5f32; 3]),
            ([1.0, 0.0, 0.0, 0.0], [0.6756, 0.61485, 0.66135]),
            ([0.0, 0.0, 0.0, 1.0], [0.394, 0.3692, 0.14115]),
            ([4.0, 4.0, 0.0, 0.0], [1.0, 1.0, 1.0]),
        ] {
            let latents = Tensor::from_vec(latent.to_vec(), (1, 4, 1, 1), &device).unwrap();
            let rgb = linear_rgb(&latents.repeat((2, 1, 3, 5)).unwrap()).unwrap();
            assert_eq!(rgb.dims(), &[2, 3, 3, 5]);
            let pixel: Vec<f32> = rgb
                .narrow(2, 1, 1)
                .unwrap()
                .narrow(3, 4, 1)
                .unwrap()
                .i((1, .., 0, 0))
                .unwrap()
                .to_vec1()
                .unwrap();
            for (got, want) in pixel.iter().zip(expected) {
                assert!((got - want).abs() < 1e-4, "{latent:?}: {pixel:?}");
            }
        }
    }

    #[test]
    fn latents_of_other_models_have_no_map() {
        let latents = Tensor::zeros((1, 16, 2, 2), DType::F32, &Device::Cpu).unwrap();
        assert!(linear_rgb(&latents).is_err());
    }
}
