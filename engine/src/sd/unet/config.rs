//! `unet/config.json`, and what each level of the UNet is made of.

use candle_nn::VarBuilder;
use serde::Deserialize;

use super::UNet;
use crate::error::{EngineError, Result};

#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum PerBlock {
    One(usize),
    Each(Vec<usize>),
}

impl PerBlock {
    pub(crate) fn get(&self, block: usize) -> Option<usize> {
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
    /// Per level, down path order: (channels, heads, has cross-attention).
    pub(crate) fn levels(&self) -> Result<Vec<(usize, usize, bool)>> {
        let n = self.block_out_channels.len();
        if n == 0 || self.down_block_types.len() != n || self.up_block_types.len() != n {
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
        (0..n)
            .map(|i| {
                let (down, up) = (&self.down_block_types[i], &self.up_block_types[n - 1 - i]);
                // The up path mirrors the down path, as in every SD 1.x/2.x model.
                let cross = match (down.as_str(), up.as_str()) {
                    ("CrossAttnDownBlock2D", "CrossAttnUpBlock2D") => true,
                    ("DownBlock2D", "UpBlock2D") => false,
                    _ => {
                        return Err(EngineError::UnsupportedModel(format!(
                            "unet block pair {down}/{up} is not supported"
                        )));
                    }
                };
                let heads = heads.get(i).ok_or_else(|| {
                    EngineError::UnsupportedModel(format!("unet has no head count for block {i}"))
                })?;
                let channels = self.block_out_channels[i];
                if heads == 0 || !channels.is_multiple_of(heads) || !channels.is_multiple_of(self.norm_num_groups) {
                    return Err(EngineError::UnsupportedModel(format!(
                        "unet block {i}: {channels} channels do not split into {heads} heads and {} groups",
                        self.norm_num_groups
                    )));
                }
                Ok((channels, heads, cross))
            })
            .collect()
    }

    pub fn build(&self, vb: VarBuilder) -> Result<UNet> {
        UNet::new(self, vb)
    }
}
