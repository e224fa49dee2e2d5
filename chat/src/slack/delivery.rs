//! Posting results into the job's thread: the image uploaded with alt text
//! (files.getUploadURLExternal → upload → files.completeUploadExternal),
//! then a message with the buttons; progress as edits of the parent, with a
//! preview uploaded privately and shown in an image block.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use serde_json::json;
use wordup_queue::{Attachment, Job, JobId, Progress, Queue, Request};

use super::api::{SlackApi, SlackUpload};
use super::blocks::{choice_blocks, escape, preview_blocks, result_blocks};
use super::once;
use super::reply::SlackReply;
use crate::commands::answer::progress_text;
use crate::commands::queue_status::describe;
use crate::text::shorten;
use wordup_queue::{DeliveryError, ResultPost};

/// The upload step's record: a retried attempt that finds it does not upload again.
pub const FILE_POST: &str = "slack:file";
/// The parent message a job's thread hangs from, whoever posts it.
pub const PARENT_POST: &str = "slack:parent";
/// The message with the result's buttons.
const BUTTONS_POST: &str = "slack:buttons";

#[derive(Debug, Clone)]
pub struct SlackDelivery {
    pub api: SlackApi,
    pub queue: Queue,
    /// The preview file each running job's parent shows. In memory: after
    /// a crash the file stays, private and unshared.
    previews: Arc<Mutex<HashMap<JobId, Preview>>>,
}

#[derive(Debug, Clone)]
struct Preview {
    file_id: String,
    alt: String,
}

fn reply(job: &Job) -> Result<SlackReply, DeliveryError> {
    SlackReply::of(&job.reply)
        .ok_or_else(|| DeliveryError::Permanent("the job has no Slack reply data".into()))
}

fn transient(e: impl std::fmt::Display) -> DeliveryError {
    DeliveryError::Transient(e.to_string())
}

fn headline(job: &Job) -> String {
    match &job.request {
        Request::Imagine(r) => {
            format!(
                "<@{}>: *{}*",
                job.origin.user_id,
                escape(&shorten(&r.prompt, 300))
            )
        }
        other => format!("<@{}>: {}", job.origin.user_id, describe(other)),
    }
}

impl SlackDelivery {
    pub fn new(api: SlackApi, queue: Queue) -> SlackDelivery {
        SlackDelivery {
            api,
            queue,
            previews: Arc::default(),
        }
    }

    fn previews(&self) -> std::sync::MutexGuard<'_, HashMap<JobId, Preview>> {
        self.previews.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The job's reply data with its parent message's ts: the one it was
    /// enqueued with, the one the bot posted since (the job's thread), or
    /// one posted now when the bot could not (Slack was unreachable, say).
    /// Whoever records the thread first wins; a loser deletes its parent.
    async fn with_parent(&self, job: &Job) -> Result<(SlackReply, String), DeliveryError> {
        let reply = reply(job)?;
        if let Some(ts) = reply
            .parent_ts
            .clone()
            .or_else(|| job.origin.thread_id.clone())
        {
            return Ok((reply, ts));
        }
        let current = self.queue.job(job.id).await.map_err(transient)?;
        if let Some(ts) = current.and_then(|job| job.origin.thread_id) {
            return Ok((reply, ts));
        }
        let ours = once::post_message(
            crate::once::TRIES,
            &self.api,
            &self.queue,
            job.id,
            PARENT_POST,
            json!({
                "channel": reply.channel,
                "text": format!("{} — starting", headline(job)),
            }),
        )
        .await?;
        let thread = self
            .queue
            .set_thread(job.id, &ours)
            .await
            .map_err(transient)?
            .unwrap_or_else(|| ours.clone());
        if thread != ours
            && let Err(e) = self.api.delete_message(&reply.channel, &ours).await
        {
            tracing::warn!(error = %e, "a second parent message was not deleted");
        }
        Ok((reply, thread))
    }

    /// Edits the parent message (at most as often as the engine reports),
    /// showing the latest preview under the text.
    pub async fn progress(&self, job: &Job, progress: &Progress, preview: Option<&Attachment>) {
        let Ok(reply) = reply(job) else { return };
        if !reply.edit_parent {
            return;
        }
        let parent = match self.with_parent(job).await {
            Ok((_, parent)) => parent,
            Err(e) => {
                tracing::debug!(error = %e, "no parent message to show progress in");
                return;
            }
        };
        let text = progress_text(&headline(job), progress);
        let replaced = match preview {
            Some(preview) => self.upload_preview(job.id, preview).await,
            None => None,
        };
        let shown = self.previews().get(&job.id).cloned();
        // An edit without blocks keeps the old ones, which show instead of
        // the new text (an earlier attempt's preview, say): always send them.
        let blocks = shown.map_or(json!([]), |p| preview_blocks(&text, &p.file_id, &p.alt));
        if let Err(e) = self
            .api
            .update_message(&reply.channel, &parent, &text, Some(&blocks))
            .await
        {
            tracing::debug!(error = %e, "progress edit failed");
        }
        if let Some(old) = replaced {
            self.delete_preview(&old).await;
        }
    }

    /// Uploads a preview privately and makes it the job's; returns the one
    /// it replaces.
    async fn upload_preview(&self, job: JobId, preview: &Attachment) -> Option<Preview> {
        let upload = SlackUpload {
            filename: &preview.filename,
            title: "preview",
            alt_text: &preview.alt,
            bytes: &preview.bytes,
        };
        match self.api.upload_private(&upload).await {
            Ok(file_id) => self.previews().insert(
                job,
                Preview {
                    file_id,
                    alt: preview.alt.clone(),
                },
            ),
            Err(e) => {
                tracing::debug!(error = %e, "preview not uploaded");
                None
            }
        }
    }

    async fn delete_preview(&self, preview: &Preview) {
        if let Err(e) = self.api.delete_file(&preview.file_id).await {
            tracing::debug!(error = %e, "an old preview was not deleted");
        }
    }

    /// A text answer (`/imagine-analyze`) in the channel, mentioning the
    /// requester, made once; returns its ts.
    pub async fn answer(
        &self,
        job: &Job,
        text: &str,
        choices: u8,
    ) -> Result<String, DeliveryError> {
        let reply = reply(job)?;
        let text = format!("<@{}> {}", job.origin.user_id, escape(&shorten(text, 2900)));
        once::post_message(
            crate::once::TRIES,
            &self.api,
            &self.queue,
            job.id,
            "slack:answer",
            json!({
                "channel": reply.channel,
                "text": text,
                "blocks": choice_blocks(job.id, &text, choices),
            }),
        )
        .await
    }

    /// Tells the requester something in the thread, once per `key`.
    pub async fn notice(&self, job: &Job, key: &str, text: &str) -> Result<(), DeliveryError> {
        let (reply, parent) = self.with_parent(job).await?;
        once::post_message(
            crate::once::TRIES,
            &self.api,
            &self.queue,
            job.id,
            &format!("notice:{key}"),
            json!({
                "channel": reply.channel,
                "thread_ts": parent,
                "text": format!("<@{}> ⚠️ {text}", job.origin.user_id),
            }),
        )
        .await
        .map(drop)
    }

    /// Uploads the image into the thread, then posts the buttons; returns
    /// the buttons message's ts.
    pub async fn post_result(&self, job: &Job, post: &ResultPost) -> Result<String, DeliveryError> {
        let (reply, parent) = self.with_parent(job).await?;
        let mut comment = format!(
            "*{}* — {} — <@{}>",
            escape(&shorten(&post.prompt, 300)),
            post.what,
            job.origin.user_id
        );
        if let Some(reading) = &post.reading {
            comment.push_str(&format!("\n{}", escape(&shorten(reading, 600))));
        }
        let uploaded = self
            .queue
            .post(job.id, FILE_POST)
            .await
            .map_err(transient)?;
        if uploaded.is_none() {
            let file_id = once::upload_file(
                &self.api,
                &self.queue,
                job.id,
                FILE_POST,
                &reply.channel,
                &parent,
                &comment,
                &SlackUpload {
                    filename: &post.attachment.filename,
                    title: &post.what,
                    alt_text: &post.attachment.alt,
                    bytes: &post.attachment.bytes,
                },
            )
            .await?;
            self.queue
                .record_post(job.id, FILE_POST, "slack", &reply.channel, &file_id)
                .await
                .map_err(transient)?;
        }
        let ts = once::post_message(
            crate::once::TRIES,
            &self.api,
            &self.queue,
            job.id,
            BUTTONS_POST,
            json!({
                "channel": reply.channel,
                "thread_ts": parent,
                "text": comment,
                "blocks": result_blocks(job.id, post.kind, &comment),
            }),
        )
        .await?;
        // The parent says it is done, without a preview: an empty blocks
        // array removes the image block.
        let preview = self.previews().remove(&job.id);
        if reply.edit_parent
            && let Err(e) = self
                .api
                .update_message(
                    &reply.channel,
                    &parent,
                    &format!("{} — done ✅ (see the thread)", headline(job)),
                    Some(&json!([])),
                )
                .await
        {
            tracing::warn!(error = %e, "Slack message not updated");
        }
        if let Some(preview) = preview {
            self.delete_preview(&preview).await;
        }
        Ok(ts)
    }
}
