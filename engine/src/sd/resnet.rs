//! The ResNet block shared by the UNet and the VAE (diffusers'
//! `ResnetBlock2D`, same weight names), built on our convolution and fused
//! GroupNorm+SiLU so that each of its passes is one kernel on the CPU.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

use crate::ops::conv::PaddingSwitch;
use crate::ops::{Conv2d, GroupNorm, Linear};

#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub out_channels: usize,
    /// Width of the time embedding (the UNet's); None in the VAE.
    pub temb_channels: Option<usize>,
    pub groups: usize,
    pub eps: f64,
    pub output_scale_factor: f64,
}

#[derive(Debug)]
pub struct ResnetBlock2D {
    norm1: GroupNorm,
    conv1: Conv2d,
    time_emb_proj: Option<Linear>,
    norm2: GroupNorm,
    conv2: Conv2d,
    conv_shortcut: Option<Conv2d>,
    output_scale_factor: f64,
}

impl ResnetBlock2D {
    /// `padding`: the owning model's switch, for the 3×3 convolutions.
    pub fn new(
        cfg: &Config,
        in_channels: usize,
        padding: &PaddingSwitch,
        vb: VarBuilder,
    ) -> Result<Self> {
        let out = cfg.out_channels;
        Ok(Self {
            norm1: GroupNorm::load(cfg.groups, in_channels, cfg.eps, vb.pp("norm1"))?,
            conv1: Conv2d::load(in_channels, out, 3, 1, 1, vb.pp("conv1"))?.with_padding(padding),
            time_emb_proj: cfg
                .temb_channels
                .map(|t| Linear::load(t, out, vb.pp("time_emb_proj")))
                .transpose()?,
            norm2: GroupNorm::load(cfg.groups, out, cfg.eps, vb.pp("norm2"))?,
            conv2: Conv2d::load(out, out, 3, 1, 1, vb.pp("conv2"))?.with_padding(padding),
            conv_shortcut: (in_channels != out)
                .then(|| Conv2d::load(in_channels, out, 1, 0, 1, vb.pp("conv_shortcut")))
                .transpose()?,
            output_scale_factor: cfg.output_scale_factor,
        })
    }

    /// `temb` is the UNet's time embedding (before its SiLU), or None.
    pub fn forward(&self, xs: &Tensor, temb: Option<&Tensor>) -> Result<Tensor> {
        let shortcut = match &self.conv_shortcut {
            Some(conv) => conv.forward(xs)?,
            None => xs.clone(),
        };
        let h = self.conv1.forward(&self.norm1.forward_silu(xs)?)?;
        let h = match (temb, &self.time_emb_proj) {
            (Some(temb), Some(proj)) => h.broadcast_add(
                &proj
                    .forward(&candle_nn::ops::silu(temb)?)?
                    .unsqueeze(2)?
                    .unsqueeze(3)?,
            )?,
            _ => h,
        };
        // The skip connection is added inside conv2's kernel.
        let out = self
            .conv2
            .forward_plus(&self.norm2.forward_silu(&h)?, &shortcut)?;
        if self.output_scale_factor == 1.0 {
            Ok(out)
        } else {
            out / self.output_scale_factor
        }
    }
}
