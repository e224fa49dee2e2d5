//! The KL autoencoder (diffusers' `AutoencoderKL`) built from
//! `vae/config.json` out of candle's public blocks. We own the encoder so
//! that img2img can sample the latent distribution with our seeded noise.

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;
use serde::Deserialize;

use crate::ops::attention::{Mask, attention};
use crate::ops::conv::{self, Fused, PaddingSwitch};
use crate::ops::{Conv2d, GroupNorm, Linear};
use crate::sd::resnet::{self, ResnetBlock2D};

fn default_scaling_factor() -> f64 {
    0.18215
}
fn default_true() -> bool {
    true
}
fn default_channels() -> usize {
    3
}

/// `vae/config.json`, the fields we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub block_out_channels: Vec<usize>,
    pub layers_per_block: usize,
    pub latent_channels: usize,
    pub norm_num_groups: usize,
    #[serde(default = "default_channels")]
    pub in_channels: usize,
    #[serde(default = "default_channels")]
    pub out_channels: usize,
    #[serde(default = "default_scaling_factor")]
    pub scaling_factor: f64,
    #[serde(default = "default_true")]
    pub use_quant_conv: bool,
    #[serde(default = "default_true")]
    pub use_post_quant_conv: bool,
}

impl Config {
    /// Pixels per latent along each side.
    pub fn scale_factor(&self) -> usize {
        1 << (self.block_out_channels.len().saturating_sub(1))
    }
}

fn conv3x3(i: usize, o: usize, padding: &PaddingSwitch, vb: VarBuilder) -> Result<Conv2d> {
    Ok(Conv2d::load(i, o, 3, 1, 1, vb)?.with_padding(padding))
}

/// The VAE's ResNet blocks: no time embedding, eps 1e-6.
fn resnet_config(cfg: &Config, out_channels: usize) -> resnet::Config {
    resnet::Config {
        out_channels,
        temb_channels: None,
        groups: cfg.norm_num_groups,
        eps: 1e-6,
        output_scale_factor: 1.0,
    }
}

fn resnets(
    cfg: &Config,
    count: usize,
    input: usize,
    out: usize,
    padding: &PaddingSwitch,
    vb: VarBuilder,
) -> Result<Vec<ResnetBlock2D>> {
    (0..count)
        .map(|i| {
            let input = if i == 0 { input } else { out };
            let vb = vb.pp("resnets").pp(i);
            ResnetBlock2D::new(&resnet_config(cfg, out), input, padding, vb)
        })
        .collect()
}

/// ResNet blocks, then (except at the deepest level) a stride-2 convolution
/// on the input padded by one at the bottom and right, as diffusers does
/// (wrapped around from the top and left when tiling).
#[derive(Debug)]
struct DownBlock {
    resnets: Vec<ResnetBlock2D>,
    downsample: Option<Conv2d>,
}

impl DownBlock {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut xs = xs.clone();
        for resnet in &self.resnets {
            xs = resnet.forward(&xs, None)?;
        }
        match &self.downsample {
            Some(conv) => conv.forward(&conv::pad(&xs, conv.padding_mode(), 0, 1)?),
            None => Ok(xs),
        }
    }
}

/// ResNet blocks, then (except at full resolution) a nearest ×2 upsampling
/// and a 3×3 convolution.
#[derive(Debug)]
struct UpBlock {
    resnets: Vec<ResnetBlock2D>,
    upsample: Option<Conv2d>,
}

impl UpBlock {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut xs = xs.clone();
        for resnet in &self.resnets {
            xs = resnet.forward(&xs, None)?;
        }
        match &self.upsample {
            Some(conv) => conv.forward_fused(&xs, Fused::upsampled(2)),
            None => Ok(xs),
        }
    }
}

/// A linear layer whose weight may be stored as a 1×1 convolution
/// (`[out, in, 1, 1]`), as some checkpoints store the attention projections.
fn projection(channels: usize, vb: VarBuilder) -> Result<Linear> {
    // The hint only matters for a fresh (random) model; stored weights win.
    let init = candle_nn::init::DEFAULT_KAIMING_NORMAL;
    let weight = match vb.get_with_hints((channels, channels), "weight", init) {
        Ok(weight) => weight,
        Err(_) => vb
            .get((channels, channels, 1, 1), "weight")?
            .reshape((channels, channels))?,
    };
    Linear::new(weight, Some(vb.get(channels, "bias")?))
}

/// The mid-block's single-head self-attention over all positions
/// (diffusers' `Attention` with a group norm and a residual). Ours rather
/// than candle-transformers' `AttentionBlock` (0.11), which gets batches of
/// more than one image wrong, differently on the CPU and on CUDA: a grid's
/// images were decoded with attention mixed across them. It showed as the
/// one VAE step where an H200 and the CPU disagreed (`sd-bench parity`'s
/// VAE trace). Here every tensor is a contiguous 3-D one, batch first.
#[derive(Debug)]
pub struct SelfAttention {
    norm: GroupNorm,
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    scale: f64,
}

impl SelfAttention {
    pub fn new(channels: usize, groups: usize, vb: VarBuilder) -> Result<SelfAttention> {
        // diffusers' current names, else the names of older checkpoints.
        let [q, k, v, out] = if vb.contains_tensor("to_q.weight") {
            ["to_q", "to_k", "to_v", "to_out.0"]
        } else {
            ["query", "key", "value", "proj_attn"]
        };
        Ok(SelfAttention {
            norm: GroupNorm::load(groups, channels, 1e-6, vb.pp("group_norm"))?,
            to_q: projection(channels, vb.pp(q))?,
            to_k: projection(channels, vb.pp(k))?,
            to_v: projection(channels, vb.pp(v))?,
            to_out: projection(channels, vb.pp(out))?,
            scale: 1.0 / (channels as f64).sqrt(),
        })
    }
}

impl Module for SelfAttention {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, channels, height, width) = xs.dims4()?;
        // [batch, positions, channels]
        let tokens = self
            .norm
            .forward(xs)?
            .reshape((batch, channels, height * width))?
            .transpose(1, 2)?
            .contiguous()?;
        // One head over all channels.
        let q = self.to_q.forward(&tokens)?;
        let k = self.to_k.forward(&tokens)?;
        let v = self.to_v.forward(&tokens)?;
        let attended = attention(&q, &k, &v, self.scale, Mask::None)?;
        let out = self
            .to_out
            .forward(&attended)?
            .transpose(1, 2)?
            .contiguous()?
            .reshape((batch, channels, height, width))?;
        out + xs
    }
}

/// ResNet block, self-attention, ResNet block, at the deepest level.
#[derive(Debug)]
struct MidBlock {
    first: ResnetBlock2D,
    attention: SelfAttention,
    second: ResnetBlock2D,
}

impl MidBlock {
    fn new(cfg: &Config, padding: &PaddingSwitch, vb: VarBuilder) -> Result<MidBlock> {
        let channels = *cfg.block_out_channels.last().unwrap_or(&0);
        let resnet = resnet_config(cfg, channels);
        Ok(MidBlock {
            first: ResnetBlock2D::new(&resnet, channels, padding, vb.pp("resnets.0"))?,
            attention: SelfAttention::new(channels, cfg.norm_num_groups, vb.pp("attentions.0"))?,
            second: ResnetBlock2D::new(&resnet, channels, padding, vb.pp("resnets.1"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let xs = self.first.forward(xs, None)?;
        let xs = self.attention.forward(&xs)?;
        self.second.forward(&xs, None)
    }
}

#[derive(Debug)]
struct Encoder {
    conv_in: Conv2d,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Encoder {
    fn new(cfg: &Config, padding: &PaddingSwitch, vb: VarBuilder) -> Result<Encoder> {
        let channels = &cfg.block_out_channels;
        let last = *channels.last().unwrap_or(&0);
        let down_blocks = channels
            .iter()
            .enumerate()
            .map(|(i, &out)| {
                let vb = vb.pp("down_blocks").pp(i);
                let input = if i == 0 { channels[0] } else { channels[i - 1] };
                Ok(DownBlock {
                    resnets: resnets(cfg, cfg.layers_per_block, input, out, padding, vb.clone())?,
                    downsample: (i + 1 != channels.len())
                        .then(|| Conv2d::load(out, out, 3, 0, 2, vb.pp("downsamplers.0.conv")))
                        .transpose()?
                        .map(|conv| conv.with_padding(padding)),
                })
            })
            .collect::<Result<_>>()?;
        Ok(Encoder {
            conv_in: conv3x3(cfg.in_channels, channels[0], padding, vb.pp("conv_in"))?,
            down_blocks,
            mid_block: MidBlock::new(cfg, padding, vb.pp("mid_block"))?,
            conv_norm_out: GroupNorm::load(
                cfg.norm_num_groups,
                last,
                1e-6,
                vb.pp("conv_norm_out"),
            )?,
            conv_out: conv3x3(last, 2 * cfg.latent_channels, padding, vb.pp("conv_out"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut xs = self.conv_in.forward(xs)?;
        for block in &self.down_blocks {
            xs = block.forward(&xs)?;
        }
        let xs = self.mid_block.forward(&xs)?;
        let xs = self.conv_norm_out.forward_silu(&xs)?;
        self.conv_out.forward(&xs)
    }
}

#[derive(Debug)]
struct Decoder {
    conv_in: Conv2d,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
}

impl Decoder {
    fn new(cfg: &Config, padding: &PaddingSwitch, vb: VarBuilder) -> Result<Decoder> {
        let reversed: Vec<usize> = cfg.block_out_channels.iter().rev().copied().collect();
        let up_blocks = reversed
            .iter()
            .enumerate()
            .map(|(i, &out)| {
                let vb = vb.pp("up_blocks").pp(i);
                let input = if i == 0 { reversed[0] } else { reversed[i - 1] };
                Ok(UpBlock {
                    resnets: resnets(
                        cfg,
                        cfg.layers_per_block + 1,
                        input,
                        out,
                        padding,
                        vb.clone(),
                    )?,
                    upsample: (i + 1 != reversed.len())
                        .then(|| conv3x3(out, out, padding, vb.pp("upsamplers.0.conv")))
                        .transpose()?,
                })
            })
            .collect::<Result<_>>()?;
        let first = cfg.block_out_channels[0];
        Ok(Decoder {
            conv_in: conv3x3(cfg.latent_channels, reversed[0], padding, vb.pp("conv_in"))?,
            mid_block: MidBlock::new(cfg, padding, vb.pp("mid_block"))?,
            up_blocks,
            conv_norm_out: GroupNorm::load(
                cfg.norm_num_groups,
                first,
                1e-6,
                vb.pp("conv_norm_out"),
            )?,
            conv_out: conv3x3(first, cfg.out_channels, padding, vb.pp("conv_out"))?,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let mut xs = self.mid_block.forward(&self.conv_in.forward(xs)?)?;
        for block in &self.up_blocks {
            xs = block.forward(&xs)?;
        }
        let xs = self.conv_norm_out.forward_silu(&xs)?;
        self.conv_out.forward(&xs)
    }
}

/// The latent distribution an image encodes to.
#[derive(Debug)]
pub struct LatentDistribution {
    pub mean: Tensor,
    pub std: Tensor,
}

impl LatentDistribution {
    /// `mean + std · noise`, with the caller's noise (same shape as mean).
    pub fn sample_with(&self, noise: &Tensor) -> Result<Tensor> {
        &self.mean + (&self.std * noise)?
    }
}

#[derive(Debug)]
pub struct AutoEncoder {
    encoder: Encoder,
    decoder: Decoder,
    quant_conv: Option<Conv2d>,
    post_quant_conv: Option<Conv2d>,
    /// Shared by every convolution that pads, in both halves.
    padding: PaddingSwitch,
    pub config: Config,
}

impl AutoEncoder {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<AutoEncoder> {
        let latent = cfg.latent_channels;
        let padding = PaddingSwitch::default();
        Ok(AutoEncoder {
            encoder: Encoder::new(cfg, &padding, vb.pp("encoder"))?,
            decoder: Decoder::new(cfg, &padding, vb.pp("decoder"))?,
            quant_conv: cfg
                .use_quant_conv
                .then(|| Conv2d::load(2 * latent, 2 * latent, 1, 0, 1, vb.pp("quant_conv")))
                .transpose()?,
            post_quant_conv: cfg
                .use_post_quant_conv
                .then(|| Conv2d::load(latent, latent, 1, 0, 1, vb.pp("post_quant_conv")))
                .transpose()?,
            padding,
            config: cfg.clone(),
        })
    }

    /// The padding of its convolutions: zeros, or circular for `--tile`.
    pub fn padding(&self) -> &PaddingSwitch {
        &self.padding
    }

    /// Images in [-1, 1], NCHW → the latent distribution (unscaled).
    pub fn encode(&self, images: &Tensor) -> Result<LatentDistribution> {
        let xs = self.encoder.forward(images)?;
        let xs = match &self.quant_conv {
            Some(conv) => conv.forward(&xs)?,
            None => xs,
        };
        let halves = xs.chunk(2, 1)?;
        let logvar = halves[1].clamp(-30.0, 20.0)?;
        Ok(LatentDistribution {
            mean: halves[0].clone(),
            std: (logvar * 0.5)?.exp()?,
        })
    }

    /// Latents (already divided by the scaling factor) → images in about [-1, 1].
    pub fn decode(&self, latents: &Tensor) -> Result<Tensor> {
        let xs = match &self.post_quant_conv {
            Some(conv) => conv.forward(latents)?,
            None => latents.clone(),
        };
        self.decoder.forward(&xs)
    }
}
