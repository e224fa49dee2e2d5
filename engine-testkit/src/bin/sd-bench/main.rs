//! Whole-pipeline checks for a GPU host (`scripts/gpu-check.sh`):
//!
//! - `speed`: txt2img through the real pipeline (text encoder, the denoising
//!   loop, VAE decode, the copy back to the host) on a diffusers model
//!   directory, per batch size and step count. Prints
//!   `RESULT candle e2e size=<px> batch=<n> steps=<k> ms=<median> images_per_s=<x>`.
//! - `grids`: several four-image /imagine grids with different prompts drawn
//!   one grid at a time and as one batch (`StableDiffusion::txt2img_batch`,
//!   what an engine with `WORDUP_ENGINE_BATCH` > 1 does), images/s of each
//!   and their ratio in a table; `RESULT candle grids …` lines too.
//! - `stages`: text encoding, one UNet step, one VAE decode and one TAESD
//!   (draft) decode timed alone (the device synchronised around each) on
//!   random weights built from config files, per size and batch, then the
//!   whole one-step txt2img through the pipeline on the same models; prints
//!   `RESULT candle <stage> size=<px> batch=<n> ms=<median>` for
//!   `scripts/bench-engine.sh` and `scripts/gpu-check.sh stages`, whose
//!   PyTorch side is `scripts/bench/diffusers_stages.py`. `--only unet_step`
//!   (say) times one stage.
//! - `parts`: single blocks (GroupNorm, SiLU, upsampling, softmax, a 3×3
//!   convolution, a ResNet block, the VAE's attention and up-block) with
//!   their GPU-vs-CPU error and their time on the GPU (`parts.rs`).
//! - `parity`: the same generation on the CPU in f32 and on the best device
//!   in f32 and f16, with the largest and mean absolute pixel differences;
//!   exits non-zero beyond the tolerances. Each stage (text encoder, one
//!   UNet step, VAE decode) is also run alone on the reference's inputs and
//!   its relative error printed, so a failure names the stage it comes from.

mod parts;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use candle_core::{DType, Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::{Args, Parser, Subcommand};
use wordup_engine::sd::device::{best_device, parse_dtype, variant_for};
use wordup_engine::sd::pipeline::{Decoder, Generation, Parts, PipelineOptions, StableDiffusion};
use wordup_engine::sd::source::ModelFiles;
use wordup_engine::sd::{taesd, text_encoder, unet, vae};
use wordup_engine_testkit::bench::median_ms;
use wordup_tokenizer::ClipTokenizer;

/// The prompt the speed and txt2img timings draw (diffusers' side too).
const PROMPT: &str = "a lighthouse at dusk, oil painting";

/// Largest absolute difference of a pixel in [0, 1] between the GPU in f32
/// and the CPU (cuDNN may pick TF32 convolutions, hence not 1e-4).
const F32_MAX_DIFF: f32 = 1e-2;
/// The same for the GPU in f16, whose 10-bit mantissa rounds every layer.
const F16_MAX_DIFF: f32 = 6e-2;
/// Mean absolute difference allowed for either precision.
const MEAN_DIFF: f32 = 5e-3;

#[derive(Parser)]
struct Cli {
    /// Never replay UNet steps as CUDA graphs (as the engine's
    /// WORDUP_NO_CUDA_GRAPHS does).
    #[arg(long, global = true, env = "WORDUP_NO_CUDA_GRAPHS")]
    no_cuda_graphs: bool,
    /// Never try cuDNN's graph-API engines for a convolution (as the
    /// engine's WORDUP_NO_CUDNN_GRAPH does).
    #[arg(long, global = true, env = "WORDUP_NO_CUDNN_GRAPH")]
    no_cudnn_graph: bool,
    #[command(subcommand)]
    command: Command,
}

/// Whether pipelines may replay UNet steps as CUDA graphs: the command
/// line's choice, set once in `main`.
static CUDA_GRAPHS: std::sync::OnceLock<bool> = std::sync::OnceLock::new();

fn cuda_graphs() -> bool {
    CUDA_GRAPHS.get().copied().unwrap_or(true)
}

#[derive(Subcommand)]
enum Command {
    /// Time txt2img per batch size and step count.
    Speed(SpeedArgs),
    /// Time grids of different prompts drawn one by one and as one batch.
    Grids(GridsArgs),
    /// Time each stage alone on random weights.
    Stages(StagesArgs),
    /// Compare the best device's output with the CPU's.
    Parity(ParityArgs),
    /// Single blocks: GPU-vs-CPU error, and time on the GPU.
    Parts(parts::PartsArgs),
}

#[derive(Args)]
struct StagesArgs {
    /// Folder with unet.json, vae.json, text_encoder.json and scheduler.json
    /// (and taesd.json for the draft decoder, skipped without it), or a
    /// diffusers model directory (its configs only; the weights are random).
    #[arg(long, default_value = "scripts/bench/sd-turbo")]
    configs: PathBuf,
    /// CLIP's BPE files (vocab.json, merges.txt), for the txt2img stage.
    #[arg(long, default_value = "engine/tests/fixtures/clip-tokenizer")]
    tokenizer: PathBuf,
    /// Image sides in pixels.
    #[arg(long, value_delimiter = ',', default_value = "256,512")]
    sizes: Vec<usize>,
    /// UNet batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    batches: Vec<usize>,
    /// f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// Timed repetitions per stage (the median is reported), after one warm-up.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Run on the GPU when this build and host have one.
    #[arg(long)]
    gpu: bool,
    /// Time only these stages (all when not given), to repeat one quickly.
    #[arg(long, value_delimiter = ',')]
    only: Vec<StageName>,
}

/// A stage of `stages`, named as in its RESULT lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum StageName {
    #[value(name = "text_encoder")]
    TextEncoder,
    #[value(name = "unet_step")]
    UnetStep,
    #[value(name = "vae_decode")]
    VaeDecode,
    #[value(name = "taesd_decode")]
    TaesdDecode,
    #[value(name = "txt2img")]
    Txt2img,
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
struct GridsArgs {
    /// A diffusers model directory.
    #[arg(long)]
    model: PathBuf,
    /// Image side in pixels.
    #[arg(long, default_value_t = 512)]
    size: usize,
    /// Grids (of four images) drawn together.
    #[arg(long, value_delimiter = ',', default_value = "1,2,4")]
    grids: Vec<usize>,
    #[arg(long, default_value_t = 1)]
    steps: usize,
    /// f32, f16 or bf16.
    #[arg(long, default_value = "f16")]
    dtype: String,
    /// Timed runs per configuration (the median is reported), after one warm-up.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Run on the CPU even where a GPU is available.
    #[arg(long)]
    cpu: bool,
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
    let mut pipeline = StableDiffusion::load(&files, &options)
        .with_context(|| format!("loading {} on {device:?} in {dtype:?}", model.display()))?;
    pipeline.set_cuda_graphs(cuda_graphs());
    Ok(pipeline)
}

/// Images `[n, 3, H, W]` in [0, 1], f32, on the host: the copy waits for
/// the device, so a timing around this call is the whole generation.
fn draw(pipeline: &StableDiffusion, generation: &Generation) -> Result<Tensor> {
    let images = pipeline.txt2img(generation, &mut |_, _, _, _| Ok(()))?;
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
                prompt: PROMPT.to_owned(),
                negative_prompt: None,
                width: args.size,
                height: args.size,
                steps,
                guidance: 0.0,
                seeds: (0..batch as u64).collect(),
                chaos: 0.0,
                tile: false,
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

/// Grids of different prompts, one at a time and as one batch: images/s of
/// each in a table.
fn grids(args: &GridsArgs) -> Result<()> {
    let device = best_device(args.cpu)?;
    let dtype = parse_dtype(&args.dtype).map_err(anyhow::Error::msg)?;
    let pipeline = load(&args.model, &device, dtype)?;
    eprintln!("candle on {device:?} in {dtype:?}");
    let subjects = ["a lighthouse", "a red fox", "a castle", "a sailing boat"];
    let mut rows = Vec::new();
    for &count in &args.grids {
        let generations: Vec<Generation> = (0..count)
            .map(|i| Generation {
                prompt: format!("{} at dusk, oil painting", subjects[i % subjects.len()]),
                negative_prompt: None,
                width: args.size,
                height: args.size,
                steps: args.steps,
                guidance: 0.0,
                seeds: (0..4).map(|s| (4 * i + s) as u64).collect(),
                chaos: 0.0,
                tile: false,
            })
            .collect();
        let alone = || -> Result<()> {
            for generation in &generations {
                draw(&pipeline, generation)?;
            }
            Ok(())
        };
        let together = || -> Result<()> {
            let drawings =
                pipeline.txt2img_batch(&generations, Decoder::Full, &mut |_, _, _, _| Ok(()))?;
            for drawing in drawings {
                drawing.images.to_device(&Device::Cpu)?;
            }
            Ok(())
        };
        alone()?;
        let alone_ms = median_ms(args.repeats, alone)?;
        together()?;
        let together_ms = median_ms(args.repeats, together)?;
        let images = 4 * count;
        let rate = |ms: f64| images as f64 / (ms / 1e3);
        println!(
            "RESULT candle grids size={} grids={count} steps={} alone_ms={alone_ms:.2} together_ms={together_ms:.2}",
            args.size, args.steps
        );
        rows.push(format!(
            "| {count} | {images} | {:.2} | {:.2} | {:.2}x |",
            rate(alone_ms),
            rate(together_ms),
            alone_ms / together_ms
        ));
    }
    println!(
        "\n{}², {} steps, {dtype:?} on {device:?}\n\n| grids | images | one at a time images/s | one batch images/s | batch/one at a time |\n|---:|---:|---:|---:|---:|",
        args.size, args.steps
    );
    for row in rows {
        println!("{row}");
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

/// `<configs>/<part>.json`, else a model directory's `<part>/config.json`
/// (`scheduler/scheduler_config.json` for the scheduler); None when neither
/// is there.
fn config_path(configs: &std::path::Path, part: &str) -> Option<PathBuf> {
    [
        configs.join(format!("{part}.json")),
        configs.join(part).join("config.json"),
        configs.join(part).join(format!("{part}_config.json")),
    ]
    .into_iter()
    .find(|path| path.is_file())
}

/// Whether [`read_config`] finds a config for `part`.
fn has_config(configs: &std::path::Path, part: &str) -> bool {
    config_path(configs, part).is_some()
}

/// `part`'s config from [`config_path`].
pub(crate) fn read_config<T: serde::de::DeserializeOwned>(
    configs: &std::path::Path,
    part: &str,
) -> Result<T> {
    let path = config_path(configs, part)
        .with_context(|| format!("no config for {part} in {}", configs.display()))?;
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

/// Median milliseconds of `run`, the device synchronised before the clock
/// stops (kernels are asynchronous), after a warm-up.
pub(crate) fn synced_median_ms(
    repeats: usize,
    device: &Device,
    mut run: impl FnMut() -> Result<Tensor>,
) -> Result<f64> {
    run()?;
    device.synchronize()?;
    median_ms(repeats, || {
        let out = run()?;
        device.synchronize()?;
        drop(out);
        Ok(())
    })
}

fn stages(args: &StagesArgs) -> Result<()> {
    let device = best_device(!args.gpu)?;
    let dtype = parse_dtype(&args.dtype).map_err(anyhow::Error::msg)?;
    let text_cfg: text_encoder::Config = read_config(&args.configs, "text_encoder")?;
    let unet_cfg: unet::Config = read_config(&args.configs, "unet")?;
    let vae_cfg: vae::Config = read_config(&args.configs, "vae")?;
    eprintln!("building random-weight models on {device:?} ({dtype:?})");
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, dtype, &device);
    let parts = Parts {
        tokenizer: ClipTokenizer::from_dir(&args.tokenizer)?,
        text_encoder: text_encoder::TextEncoder::new(&text_cfg, vb.pp("text_encoder"))?,
        unet: unet_cfg.build(vb.pp("unet"))?,
        unet_config: unet_cfg,
        vae: vae::AutoEncoder::new(&vae_cfg, vb.pp("vae"))?,
        scheduler_config: read_config(&args.configs, "scheduler")?,
    };
    let options = PipelineOptions {
        device: device.clone(),
        dtype,
        scheduler: None,
    };
    let mut pipeline = StableDiffusion::from_parts(parts, &options);
    pipeline.set_cuda_graphs(cuda_graphs());
    let (encoder, unet, vae) = (&pipeline.text_encoder, &pipeline.unet, &pipeline.vae);
    let timed = |stage| args.only.is_empty() || args.only.contains(&stage);
    // The draft decoder takes the same latents as the VAE.
    let taesd = if has_config(&args.configs, "taesd") {
        let cfg: taesd::Config = read_config(&args.configs, "taesd")?;
        Some(taesd::TinyAutoEncoder::new(&cfg, vb.pp("taesd"))?)
    } else {
        eprintln!(
            "no taesd config in {}: skipping taesd_decode",
            args.configs.display()
        );
        None
    };

    // 77 ordinary token ids, below the start-of-text id.
    let ids: Vec<u32> = (0..77u32).map(|i| 49406u32.min(320 + i * 7)).collect();
    let ids = Tensor::new(ids.as_slice(), &device)?.unsqueeze(0)?;
    if timed(StageName::TextEncoder) {
        let ms = synced_median_ms(args.repeats, &device, || Ok(encoder.forward(&ids)?))?;
        eprintln!("text encoder: {ms:.1} ms");
        println!("RESULT candle text_encoder size=0 batch=1 ms={ms:.2}");
    }
    let context = encoder.forward(&ids)?;

    for &side in &args.sizes {
        let latent = side / vae_cfg.scale_factor();
        for &batch in &args.batches {
            let latents =
                Tensor::randn(0f32, 1f32, (batch, 4, latent, latent), &device)?.to_dtype(dtype)?;
            let context = context.repeat((batch, 1, 1))?;
            if timed(StageName::UnetStep) {
                let ms = synced_median_ms(args.repeats, &device, || {
                    Ok(unet.forward(&latents, 999.0, &context)?)
                })?;
                eprintln!("unet step {side}² batch {batch}: {ms:.1} ms");
                println!("RESULT candle unet_step size={side} batch={batch} ms={ms:.2}");
            }
            if timed(StageName::VaeDecode) {
                let ms = synced_median_ms(args.repeats, &device, || Ok(vae.decode(&latents)?))?;
                eprintln!("vae decode {side}² batch {batch}: {ms:.1} ms");
                println!("RESULT candle vae_decode size={side} batch={batch} ms={ms:.2}");
            }
            if let Some(taesd) = taesd.as_ref().filter(|_| timed(StageName::TaesdDecode)) {
                let ms = synced_median_ms(args.repeats, &device, || Ok(taesd.decode(&latents)?))?;
                eprintln!("taesd decode {side}² batch {batch}: {ms:.1} ms");
                println!("RESULT candle taesd_decode size={side} batch={batch} ms={ms:.2}");
            }
            if timed(StageName::Txt2img) {
                // What a one-step model's user waits for: the prompt tokenised
                // and encoded, one UNet step without guidance, the VAE's decode.
                let generation = Generation {
                    prompt: PROMPT.to_owned(),
                    negative_prompt: None,
                    width: side,
                    height: side,
                    steps: 1,
                    guidance: 0.0,
                    seeds: (0..batch as u64).collect(),
                    chaos: 0.0,
                    tile: false,
                };
                let ms = synced_median_ms(args.repeats, &device, || {
                    Ok(pipeline.txt2img(&generation, &mut |_, _, _, _| Ok(()))?)
                })?;
                eprintln!("txt2img 1 step {side}² batch {batch}: {ms:.1} ms");
                println!("RESULT candle txt2img size={side} batch={batch} ms={ms:.2}");
            }
        }
    }
    Ok(())
}

pub(crate) use wordup_engine_testkit::fixtures::relative_l2;

/// Where a pixel difference comes from: each stage run alone on the same
/// inputs (the reference's), as ‖device − reference‖ / ‖reference‖.
fn stage_errors(
    reference: &StableDiffusion,
    pipeline: &StableDiffusion,
    generation: &Generation,
) -> Result<[(&'static str, f32); 3]> {
    let on_device = |t: &Tensor| -> Result<Tensor> {
        Ok(t.to_device(&pipeline.device)?.to_dtype(pipeline.dtype)?)
    };
    let negative = generation.negative_prompt.as_deref();
    let expected = reference.condition(&generation.prompt, negative, generation.guidance)?;
    let actual = pipeline.condition(&generation.prompt, negative, generation.guidance)?;
    let text = relative_l2(&actual.prompt, &expected.prompt)?;

    let (noise, _) =
        reference.seeded_noise(&generation.seeds, generation.width, generation.height)?;
    let n = noise.dim(0)?;
    let embeddings = Tensor::cat(
        &[
            expected
                .negative
                .as_ref()
                .unwrap_or(&expected.prompt)
                .repeat((n, 1, 1))?,
            expected.prompt.repeat((n, 1, 1))?,
        ],
        0,
    )?;
    let latents = Tensor::cat(&[&noise, &noise], 0)?;
    let timestep = reference.scheduler(generation.steps).timesteps()[0];
    let unet_expected = reference.unet.forward(&latents, timestep, &embeddings)?;
    let unet_actual =
        pipeline
            .unet
            .forward(&on_device(&latents)?, timestep, &on_device(&embeddings)?)?;
    let unet = relative_l2(&unet_actual, &unet_expected)?;

    let vae = relative_l2(
        &pipeline.decode(&on_device(&noise)?)?,
        &reference.decode(&noise)?,
    )?;
    Ok([
        ("text_encoder", text),
        ("unet_step", unet),
        ("vae_decode", vae),
    ])
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
        chaos: 0.0,
        tile: false,
    };
    let expected = draw(&reference, &generation)?;
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
        let stages = stage_errors(&reference, &pipeline, &generation)?
            .map(|(stage, error)| format!("{stage}={error:.2e}"))
            .join(" ");
        println!(
            "STAGES model={} dtype={dtype:?} relative_l2: {stages}",
            args.model.display()
        );
    }
    parts::vae_trace(&args.model, &device)?;
    Ok(passed)
}

fn main() -> Result<ExitCode> {
    let cli = Cli::parse();
    CUDA_GRAPHS.get_or_init(|| !cli.no_cuda_graphs);
    wordup_engine::ops::device_conv::set_graph_api(!cli.no_cudnn_graph);
    match cli.command {
        Command::Speed(args) => speed(&args)?,
        Command::Grids(args) => grids(&args)?,
        Command::Stages(args) => stages(&args)?,
        Command::Parts(args) => parts::run(&args, &best_device(false)?)?,
        Command::Parity(args) => {
            if !parity(&args)? {
                return Ok(ExitCode::FAILURE);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}
