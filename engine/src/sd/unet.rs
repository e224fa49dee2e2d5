//! The UNet, from `unet/config.json` into candle's `UNet2DConditionModel`.

use candle_nn::VarBuilder;
use candle_transformers::models::stable_diffusion::unet_2d::{
    BlockConfig, UNet2DConditionModel, UNet2DConditionModelConfig,
};
use serde::Deserialize;

use crate::error::{EngineError, Result};

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    One(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    fn get(&self, block: usize) -> Option<usize> {
        match self {
            PerBlock::One(n) => Some(*n),
            PerBlock::Each(list) => list.get(block).copied(),
        }
    }
}

fn default_true() -> bool {
    true
}
fn default_one() -> usize {
    1
}
fn default_one_f() -> f64 {
    1.0
}
fn default_eps() -> f64 {
    1e-5
}
fn default_groups() -> usize {
    32
}
fn default_channels() -> usize {
    4
}
fn default_layers() -> usize {
    2
}

/// `unet/config.json`, the fields we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub block_out_channels: Vec<usize>,
    pub down_block_types: Vec<String>,
    pub up_block_types: Vec<String>,
    /// Heads per block, in diffusers' historical naming.
    pub attention_head_dim: PerBlock,
    #[serde(default)]
    pub num_attention_heads: Option<PerBlock>,
    pub cross_attention_dim: usize,
    #[serde(default = "default_layers")]
    pub layers_per_block: usize,
    #[serde(default = "default_one")]
    pub transformer_layers_per_block: usize,
    #[serde(default = "default_channels")]
    pub in_channels: usize,
    #[serde(default = "default_channels")]
    pub out_channels: usize,
    #[serde(default)]
    pub center_input_sample: bool,
    #[serde(default = "default_true")]
    pub flip_sin_to_cos: bool,
    #[serde(default)]
    pub freq_shift: f64,
    #[serde(default = "default_one")]
    pub downsample_padding: usize,
    #[serde(default = "default_one_f")]
    pub mid_block_scale_factor: f64,
    #[serde(default = "default_groups")]
    pub norm_num_groups: usize,
    #[serde(default = "default_eps")]
    pub norm_eps: f64,
    #[serde(default)]
    pub use_linear_projection: bool,
    #[serde(default)]
    pub sample_size: Option<usize>,
}

impl Config {
    /// candle's config. candle mirrors the down blocks for the up path, so
    /// the up block types must be the down ones reversed.
    pub fn to_candle(&self) -> Result<UNet2DConditionModelConfig> {
        let n = self.block_out_channels.len();
        if self.down_block_types.len() != n || self.up_block_types.len() != n {
            return Err(EngineError::UnsupportedModel(format!(
                "unet has {n} block widths but {} down and {} up blocks",
                self.down_block_types.len(),
                self.up_block_types.len()
            )));
        }
        let heads = self
            .num_attention_heads
            .as_ref()
            .unwrap_or(&self.attention_head_dim);
        let mut blocks = Vec::with_capacity(n);
        for (i, down) in self.down_block_types.iter().enumerate() {
            let up = &self.up_block_types[n - 1 - i];
            let cross = match (down.as_str(), up.as_str()) {
                ("CrossAttnDownBlock2D", "CrossAttnUpBlock2D") => true,
                ("DownBlock2D", "UpBlock2D") => false,
                _ => {
                    return Err(EngineError::UnsupportedModel(format!(
                        "unet block pair {down}/{up} is not supported"
                    )));
                }
            };
            blocks.push(BlockConfig {
                out_channels: self.block_out_channels[i],
                use_cross_attn: cross.then_some(self.transformer_layers_per_block),
                attention_head_dim: heads.get(i).ok_or_else(|| {
                    EngineError::UnsupportedModel(format!("unet has no head count for block {i}"))
                })?,
            });
        }
        Ok(UNet2DConditionModelConfig {
            center_input_sample: self.center_input_sample,
            flip_sin_to_cos: self.flip_sin_to_cos,
            freq_shift: self.freq_shift,
            blocks,
            layers_per_block: self.layers_per_block,
            downsample_padding: self.downsample_padding,
            mid_block_scale_factor: self.mid_block_scale_factor,
            norm_num_groups: self.norm_num_groups,
            norm_eps: self.norm_eps,
            cross_attention_dim: self.cross_attention_dim,
            sliced_attention_size: None,
            use_linear_projection: self.use_linear_projection,
        })
    }

    pub fn build(&self, vb: VarBuilder) -> Result<UNet2DConditionModel> {
        Ok(UNet2DConditionModel::new(
            vb,
            self.in_channels,
            self.out_channels,
            false,
            self.to_candle()?,
        )?)
    }
}
