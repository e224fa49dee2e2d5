//! wordup-engine: Stable Diffusion in candle, built from diffusers model
//! files, and the queue worker that runs it. It knows nothing about Discord
//! or Slack: results leave through `wordup_queue::Delivery`, which the
//! `wordup-engine` binary wires to the chat crate.

pub mod error;
/// Finishing images: the GAN upscaler, img2img refinement, resampling,
/// files with provenance, grids.
pub mod finish;
/// Judging images: CLIP and the output safety check.
pub mod judge;
/// Layers with CPU kernels of our own: convolution, GroupNorm(+SiLU).
pub mod ops;
/// Stable Diffusion: the models, the tokenizer, schedulers, the pipeline.
pub mod sd;
/// The queue worker: claim, render, check, store, deliver, settle.
pub mod worker;

pub use error::{EngineError, Result};
pub use sd::pipeline::{Generation, PipelineOptions, StableDiffusion, Stage};
