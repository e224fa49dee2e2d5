//! Whole-pipeline checks for a GPU host (`scripts/gpu-check.sh`):
//!
//! - `speed`: txt2img through the real pipeline (text encoder, the denoising
//!   loop, VAE decode, the copy back to the host) on a diffusers model
//!   directory, per batch size and step count. Prints
//!   `RESULT candle e2e size=<px> batch=<n> steps=<k> ms=<median> images_per_s=<x>`.
//! - `parity`: the same generation on the CPU in f32 and on the best device
//!   in f32 and f16, with the largest and mean absolute pixel differences;
//!   exits non-zero beyond the tolerances.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use clap::{Args, Parser, Subcommand};
use wordup_engine::bench::median_ms;
use wordup_engine::device::{best_device, parse_dtype, variant_for};
use wordup_engine::pipeline::{Generation, PipelineOptions, StableDiffusion};
use wordup_engine::source::ModelFiles;

/// Largest absolute difference of a pixel in [0, 1] between the GPU in f32
/// and the CPU (cuDNN may pick TF32 convolutions, hence not 1e-4).
const F32_MAX_DIFF: f32 = 1e-2;
/// The same for the GPU in f16, whose 10-bit mantissa rounds every layer.
const F16_MAX_DIFF: f32 = 6e-2;
/// Mean absolute difference allowed for either precision.
const MEAN_DIFF: f32 = 5e-3;

#[derive(Parser)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Time txt2img per batch size and step count.
    Speed(SpeedArgs),
    /// Compare the best device's output with the CPU's.
    Parity(ParityArgs),
}

#[derive(Args)]
struct SpeedArgs {
    /// A diffusers model directory.
    #[arg(long)]
    model: PathBuf,
    /// Image side in pixels.
    #[arg(long, default_value_t = 512)]
    size: usize,
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    batches: Vec<usize>,
    #[arg(long, value_delimiter = ',', default_value = "1,4")]
    steps: Vec<usize>,
    /// f32, f16 or bf16.
    #[arg(long, default_value = "f16")]
    dtype: String,
    /// Timed runs per configuration (the median is reported), after one warm-up.
    #[arg(long, default_value_t = 5)]
    repeats: usize,
    /// Run on the CPU even where a GPU is available.
    #[arg(long)]
    cpu: bool,
    /// Fail rather than fall back to the CPU when no GPU is usable.
    #[arg(long, conflicts_with = "cpu")]
    require_gpu: bool,
}

#[derive(Args)]
struct ParityArgs {
    /// A diffusers model directory (the tiny test models are made for this).
    #[arg(long)]
    model: PathBuf,
    #[arg(long, default_value_t = 3)]
    steps: usize,
    #[arg(long, default_value_t = 5.0)]
    guidance: f64,
    /// Fail when the best device is the CPU (nothing would be compared).
    #[arg(long)]
    require_gpu: bool,
}

fn load(model: &std::path::Path, device: &Device, dtype: DType) -> Result<StableDiffusion> {
    let files = ModelFiles::from_dir(model, variant_for(dtype))?;
    let options = PipelineOptions {
        device: device.clone(),
        dtype,
        scheduler: None,
    };
    StableDiffusion::load(&files, &options)
        .with_context(|| format!("loading {} on {device:?} in {dtype:?}", model.display()))
}

/// Images `[n, 3, H, W]` in [0, 1], f32, on the host: the copy waits for
/// the device, so a timing around this call is the whole generation.
fn draw(pipeline: &StableDiffusion, generation: &Generation) -> Result<Tensor> {
    let images = pipeline.txt2img(generation, &mut |_, _, _| Ok(()))?;
    Ok(images.to_dtype(DType::F32)?.to_device(&Device::Cpu)?)
}

fn speed(args: &SpeedArgs) -> Result<()> {
    let device = best_device(args.cpu)?;
    if args.require_gpu && device.is_cpu() {
        bail!("no usable GPU: this build or host has none");
    }
    let dtype = parse_dtype(&args.dtype).map_err(anyhow::Error::msg)?;
    let pipeline = load(&args.model, &device, dtype)?;
    eprintln!("candle on {device:?} in {dtype:?}");
    for &batch in &args.batches {
        for &steps in &args.steps {
            let generation = Generation {
                prompt: "a lighthouse at dusk, oil painting".to_owned(),
                negative_prompt: None,
                width: args.size,
                height: args.size,
                steps,
                guidance: 0.0,
                seeds: (0..batch as u64).collect(),
            };
            draw(&pipeline, &generation)?;
            let ms = median_ms(args.repeats, || draw(&pipeline, &generation).map(drop))?;
            let rate = batch as f64 / (ms / 1e3);
            eprintln!(
                "{}² batch {batch}, {steps} steps: {ms:.1} ms, {rate:.2} images/s",
                args.size
            );
            println!(
                "RESULT candle e2e size={} batch={batch} steps={steps} ms={ms:.2} images_per_s={rate:.3}",
                args.size
            );
        }
    }
    Ok(())
}

/// (largest, mean) absolute difference.
fn differences(a: &Tensor, b: &Tensor) -> Result<(f32, f32)> {
    let diff = (a - b)?.abs()?.flatten_all()?;
    Ok((
        diff.max(0)?.to_scalar::<f32>()?,
        diff.mean(0)?.to_scalar::<f32>()?,
    ))
}

fn parity(args: &ParityArgs) -> Result<bool> {
    let device = best_device(false)?;
    if device.is_cpu() {
        if args.require_gpu {
            bail!("no usable GPU: this build or host has none");
        }
        eprintln!("the best device is the CPU: comparing f16 on the CPU with f32 only");
    }
    let reference = load(&args.model, &Device::Cpu, DType::F32)?;
    let side = reference.native_side();
    let generation = Generation {
        prompt: "a lighthouse at dusk".to_owned(),
        negative_prompt: Some("fog".to_owned()),
        width: side,
        height: side,
        steps: args.steps,
        guidance: args.guidance,
        seeds: vec![7, 8],
    };
    let expected = draw(&reference, &generation)?;
    drop(reference);
    let mut passed = true;
    for (dtype, max_allowed) in [(DType::F32, F32_MAX_DIFF), (DType::F16, F16_MAX_DIFF)] {
        let pipeline = load(&args.model, &device, dtype)?;
        let (max, mean) = differences(&draw(&pipeline, &generation)?, &expected)?;
        let ok = max <= max_allowed && mean <= MEAN_DIFF;
        passed &= ok;
        println!(
            "PARITY model={} dtype={dtype:?} max_abs={max:.5} mean_abs={mean:.6} max_allowed={max_allowed} mean_allowed={MEAN_DIFF} {}",
            args.model.display(),
            if ok { "ok" } else { "FAILED" }
        );
    }
    Ok(passed)
}

fn main() -> Result<ExitCode> {
    match Cli::parse().command {
        Command::Speed(args) => speed(&args)?,
        Command::Parity(args) => {
            if !parity(&args)? {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
