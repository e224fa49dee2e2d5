//! `/imagine-analyze`: a prompt read back and its phrases weighed by CLIP,
//! answered in text. Nothing is drawn; the answer is recorded as the job's
//! result, so a retried attempt does not answer twice.

use wordup_queue::{Delivery, Job};
use wordup_vocabulary::Vocabulary;

use super::Worker;
use super::deliver::RESULT_POST;
use super::settle::Outcome;
use crate::error::EngineError;
use crate::judge::reading;

impl<D: Delivery> Worker<D> {
    pub(super) async fn analyze(&self, job: &Job, prompt: &str) -> Outcome {
        let clip = self.clip.clone();
        let prompt = prompt.to_owned();
        let text = tokio::task::spawn_blocking(move || {
            let weighed = clip
                .as_ref()
                .map(|judge| reading::weigh_in_text(&judge.clip, &prompt))
                .transpose()?;
            let read = match &clip {
                Some(judge) => reading::read(&judge.clip, &judge.lexicon, &prompt)?,
                None => Vocabulary::builtin().read(&prompt),
            };
            Ok::<_, EngineError>(reading::analysis_text(&prompt, &read, weighed.as_deref()))
        })
        .await
        .map_err(|e| EngineError::Image(format!("the analysis panicked: {e}")));
        let text = match text {
            Ok(Ok(text)) => text,
            Ok(Err(e)) | Err(e) => return e.into(),
        };
        let posted = match self.delivery.answer(job, &text).await {
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
