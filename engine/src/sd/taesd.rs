//! The Tiny AutoEncoder (TAESD; diffusers' `AutoencoderTiny`), a draft
//! decoder: plain 3×3 convolutions and ReLUs, no normalisation or attention,
//! about 1/18 of the KL decoder's FLOPs. Built from its `config.json` in the
//! diffusers layout, with diffusers' tensor names, so `madebyollin/taesd`'s
//! `diffusion_pytorch_model.safetensors` loads as it is.
//!
//! Both halves are `nn.Sequential`s in diffusers: a layer's checkpoint name is
//! its position (`decoder.layers.7.conv.0.weight`), counting the layers
//! without weights (activations, upsampling) too.

use candle_core::{Module, Tensor};
use candle_nn::VarBuilder;

use crate::ops::Conv2d;
use crate::ops::conv::{self, Fused, PaddingSwitch};
use serde::Deserialize;

use crate::error::{EngineError, Result};
use crate::sd::pipeline::{PipelineOptions, read_json, weights};
use crate::sd::source::SingleModelFiles;

/// `config.json` of an `AutoencoderTiny`; a missing field takes diffusers'
/// default (0.42), which is also `madebyollin/taesd`'s value.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(default)]
pub struct Config {
    pub in_channels: usize,
    pub out_channels: usize,
    pub encoder_block_out_channels: Vec<usize>,
    pub decoder_block_out_channels: Vec<usize>,
    pub act_fn: Activation,
    /// `nn.Upsample`'s mode; only "nearest" is supported.
    pub upsample_fn: String,
    pub latent_channels: usize,
    pub upsampling_scaling_factor: usize,
    /// Blocks per level, the first level the full-resolution one.
    pub num_encoder_blocks: Vec<usize>,
    /// Blocks per level, the first level the latent-resolution one.
    pub num_decoder_blocks: Vec<usize>,
    /// For storing latents as 8-bit images (`scale_latents`); decoding ignores it.
    pub latent_magnitude: f64,
    /// As `latent_magnitude`.
    pub latent_shift: f64,
    /// Informational: diffusers' SD pipelines do not read it for this model.
    pub force_upcast: bool,
    /// Latents the UNet sees are `raw · scaling_factor` (1.0 for TAESD: it was
    /// trained on the UNet's latents directly).
    pub scaling_factor: f64,
    /// Added after unscaling by pipelines that know it (SD 3, Flux); 0 here.
    pub shift_factor: f64,
}

impl Default for Config {
    /// diffusers' defaults: `madebyollin/taesd`'s architecture.
    fn default() -> Config {
        Config {
            in_channels: 3,
            out_channels: 3,
            encoder_block_out_channels: vec![64; 4],
            decoder_block_out_channels: vec![64; 4],
            act_fn: Activation::Relu,
            upsample_fn: "nearest".to_owned(),
            latent_channels: 4,
            upsampling_scaling_factor: 2,
            num_encoder_blocks: vec![1, 3, 3, 3],
            num_decoder_blocks: vec![3, 3, 3, 1],
            latent_magnitude: 3.0,
            latent_shift: 0.5,
            force_upcast: false,
            scaling_factor: 1.0,
            shift_factor: 0.0,
        }
    }
}

impl Config {
    /// Output pixels per latent along each side.
    pub fn scale_factor(&self) -> usize {
        self.upsampling_scaling_factor
            .saturating_pow(levels_between(&self.num_decoder_blocks))
    }

    /// Input pixels per latent along each side (stride-2 convolutions).
    pub fn encoder_scale_factor(&self) -> usize {
        2usize.saturating_pow(levels_between(&self.num_encoder_blocks))
    }

    /// Whether diffusers could build this model and we can run it. diffusers
    /// keeps one channel count through every level (each level's last
    /// convolution maps its channels to themselves), so levels with
    /// different counts fail there at the first forward pass; here they
    /// fail before loading.
    pub fn check(&self) -> Result<()> {
        let unsupported = |what: String| Err(EngineError::UnsupportedModel(what));
        for (part, channels, blocks) in [
            (
                "encoder",
                &self.encoder_block_out_channels,
                &self.num_encoder_blocks,
            ),
            (
                "decoder",
                &self.decoder_block_out_channels,
                &self.num_decoder_blocks,
            ),
        ] {
            if channels.is_empty() || channels.len() != blocks.len() {
                return unsupported(format!(
                    "AutoencoderTiny {part}: {} block_out_channels for {} levels of blocks",
                    channels.len(),
                    blocks.len()
                ));
            }
            if channels.iter().any(|&c| c != channels[0] || c == 0) {
                return unsupported(format!(
                    "AutoencoderTiny {part}: block_out_channels {channels:?} differ between levels"
                ));
            }
        }
        if self.upsample_fn != "nearest" {
            return unsupported(format!(
                "AutoencoderTiny upsample_fn {:?} (only \"nearest\")",
                self.upsample_fn
            ));
        }
        if self.upsampling_scaling_factor == 0 || !self.scaling_factor.is_normal() {
            return unsupported(format!(
                "AutoencoderTiny upsampling_scaling_factor {} / scaling_factor {}",
                self.upsampling_scaling_factor, self.scaling_factor
            ));
        }
        Ok(())
    }
}

/// Resamplings between the levels of a half.
fn levels_between(blocks: &[usize]) -> u32 {
    u32::try_from(blocks.len().saturating_sub(1)).unwrap_or(u32::MAX)
}

/// `act_fn`: diffusers' `get_activation` names, in any case.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(try_from = "String")]
pub enum Activation {
    Relu,
    /// "silu" or "swish".
    Silu,
    Mish,
    /// The exact (erf) GELU, as `nn.GELU()`.
    Gelu,
}

impl TryFrom<String> for Activation {
    type Error = String;

    fn try_from(name: String) -> Result<Activation, String> {
        match name.to_lowercase().as_str() {
            "relu" => Ok(Activation::Relu),
            "silu" | "swish" => Ok(Activation::Silu),
            "mish" => Ok(Activation::Mish),
            "gelu" => Ok(Activation::Gelu),
            _ => Err(format!(
                "unknown act_fn {name:?}: use relu, silu, swish, mish or gelu"
            )),
        }
    }
}

impl Activation {
    /// `act(conv(xs))`, a ReLU inside the convolution's kernel.
    fn after(self, conv: &Conv2d, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Relu => conv.forward_fused(xs, Fused::activation(conv::Activation::Relu)),
            _ => self.forward(&conv.forward(xs)?),
        }
    }
}

impl Module for Activation {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Activation::Relu => xs.relu(),
            Activation::Silu => xs.silu(),
            Activation::Mish => candle_nn::ops::mish(xs),
            Activation::Gelu => xs.gelu_erf(),
        }
    }
}

fn conv3x3(
    input: usize,
    output: usize,
    stride: usize,
    bias: bool,
    padding: &PaddingSwitch,
    vb: VarBuilder,
) -> candle_core::Result<Conv2d> {
    let conv = if bias {
        Conv2d::load(input, output, 3, 1, stride, vb)?
    } else {
        Conv2d::load_no_bias(input, output, 3, 1, stride, vb)?
    };
    Ok(conv.with_padding(padding))
}

/// diffusers' `AutoencoderTinyBlock`: `relu(conv(act(conv(act(conv(x))))) + skip(x))`.
/// The fuse is a ReLU whatever `act_fn` says.
#[derive(Debug)]
struct Block {
    convs: [Conv2d; 3],
    /// A 1×1 projection where the channel count changes (never in diffusers'
    /// encoder and decoder, which keep it).
    skip: Option<Conv2d>,
    act: Activation,
}

impl Block {
    fn new(
        input: usize,
        output: usize,
        act: Activation,
        padding: &PaddingSwitch,
        vb: VarBuilder,
    ) -> candle_core::Result<Block> {
        let conv = vb.pp("conv");
        Ok(Block {
            // conv.1 and conv.3 are the activations.
            convs: [
                conv3x3(input, output, 1, true, padding, conv.pp("0"))?,
                conv3x3(output, output, 1, true, padding, conv.pp("2"))?,
                conv3x3(output, output, 1, true, padding, conv.pp("4"))?,
            ],
            skip: (input != output)
                .then(|| Conv2d::load_no_bias(input, output, 1, 0, 1, vb.pp("skip")))
                .transpose()?,
            act,
        })
    }
}

impl Module for Block {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let [first, second, third] = &self.convs;
        let ys = self.act.after(first, xs)?;
        let ys = self.act.after(second, &ys)?;
        let skip = match &self.skip {
            Some(conv) => conv.forward(xs)?,
            None => xs.clone(),
        };
        // The skip and the ReLU are applied inside the last convolution's kernel.
        third.forward_fused(
            &ys,
            Fused {
                residual: Some(&skip),
                activation: conv::Activation::Relu,
                ..Fused::default()
            },
        )
    }
}

/// One entry of an `nn.Sequential`.
#[derive(Debug)]
enum Layer {
    Conv(Conv2d),
    Block(Block),
    Act(Activation),
    /// Nearest-neighbour upsampling by this integer factor.
    Upsample(usize),
}

impl Module for Layer {
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        match self {
            Layer::Conv(conv) => conv.forward(xs),
            Layer::Block(block) => block.forward(xs),
            Layer::Act(act) => act.forward(xs),
            Layer::Upsample(factor) => {
                let (_, _, height, width) = xs.dims4()?;
                xs.upsample_nearest2d(height * factor, width * factor)
            }
        }
    }
}

/// Layers named by their position, as `nn.Sequential` names them.
#[derive(Debug)]
struct Sequential {
    layers: Vec<Layer>,
}

impl Sequential {
    fn new() -> Sequential {
        Sequential { layers: Vec::new() }
    }

    /// The next layer's name under `vb`.
    fn next<'a>(&self, vb: &VarBuilder<'a>) -> VarBuilder<'a> {
        vb.pp(self.layers.len().to_string())
    }
}

impl Module for Sequential {
    /// The layers in order, an upsampling or an activation run inside the
    /// convolution next to it.
    fn forward(&self, xs: &Tensor) -> candle_core::Result<Tensor> {
        let mut xs = xs.clone();
        let mut layers = self.layers.iter().peekable();
        while let Some(layer) = layers.next() {
            xs = match (layer, layers.peek()) {
                (Layer::Upsample(factor), Some(Layer::Conv(conv))) => {
                    layers.next();
                    conv.forward_fused(&xs, Fused::upsampled(*factor))?
                }
                (Layer::Conv(conv), Some(Layer::Act(act))) => {
                    layers.next();
                    act.after(conv, &xs)?
                }
                (layer, _) => layer.forward(&xs)?,
            };
        }
        Ok(xs)
    }
}

fn check_for_candle(cfg: &Config) -> candle_core::Result<()> {
    cfg.check()
        .map_err(|error| candle_core::Error::Msg(error.to_string()))
}

/// diffusers' `DecoderTiny`: latents → images in [-1, 1].
#[derive(Debug)]
pub struct Decoder {
    layers: Sequential,
}

impl Decoder {
    /// `vb` at the decoder (`decoder` in the checkpoint); `padding` is the
    /// switch its convolutions share.
    pub fn new(
        cfg: &Config,
        padding: &PaddingSwitch,
        vb: VarBuilder,
    ) -> candle_core::Result<Decoder> {
        check_for_candle(cfg)?;
        let vb = vb.pp("layers");
        let channels = &cfg.decoder_block_out_channels;
        let mut seq = Sequential::new();
        let conv_in = conv3x3(
            cfg.latent_channels,
            channels[0],
            1,
            true,
            padding,
            seq.next(&vb),
        )?;
        seq.layers.push(Layer::Conv(conv_in));
        seq.layers.push(Layer::Act(cfg.act_fn));
        let levels = cfg.num_decoder_blocks.len();
        for (level, (&blocks, &width)) in cfg.num_decoder_blocks.iter().zip(channels).enumerate() {
            for _ in 0..blocks {
                let block = Block::new(width, width, cfg.act_fn, padding, seq.next(&vb))?;
                seq.layers.push(Layer::Block(block));
            }
            let last = level + 1 == levels;
            if !last {
                seq.layers
                    .push(Layer::Upsample(cfg.upsampling_scaling_factor));
            }
            // Each level ends on a convolution; only the last one (to RGB) has a bias.
            let output = if last { cfg.out_channels } else { width };
            let conv = conv3x3(width, output, 1, last, padding, seq.next(&vb))?;
            seq.layers.push(Layer::Conv(conv));
        }
        Ok(Decoder { layers: seq })
    }
}

impl Module for Decoder {
    /// Raw latents (the UNet's divided by `scaling_factor`) → images in [-1, 1].
    fn forward(&self, latents: &Tensor) -> candle_core::Result<Tensor> {
        // TAESD's soft clamp of the latents to (-3, 3).
        let xs = ((latents / 3.0)?.tanh()? * 3.0)?;
        // The network makes [0, 1]; diffusers' convention is [-1, 1].
        self.layers.forward(&xs)?.affine(2.0, -1.0)
    }
}

/// diffusers' `EncoderTiny`: images in [-1, 1] → raw latents.
#[derive(Debug)]
pub struct Encoder {
    layers: Sequential,
}

impl Encoder {
    /// `vb` at the encoder (`encoder` in the checkpoint); `padding` is the
    /// switch its convolutions share.
    pub fn new(
        cfg: &Config,
        padding: &PaddingSwitch,
        vb: VarBuilder,
    ) -> candle_core::Result<Encoder> {
        check_for_candle(cfg)?;
        let vb = vb.pp("layers");
        let channels = &cfg.encoder_block_out_channels;
        let mut seq = Sequential::new();
        for (level, (&blocks, &width)) in cfg.num_encoder_blocks.iter().zip(channels).enumerate() {
            // The first level opens from RGB; the others halve the size,
            // without a bias.
            let conv = if level == 0 {
                conv3x3(cfg.in_channels, width, 1, true, padding, seq.next(&vb))?
            } else {
                conv3x3(width, width, 2, false, padding, seq.next(&vb))?
            };
            seq.layers.push(Layer::Conv(conv));
            for _ in 0..blocks {
                let block = Block::new(width, width, cfg.act_fn, padding, seq.next(&vb))?;
                seq.layers.push(Layer::Block(block));
            }
        }
        let last = *channels.last().unwrap_or(&0);
        let conv_out = conv3x3(last, cfg.latent_channels, 1, true, padding, seq.next(&vb))?;
        seq.layers.push(Layer::Conv(conv_out));
        Ok(Encoder { layers: seq })
    }
}

impl Module for Encoder {
    /// Images in [-1, 1] → raw latents.
    fn forward(&self, images: &Tensor) -> candle_core::Result<Tensor> {
        // TAESD works on [0, 1].
        self.layers.forward(&images.affine(0.5, 0.5)?)
    }
}

/// TAESD whole: an encoder and a decoder under `encoder.` and `decoder.`.
#[derive(Debug)]
pub struct TinyAutoEncoder {
    encoder: Encoder,
    decoder: Decoder,
    /// Shared by every convolution that pads, in both halves.
    padding: PaddingSwitch,
    pub config: Config,
}

impl TinyAutoEncoder {
    pub fn new(cfg: &Config, vb: VarBuilder) -> candle_core::Result<TinyAutoEncoder> {
        let padding = PaddingSwitch::default();
        Ok(TinyAutoEncoder {
            encoder: Encoder::new(cfg, &padding, vb.pp("encoder"))?,
            decoder: Decoder::new(cfg, &padding, vb.pp("decoder"))?,
            padding,
            config: cfg.clone(),
        })
    }

    /// The padding of its convolutions: zeros, or circular for `--tile`.
    pub fn padding(&self) -> &PaddingSwitch {
        &self.padding
    }

    /// A local directory's or hub snapshot's `config.json` and weights.
    pub fn load(files: &SingleModelFiles, options: &PipelineOptions) -> Result<TinyAutoEncoder> {
        let config: Config = read_json(&files.config)?;
        config.check()?;
        Ok(TinyAutoEncoder::new(
            &config,
            weights(&files.weights, options)?,
        )?)
    }

    /// Images in [-1, 1], NCHW → raw latents (multiply by `scaling_factor`
    /// for the UNet's, as diffusers' img2img does).
    pub fn encode(&self, images: &Tensor) -> candle_core::Result<Tensor> {
        self.encoder.forward(images)
    }

    /// Raw latents (the UNet's divided by `scaling_factor`) → images in
    /// [-1, 1]: the contract of [`crate::sd::vae::AutoEncoder::decode`] and
    /// of diffusers' `AutoencoderTiny.decode`.
    pub fn decode(&self, latents: &Tensor) -> candle_core::Result<Tensor> {
        self.decoder.forward(latents)
    }

    /// The UNet's latents → images in [-1, 1]: unscaled with this model's
    /// own factors (for TAESD a no-op), as diffusers' pipelines do before
    /// `vae.decode`. The KL VAE's 0.18215 must not be applied first.
    pub fn decode_unet_latents(&self, latents: &Tensor) -> candle_core::Result<Tensor> {
        let raw = latents.affine(1.0 / self.config.scaling_factor, self.config.shift_factor)?;
        self.decode(&raw)
    }
}
