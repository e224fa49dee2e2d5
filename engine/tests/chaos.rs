//! `--chaos`: per-image conditioning and guidance in the denoising loop. On
//! the tiny random-weight model (written by the testkit): chaos 0 draws what
//! the shared conditioning draws, each seed draws the same image whatever
//! batch it is in, and the grid spreads wider with chaos.
#![allow(clippy::unwrap_used)]

use wordup_engine_testkit::fixtures as common;

use candle_core::{IndexOp, Tensor};
use common::max_diff;
use wordup_engine::sd::chaos;
use wordup_engine::sd::pipeline::{Conditioning, Generation};
use wordup_engine_testkit::tiny::ScratchTiny;

fn tiny(name: &str) -> ScratchTiny {
    ScratchTiny::new(&format!("chaos-{name}")).unwrap()
}

fn draw(tiny: &ScratchTiny, seeds: &[u64], chaos: f64) -> Tensor {
    let generation = Generation {
        seeds: seeds.to_vec(),
        chaos,
        ..generation()
    };
    tiny.pipeline
        .txt2img(&generation, &mut |_, _, _, _| Ok(()))
        .unwrap()
}

fn generation() -> Generation {
    Generation {
        prompt: "a red fox in the snow".into(),
        negative_prompt: Some("blurry".into()),
        width: 32,
        height: 32,
        steps: 2,
        guidance: 4.0,
        seeds: vec![7, 8],
        tile: false,
        chaos: 0.0,
    }
}

#[test]
fn chaos_zero_draws_what_the_shared_conditioning_draws() {
    let tiny = tiny("zero");
    let pipeline = &tiny.pipeline;
    let g = generation();
    let drawn = draw(&tiny, &g.seeds, 0.0);

    // The loop as it ran before chaos: one conditioning, one scale.
    let shared = pipeline
        .condition(&g.prompt, g.negative_prompt.as_deref(), g.guidance)
        .unwrap();
    let run = |conditioning: &Conditioning, guidance: &[f64]| {
        let (noise, mut streams) = pipeline.seeded_noise(&g.seeds, g.width, g.height).unwrap();
        let scheduler = pipeline.scheduler(g.steps);
        let latents = noise.affine(scheduler.init_noise_sigma(), 0.0).unwrap();
        let latents = pipeline
            .denoise(
                latents,
                conditioning,
                guidance,
                &scheduler,
                0,
                &mut streams,
                &mut |_, _, _, _| Ok(()),
            )
            .unwrap();
        pipeline.decode(&latents).unwrap()
    };
    assert_eq!(max_diff(&drawn, &run(&shared, &[g.guidance])), 0.0);

    // The per-image path, given copies of the same, agrees with it.
    let copies = Conditioning {
        prompt: shared.prompt.repeat((2, 1, 1)).unwrap(),
        negative: shared.negative.clone(),
    };
    let per_image = run(&copies, &[g.guidance, g.guidance]);
    assert!(max_diff(&drawn, &per_image) < 1e-5);
}

#[test]
fn a_seed_draws_the_same_image_whatever_batch_it_is_in() {
    let tiny = tiny("batches");
    let three = draw(&tiny, &[7, 8, 9], 0.8);
    let alone = draw(&tiny, &[9], 0.8);
    let other = draw(&tiny, &[5, 9], 0.8);
    let ninth = three.i(2..3).unwrap();
    assert!(max_diff(&ninth, &alone) < 1e-5);
    assert!(max_diff(&ninth, &other.i(1..2).unwrap()) < 1e-5);
    // And chaos changed it.
    assert!(max_diff(&alone, &draw(&tiny, &[9], 0.0)) > 1e-3);
}

/// Mean L2 distance between the images of a batch, over all pairs.
fn spread(images: &Tensor) -> f32 {
    let n = images.dim(0).unwrap();
    let mut total = 0.0;
    let mut pairs = 0;
    for a in 0..n {
        for b in a + 1..n {
            let diff = (images.i(a).unwrap() - images.i(b).unwrap()).unwrap();
            total += diff
                .sqr()
                .unwrap()
                .sum_all()
                .unwrap()
                .sqrt()
                .unwrap()
                .to_scalar::<f32>()
                .unwrap();
            pairs += 1;
        }
    }
    total / pairs as f32
}

/// On random weights the latent noise, not the prompt, sets the images
/// apart, so the grid is drawn from one seed's noise: what spreads it then
/// is chaos alone.
#[test]
fn the_grid_spreads_wider_with_chaos() {
    let tiny = tiny("spread");
    let pipeline = &tiny.pipeline;
    let g = generation();
    let shared = pipeline
        .condition(&g.prompt, g.negative_prompt.as_deref(), g.guidance)
        .unwrap();
    let (noise, _) = pipeline.seeded_noise(&[7], g.width, g.height).unwrap();
    let seeds = [1, 2, 3, 4];
    let spread_at = |amount: f64| {
        let (conditioning, guidance) = chaos::jitter(&shared, g.guidance, &seeds, amount).unwrap();
        let scheduler = pipeline.scheduler(g.steps);
        let latents = noise
            .repeat((seeds.len(), 1, 1, 1))
            .unwrap()
            .affine(scheduler.init_noise_sigma(), 0.0)
            .unwrap();
        let latents = pipeline
            .denoise(
                latents,
                &conditioning,
                &guidance,
                &scheduler,
                0,
                &mut [],
                &mut |_, _, _, _| Ok(()),
            )
            .unwrap();
        spread(&pipeline.decode(&latents).unwrap())
    };
    let (calm, some, wild) = (spread_at(0.0), spread_at(0.3), spread_at(1.0));
    assert!(calm < 1e-4, "one seed's noise at chaos 0 spreads {calm}");
    assert!(
        calm < some && some < wild,
        "spreads at chaos 0, 30, 100: {calm}, {some}, {wild}"
    );
}
