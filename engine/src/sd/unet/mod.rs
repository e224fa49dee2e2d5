//! The UNet (diffusers' `UNet2DConditionModel` for SD 1.x/2.x, same weight
//! names), ours rather than candle-transformers' so that every convolution
//! and norm in it runs on our kernels (`crate::ops`).

mod blocks;
mod config;
mod transformer;

use candle_core::{Module, Result, Tensor};
use candle_nn::VarBuilder;

pub use config::{Config, PerBlock};

use self::blocks::{DownBlock, LevelConfig, MidBlock, UpBlock};
use crate::ops::conv::PaddingSwitch;
use crate::ops::{Conv2d, GroupNorm, Linear};
use crate::sd::resnet;

#[derive(Debug)]
pub struct UNet {
    conv_in: Conv2d,
    time_channels: usize,
    flip_sin_to_cos: bool,
    freq_shift: f64,
    center_input_sample: bool,
    time_linear_1: Linear,
    time_linear_2: Linear,
    down_blocks: Vec<DownBlock>,
    mid_block: MidBlock,
    up_blocks: Vec<UpBlock>,
    conv_norm_out: GroupNorm,
    conv_out: Conv2d,
    /// Shared by every convolution that pads.
    padding: PaddingSwitch,
    /// Whether a step on a CUDA device may replay as a CUDA graph.
    cuda_graphs: bool,
    #[cfg(feature = "cuda")]
    graphs: crate::ops::cuda_graph::Graphs<GraphKey>,
}

/// What a captured step is kept for: everything its replay fixes.
#[cfg(feature = "cuda")]
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct GraphKey {
    latents: Vec<usize>,
    context: Vec<usize>,
    dtype: candle_core::DType,
    device: candle_core::DeviceLocation,
    padding: crate::ops::conv::PaddingMode,
}

impl UNet {
    pub fn new(cfg: &Config, vb: VarBuilder) -> crate::Result<Self> {
        let levels = cfg.levels()?;
        let first = levels[0].0;
        let time_dim = 4 * first;
        let resnet_config = |channels| resnet::Config {
            out_channels: channels,
            temb_channels: Some(time_dim),
            groups: cfg.norm_num_groups,
            eps: cfg.norm_eps,
            output_scale_factor: 1.0,
        };
        let transformer_config = |channels, heads| transformer::Config {
            channels,
            heads,
            context_dim: cfg.cross_attention_dim,
            layers: cfg.transformer_layers_per_block,
            groups: cfg.norm_num_groups,
            linear_projection: cfg.use_linear_projection,
        };
        let level_config = |&(channels, heads, cross): &(usize, usize, bool)| LevelConfig {
            resnet: resnet_config(channels),
            transformer: cross.then(|| transformer_config(channels, heads)),
        };
        let n = levels.len();
        let padding = PaddingSwitch::default();

        let mut skip_channels = vec![first];
        let mut down_blocks = Vec::with_capacity(n);
        for (i, level) in levels.iter().enumerate() {
            let input = if i == 0 { first } else { levels[i - 1].0 };
            let last = i + 1 == n;
            down_blocks.push(DownBlock::new(
                &level_config(level),
                cfg.layers_per_block,
                input,
                (!last).then_some(cfg.downsample_padding),
                &padding,
                vb.pp("down_blocks").pp(i),
            )?);
            skip_channels.extend(std::iter::repeat_n(
                level.0,
                cfg.layers_per_block + usize::from(!last),
            ));
        }

        let (deepest, deepest_heads, _) = levels[n - 1];
        let mid_block = MidBlock::new(
            &resnet::Config {
                output_scale_factor: cfg.mid_block_scale_factor,
                ..resnet_config(deepest)
            },
            &transformer_config(deepest, deepest_heads),
            &padding,
            vb.pp("mid_block"),
        )?;

        let mut up_blocks = Vec::with_capacity(n);
        let mut previous = deepest;
        for (i, level) in levels.iter().rev().enumerate() {
            let takes: Vec<usize> = (0..=cfg.layers_per_block)
                .map(|_| skip_channels.pop().unwrap_or(0))
                .collect();
            up_blocks.push(UpBlock::new(
                &level_config(level),
                previous,
                &takes,
                i + 1 != n,
                &padding,
                vb.pp("up_blocks").pp(i),
            )?);
            previous = level.0;
        }

        Ok(Self {
            conv_in: Conv2d::load(cfg.in_channels, first, 3, 1, 1, vb.pp("conv_in"))?
                .with_padding(&padding),
            time_channels: first,
            flip_sin_to_cos: cfg.flip_sin_to_cos,
            freq_shift: cfg.freq_shift,
            center_input_sample: cfg.center_input_sample,
            time_linear_1: Linear::load(first, time_dim, vb.pp("time_embedding.linear_1"))?,
            time_linear_2: Linear::load(time_dim, time_dim, vb.pp("time_embedding.linear_2"))?,
            down_blocks,
            mid_block,
            up_blocks,
            conv_norm_out: GroupNorm::load(
                cfg.norm_num_groups,
                first,
                cfg.norm_eps,
                vb.pp("conv_norm_out"),
            )?,
            conv_out: Conv2d::load(first, cfg.out_channels, 3, 1, 1, vb.pp("conv_out"))?
                .with_padding(&padding),
            padding,
            cuda_graphs: true,
            #[cfg(feature = "cuda")]
            graphs: Default::default(),
        })
    }

    /// The padding of its convolutions: zeros, or circular for `--tile`.
    pub fn padding(&self) -> &PaddingSwitch {
        &self.padding
    }

    /// Whether steps on a CUDA device may replay as CUDA graphs (on by
    /// default; each shape keeps a graph only where it is right and faster).
    pub fn set_cuda_graphs(&mut self, on: bool) {
        self.cuda_graphs = on;
    }

    /// The sinusoidal embedding of the timestep, [1, time_channels],
    /// computed in f32.
    fn timestep_embedding(&self, timestep: f64, like: &Tensor) -> Result<Tensor> {
        let half = self.time_channels / 2;
        let freqs: Vec<f32> = (0..half)
            .map(|i| {
                let exponent = -(10000f64.ln()) * i as f64 / (half as f64 - self.freq_shift);
                (timestep * exponent.exp()) as f32
            })
            .collect();
        let (sin, cos): (Vec<f32>, Vec<f32>) = freqs.iter().map(|f| (f.sin(), f.cos())).unzip();
        let row = if self.flip_sin_to_cos {
            [cos, sin].concat()
        } else {
            [sin, cos].concat()
        };
        Tensor::from_vec(row, (1, 2 * half), like.device())?.to_dtype(like.dtype())
    }

    /// The predicted noise (or v) for `latents` at `timestep`, conditioned
    /// on the text encoder's `context` (one row per image).
    pub fn forward(&self, latents: &Tensor, timestep: f64, context: &Tensor) -> Result<Tensor> {
        // Uploaded here, outside what a graph replays: it changes every step.
        let embedding = self.timestep_embedding(timestep, latents)?;
        #[cfg(feature = "cuda")]
        if self.cuda_graphs && latents.device().is_cuda() {
            let key = GraphKey {
                latents: latents.dims().to_vec(),
                context: context.dims().to_vec(),
                dtype: latents.dtype(),
                device: latents.device().location(),
                padding: self.padding.mode(),
            };
            return self
                .graphs
                .run(&key, &[latents, &embedding, context], |inputs| {
                    self.forward_embedded(inputs[0], inputs[1], inputs[2])
                });
        }
        self.forward_embedded(latents, &embedding, context)
    }

    /// The step from the timestep's sinusoid `embedding` ([1,
    /// time_channels], on the device) on: all device work, so that a CUDA
    /// graph can replay it.
    fn forward_embedded(
        &self,
        latents: &Tensor,
        embedding: &Tensor,
        context: &Tensor,
    ) -> Result<Tensor> {
        let batch = latents.dim(0)?;
        let xs = if self.center_input_sample {
            ((latents * 2.0)? - 1.0)?
        } else {
            latents.clone()
        };
        let emb = embedding.repeat((batch, 1))?;
        let temb = self
            .time_linear_2
            .forward(&candle_nn::ops::silu(&self.time_linear_1.forward(&emb)?)?)?;

        let mut xs = self.conv_in.forward(&xs)?;
        let mut skips = vec![xs.clone()];
        for block in &self.down_blocks {
            xs = block.forward(&xs, &temb, context, &mut skips)?;
        }
        xs = self.mid_block.forward(&xs, &temb, context)?;
        for block in &self.up_blocks {
            xs = block.forward(&xs, &temb, context, &mut skips)?;
        }
        self.conv_out
            .forward(&self.conv_norm_out.forward_silu(&xs)?)
    }
}
