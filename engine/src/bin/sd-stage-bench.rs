//! Per-stage timings of the engine on an SD-Turbo-sized model with random
//! weights: text encoding, one UNet step, one VAE decode, at the given
//! sizes. Prints `RESULT candle <stage> size=<px> ms=<median>` lines for
//! `scripts/bench-engine.sh`, which runs diffusers on the same configs.

use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result};
use candle_core::{Device, Tensor};
use candle_nn::{VarBuilder, VarMap};
use clap::Parser;
use wordup_engine::{text_encoder, unet, vae};

#[derive(Parser)]
struct Args {
    /// Folder with unet.json, vae.json and text_encoder.json.
    #[arg(long, default_value = "scripts/bench/sd-turbo")]
    configs: PathBuf,
    /// Image sides in pixels.
    #[arg(long, value_delimiter = ',', default_value = "256,512")]
    sizes: Vec<usize>,
    /// Timed repetitions per stage (the median is reported), after one warm-up.
    #[arg(long, default_value_t = 3)]
    repeats: usize,
    /// Run on the GPU when this build has one.
    #[arg(long)]
    gpu: bool,
    /// f32, f16 or bf16.
    #[arg(long, default_value = "f32")]
    dtype: String,
    /// UNet batch sizes to time.
    #[arg(long, value_delimiter = ',', default_value = "1")]
    batches: Vec<usize>,
}

fn read<T: serde::de::DeserializeOwned>(path: PathBuf) -> Result<T> {
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

fn median_ms(
    repeats: usize,
    device: &Device,
    mut run: impl FnMut() -> Result<Tensor>,
) -> Result<f64> {
    run()?.to_device(&Device::Cpu)?; // warm-up; the copy waits for the device
    let mut times = Vec::with_capacity(repeats);
    for _ in 0..repeats.max(1) {
        let start = Instant::now();
        let out = run()?;
        device.synchronize()?;
        drop(out);
        times.push(start.elapsed().as_secs_f64() * 1e3);
    }
    times.sort_by(f64::total_cmp);
    Ok(times[times.len() / 2])
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = wordup_engine::device::best_device(!args.gpu)?;
    let dtype = wordup_engine::device::parse_dtype(&args.dtype).map_err(anyhow::Error::msg)?;
    let text_cfg: text_encoder::Config = read(args.configs.join("text_encoder.json"))?;
    let unet_cfg: unet::Config = read(args.configs.join("unet.json"))?;
    let vae_cfg: vae::Config = read(args.configs.join("vae.json"))?;
    eprintln!("building random-weight models on {device:?} ({dtype:?})");
    let varmap = VarMap::new();
    let vb = VarBuilder::from_varmap(&varmap, dtype, &device);
    let encoder = text_encoder::TextEncoder::new(&text_cfg, vb.pp("text_encoder"))?;
    let unet = unet_cfg.build(vb.pp("unet"))?;
    let vae = vae::AutoEncoder::new(&vae_cfg, vb.pp("vae"))?;

    let ids: Vec<u32> = (0..77u32).map(|i| 49406u32.min(320 + i * 7)).collect();
    let ids = Tensor::new(ids.as_slice(), &device)?.unsqueeze(0)?;
    let ms = median_ms(args.repeats, &device, || Ok(encoder.forward(&ids)?))?;
    eprintln!("text encoder: {ms:.0} ms");
    println!("RESULT candle text_encoder size=0 batch=1 ms={ms:.1}");
    let context = encoder.forward(&ids)?;

    for &side in &args.sizes {
        let latent = side / vae_cfg.scale_factor();
        for &batch in &args.batches {
            let latents =
                Tensor::randn(0f32, 1f32, (batch, 4, latent, latent), &device)?.to_dtype(dtype)?;
            let context = context.repeat((batch, 1, 1))?;
            let ms = median_ms(args.repeats, &device, || {
                Ok(unet.forward(&latents, 999.0, &context)?)
            })?;
            eprintln!("unet step {side}² batch {batch}: {ms:.0} ms");
            println!("RESULT candle unet_step size={side} batch={batch} ms={ms:.1}");
        }
        let latents =
            Tensor::randn(0f32, 1f32, (1, 4, latent, latent), &device)?.to_dtype(dtype)?;
        let ms = median_ms(args.repeats, &device, || Ok(vae.decode(&latents)?))?;
        eprintln!("vae decode {side}²: {ms:.0} ms");
        println!("RESULT candle vae_decode size={side} batch=1 ms={ms:.1}");
    }
    Ok(())
}
