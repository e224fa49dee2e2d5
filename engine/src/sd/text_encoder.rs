//! CLIP's text transformer as Stable Diffusion uses it (transformers'
//! `CLIPTextModel`, last hidden state after the final layer norm), built
//! from `text_encoder/config.json`.

use candle_core::{Module, Result, Tensor};
use candle_nn::{Embedding, LayerNorm, VarBuilder};

use crate::ops::Linear;
use crate::ops::attention::{Mask, attention};
use serde::Deserialize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    QuickGelu,
    /// transformers' "gelu": the exact, erf-based GELU.
    Gelu,
    /// The tanh approximation.
    GeluNew,
}

impl Activation {
    fn apply(self, xs: &Tensor) -> Result<Tensor> {
        match self {
            Activation::QuickGelu => xs * candle_nn::ops::sigmoid(&(xs * 1.702)?)?,
            Activation::Gelu => crate::ops::gelu::gelu_erf(xs),
            Activation::GeluNew => xs.gelu(),
        }
    }
}

fn default_eps() -> f64 {
    1e-5
}

/// `text_encoder/config.json`, the fields we use.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    pub vocab_size: usize,
    pub hidden_size: usize,
    pub intermediate_size: usize,
    pub num_attention_heads: usize,
    pub num_hidden_layers: usize,
    pub max_position_embeddings: usize,
    pub hidden_act: Activation,
    #[serde(default = "default_eps")]
    pub layer_norm_eps: f64,
}

#[derive(Debug, Clone)]
struct Attention {
    q_proj: Linear,
    k_proj: Linear,
    v_proj: Linear,
    out_proj: Linear,
    heads: usize,
    head_dim: usize,
}

impl Attention {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<Attention> {
        let h = cfg.hidden_size;
        Ok(Attention {
            q_proj: Linear::load(h, h, vb.pp("q_proj"))?,
            k_proj: Linear::load(h, h, vb.pp("k_proj"))?,
            v_proj: Linear::load(h, h, vb.pp("v_proj"))?,
            out_proj: Linear::load(h, h, vb.pp("out_proj"))?,
            heads: cfg.num_attention_heads,
            head_dim: h / cfg.num_attention_heads,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let (batch, seq, hidden) = xs.dims3()?;
        // [batch · heads, seq, head_dim]
        let split = |t: Tensor| {
            t.reshape((batch, seq, self.heads, self.head_dim))?
                .transpose(1, 2)?
                .reshape((batch * self.heads, seq, self.head_dim))
        };
        let scale = 1.0 / (self.head_dim as f64).sqrt();
        let q = split(self.q_proj.forward(xs)?)?;
        let k = split(self.k_proj.forward(xs)?)?;
        let v = split(self.v_proj.forward(xs)?)?;
        let out = attention(&q, &k, &v, scale, Mask::Causal)?
            .reshape((batch, self.heads, seq, self.head_dim))?
            .transpose(1, 2)?
            .reshape((batch, seq, hidden))?;
        self.out_proj.forward(&out)
    }
}

#[derive(Debug, Clone)]
struct EncoderLayer {
    layer_norm1: LayerNorm,
    self_attn: Attention,
    layer_norm2: LayerNorm,
    fc1: Linear,
    fc2: Linear,
    activation: Activation,
}

impl EncoderLayer {
    fn new(cfg: &Config, vb: VarBuilder) -> Result<EncoderLayer> {
        let h = cfg.hidden_size;
        Ok(EncoderLayer {
            layer_norm1: candle_nn::layer_norm(h, cfg.layer_norm_eps, vb.pp("layer_norm1"))?,
            self_attn: Attention::new(cfg, vb.pp("self_attn"))?,
            layer_norm2: candle_nn::layer_norm(h, cfg.layer_norm_eps, vb.pp("layer_norm2"))?,
            fc1: Linear::load(h, cfg.intermediate_size, vb.pp("mlp").pp("fc1"))?,
            fc2: Linear::load(cfg.intermediate_size, h, vb.pp("mlp").pp("fc2"))?,
            activation: cfg.hidden_act,
        })
    }

    fn forward(&self, xs: &Tensor) -> Result<Tensor> {
        let attended = self.self_attn.forward(&self.layer_norm1.forward(xs)?)?;
        let xs = (xs + attended)?;
        let hidden = self.fc1.forward(&self.layer_norm2.forward(&xs)?)?;
        let hidden = self.fc2.forward(&self.activation.apply(&hidden)?)?;
        xs + hidden
    }
}

#[derive(Debug, Clone)]
pub struct TextEncoder {
    token_embedding: Embedding,
    position_embedding: Embedding,
    layers: Vec<EncoderLayer>,
    final_layer_norm: LayerNorm,
    max_positions: usize,
}

impl TextEncoder {
    /// `vb` is the root of `text_encoder/model.safetensors`. transformers 4
    /// saved the weights under `text_model.`, transformers 5 without it.
    pub fn new(cfg: &Config, vb: VarBuilder) -> Result<TextEncoder> {
        let vb = if vb.contains_tensor("text_model.embeddings.token_embedding.weight") {
            vb.pp("text_model")
        } else {
            vb
        };
        let embeddings = vb.pp("embeddings");
        let layers = (0..cfg.num_hidden_layers)
            .map(|i| EncoderLayer::new(cfg, vb.pp("encoder").pp("layers").pp(i)))
            .collect::<Result<_>>()?;
        Ok(TextEncoder {
            token_embedding: candle_nn::embedding(
                cfg.vocab_size,
                cfg.hidden_size,
                embeddings.pp("token_embedding"),
            )?,
            position_embedding: candle_nn::embedding(
                cfg.max_position_embeddings,
                cfg.hidden_size,
                embeddings.pp("position_embedding"),
            )?,
            layers,
            final_layer_norm: candle_nn::layer_norm(
                cfg.hidden_size,
                cfg.layer_norm_eps,
                vb.pp("final_layer_norm"),
            )?,
            max_positions: cfg.max_position_embeddings,
        })
    }

    pub fn max_positions(&self) -> usize {
        self.max_positions
    }

    /// Token ids `[batch, seq]` (u32) → hidden states `[batch, seq, hidden]`.
    pub fn forward(&self, input_ids: &Tensor) -> Result<Tensor> {
        let (_, seq) = input_ids.dims2()?;
        let device = input_ids.device();
        let positions = Tensor::arange(0u32, seq as u32, device)?.unsqueeze(0)?;
        let xs = self
            .token_embedding
            .forward(input_ids)?
            .broadcast_add(&self.position_embedding.forward(&positions)?)?;
        let mut xs = xs;
        for layer in &self.layers {
            xs = layer.forward(&xs)?;
        }
        self.final_layer_norm.forward(&xs)
    }
}
