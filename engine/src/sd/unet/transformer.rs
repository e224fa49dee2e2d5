//! The UNet's spatial transformer (diffusers' `Transformer2DModel` with
//! `BasicTransformerBlock`s): self-attention over positions, cross-attention
//! to the prompt, a GEGLU feed-forward. Same weight names as diffusers.

use candle_core::{Module, Result, Tensor};
use candle_nn::{LayerNorm, VarBuilder};

use crate::ops::attention::{Mask, attention};
use crate::ops::gelu::geglu;
use crate::ops::{Conv2d, GroupNorm, Linear};

/// Multi-head attention; `context` None is self-attention.
#[derive(Debug)]
struct Attention {
    to_q: Linear,
    to_k: Linear,
    to_v: Linear,
    to_out: Linear,
    heads: usize,
    scale: f64,
}

impl Attention {
    fn new(query_dim: usize, context_dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        let head_dim = query_dim / heads;
        Ok(Self {
            to_q: Linear::load_no_bias(query_dim, query_dim, vb.pp("to_q"))?,
            to_k: Linear::load_no_bias(context_dim, query_dim, vb.pp("to_k"))?,
            to_v: Linear::load_no_bias(context_dim, query_dim, vb.pp("to_v"))?,
            to_out: Linear::load(query_dim, query_dim, vb.pp("to_out.0"))?,
            heads,
            scale: 1.0 / (head_dim as f64).sqrt(),
        })
    }

    /// [batch, tokens, channels] → [batch · heads, tokens, head_dim]
    fn split_heads(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, tokens, channels) = xs.dims3()?;
        xs.reshape((batch, tokens, self.heads, channels / self.heads))?
            .transpose(1, 2)?
            .reshape((batch * self.heads, tokens, channels / self.heads))?
            .contiguous()
    }

    fn forward(&self, xs: &Tensor, context: Option<&Tensor>) -> Result<Tensor> {
        let (batch, tokens, channels) = xs.dims3()?;
        let context = context.unwrap_or(xs);
        let q = self.split_heads(&self.to_q.forward(xs)?)?;
        let k = self.split_heads(&self.to_k.forward(context)?)?;
        let v = self.split_heads(&self.to_v.forward(context)?)?;
        let attended = attention(&q, &k, &v, self.scale, Mask::None)?
            .reshape((batch, self.heads, tokens, channels / self.heads))?
            .transpose(1, 2)?
            .reshape((batch, tokens, channels))?;
        self.to_out.forward(&attended)
    }
}

/// GEGLU: a projection to twice the width, one half gating the other
/// through the exact (erf) GELU, as diffusers' `GELU`/`GEGLU` computes.
#[derive(Debug)]
struct FeedForward {
    proj: Linear,
    out: Linear,
}

impl FeedForward {
    fn new(dim: usize, vb: VarBuilder) -> Result<Self> {
        let inner = 4 * dim;
        Ok(Self {
            proj: Linear::load(dim, 2 * inner, vb.pp("net.0.proj"))?,
            out: Linear::load(inner, dim, vb.pp("net.2"))?,
        })
    }
}

impl Module for FeedForward {
    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        self.out.forward(&geglu(&self.proj.forward(xs)?)?)
    }
}

#[derive(Debug)]
struct TransformerBlock {
    norm1: LayerNorm,
    attn1: Attention,
    norm2: LayerNorm,
    attn2: Attention,
    norm3: LayerNorm,
    ff: FeedForward,
}

impl TransformerBlock {
    fn new(dim: usize, context_dim: usize, heads: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self {
            norm1: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm1"))?,
            attn1: Attention::new(dim, dim, heads, vb.pp("attn1"))?,
            norm2: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm2"))?,
            attn2: Attention::new(dim, context_dim, heads, vb.pp("attn2"))?,
            norm3: candle_nn::layer_norm(dim, 1e-5, vb.pp("norm3"))?,
            ff: FeedForward::new(dim, vb.pp("ff"))?,
        })
    }

    fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let xs = (self.attn1.forward(&self.norm1.forward(xs)?, None)? + xs)?;
        let xs = (self
            .attn2
            .forward(&self.norm2.forward(&xs)?, Some(context))?
            + xs)?;
        self.ff.forward(&self.norm3.forward(&xs)?)? + xs
    }
}

/// A projection into or out of the transformer: a linear layer over
/// channels (SD 2.x), or the equivalent 1×1 convolution (SD 1.x).
#[derive(Debug)]
enum Projection {
    Linear(Linear),
    Conv(Conv2d),
}

impl Projection {
    fn new(linear: bool, channels: usize, vb: VarBuilder) -> Result<Self> {
        Ok(if linear {
            Projection::Linear(Linear::load(channels, channels, vb)?)
        } else {
            Projection::Conv(Conv2d::load(channels, channels, 1, 0, 1, vb)?)
        })
    }
}

#[derive(Debug, Clone, Copy)]
pub struct Config {
    pub channels: usize,
    pub heads: usize,
    pub context_dim: usize,
    pub layers: usize,
    pub groups: usize,
    pub linear_projection: bool,
}

#[derive(Debug)]
pub struct Transformer2D {
    norm: GroupNorm,
    proj_in: Projection,
    blocks: Vec<TransformerBlock>,
    proj_out: Projection,
}

impl Transformer2D {
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<Self> {
        let c = cfg.channels;
        Ok(Self {
            norm: GroupNorm::load(cfg.groups, c, 1e-6, vb.pp("norm"))?,
            proj_in: Projection::new(cfg.linear_projection, c, vb.pp("proj_in"))?,
            blocks: (0..cfg.layers)
                .map(|i| {
                    let vb = vb.pp("transformer_blocks").pp(i);
                    TransformerBlock::new(c, cfg.context_dim, cfg.heads, vb)
                })
                .collect::<Result<_>>()?,
            proj_out: Projection::new(cfg.linear_projection, c, vb.pp("proj_out"))?,
        })
    }

    pub fn forward(&self, xs: &Tensor, context: &Tensor) -> Result<Tensor> {
        let (batch, channels, height, width) = xs.dims4()?;
        let to_tokens = |t: &Tensor| -> Result<Tensor> {
            t.reshape((batch, channels, height * width))?
                .transpose(1, 2)?
                .contiguous()
        };
        let normed = self.norm.forward(xs)?;
        let mut tokens = match &self.proj_in {
            Projection::Linear(proj) => proj.forward(&to_tokens(&normed)?)?,
            Projection::Conv(conv) => to_tokens(&conv.forward(&normed)?)?,
        };
        for block in &self.blocks {
            tokens = block.forward(&tokens, context)?;
        }
        let to_image = |t: &Tensor| -> Result<Tensor> {
            t.transpose(1, 2)?
                .contiguous()?
                .reshape((batch, channels, height, width))
        };
        match &self.proj_out {
            Projection::Linear(proj) => to_image(&proj.forward(&tokens)?)? + xs,
            Projection::Conv(conv) => conv.forward_plus(&to_image(&tokens)?, xs),
        }
    }
}
