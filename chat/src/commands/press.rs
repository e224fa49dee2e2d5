//! A button press under a grid, an upscaled image or /describe's
//! suggestions: a follow-up job.

use wordup_queue::{ChannelSettings, Job, JobId, JobState};

use super::{Accepted, CommandError, Commands, Invocation, UserError, imagine};
use crate::buttons::{Action, ButtonId};

/// Whether `presser` may press a button under `parent` in a channel with
/// `channel` settings; `image_stored` is whether the image the button is
/// about exists (withheld images are never stored).
pub fn allowed(
    parent: &Job,
    image_stored: bool,
    channel: &ChannelSettings,
    presser: &str,
) -> Result<(), UserError> {
    if parent.state != JobState::Succeeded {
        return Err(UserError::NotFinished);
    }
    if !image_stored {
        return Err(UserError::NoSuchImage);
    }
    if channel.restrict_buttons && parent.origin.user_id != presser {
        return Err(UserError::NotYourGrid);
    }
    Ok(())
}

impl Commands {
    /// 👍 on `job`'s result by `user`: their vote, or its withdrawal.
    pub async fn vote(
        &self,
        job: JobId,
        platform: &str,
        user: &str,
    ) -> Result<wordup_queue::Vote, CommandError> {
        match self.queue.job(job).await? {
            Some(found) if found.state == JobState::Succeeded => {
                Ok(self.queue.toggle_vote(job, platform, user).await?)
            }
            Some(_) => Err(UserError::NotFinished.into()),
            None => Err(UserError::UnknownGrid {
                days: self.config.retention_days,
            }
            .into()),
        }
    }

    pub async fn press(
        &self,
        invocation: &Invocation,
        button: &ButtonId,
    ) -> Result<Accepted, CommandError> {
        // A repeated press (of a once-per-button button by anyone, or a
        // repeated delivery of one press) answers with the job it made,
        // unless that one failed or was cancelled: then the press after it
        // makes a new one, however many failed before.
        let mut key = invocation.idempotency_key.clone();
        loop {
            match self.queue.job_by_idempotency_key(&key).await? {
                Some(job) if matches!(job.state, JobState::Failed | JobState::Cancelled) => {
                    key = format!("{}:after:{}", invocation.idempotency_key, job.id);
                }
                Some(job) => {
                    return Ok(Accepted {
                        job: job.id,
                        position: self.queue.position(job.id).await?,
                        created: false,
                    });
                }
                None => break,
            }
        }
        let Some(parent) = self.queue.job(button.job).await? else {
            return Err(UserError::UnknownGrid {
                days: self.config.retention_days,
            }
            .into());
        };
        let channel = self
            .queue
            .channel_settings(&invocation.origin.platform, &invocation.origin.channel_id)
            .await?;
        // "Use N" under /describe: an /imagine of the stored suggestion, as
        // if typed here (the blocklist and the channel's defaults apply).
        if let Action::Suggestion { index } = button.action {
            let suggestion = self.queue.suggestion(parent.id, index).await?;
            allowed(
                &parent,
                suggestion.is_some(),
                &channel,
                &invocation.origin.user_id,
            )?;
            let args = imagine::check(&suggestion.unwrap_or_default(), &self.config)?;
            let (request, tier, batch_key) =
                imagine::plan(&args, &channel, &self.config, rand::random(), None);
            let job = invocation.job(&channel, key, tier, request, batch_key);
            return self.enqueue_within_quota(&job).await;
        }
        let image_stored = match button.index() {
            Some(index) => self.queue.has_image(parent.id, i32::from(index)).await?,
            None => true,
        };
        allowed(&parent, image_stored, &channel, &invocation.origin.user_id)?;
        let request = button.request().ok_or(UserError::NotAFollowUp)?;
        // Follow-ups are keyed by kind alone: their sizes, steps and decoder
        // (a re-roll of a draft is a draft) come from their chain's /imagine,
        // so the jobs of one claim are drawn and decoded one by one.
        let batch_key = request.kind().to_owned();
        let job = invocation.job(&channel, key, parent.tier, request, batch_key);
        self.enqueue_within_quota(&job).await
    }
}
