use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use wordup_bot::health::Health;
use wordup_bot::settings::DatabaseSettings;
use wordup_bot::telemetry;
use wordup_engine::pipeline::{Generation, PipelineOptions, StableDiffusion, Stage};
use wordup_engine::scheduler::{SchedulerKind, TimestepSpacing};
use wordup_engine::source::{DEFAULT_MODEL, ModelFiles, ModelSource};
use wordup_engine::{device, images, size};

/// Word Up!'s image engine: Stable Diffusion in candle, and the worker that
/// runs the Postgres queue's jobs.
#[derive(Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Generate images from a prompt offline and write them as PNG files.
    Imagine(ImagineArgs),
    /// Manage model files.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Check Postgres and the queue, and print their health.
    Status(DatabaseSettings),
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Download a model (the default one unless --model) into the cache
    /// (HF_HOME), so that later runs need no network.
    Fetch(ModelArgs),
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// A hub model id or a local diffusers directory.
    #[arg(long, env = "WORDUP_MODEL", default_value = DEFAULT_MODEL)]
    model: String,
    /// Hub revision (branch, tag or commit) to pin.
    #[arg(long, env = "WORDUP_MODEL_REVISION")]
    revision: Option<String>,
    /// Run on the CPU even where a GPU is available.
    #[arg(long)]
    cpu: bool,
}

#[derive(Args)]
struct ImagineArgs {
    /// What to draw.
    prompt: String,
    /// What to keep out of the picture (needs guidance above 1).
    #[arg(long = "no", value_name = "TEXT")]
    negative_prompt: Option<String>,
    /// Aspect ratio as W:H.
    #[arg(long = "ar", default_value = "1:1", value_parser = parse_aspect)]
    aspect: (u32, u32),
    /// Seed of the first image; image i uses seed + i. Random when absent.
    #[arg(long)]
    seed: Option<u64>,
    /// Denoising steps (default: 1 for distilled trailing-spacing models
    /// such as SD-Turbo, else 25).
    #[arg(long)]
    steps: Option<usize>,
    /// Guidance scale; at most 1 turns classifier-free guidance off
    /// (default: 0 for SD-Turbo-like models, else 7.5).
    #[arg(long)]
    guidance: Option<f64>,
    /// Number of images, generated as one batch.
    #[arg(short = 'n', long = "images", default_value_t = 1)]
    images: usize,
    /// Scheduler: ddim, euler or euler-ancestral (default: the model's own).
    #[arg(long, value_parser = parse_scheduler)]
    scheduler: Option<SchedulerKind>,
    /// Largest image area in pixels (default: the model's native size squared).
    #[arg(long)]
    pixels: Option<u32>,
    /// Where to write the images.
    #[arg(short, long, default_value = "out")]
    out: PathBuf,
    #[command(flatten)]
    model: ModelArgs,
}

fn parse_aspect(text: &str) -> Result<(u32, u32), String> {
    let (w, h) = text
        .split_once(':')
        .ok_or_else(|| format!("aspect ratio must look like 16:9, got {text:?}"))?;
    let side = |s: &str| {
        s.trim()
            .parse::<u32>()
            .ok()
            .filter(|n| (1..=100).contains(n))
            .ok_or_else(|| {
                format!("aspect ratio sides must be whole numbers from 1 to 100, got {text:?}")
            })
    };
    Ok((side(w)?, side(h)?))
}

fn parse_scheduler(text: &str) -> Result<SchedulerKind, String> {
    SchedulerKind::parse(text)
        .ok_or_else(|| format!("unknown scheduler {text:?}: use ddim, euler or euler-ancestral"))
}

#[tokio::main]
async fn main() -> Result<()> {
    telemetry::init();
    let cli = Cli::parse();
    match cli.command {
        Command::Status(database) => {
            let queue = database.connect_and_migrate().await?;
            print!("{}", Health::check(&queue).await?);
        }
        Command::Models {
            command: ModelsCommand::Fetch(model),
        } => {
            let (files, _) = fetch(&model, true).await?;
            println!("{} is ready in {}", model.model, files.root.display());
        }
        Command::Imagine(args) => imagine(args).await?,
    }
    Ok(())
}

async fn fetch(model: &ModelArgs, progress: bool) -> Result<(ModelFiles, PipelineOptions)> {
    let device = device::best_device(model.cpu)?;
    let dtype = device::default_dtype(&device);
    let source = ModelSource::parse(&model.model, model.revision.as_deref());
    let files = ModelFiles::fetch(&source, device::variant_for(dtype), progress).await?;
    Ok((
        files,
        PipelineOptions {
            device,
            dtype,
            scheduler: None,
        },
    ))
}

async fn imagine(args: ImagineArgs) -> Result<()> {
    if args.images == 0 || args.images > 16 {
        bail!("--images must be between 1 and 16, got {}", args.images);
    }
    let (files, mut options) = fetch(&args.model, true).await?;
    options.scheduler = args.scheduler;
    let started = Instant::now();
    let pipeline = StableDiffusion::load(&files, &options).context("loading the model")?;
    eprintln!(
        "loaded {} on {:?} ({:?}) in {:.1} s",
        args.model.model,
        options.device,
        options.dtype,
        started.elapsed().as_secs_f64()
    );
    let distilled = pipeline.scheduler_config.timestep_spacing == TimestepSpacing::Trailing;
    let steps = args.steps.unwrap_or(if distilled { 1 } else { 25 });
    let guidance = args.guidance.unwrap_or(if distilled { 0.0 } else { 7.5 });
    let native = pipeline.native_side() as u32;
    let budget = args.pixels.unwrap_or(native * native);
    let (width, height) = size::dimensions(args.aspect, budget, pipeline.size_multiple() as u32);
    let first_seed = args
        .seed
        .unwrap_or_else(|| u64::from(rand::random::<u32>()));
    let seeds: Vec<u64> = (0..args.images as u64)
        .map(|i| first_seed.wrapping_add(i))
        .collect();
    let generation = Generation {
        prompt: args.prompt.clone(),
        negative_prompt: args.negative_prompt.clone(),
        width: width as usize,
        height: height as usize,
        steps,
        guidance,
        seeds: seeds.clone(),
    };

    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} steps {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    let started = Instant::now();
    let output = pipeline.txt2img(&generation, &mut |stage, step, total| {
        bar.set_message(stage.name());
        if stage == Stage::Denoising {
            bar.set_length(total as u64);
            bar.set_position(step as u64);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    eprintln!(
        "{} image(s) of {width}x{height}, {steps} step(s), guidance {guidance}, {} scheduler, in {:.1} s",
        seeds.len(),
        pipeline.scheduler_kind.name(),
        started.elapsed().as_secs_f64()
    );

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let slug = slug(&args.prompt);
    for (image, seed) in images::to_rgb(&output)?.into_iter().zip(seeds) {
        let path = args.out.join(format!("{slug}-{seed}.png"));
        image
            .save(&path)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

/// A file-name-safe stem from a prompt.
fn slug(prompt: &str) -> String {
    let words: Vec<String> = prompt
        .split(|c: char| !c.is_alphanumeric())
        .filter(|w| !w.is_empty())
        .take(6)
        .map(str::to_lowercase)
        .collect();
    if words.is_empty() {
        "image".to_owned()
    } else {
        words.join("-")
    }
}
