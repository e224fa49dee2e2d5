//! Jobs answered in text, nothing drawn: `/imagine-analyze` (a prompt read
//! back and its phrases weighed by CLIP) and `/describe` (prompt
//! suggestions for an image, with buttons that draw them). The answer is
//! recorded as the job's result, so a retried attempt does not answer twice.

use candle_core::Tensor;
use wordup_queue::{Delivery, Job};
use wordup_vocabulary::Vocabulary;

use super::Worker;
use super::deliver::RESULT_POST;
use super::settle::Outcome;
use crate::error::{EngineError, Result};
use crate::judge::reading::{self, Nearest};

impl<D: Delivery> Worker<D> {
    pub(super) async fn analyze(&self, job: &Job, prompt: &str) -> Outcome {
        let clip = self.clip.clone();
        let prompt = prompt.to_owned();
        let text = blocking(move || {
            let weighed = clip
                .as_ref()
                .map(|judge| reading::weigh_in_text(&judge.clip, &prompt))
                .transpose()?;
            let read = match &clip {
                Some(judge) => reading::read(&judge.clip, &judge.lexicon, &prompt)?,
                None => Vocabulary::builtin().read(&prompt),
            };
            Ok(reading::analysis_text(&prompt, &read, weighed.as_deref()))
        })
        .await;
        match text {
            Ok(text) => self.post_answer(job, &text, 0).await,
            Err(e) => e.into(),
        }
    }

    pub(super) async fn describe(&self, job: &Job) -> Outcome {
        let Some(clip) = self.clip.clone() else {
            return Outcome::permanent("this engine has no CLIP, which /describe needs");
        };
        let key = job.idempotency_key.clone().unwrap_or_default();
        let png = match self.queue.input(&key).await {
            Ok(Some(png)) => png,
            Ok(None) => {
                return Outcome::permanent("the image to describe is no longer stored");
            }
            Err(e) => return e.into(),
        };
        let prompts = blocking(move || {
            let image = image::load_from_memory_with_format(&png, image::ImageFormat::Png)
                .map_err(|e| EngineError::Image(format!("the stored image: {e}")))?
                .to_rgb8();
            let features: Tensor = clip.clip.image_features(&image)?;
            Ok(reading::suggestions(&Nearest::of(
                &clip.lexicon,
                &features,
            )?))
        })
        .await;
        let prompts = match prompts {
            Ok(prompts) => prompts,
            Err(e) => return e.into(),
        };
        if let Err(e) = self.queue.store_suggestions(job.id, &prompts).await {
            return e.into();
        }
        let choices = u8::try_from(prompts.len()).unwrap_or(u8::MAX);
        self.post_answer(job, &reading::suggestions_text(&prompts), choices)
            .await
    }

    /// Posts `text` with `choices` suggestion buttons and records it.
    async fn post_answer(&self, job: &Job, text: &str, choices: u8) -> Outcome {
        let posted = match self.delivery.answer(job, text, choices).await {
            Ok(posted) => posted,
            Err(e) => {
                self.metrics.delivery_failures.inc();
                return e.into();
            }
        };
        match self
            .queue
            .record_post(
                job.id,
                RESULT_POST,
                &job.origin.platform,
                &posted.channel_id,
                &posted.message_id,
            )
            .await
        {
            Ok(_) => Outcome::Done,
            Err(e) => e.into(),
        }
    }
}

/// Runs CLIP work on a blocking thread.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T> + Send + 'static,
) -> Result<T> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| EngineError::Image(format!("CLIP work panicked: {e}")))?
}
