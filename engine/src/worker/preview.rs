//! Live previews: while a job of more than one step denoises, now and then
//! its current estimate as a small grid, safety-checked like the result,
//! for the progress edit to show.

use std::sync::Arc;
use std::time::{Duration, Instant};

use candle_core::Tensor;
use wordup_queue::{Attachment, Delivery, Job, JobId};

use super::Worker;
use super::deliver::grid;
use super::render::Models;
use crate::error::Result;
use crate::finish::output;
use crate::judge::safety::OpenNsfw;

/// JPEG quality of a preview: small files, blur is expected.
const QUALITY: u8 = 80;

/// A job's previews: how often, and the safety check they pass through.
pub(super) struct Previews {
    pub job: JobId,
    pub every: Duration,
    /// `None` where the destination allows NSFW or the engine runs without
    /// the check.
    pub safety: Option<(Arc<OpenNsfw>, f32)>,
    last: Option<Instant>,
}

impl Previews {
    pub fn new(job: JobId, every: Duration, safety: Option<(Arc<OpenNsfw>, f32)>) -> Previews {
        Previews {
            job,
            every,
            safety,
            last: None,
        }
    }

    /// A preview of `denoised` when one is due: at most one per `every`,
    /// and none of the final step, which the result replaces at once.
    pub fn due(
        &mut self,
        models: &Models,
        denoised: Option<&Tensor>,
        step: usize,
        total: usize,
    ) -> Option<Attachment> {
        let denoised = denoised.filter(|_| step < total)?;
        if self.last.is_some_and(|at| at.elapsed() < self.every) {
            return None;
        }
        self.last = Some(Instant::now());
        match self.render(models, denoised) {
            Ok(preview) => Some(preview),
            Err(error) => {
                tracing::debug!(%error, "no preview");
                None
            }
        }
    }

    fn render(&self, models: &Models, denoised: &Tensor) -> Result<Attachment> {
        let images = models.pipeline.preview(denoised)?;
        let withheld = match &self.safety {
            Some((checker, threshold)) => checker
                .check(&images, *threshold)?
                .iter()
                .map(|v| v.withheld)
                .collect(),
            None => vec![false; images.len()],
        };
        let picture = grid(images.iter(), &withheld)?;
        Ok(Attachment {
            filename: format!("wordup-{}-preview.jpg", self.job),
            mime: "image/jpeg",
            bytes: output::encode_jpeg(&picture, QUALITY)?,
            alt: "a preview of the images being drawn".into(),
        })
    }
}

impl<D: Delivery> Worker<D> {
    /// The job's previews, when this engine shows them, through the same
    /// safety check as its result.
    pub(super) fn previews(&self, job: &Job) -> Option<Previews> {
        self.config.previews.then(|| {
            let safety = self
                .safety
                .clone()
                .filter(|_| !self.delivery.nsfw_allowed(job))
                .map(|checker| (checker, self.config.nsfw_threshold));
            Previews::new(job.id, self.config.progress_every, safety)
        })
    }
}
