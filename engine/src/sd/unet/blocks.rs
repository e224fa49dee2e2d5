//! The UNet's levels: down blocks (ResNet blocks, optional transformers, a
//! stride-2 convolution), the middle block, and up blocks that take the
//! down path's outputs back in as skip connections.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use super::transformer::{self, Transformer2D};
use crate::ops::Conv2d;
use crate::ops::conv::{Fused, PaddingSwitch};
use crate::sd::resnet::{self, ResnetBlock2D};

/// What every level shares: ResNet settings and, for levels with
/// cross-attention, the transformer's.
#[derive(Debug, Clone, Copy)]
pub struct LevelConfig {
    pub resnet: resnet::Config,
    /// None for a level without attention.
    pub transformer: Option<transformer::Config>,
}

impl LevelConfig {
    fn transformer(&self, vb: VarBuilder) -> Result<Option<Transformer2D>> {
        self.transformer
            .as_ref()
            .map(|cfg| Transformer2D::new(cfg, vb))
            .transpose()
    }
}

/// One ResNet block and, on attention levels, its transformer.
#[derive(Debug)]
struct Layer {
    resnet: ResnetBlock2D,
    attention: Option<Transformer2D>,
}

impl Layer {
    fn new(
        cfg: &LevelConfig,
        in_channels: usize,
        index: usize,
        padding: &PaddingSwitch,
        vb: &VarBuilder,
    ) -> Result<Self> {
        Ok(Self {
            resnet: ResnetBlock2D::new(
                &cfg.resnet,
                in_channels,
                padding,
                vb.pp("resnets").pp(index),
            )?,
            attention: cfg.transformer(vb.pp("attentions").pp(index))?,
        })
    }

    fn forward(&self, xs: &Tensor, temb: &Tensor, context: &Tensor) -> Result<Tensor> {
        let xs = self.resnet.forward(xs, Some(temb))?;
        match &self.attention {
            Some(attention) => attention.forward(&xs, context),
            None => Ok(xs),
        }
    }
}

#[derive(Debug)]
pub struct DownBlock {
    layers: Vec<Layer>,
    downsample: Option<Conv2d>,
}

impl DownBlock {
    pub fn new(
        cfg: &LevelConfig,
        layers: usize,
        in_channels: usize,
        downsample_padding: Option<usize>,
        padding: &PaddingSwitch,
        vb: VarBuilder,
    ) -> Result<Self> {
        let out = cfg.resnet.out_channels;
        let input = |i| if i == 0 { in_channels } else { out };
        Ok(Self {
            layers: (0..layers)
                .map(|i| Layer::new(cfg, input(i), i, padding, &vb))
                .collect::<Result<_>>()?,
            downsample: downsample_padding
                .map(|pixels| {
                    Conv2d::load(out, out, 3, pixels, 2, vb.pp("downsamplers.0.conv"))
                        .map(|conv| conv.with_padding(padding))
                })
                .transpose()?,
        })
    }

    /// The block's output, with every intermediate output pushed onto
    /// `skips` for the up path.
    pub fn forward(
        &self,
        xs: &Tensor,
        temb: &Tensor,
        context: &Tensor,
        skips: &mut Vec<Tensor>,
    ) -> Result<Tensor> {
        let mut xs = xs.clone();
        for layer in &self.layers {
            xs = layer.forward(&xs, temb, context)?;
            skips.push(xs.clone());
        }
        if let Some(conv) = &self.downsample {
            xs = conv.forward(&xs)?;
            skips.push(xs.clone());
        }
        Ok(xs)
    }
}

#[derive(Debug)]
pub struct MidBlock {
    first: ResnetBlock2D,
    attention: Transformer2D,
    second: ResnetBlock2D,
}

impl MidBlock {
    pub fn new(
        resnet: &resnet::Config,
        attention: &transformer::Config,
        padding: &PaddingSwitch,
        vb: VarBuilder,
    ) -> Result<Self> {
        let channels = resnet.out_channels;
        Ok(Self {
            first: ResnetBlock2D::new(resnet, channels, padding, vb.pp("resnets.0"))?,
            attention: Transformer2D::new(attention, vb.pp("attentions.0"))?,
            second: ResnetBlock2D::new(resnet, channels, padding, vb.pp("resnets.1"))?,
        })
    }

    pub fn forward(&self, xs: &Tensor, temb: &Tensor, context: &Tensor) -> Result<Tensor> {
        let xs = self.first.forward(xs, Some(temb))?;
        let xs = self.attention.forward(&xs, context)?;
        self.second.forward(&xs, Some(temb))
    }
}

#[derive(Debug)]
pub struct UpBlock {
    layers: Vec<Layer>,
    upsample: Option<Conv2d>,
}

impl UpBlock {
    /// `skip_channels` are the widths of the skip connections this block
    /// takes, in the order it takes them.
    pub fn new(
        cfg: &LevelConfig,
        previous_channels: usize,
        skip_channels: &[usize],
        upsample: bool,
        padding: &PaddingSwitch,
        vb: VarBuilder,
    ) -> Result<Self> {
        let out = cfg.resnet.out_channels;
        Ok(Self {
            layers: skip_channels
                .iter()
                .enumerate()
                .map(|(i, skip)| {
                    let input = if i == 0 { previous_channels } else { out };
                    Layer::new(cfg, input + skip, i, padding, &vb)
                })
                .collect::<Result<_>>()?,
            upsample: upsample
                .then(|| Conv2d::load(out, out, 3, 1, 1, vb.pp("upsamplers.0.conv")))
                .transpose()?
                .map(|conv| conv.with_padding(padding)),
        })
    }

    /// Takes one skip connection per layer from the top of `skips`; the
    /// upsampling goes to the size of the next one (odd sizes round down
    /// on the way down).
    pub fn forward(
        &self,
        xs: &Tensor,
        temb: &Tensor,
        context: &Tensor,
        skips: &mut Vec<Tensor>,
    ) -> Result<Tensor> {
        let mut xs = xs.clone();
        for layer in &self.layers {
            let Some(skip) = skips.pop() else {
                candle_core::bail!("unet: the up path ran out of skip connections");
            };
            xs = layer.forward(&Tensor::cat(&[&xs, &skip], 1)?, temb, context)?;
        }
        if let Some(conv) = &self.upsample {
            let (_, _, h, w) = match skips.last() {
                Some(next) => next.dims4()?,
                None => candle_core::bail!("unet: an upsampler with no skip connection after it"),
            };
            let (_, _, small_h, small_w) = xs.dims4()?;
            xs = if (h, w) == (2 * small_h, 2 * small_w) {
                conv.forward_fused(&xs, Fused::upsampled(2))?
            } else {
                conv.forward(&xs.upsample_nearest2d(h, w)?)?
            };
        }
        Ok(xs)
    }
}
