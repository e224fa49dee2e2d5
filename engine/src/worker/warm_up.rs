//! A throwaway drawing before an engine on a GPU says it is ready. The first
//! drawing of each shape there pays for what is then kept: each
//! convolution's and attention's way chosen by timing (`ops::choice`),
//! cuDNN's plans, the UNet step captured as a CUDA graph, and the libraries'
//! lazy loading. Without a warm-up the first user after every start would
//! wait those seconds on top of their job.
//!
//! It draws, on the drawing thread (where the graphs are kept), the default
//! /imagine grid in one step (the shapes are those of any step count), and
//! when the engine claims several jobs at once, a full batch of such grids.

use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use wordup_queue::{AspectRatio, GRID_IMAGES, ImagineRequest};

use super::draw_thread::on_draw_thread;
use super::render::Models;
use crate::error::EngineError;
use crate::sd::pipeline::{Decoder, Stage};

/// One warm-up drawing: how many grids it held and how long it took.
#[derive(Debug, Clone, PartialEq)]
pub struct WarmedUp {
    pub grids: usize,
    pub took: Duration,
}

/// How many grids each warm-up drawing holds for an engine claiming `batch`
/// jobs at once: one grid (a job alone), then a full batch if it differs.
pub fn grid_counts(batch: u32) -> Vec<usize> {
    match batch {
        0 | 1 => vec![1],
        n => vec![1, n as usize],
    }
}

/// The request drawn: /imagine's defaults (square, the model's guidance)
/// in one step.
fn request() -> ImagineRequest {
    ImagineRequest {
        prompt: "a lighthouse on a cliff at dawn".into(),
        negative_prompt: None,
        aspect: AspectRatio::SQUARE,
        seed: 0,
        steps: Some(1),
        guidance: None,
        style: None,
        images: u32::from(GRID_IMAGES),
        model: None,
        draft: false,
        quality: 1,
        chaos: 0,
        tile: false,
        image_weight: None,
    }
}

/// Draws the warm-up for an engine claiming `batch` jobs at once (see the
/// module's note), each drawing's size and time in order.
pub async fn warm_up(models: Arc<Models>, batch: u32) -> Result<Vec<WarmedUp>, EngineError> {
    on_draw_thread(move || {
        let request = request();
        let mut ignore = |_: Stage, _: usize, _: usize, _: Option<&Tensor>| Ok(());
        grid_counts(batch)
            .into_iter()
            .map(|grids| {
                let started = Instant::now();
                if grids == 1 {
                    let count = u32::from(GRID_IMAGES);
                    models.imagine(&request, 0, count, Decoder::Full, &mut ignore)?;
                } else {
                    let together: Vec<(&ImagineRequest, u64)> = (0..grids as u64)
                        .map(|i| (&request, i * u64::from(GRID_IMAGES)))
                        .collect();
                    models.imagine_together(&together, Decoder::Full, &mut ignore)?;
                }
                Ok(WarmedUp {
                    grids,
                    took: started.elapsed(),
                })
            })
            .collect()
    })
    .await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_engine_warms_a_grid_alone_and_a_full_batch() {
        for (batch, expected) in [(0, vec![1]), (1, vec![1]), (2, vec![1, 2]), (4, vec![1, 4])] {
            assert_eq!(grid_counts(batch), expected, "batch {batch}");
        }
    }
}
