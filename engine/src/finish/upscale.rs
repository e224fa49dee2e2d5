//! Real-ESRGAN's RRDBNet (Wang et al. 2021), the GAN upscaler behind U1–U4:
//! ×4 in one pass, ×2 by resizing the ×4 result, run in overlapping tiles so
//! a large image fits in little memory. Loads the official weights with
//! their original tensor names from `.safetensors` or `.pth`.

use std::path::Path;

use candle_core::{DType, Device, Module, Tensor};
use candle_nn::VarBuilder;

use crate::error::{EngineError, Result};
use crate::ops::Conv2d;
use crate::ops::conv::{Activation, Fused};

/// The network's shape; the defaults are RealESRGAN_x4plus.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Config {
    pub in_channels: usize,
    pub out_channels: usize,
    pub features: usize,
    pub blocks: usize,
    pub growth: usize,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            in_channels: 3,
            out_channels: 3,
            features: 64,
            blocks: 23,
            growth: 32,
        }
    }
}

const NEGATIVE_SLOPE: f32 = 0.2;
const RESIDUAL_SCALE: f64 = 0.2;

fn conv(i: usize, o: usize, vb: VarBuilder) -> Result<Conv2d> {
    Ok(Conv2d::load(i, o, 3, 1, 1, vb)?)
}

/// `lrelu(conv(xs))`, the activation inside the convolution's kernel.
fn conv_lrelu(conv: &Conv2d, xs: &Tensor, upsample: usize) -> candle_core::Result<Tensor> {
    conv.forward_fused(
        xs,
        Fused {
            upsample,
            activation: Activation::LeakyRelu(NEGATIVE_SLOPE),
            ..Fused::default()
        },
    )
}

#[derive(Debug)]
struct DenseBlock {
    convs: [Conv2d; 5],
}

impl DenseBlock {
    fn new(features: usize, growth: usize, vb: VarBuilder) -> Result<DenseBlock> {
        let c =
            |i: usize, input: usize, output: usize| conv(input, output, vb.pp(format!("conv{i}")));
        Ok(DenseBlock {
            convs: [
                c(1, features, growth)?,
                c(2, features + growth, growth)?,
                c(3, features + 2 * growth, growth)?,
                c(4, features + 3 * growth, growth)?,
                c(5, features + 4 * growth, features)?,
            ],
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let mut features = vec![xs.clone()];
        for conv in &self.convs[..4] {
            let input = Tensor::cat(&features, 1)?;
            features.push(conv_lrelu(conv, &input, 1)?);
        }
        let out = self.convs[4].forward(&Tensor::cat(&features, 1)?)?;
        (out * RESIDUAL_SCALE)? + xs
    }
}

#[derive(Debug)]
struct Rrdb {
    blocks: [DenseBlock; 3],
}

impl Rrdb {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Rrdb> {
        let b = |i: usize| DenseBlock::new(cfg.features, cfg.growth, vb.pp(format!("rdb{i}")));
        Ok(Rrdb {
            blocks: [b(1)?, b(2)?, b(3)?],
        })
    }

    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let mut out = xs.clone();
        for block in &self.blocks {
            out = block.forward(&out)?;
        }
        (out * RESIDUAL_SCALE)? + xs
    }
}

/// The ×4 RRDB network.
#[derive(Debug)]
pub struct RrdbNet {
    conv_first: Conv2d,
    body: Vec<Rrdb>,
    conv_body: Conv2d,
    conv_up1: Conv2d,
    conv_up2: Conv2d,
    conv_hr: Conv2d,
    conv_last: Conv2d,
}

impl RrdbNet {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<RrdbNet> {
        let f = cfg.features;
        Ok(RrdbNet {
            conv_first: conv(cfg.in_channels, f, vb.pp("conv_first"))?,
            body: (0..cfg.blocks)
                .map(|i| Rrdb::new(cfg, vb.pp("body").pp(i)))
                .collect::<Result<_>>()?,
            conv_body: conv(f, f, vb.pp("conv_body"))?,
            conv_up1: conv(f, f, vb.pp("conv_up1"))?,
            conv_up2: conv(f, f, vb.pp("conv_up2"))?,
            conv_hr: conv(f, f, vb.pp("conv_hr"))?,
            conv_last: conv(f, cfg.out_channels, vb.pp("conv_last"))?,
        })
    }

    /// `[n, 3, h, w]` in [0, 1] → `[n, 3, 4h, 4w]`, not clamped.
    pub fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let feat = self.conv_first.forward(xs)?;
        let mut body = feat.clone();
        for block in &self.body {
            body = block.forward(&body)?;
        }
        let feat = (feat + self.conv_body.forward(&body)?)?;
        let feat = conv_lrelu(&self.conv_up1, &feat, 2)?;
        let feat = conv_lrelu(&self.conv_up2, &feat, 2)?;
        Ok(self
            .conv_last
            .forward(&conv_lrelu(&self.conv_hr, &feat, 1)?)?)
    }
}

/// Tiling: tiles of `tile` input pixels, each run with `pad` pixels of
/// context on every side so that seams do not show.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Tiling {
    pub tile: usize,
    pub pad: usize,
}

impl Default for Tiling {
    fn default() -> Self {
        Tiling { tile: 192, pad: 10 }
    }
}

/// The upscaler with its weights on a device.
#[derive(Debug)]
pub struct Upscaler {
    net: RrdbNet,
    device: Device,
    dtype: DType,
}

impl Upscaler {
    /// Loads official weights: `.safetensors`, or a `.pth` whose state dict is
    /// top-level or under `params_ema` / `params` (as Real-ESRGAN ships them).
    pub fn load(path: &Path, cfg: &Config, device: &Device, dtype: DType) -> Result<Upscaler> {
        let tensors = match path.extension().and_then(|e| e.to_str()) {
            Some("pth") | Some("pt") => {
                let mut found = None;
                for key in [Some("params_ema"), Some("params"), None] {
                    if let Ok(tensors) = candle_core::pickle::read_all_with_key(path, key)
                        && !tensors.is_empty()
                    {
                        found = Some(tensors);
                        break;
                    }
                }
                found
                    .ok_or_else(|| {
                        EngineError::UnsupportedModel(format!(
                            "{} holds no state dict",
                            path.display()
                        ))
                    })?
                    .into_iter()
                    .map(|(name, tensor)| Ok((name, tensor.to_device(device)?)))
                    .collect::<Result<_>>()?
            }
            _ => candle_core::safetensors::load(path, device)?,
        };
        let vb = VarBuilder::from_tensors(tensors, dtype, device);
        Ok(Upscaler {
            net: RrdbNet::new(cfg, vb)?,
            device: device.clone(),
            dtype,
        })
    }

    /// ×4 of `[1, 3, h, w]` in [0, 1], tile by tile; the result is clamped to [0, 1].
    /// `on_tile(done, total)` reports progress.
    pub fn upscale4(
        &self,
        image: &Tensor,
        tiling: Tiling,
        on_tile: &mut dyn FnMut(usize, usize) -> Result<()>,
    ) -> Result<Tensor> {
        let (_, channels, height, width) = image.dims4()?;
        let image = image.to_device(&self.device)?.to_dtype(self.dtype)?;
        let tile = tiling.tile.max(8);
        let rows = height.div_ceil(tile);
        let cols = width.div_ceil(tile);
        let mut out_rows = Vec::with_capacity(rows);
        for row in 0..rows {
            let mut out_cols = Vec::with_capacity(cols);
            for col in 0..cols {
                on_tile(row * cols + col, rows * cols)?;
                let (y0, x0) = (row * tile, col * tile);
                let (y1, x1) = ((y0 + tile).min(height), (x0 + tile).min(width));
                // The tile plus context, clipped to the image.
                let (py0, px0) = (y0.saturating_sub(tiling.pad), x0.saturating_sub(tiling.pad));
                let (py1, px1) = ((y1 + tiling.pad).min(height), (x1 + tiling.pad).min(width));
                let input = image.narrow(2, py0, py1 - py0)?.narrow(3, px0, px1 - px0)?;
                let output = self.net.forward(&input)?;
                let output = output.narrow(2, (y0 - py0) * 4, (y1 - y0) * 4)?.narrow(
                    3,
                    (x0 - px0) * 4,
                    (x1 - x0) * 4,
                )?;
                out_cols.push(output);
            }
            out_rows.push(Tensor::cat(&out_cols, 3)?);
        }
        on_tile(rows * cols, rows * cols)?;
        let result = Tensor::cat(&out_rows, 2)?;
        debug_assert_eq!(result.dims4()?, (1, channels, height * 4, width * 4));
        Ok(result.to_dtype(DType::F32)?.clamp(0f32, 1f32)?)
    }
}
