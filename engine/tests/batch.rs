//! Grids of different jobs drawn as one batch (`WORDUP_ENGINE_BATCH`): each
//! image comes out as it does alone, whatever its prompt, negative prompt,
//! weights, chaos, guidance scale or seed, and generations that cannot share
//! a batch are refused. On the tiny random-weight model (written by the
//! testkit).
#![allow(clippy::unwrap_used)]

use wordup_engine_testkit::fixtures as common;

use common::max_diff;
use std::sync::Arc;

use wordup_engine::error::EngineError;
use wordup_engine::finish::upscale::Tiling;
use wordup_engine::sd::pipeline::{Decoder, Drawing, Generation};
use wordup_engine::worker::render::Models;
use wordup_engine::worker::warm_up::warm_up;
use wordup_engine_testkit::tiny::ScratchTiny;

/// The parity tests' tolerance.
const TOLERANCE: f32 = 1e-4;

fn together(tiny: &ScratchTiny, generations: &[Generation]) -> Result<Vec<Drawing>, EngineError> {
    tiny.pipeline
        .txt2img_batch(generations, Decoder::Full, &mut |_, _, _, _| Ok(()))
}

fn alone(tiny: &ScratchTiny, generation: &Generation) -> Drawing {
    tiny.pipeline
        .txt2img_with(generation, Decoder::Full, &mut |_, _, _, _| Ok(()))
        .unwrap()
}

fn generation(prompt: &str, guidance: f64, seeds: &[u64], chaos: f64) -> Generation {
    Generation {
        prompt: prompt.into(),
        negative_prompt: None,
        width: 32,
        height: 32,
        steps: 2,
        guidance,
        seeds: seeds.to_vec(),
        tile: false,
        chaos,
    }
}

fn assert_each_as_alone(tiny: &ScratchTiny, generations: &[Generation]) {
    let batch = together(tiny, generations).unwrap();
    assert_eq!(batch.len(), generations.len());
    for (i, (drawing, generation)) in batch.iter().zip(generations).enumerate() {
        let single = alone(tiny, generation);
        assert_eq!(
            drawing.images.dims(),
            single.images.dims(),
            "generation {i}"
        );
        let images = max_diff(&drawing.images, &single.images);
        let latents = max_diff(&drawing.latents, &single.latents);
        assert!(
            images <= TOLERANCE && latents <= TOLERANCE,
            "generation {i}: images {images}, latents {latents} from alone"
        );
    }
    // The members differ from each other: nothing was drawn for the wrong one.
    let first = &batch[0].images;
    let second = &batch[1].images;
    assert!(
        max_diff(
            &first.narrow(0, 0, 1).unwrap(),
            &second.narrow(0, 0, 1).unwrap()
        ) > 0.01
    );
}

#[test]
fn guided_grids_of_different_prompts_draw_as_they_do_alone() {
    let tiny = ScratchTiny::new("batch-guided").unwrap();
    let generations = [
        Generation {
            negative_prompt: Some("blurry".into()),
            ..generation("a red fox in the snow", 4.0, &[7, 8], 0.0)
        },
        generation("a castle:: winter::2 fog::-0.5", 6.0, &[1, 2, 3], 0.5),
        generation("a blue boat", 4.0, &[9], 0.0),
    ];
    assert_each_as_alone(&tiny, &generations);
}

#[test]
fn unguided_grids_draw_as_they_do_alone() {
    let tiny = ScratchTiny::new("batch-unguided").unwrap();
    let generations = [
        generation("a red fox in the snow", 0.0, &[7, 8, 9, 10], 0.0),
        generation("a lighthouse at night", 1.0, &[7, 8, 9, 10], 0.3),
    ];
    assert_each_as_alone(&tiny, &generations);
}

#[test]
fn generations_that_cannot_share_a_batch_are_refused() {
    let tiny = ScratchTiny::new("batch-refused").unwrap();
    let base = generation("a red fox", 4.0, &[1], 0.0);
    let long_prompt = ["a very long prompt"; 20].join(", ");
    let cases = [
        (
            "size",
            Generation {
                width: 64,
                ..base.clone()
            },
        ),
        (
            "steps",
            Generation {
                steps: 3,
                ..base.clone()
            },
        ),
        (
            "tile",
            Generation {
                tile: true,
                ..base.clone()
            },
        ),
        (
            "guidance off",
            Generation {
                guidance: 1.0,
                ..base.clone()
            },
        ),
        (
            "no seeds",
            Generation {
                seeds: vec![],
                ..base.clone()
            },
        ),
        ("length", generation(&long_prompt, 4.0, &[2], 0.0)),
    ];
    for (what, other) in cases {
        match together(&tiny, &[base.clone(), other]) {
            Err(EngineError::InvalidRequest(_)) => {}
            other => panic!("{what}: {:?}", other.map(|d| d.len())),
        }
    }
    // The condition the engine groups by says so beforehand.
    let chunks = |g: &Generation| {
        tiny.pipeline
            .condition_chunks(&g.prompt, g.negative_prompt.as_deref(), g.guidance)
            .unwrap()
    };
    assert_eq!(chunks(&base), 1);
    assert!(chunks(&generation(&long_prompt, 4.0, &[2], 0.0)) > 1);
    assert!(together(&tiny, &[]).is_err());
}

#[test]
fn an_engine_claiming_three_jobs_warms_up_with_a_grid_alone_and_three_together() {
    let tiny = ScratchTiny::new("batch-warm-up").unwrap();
    let models = Arc::new(Models {
        pipeline: tiny.load().unwrap(),
        upscaler: None,
        tiling: Tiling { tile: 64, pad: 4 },
    });
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let drawings = runtime.block_on(warm_up(models, 3)).unwrap();
    let grids: Vec<usize> = drawings.iter().map(|d| d.grids).collect();
    assert_eq!(grids, [1, 3]);
}
