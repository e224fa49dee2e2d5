//! wordup-engine: Stable Diffusion in candle, built from diffusers model
//! files. It knows nothing about Discord or Slack; the `wordup-engine`
//! binary wires delivery from wordup-bot into the worker.

pub mod bench;
pub mod clip;
pub mod device;
pub mod error;
pub mod finish;
pub mod images;
pub mod metrics;
pub mod noise;
pub mod output;
pub mod pipeline;
pub mod render;
pub mod resample;
pub mod safety;
pub mod scheduler;
pub mod size;
pub mod source;
pub mod text_encoder;
pub mod tiny;
pub mod tokenizer;
pub mod unet;
pub mod upscale;
pub mod vae;
pub mod worker;

pub use error::{EngineError, Result};
pub use pipeline::{Generation, PipelineOptions, StableDiffusion, Stage};
