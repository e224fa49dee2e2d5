//! Drawing a plan on the drawing thread (`draw_thread`), with progress forwarded to the
//! reporter and a stop at the next step once the job is cancelled or its
//! lease is lost.

use std::sync::Arc;

use candle_core::Tensor;
use image::RgbImage;
use tokio::sync::mpsc;
use wordup_queue::{GRID_IMAGES, ImagineRequest};

use super::draw_thread::on_draw_thread;
use super::lease::Flags;
use super::metrics::{StageTimer, WorkerMetrics};
use super::plan::{Draw, Source};
use super::preview::Previews;
use super::progress::Update;
use super::render::{Drawn, Models};
use crate::error::EngineError;
use crate::ops::conv::PaddingMode;
use crate::sd::pipeline::{ProgressFn, Stage};

/// Draws `draw` for `root` on the drawing thread, with previews when asked.
#[allow(clippy::too_many_arguments)]
pub(super) async fn draw(
    models: Arc<Models>,
    metrics: Arc<WorkerMetrics>,
    flags: Arc<Flags>,
    progress: mpsc::UnboundedSender<Update>,
    mut previews: Option<Previews>,
    root: ImagineRequest,
    draw: Draw,
) -> Result<Vec<Drawn>, EngineError> {
    on_draw_thread(move || {
        let mut timer = StageTimer::new(&metrics);
        let mut on_progress =
            |stage: Stage, step: usize, total: usize, denoised: Option<&Tensor>| {
                if flags.stop_requested() {
                    return Err(EngineError::Cancelled);
                }
                timer.event(stage.name(), step);
                let preview = previews
                    .as_mut()
                    .and_then(|p| p.due(&models, denoised, step, total));
                let _ = progress.send(Update::new(stage.name(), step, total, preview));
                Ok(())
            };
        render(&models, &root, draw, &mut on_progress)
    })
    .await
}

/// One job of a batch drawn together: where its progress goes, and its grid.
pub(super) struct Member {
    pub flags: Arc<Flags>,
    pub progress: mpsc::UnboundedSender<Update>,
    pub previews: Option<Previews>,
    pub root: ImagineRequest,
    pub first_seed: u64,
}

/// Several /imagine grids drawn as one batch on the drawing thread
/// ([`Models::imagine_together`]), a grid per member. Every member sees the
/// batch's progress and previews of its own images. The batch stops early
/// only when every member is cancelled or lost; one that is alone has its
/// images drawn and then thrown away by its settlement.
pub(super) async fn draw_together(
    models: Arc<Models>,
    metrics: Arc<WorkerMetrics>,
    mut members: Vec<Member>,
    decoder: crate::sd::pipeline::Decoder,
) -> Result<Vec<Vec<Drawn>>, EngineError> {
    on_draw_thread(move || {
        let mut timer = StageTimer::new(&metrics);
        let per_grid = usize::from(GRID_IMAGES);
        let grids: Vec<(ImagineRequest, u64)> = members
            .iter()
            .map(|m| (m.root.clone(), m.first_seed))
            .collect();
        let mut on_progress =
            |stage: Stage, step: usize, total: usize, denoised: Option<&Tensor>| {
                if members.iter().all(|m| m.flags.stop_requested()) {
                    return Err(EngineError::Cancelled);
                }
                timer.event(stage.name(), step);
                for (i, member) in members.iter_mut().enumerate() {
                    // A member that stopped hears no more; its images are thrown away.
                    if member.flags.stop_requested() {
                        continue;
                    }
                    let own = denoised
                        .map(|d| d.narrow(0, i * per_grid, per_grid))
                        .transpose()?;
                    let preview = member
                        .previews
                        .as_mut()
                        .and_then(|p| p.due(&models, own.as_ref(), step, total));
                    let _ = member
                        .progress
                        .send(Update::new(stage.name(), step, total, preview));
                }
                Ok(())
            };
        let grids: Vec<(&ImagineRequest, u64)> = grids.iter().map(|(r, s)| (r, *s)).collect();
        models.imagine_together(&grids, decoder, &mut on_progress)
    })
    .await
}

fn render(
    models: &Models,
    root: &ImagineRequest,
    draw: Draw,
    progress: &mut ProgressFn,
) -> Result<Vec<Drawn>, EngineError> {
    let count = u32::from(GRID_IMAGES);
    match draw {
        Draw::Grid {
            first_seed,
            candidates,
            image: Some(image),
            ..
        } => models.imagine_from_image(root, &image, first_seed, candidates, progress),
        Draw::Grid {
            first_seed,
            decoder,
            candidates,
            image: None,
        } => models.imagine(root, first_seed, candidates, decoder, progress),
        Draw::Variations {
            source,
            strength,
            first_seed,
        } => {
            let source = source_image(models, root, source, progress)?;
            models.vary(root, &source, strength, first_seed, count, progress)
        }
        Draw::Upscale { source, mode, seed } => {
            let source = source_image(models, root, source, progress)?;
            Ok(vec![Drawn {
                image: models.upscale(&models.resolve(root), &source, mode, seed, progress)?,
                seed,
                draft_latents: None,
            }])
        }
    }
}

/// A follow-up's input image: a draft's decoded with the full VAE first,
/// tiled if the draft was.
fn source_image(
    models: &Models,
    root: &ImagineRequest,
    source: Source,
    progress: &mut ProgressFn,
) -> Result<RgbImage, EngineError> {
    match source {
        Source::Image(image) => Ok(image),
        Source::DraftLatents(latents) => {
            models.full_decode(&latents, PaddingMode::tiled(root.tile), progress)
        }
    }
}
