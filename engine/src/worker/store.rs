//! Storing a job's images in Postgres (for its U and V buttons), each as a
//! PNG with its provenance.

use wordup_queue::{Delivery, Job, JobImage};

use super::Worker;
use super::judge::Judged;
use super::render::{Drawn, Resolved};
use super::settle::Outcome;
use crate::finish::output::{self, Provenance};
use crate::sd::pipeline::Decoder;

impl<D: Delivery> Worker<D> {
    /// Stores every image the safety check let through, in place of any an
    /// earlier attempt stored.
    pub(super) async fn store(
        &self,
        job: &Job,
        resolved: &Resolved,
        drawn: &[Drawn],
        withheld: &[bool],
        judged: &Judged,
    ) -> Result<(), Outcome> {
        self.queue.clear_images(job.id, job.attempt).await?;
        for (idx, d) in drawn.iter().enumerate() {
            if withheld[idx] {
                continue;
            }
            let score = judged.score(idx);
            let png = output::encode_png(&d.image, &self.provenance(resolved, d, score))?;
            let image = JobImage {
                idx: idx as i32,
                png,
                width: d.image.width() as i32,
                height: d.image.height() as i32,
                seed: d.seed as i64,
                score,
                draft_latents: d.draft_latents.clone(),
            };
            self.queue.store_image(job.id, job.attempt, &image).await?;
        }
        Ok(())
    }

    /// How an image of this job was made, for its PNG.
    pub(super) fn provenance(
        &self,
        resolved: &Resolved,
        drawn: &Drawn,
        clip_score: Option<f32>,
    ) -> Provenance {
        Provenance {
            prompt: resolved.prompt.clone(),
            negative_prompt: resolved.negative_prompt.clone(),
            seed: drawn.seed,
            steps: resolved.steps,
            guidance: resolved.guidance,
            scheduler: self.models.pipeline.scheduler_kind.name().to_owned(),
            model: self.config.model_id.clone(),
            clip_score,
            draft_decoder: match drawn.decoder() {
                Decoder::Draft => self.config.draft_decoder_id.clone(),
                Decoder::Full => None,
            },
        }
    }
}
