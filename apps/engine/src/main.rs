use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use wordup_engine::finish::output::{self, Provenance};
use wordup_engine::finish::refine;
use wordup_engine::finish::upscale::{self, Tiling, Upscaler};
use wordup_engine::judge::clip::{self, Clip};
use wordup_engine::judge::safety::{self, OpenNsfw};
use wordup_engine::ops::conv::PaddingMode;
use wordup_engine::sd::pipeline::{Decoder, Generation, PipelineOptions, StableDiffusion, Stage};
use wordup_engine::sd::scheduler::SchedulerKind;
use wordup_engine::sd::source::{DEFAULT_MODEL, ModelFiles, ModelSource, SingleModelFiles};
use wordup_engine::sd::taesd::TinyAutoEncoder;
use wordup_engine::sd::{device, images, size, source};
use wordup_engine::worker::render::{self, Models, Resolved};
use wordup_queue::UpscaleMode;
use wordup_queue::prompt::plain_text;
use wordup_runtime::health::Health;
use wordup_runtime::settings::DatabaseSettings;
use wordup_runtime::telemetry;

mod run_command;

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
    Imagine(Box<ImagineArgs>),
    /// Manage model files.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Upscale an image with the GAN upscaler (×4 or ×2).
    Upscale(UpscaleArgs),
    /// Print the CLIP score of an image for a text.
    Score(ScoreArgs),
    /// Check Postgres and the queue, and print their health.
    Status(DatabaseSettings),
    /// Work the queue: claim jobs, draw, and post results to the chat
    /// platforms until SIGTERM (which finishes the job in hand and releases
    /// the rest of its batch).
    Run(Box<run_command::RunArgs>),
}

#[derive(Args, Clone)]
struct FinishArgs {
    /// Real-ESRGAN weights (.safetensors or .pth with the official tensor names).
    #[arg(
        long,
        env = "WORDUP_UPSCALER_WEIGHTS",
        default_value = "target/weights/RealESRGAN_x4plus.safetensors"
    )]
    upscaler_weights: PathBuf,
    /// open_nsfw weights as scripts/fetch-opennsfw.py writes them.
    #[arg(
        long,
        env = "WORDUP_SAFETY_WEIGHTS",
        default_value = "target/weights/open_nsfw.safetensors"
    )]
    safety_weights: PathBuf,
    /// nsfw probability from which an image is withheld.
    #[arg(long, env = "WORDUP_NSFW_THRESHOLD", default_value_t = safety::DEFAULT_THRESHOLD)]
    nsfw_threshold: f32,
    /// Input tile side for the upscaler (memory grows with its square).
    #[arg(long, env = "WORDUP_UPSCALE_TILE", default_value_t = 192)]
    upscale_tile: usize,
}

/// CLIP's settings: scores, reranking and the concept check.
#[derive(Args)]
struct JudgeArgs {
    /// CLIP model (hub id or transformers directory); `off` for none. `run`
    /// defaults to the CLIP matching the model; `imagine` scores nothing
    /// when unset.
    #[arg(long, env = "WORDUP_CLIP_MODEL")]
    clip: Option<String>,
    /// Concepts CLIP must not see in an image (comma-separated), a second
    /// safety signal beside open_nsfw.
    #[arg(long, env = "WORDUP_BLOCKED_CONCEPTS", value_delimiter = ',')]
    blocked_concepts: Vec<String>,
    /// CLIP score from which a blocked concept counts as present.
    #[arg(long, env = "WORDUP_CONCEPT_THRESHOLD", default_value_t = 25.0)]
    concept_threshold: f32,
    /// Where the vocabulary's CLIP features are cached, per CLIP model.
    #[arg(long, env = "WORDUP_CACHE_DIR", default_value = "target/cache")]
    cache_dir: PathBuf,
}

impl JudgeArgs {
    /// The blocked concepts, trimmed, empty ones dropped.
    fn concepts(&self) -> Vec<String> {
        self.blocked_concepts
            .iter()
            .map(|c| c.trim().to_owned())
            .filter(|c| !c.is_empty())
            .collect()
    }
}

#[derive(Args)]
struct UpscaleArgs {
    /// The image to upscale.
    image: PathBuf,
    /// 2 or 4.
    #[arg(long, default_value_t = 4)]
    scale: u32,
    /// Where to write the result (default: next to the input, with -x4 or -x2).
    #[arg(short, long)]
    out: Option<PathBuf>,
    #[arg(long)]
    cpu: bool,
    #[command(flatten)]
    finish: FinishArgs,
}

#[derive(Args)]
struct ScoreArgs {
    image: PathBuf,
    text: String,
    /// CLIP model: a hub id or a local transformers directory.
    #[arg(long, env = "WORDUP_CLIP_MODEL", default_value = source::DEFAULT_CLIP)]
    clip: String,
    #[arg(long)]
    cpu: bool,
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Download a model (the default one unless --model) and the draft
    /// decoder into the cache (HF_HOME), so that later runs need no network.
    Fetch(ModelArgs),
}

/// Where `--draft`'s decoder comes from (`WORDUP_DRAFT_DECODER`), or off.
#[derive(Debug, Clone, PartialEq)]
enum DraftDecoderSetting {
    Off,
    From(ModelSource),
}

fn parse_draft_decoder(text: &str) -> Result<DraftDecoderSetting, String> {
    let text = text.trim();
    if text.is_empty() || text.eq_ignore_ascii_case("off") || text.eq_ignore_ascii_case("none") {
        Ok(DraftDecoderSetting::Off)
    } else {
        Ok(DraftDecoderSetting::From(ModelSource::parse(text, None)))
    }
}

#[derive(Args, Clone)]
struct ModelArgs {
    /// A hub model id or a local diffusers directory.
    #[arg(long, env = "WORDUP_MODEL", default_value = DEFAULT_MODEL)]
    model: String,
    /// Hub revision (branch, tag or commit) to pin.
    #[arg(long, env = "WORDUP_MODEL_REVISION")]
    revision: Option<String>,
    /// The draft decoder for `--draft` (TAESD, for SD 1.x/2.x latents): a
    /// hub id (its main revision) or a local folder with config.json and
    /// diffusion_pytorch_model.safetensors; `off` for none.
    #[arg(
        long,
        env = "WORDUP_DRAFT_DECODER",
        default_value = source::DEFAULT_TAESD,
        value_parser = parse_draft_decoder
    )]
    draft_decoder: DraftDecoderSetting,
    /// Run on the CPU even where a GPU is available.
    #[arg(long)]
    cpu: bool,
    /// Never replay UNet steps as CUDA graphs (by default each shape keeps
    /// one where its replay matches the usual run and is faster).
    #[arg(long, env = "WORDUP_NO_CUDA_GRAPHS")]
    no_cuda_graphs: bool,
    /// Never try cuDNN's graph-API engines for a convolution (by default
    /// each shape on a GPU takes the fastest of them and the legacy calls).
    #[arg(long, env = "WORDUP_NO_CUDNN_GRAPH")]
    no_cudnn_graph: bool,
}

impl ModelArgs {
    /// The GPU settings that are not the model's: CUDA graphs, and cuDNN's
    /// graph-API convolutions.
    fn apply_gpu_settings(&self, pipeline: &mut StableDiffusion) {
        pipeline.set_cuda_graphs(!self.no_cuda_graphs);
        wordup_engine::ops::device_conv::set_graph_api(!self.no_cudnn_graph);
    }
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
    /// Decode with the draft decoder (--draft-decoder): ~18× fewer FLOPs
    /// than the VAE's decoder, softer detail. --upscale still starts from
    /// the VAE's decode of the same latents.
    #[arg(long)]
    draft: bool,
    /// A seamless texture: circular padding in every UNet and VAE
    /// convolution, so the image tiles without a seam (as /imagine's --tile).
    #[arg(long)]
    tile: bool,
    /// Scheduler: ddim, euler or euler-ancestral (default: the model's own).
    #[arg(long, value_parser = parse_scheduler)]
    scheduler: Option<SchedulerKind>,
    /// Largest image area in pixels (default: the model's native size squared).
    #[arg(long)]
    pixels: Option<u32>,
    /// Where to write the images.
    #[arg(short, long, default_value = "out")]
    out: PathBuf,
    /// Generate K candidates and keep the best --images by CLIP score.
    #[arg(long, value_name = "K")]
    rerank: Option<usize>,
    /// Also upscale image I (1-based) with the GAN.
    #[arg(long, value_name = "I")]
    upscale: Option<usize>,
    /// How to upscale: plain (GAN ×4), subtle or creative (GAN ×2, then
    /// img2img), as the U buttons and their variants do.
    #[arg(long, default_value = "plain", value_parser = parse_upscale_mode)]
    upscale_mode: UpscaleMode,
    #[command(flatten)]
    judge: JudgeArgs,
    #[command(flatten)]
    model: ModelArgs,
    #[command(flatten)]
    finish: FinishArgs,
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

fn parse_upscale_mode(text: &str) -> Result<UpscaleMode, String> {
    UpscaleMode::parse(text)
        .ok_or_else(|| format!("unknown upscale mode {text:?}: use plain, subtle or creative"))
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
            let (files, options) = fetch(&model, true).await?;
            println!("{} is ready in {}", model.model, files.root.display());
            if let DraftDecoderSetting::From(draft) = &model.draft_decoder {
                let files = fetch_draft_decoder(draft, &options, true).await?;
                println!(
                    "draft decoder {} is ready in {}",
                    draft.id(),
                    files.root.display()
                );
            }
        }
        Command::Imagine(args) => imagine(*args).await?,
        Command::Upscale(args) => upscale_command(args).await?,
        Command::Score(args) => score_command(args).await?,
        Command::Run(args) => run_command::run(*args).await?,
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

async fn fetch_draft_decoder(
    source: &ModelSource,
    options: &PipelineOptions,
    progress: bool,
) -> Result<SingleModelFiles> {
    SingleModelFiles::fetch(source, device::variant_for(options.dtype), progress)
        .await
        .with_context(|| {
            format!(
                "fetching the draft decoder {} (WORDUP_DRAFT_DECODER=off goes without it)",
                source.id()
            )
        })
}

/// Loads the draft decoder the settings name into `pipeline`; returns its
/// id, or `None` when the setting is off.
async fn add_draft_decoder(
    pipeline: &mut StableDiffusion,
    model: &ModelArgs,
    options: &PipelineOptions,
    progress: bool,
) -> Result<Option<String>> {
    let DraftDecoderSetting::From(source) = &model.draft_decoder else {
        return Ok(None);
    };
    let files = fetch_draft_decoder(source, options, progress).await?;
    let draft = TinyAutoEncoder::load(&files, options)
        .with_context(|| format!("loading the draft decoder {}", source.id()))?;
    pipeline
        .set_draft_decoder(draft)
        .with_context(|| format!("the draft decoder {} does not fit the model", source.id()))?;
    Ok(Some(source.id()))
}

async fn imagine(args: ImagineArgs) -> Result<()> {
    if args.images == 0 || args.images > 16 {
        bail!("--images must be between 1 and 16, got {}", args.images);
    }
    let (files, mut options) = fetch(&args.model, true).await?;
    options.scheduler = args.scheduler;
    let started = Instant::now();
    let mut pipeline = StableDiffusion::load(&files, &options).context("loading the model")?;
    args.model.apply_gpu_settings(&mut pipeline);
    eprintln!(
        "loaded {} on {:?} ({:?}) in {:.1} s",
        args.model.model,
        options.device,
        options.dtype,
        started.elapsed().as_secs_f64()
    );
    let (decoder, draft_decoder) = if args.draft {
        let id = add_draft_decoder(&mut pipeline, &args.model, &options, true)
            .await?
            .context(
                "--draft needs a draft decoder, but --draft-decoder (WORDUP_DRAFT_DECODER) is off",
            )?;
        (Decoder::Draft, Some(id))
    } else {
        (Decoder::Full, None)
    };
    let (default_steps, default_guidance) = render::default_steps_and_guidance(&pipeline);
    let steps = args.steps.unwrap_or(default_steps);
    let guidance = args.guidance.unwrap_or(default_guidance);
    let native = pipeline.native_side() as u32;
    let budget = args.pixels.unwrap_or(native * native);
    let (width, height) = size::dimensions(args.aspect, budget, pipeline.size_multiple() as u32);
    let first_seed = args
        .seed
        .unwrap_or_else(|| u64::from(rand::random::<u32>()));
    let candidates = args.rerank.unwrap_or(args.images).max(args.images);
    if candidates > 16 {
        bail!("--rerank must be at most 16, got {candidates}");
    }
    let seeds: Vec<u64> = (0..candidates as u64)
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
        chaos: 0.0,
        tile: args.tile,
    };
    let clip = match args.judge.clip.as_deref().filter(|c| *c != "off") {
        Some(spec) => Some(load_clip(spec, &options.device).await?),
        None if args.rerank.is_some() => {
            bail!("--rerank needs CLIP: pass --clip or set WORDUP_CLIP_MODEL")
        }
        None => None,
    };

    let bar = step_bar(steps);
    let started = Instant::now();
    let drawing = pipeline.txt2img_with(&generation, decoder, &mut |stage, step, total, _| {
        bar.set_message(stage.name());
        if stage == Stage::Denoising {
            bar.set_length(total as u64);
            bar.set_position(step as u64);
        }
        Ok(())
    })?;
    bar.finish_and_clear();
    eprintln!(
        "{} image(s) of {width}x{height}, {steps} step(s), guidance {guidance}, {} scheduler{}, in {:.1} s",
        seeds.len(),
        pipeline.scheduler_kind.name(),
        draft_decoder
            .as_ref()
            .map(|id| format!(", draft decoded by {id}"))
            .unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );

    let generated = images::to_rgb(&drawing.images)?;
    let scores: Option<Vec<f32>> = match &clip {
        Some(clip) => Some(
            generated
                .iter()
                .map(|image| clip.score(image, &plain_text(&args.prompt)))
                .collect::<wordup_engine::Result<_>>()?,
        ),
        None => None,
    };
    let keep: Vec<usize> = match &scores {
        Some(scores) if args.rerank.is_some() => clip::rerank(scores, args.images),
        _ => (0..args.images).collect(),
    };
    let verdicts = safety_check(
        &args.finish,
        &keep
            .iter()
            .map(|&i| generated[i].clone())
            .collect::<Vec<_>>(),
    )?;

    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("creating {}", args.out.display()))?;
    let slug = slug(&args.prompt);
    let model_id = ModelSource::parse(&args.model.model, args.model.revision.as_deref()).id();
    let mut written = Vec::new();
    for (rank, &i) in keep.iter().enumerate() {
        let score = scores.as_ref().map(|s| s[i]);
        if let Some(verdict) = verdicts.as_ref().map(|v| v[rank])
            && verdict.withheld
        {
            eprintln!(
                "warning: image {} (seed {}) withheld by the safety check (nsfw {:.2} ≥ {:.2})",
                rank + 1,
                seeds[i],
                verdict.nsfw,
                args.finish.nsfw_threshold
            );
            continue;
        }
        if let Some(clip) = &clip
            && !args.judge.concepts().is_empty()
        {
            let hits = clip.concepts_present(
                &generated[i],
                &args.judge.concepts(),
                args.judge.concept_threshold,
            )?;
            if let Some((concept, score)) = hits.first() {
                eprintln!(
                    "warning: image {} (seed {}) withheld: CLIP sees \"{concept}\" (score {score:.1} ≥ {:.1})",
                    rank + 1,
                    seeds[i],
                    args.judge.concept_threshold
                );
                continue;
            }
        }
        let provenance = Provenance {
            prompt: args.prompt.clone(),
            negative_prompt: args.negative_prompt.clone(),
            seed: seeds[i],
            steps,
            guidance,
            scheduler: pipeline.scheduler_kind.name().to_owned(),
            model: model_id.clone(),
            clip_score: score,
            draft_decoder: draft_decoder.clone(),
        };
        let path = args.out.join(format!("{slug}-{}.png", seeds[i]));
        std::fs::write(&path, output::encode_png(&generated[i], &provenance)?)
            .with_context(|| format!("writing {}", path.display()))?;
        match score {
            Some(score) => println!("{}\tclip score {score:.2}", path.display()),
            None => println!("{}", path.display()),
        }
        written.push((rank, i, provenance));
    }
    if written.len() > 1 {
        let tiles: Vec<_> = written
            .iter()
            .map(|(_, i, _)| generated[*i].clone())
            .collect();
        let grid = output::grid(&tiles, 2)?;
        let path = args.out.join(format!("{slug}-{first_seed}-grid.png"));
        std::fs::write(&path, output::encode_png(&grid, &written[0].2)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }

    if let Some(wanted) = args.upscale {
        let Some((_, i, provenance)) = written.iter().find(|(rank, _, _)| rank + 1 == wanted)
        else {
            bail!("--upscale {wanted}: there is no image {wanted} among the ones written");
        };
        // A draft is upscaled from the VAE's decode of its latents, as the
        // U buttons do.
        let source = match decoder {
            Decoder::Full => generated[*i].clone(),
            Decoder::Draft => {
                let _padding = pipeline.padding(PaddingMode::tiled(args.tile));
                images::to_rgb(&pipeline.decode(&drawing.latents.narrow(0, *i, 1)?)?)?.remove(0)
            }
        };
        let provenance = Provenance {
            draft_decoder: None,
            ..provenance.clone()
        };
        let models = Models {
            pipeline,
            upscaler: Some(load_upscaler(&args.finish, &options.device)?),
            tiling: Tiling {
                tile: args.finish.upscale_tile,
                pad: 10,
            },
        };
        let resolved = Resolved {
            prompt: args.prompt.clone(),
            negative_prompt: args.negative_prompt.clone(),
            steps,
            guidance,
        };
        let result = models.upscale(
            &resolved,
            &source,
            args.upscale_mode,
            provenance.seed,
            &mut |_, _, _, _| Ok(()),
        )?;
        let path = args.out.join(format!(
            "{slug}-{}-{}.png",
            provenance.seed,
            args.upscale_mode.name()
        ));
        std::fs::write(&path, output::encode_png(&result, &provenance)?)
            .with_context(|| format!("writing {}", path.display()))?;
        println!("{}", path.display());
    }
    Ok(())
}

fn step_bar(steps: usize) -> ProgressBar {
    let bar = ProgressBar::new(steps as u64);
    bar.set_style(
        ProgressStyle::with_template("{msg:>10} [{bar:30}] {pos}/{len} {elapsed_precise}")
            .unwrap_or_else(|_| ProgressStyle::default_bar())
            .progress_chars("=> "),
    );
    bar
}

pub(crate) async fn load_clip(spec: &str, device: &candle_core::Device) -> Result<Clip> {
    let dir = source::fetch_dir(
        spec,
        None,
        source::CLIP_FILES,
        source::CLIP_OPTIONAL_FILES,
        true,
    )
    .await?;
    Clip::load(&dir, device).with_context(|| format!("loading CLIP from {}", dir.display()))
}

fn load_upscaler(finish: &FinishArgs, device: &candle_core::Device) -> Result<Upscaler> {
    if !finish.upscaler_weights.is_file() {
        bail!(
            "no upscaler weights at {}: run `python3 scripts/fetch-realesrgan.py target/weights` or set WORDUP_UPSCALER_WEIGHTS",
            finish.upscaler_weights.display()
        );
    }
    Ok(Upscaler::load(
        &finish.upscaler_weights,
        &upscale::Config::default(),
        device,
        candle_core::DType::F32,
    )?)
}

/// Verdicts for `images`, or `None` with a warning when no safety weights are present.
fn safety_check(
    finish: &FinishArgs,
    images: &[image::RgbImage],
) -> Result<Option<Vec<safety::Verdict>>> {
    if !finish.safety_weights.is_file() {
        eprintln!(
            "warning: safety check skipped: no open_nsfw weights at {} (run `python3 scripts/fetch-opennsfw.py target/weights`)",
            finish.safety_weights.display()
        );
        return Ok(None);
    }
    let model = OpenNsfw::load(&finish.safety_weights, &candle_core::Device::Cpu)?;
    Ok(Some(model.check(images, finish.nsfw_threshold)?))
}

async fn upscale_command(args: UpscaleArgs) -> Result<()> {
    let device = device::best_device(args.cpu)?;
    let image = image::open(&args.image)
        .with_context(|| format!("reading {}", args.image.display()))?
        .to_rgb8();
    let upscaler = load_upscaler(&args.finish, &device)?;
    let tiling = Tiling {
        tile: args.finish.upscale_tile,
        pad: 10,
    };
    let bar = step_bar(1);
    bar.set_message("tiles");
    let started = Instant::now();
    let result = refine::gan_upscale(&upscaler, &image, args.scale, tiling, &mut |done, total| {
        bar.set_length(total as u64);
        bar.set_position(done as u64);
        Ok(())
    })?;
    bar.finish_and_clear();
    let out = args.out.unwrap_or_else(|| {
        let stem = args
            .image
            .file_stem()
            .and_then(|s| s.to_str())
            .unwrap_or("image");
        args.image
            .with_file_name(format!("{stem}-x{}.png", args.scale))
    });
    result
        .save(&out)
        .with_context(|| format!("writing {}", out.display()))?;
    eprintln!(
        "{}x{} → {}x{} in {:.1} s",
        image.width(),
        image.height(),
        result.width(),
        result.height(),
        started.elapsed().as_secs_f64()
    );
    println!("{}", out.display());
    Ok(())
}

async fn score_command(args: ScoreArgs) -> Result<()> {
    let device = device::best_device(args.cpu)?;
    let image = image::open(&args.image)
        .with_context(|| format!("reading {}", args.image.display()))?
        .to_rgb8();
    let clip = load_clip(&args.clip, &device).await?;
    println!("{:.2}", clip.score(&image, &args.text)?);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_draft_decoder_setting_names_a_source_or_is_off() {
        for off in ["off", "OFF", " none ", ""] {
            assert_eq!(
                parse_draft_decoder(off),
                Ok(DraftDecoderSetting::Off),
                "{off:?}"
            );
        }
        assert_eq!(
            parse_draft_decoder(source::DEFAULT_TAESD),
            Ok(DraftDecoderSetting::From(ModelSource::Hub {
                repo: "madebyollin/taesd".into(),
                revision: "main".into()
            }))
        );
        assert_eq!(
            parse_draft_decoder("./weights/taesd"),
            Ok(DraftDecoderSetting::From(ModelSource::Dir(
                "./weights/taesd".into()
            )))
        );
    }
}
