//! The GAN upscaler with the real RealESRGAN_x4plus weights (fetched and
//! converted by scripts/fetch-realesrgan.py, which the test command runs)
//! against a PyTorch reference on a small image.
#![allow(clippy::unwrap_used)]

use wordup_engine_testkit::fixtures as common;

use std::path::PathBuf;

use candle_core::{DType, Device, Tensor};
use common::max_diff;
use wordup_engine::finish::upscale::{Config, Tiling, Upscaler};

fn fixtures() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures")
}

fn weights(name: &str) -> PathBuf {
    common::weights(name, "fetch-realesrgan.py")
}

fn psnr(a: &Tensor, b: &Tensor) -> f64 {
    let mse = (a - b)
        .unwrap()
        .sqr()
        .unwrap()
        .mean_all()
        .unwrap()
        .to_scalar::<f32>()
        .unwrap() as f64;
    10.0 * (1.0 / mse.max(1e-20)).log10()
}

#[test]
fn real_esrgan_x4plus_matches_pytorch() {
    let reference = candle_core::safetensors::load(
        fixtures().join("realesrgan/reference.safetensors"),
        &Device::Cpu,
    )
    .unwrap();
    let input = &reference["input"];
    let expected = &reference["output"];
    let upscaler = Upscaler::load(
        &weights("RealESRGAN_x4plus.safetensors"),
        &Config::default(),
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();

    let whole = upscaler
        .upscale4(input, Tiling { tile: 64, pad: 10 }, &mut |_, _| Ok(()))
        .unwrap();
    assert_eq!(whole.dims(), expected.dims());
    let db = psnr(&whole, expected);
    assert!(db >= 50.0, "untiled PSNR {db:.1} dB");
    assert!(max_diff(&whole, expected) < 1e-3);

    // 2×2 tiles of 16 pixels. With context as wide as the image the tiles
    // stitch to the untiled result; with 8 pixels of context (what tiling
    // trades for memory) the seams stay faint.
    let mut tiles = Vec::new();
    let stitched = upscaler
        .upscale4(input, Tiling { tile: 16, pad: 32 }, &mut |done, total| {
            tiles.push((done, total));
            Ok(())
        })
        .unwrap();
    assert_eq!(tiles.last(), Some(&(4, 4)));
    let db = psnr(&stitched, expected);
    assert!(db >= 50.0, "stitched PSNR {db:.1} dB");
    let tiled = upscaler
        .upscale4(input, Tiling { tile: 16, pad: 8 }, &mut |_, _| Ok(()))
        .unwrap();
    let db = psnr(&tiled, expected);
    assert!(db >= 30.0, "tiled PSNR {db:.1} dB");
}

#[test]
fn pth_and_safetensors_weights_load_the_same_network() {
    let config = Config {
        features: 8,
        blocks: 1,
        growth: 4,
        ..Config::default()
    };
    let dir = fixtures().join("rrdb-tiny");
    let from_pth = Upscaler::load(
        &dir.join("rrdb_tiny.pth"),
        &config,
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let from_safetensors = Upscaler::load(
        &dir.join("rrdb_tiny.safetensors"),
        &config,
        &Device::Cpu,
        DType::F32,
    )
    .unwrap();
    let input = Tensor::rand(0f32, 1f32, (1, 3, 12, 10), &Device::Cpu).unwrap();
    let tiling = Tiling::default();
    let a = from_pth
        .upscale4(&input, tiling, &mut |_, _| Ok(()))
        .unwrap();
    let b = from_safetensors
        .upscale4(&input, tiling, &mut |_, _| Ok(()))
        .unwrap();
    assert_eq!(a.dims(), &[1, 3, 48, 40]);
    assert_eq!(max_diff(&a, &b), 0.0);
}
