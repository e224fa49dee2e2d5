//! Timings of the finishing models on the CPU with their real weights: the
//! GAN upscaler (×4 of a 256² image, whole and per tile) and the safety
//! classifier (per image). Prints `RESULT candle <what> ms=<median>` lines
//! for `scripts/bench-finish.sh`, which runs the PyTorch / onnxruntime peers.

use std::path::PathBuf;

use anyhow::Result;
use candle_core::{DType, Device, Tensor};
use clap::Parser;
use wordup_engine::finish::upscale::{Config, Tiling, Upscaler};
use wordup_engine::judge::safety::{self, OpenNsfw};
use wordup_engine_testkit::bench::median_ms;

#[derive(Parser)]
struct Args {
    #[arg(long, default_value = "target/weights")]
    weights: PathBuf,
    /// Side of the square test image for the upscaler.
    #[arg(long, default_value_t = 256)]
    size: usize,
    /// Tile side for the per-tile timing.
    #[arg(long, default_value_t = 128)]
    tile: usize,
    #[arg(long, default_value_t = 3)]
    repeats: usize,
}

/// A deterministic test image with edges and gradients, values in [0, 1].
pub fn test_image(size: usize) -> Result<Tensor> {
    let mut data = Vec::with_capacity(3 * size * size);
    for c in 0..3 {
        for y in 0..size {
            for x in 0..size {
                let v = ((x * (c + 1) + y * 3) % 97) as f32 / 96.0;
                let edge = if (x / 16 + y / 16) % 2 == 0 { 0.2 } else { 0.0 };
                data.push((v * 0.8 + edge).min(1.0));
            }
        }
    }
    Ok(Tensor::from_vec(data, (1, 3, size, size), &Device::Cpu)?)
}

fn main() -> Result<()> {
    let args = Args::parse();
    let device = Device::Cpu;
    let upscaler = Upscaler::load(
        &args.weights.join("RealESRGAN_x4plus.safetensors"),
        &Config::default(),
        &device,
        DType::F32,
    )?;
    let image = test_image(args.size)?;
    let whole = Tiling {
        tile: args.size,
        pad: 0,
    };
    let ms = median_ms::<anyhow::Error>(args.repeats, || {
        Ok(upscaler
            .upscale4(&image, whole, &mut |_, _| Ok(()))
            .map(drop)?)
    })?;
    eprintln!("upscale ×4 {}² in one tile: {ms:.0} ms", args.size);
    println!("RESULT candle upscale_x4 size={} ms={ms:.1}", args.size);
    let tile = test_image(args.tile)?;
    let ms = median_ms::<anyhow::Error>(args.repeats, || {
        Ok(upscaler
            .upscale4(
                &tile,
                Tiling {
                    tile: args.tile,
                    pad: 0,
                },
                &mut |_, _| Ok(()),
            )
            .map(drop)?)
    })?;
    eprintln!("upscale ×4 of one {}² tile: {ms:.0} ms", args.tile);
    println!("RESULT candle upscale_tile size={} ms={ms:.1}", args.tile);

    let classifier = OpenNsfw::load(&args.weights.join("open_nsfw.safetensors"), &device)?;
    let input = safety::preprocess(
        &image::RgbImage::from_fn(512, 512, |x, y| image::Rgb([x as u8, y as u8, 128])),
        false,
        &device,
    )?;
    let ms = median_ms::<anyhow::Error>(args.repeats.max(5), || {
        Ok(classifier.probabilities(&input).map(drop)?)
    })?;
    eprintln!("safety classifier: {ms:.0} ms per image");
    println!("RESULT candle safety size=224 ms={ms:.1}");
    Ok(())
}
