//! Posting results to Discord with the bot token (the interaction token
//! may have expired by the time a job is done), and the ack's edits while
//! the token lives.

use std::sync::Arc;

use serde_json::{Value, json};
use serenity::all::{ButtonStyle, CreateActionRow, CreateButton};
use tokio::sync::OnceCell;
use wordup_queue::{Attachment, Job, Progress, Queue, Request};

use super::handler::{Picture, edit_original_with, escape};
use super::once;
use super::reply::DiscordReply;
use super::rest::{DiscordRest, RestError, Upload};
use crate::buttons::ButtonId;
use crate::commands::answer;
use crate::commands::queue_status::describe;
use crate::delivery::classify;
use crate::text::shorten;
use wordup_queue::{DeliveryError, ResultKind, ResultPost};

/// The key a job's result message is recorded under as an intent.
const RESULT_POST: &str = "discord:result";

#[derive(Debug, Clone)]
pub struct DiscordDelivery {
    pub rest: DiscordRest,
    pub queue: Queue,
    /// The bot's user id, asked of Discord once.
    me: Arc<OnceCell<String>>,
}

impl DiscordDelivery {
    pub fn new(rest: DiscordRest, queue: Queue) -> DiscordDelivery {
        DiscordDelivery {
            rest,
            queue,
            me: Arc::default(),
        }
    }

    /// One post of `job` in its channel, made at most once.
    fn once<'a>(&'a self, job: &'a Job, key: &'a str) -> once::Post<'a> {
        once::Post {
            rest: &self.rest,
            queue: &self.queue,
            me: &self.me,
            job,
            key,
            channel_id: &job.origin.channel_id,
        }
    }

    /// The largest attachment the job's channel takes, in bytes.
    pub fn attachment_limit(&self, job: &Job) -> u64 {
        DiscordReply::of(&job.reply).map_or(super::reply::DEFAULT_ATTACHMENT_LIMIT, |r| {
            r.attachment_limit()
        })
    }

    /// Shows progress in the ack while its token lives, with the preview
    /// as its attachment (an edit without one keeps the last); silent after.
    pub async fn progress(&self, job: &Job, progress: &Progress, preview: Option<&Attachment>) {
        if let Some(reply) = live_reply(job) {
            let upload = preview.map(upload);
            let picture = upload.as_ref().map_or(Picture::Keep, Picture::Show);
            edit_original_with(&self.rest, &reply, &progress_text(job, progress), picture).await;
        }
    }

    /// Tells the requester something (a blocked image, a failure): in the
    /// ack while its token lives, else as a message that mentions them,
    /// once per `key`.
    pub async fn notice(&self, job: &Job, key: &str, text: &str) -> Result<(), DeliveryError> {
        if let Some(reply) = live_reply(job) {
            let text = format!("⚠️ {text}");
            edit_original_with(&self.rest, &reply, &text, Picture::Clear).await;
            return Ok(());
        }
        let body = json!({
            // The job's id tells this notice from another job's same one.
            "content": format!("<@{}> ⚠️ {text} (job {})", job.origin.user_id, job.id),
            "allowed_mentions": { "users": [job.origin.user_id] },
            // ≤ 25 characters, one per notice of a job.
            "nonce": format!("wn{}{}", job.id, key.chars().next().unwrap_or('n')),
            "enforce_nonce": true,
        });
        let key = format!("notice:{key}");
        self.once(job, &key)
            .create(&body, &[])
            .await?
            .map(drop)
            .map_err(classify)
    }

    /// A text answer (`/imagine-analyze`): the ack becomes it while its
    /// token lives, else a message that mentions the requester, made once.
    /// Returns the message's id.
    pub async fn answer(
        &self,
        job: &Job,
        text: &str,
        choices: u8,
    ) -> Result<String, DeliveryError> {
        // Line by line: escaping turns line breaks into spaces.
        let text = text
            .lines()
            .map(|line| escape(&shorten(line, 600)))
            .collect::<Vec<_>>()
            .join("\n");
        let message = match live_reply(job) {
            Some(reply) => {
                let path = format!(
                    "/webhooks/{}/{}/messages/@original",
                    reply.application_id, reply.token
                );
                let body = json!({
                    "content": text,
                    "allowed_mentions": { "parse": [] },
                    "components": components(vec![ButtonId::suggestion_row(job.id, choices)]),
                });
                self.rest.patch(&path, &body).await.map_err(classify)?
            }
            None => {
                let body = json!({
                    "content": format!("<@{}> {text}", job.origin.user_id),
                    "allowed_mentions": { "users": [job.origin.user_id] },
                    "components": components(vec![ButtonId::suggestion_row(job.id, choices)]),
                    "nonce": format!("wa{}", job.id),
                    "enforce_nonce": true,
                });
                self.once(job, "discord:answer")
                    .create(&body, &[])
                    .await?
                    .map_err(classify)?
            }
        };
        message
            .get("id")
            .and_then(Value::as_str)
            .map(str::to_owned)
            .ok_or_else(|| {
                DeliveryError::Transient("Discord returned a message without an id".into())
            })
    }

    /// Posts a result as a reply in the job's channel (or thread) and
    /// returns the message id. The nonce makes a repeated post (after a
    /// crash between posting and recording) return the first message.
    pub async fn post_result(&self, job: &Job, post: &ResultPost) -> Result<String, DeliveryError> {
        let reply = DiscordReply::of(&job.reply);
        let live = live_reply(job);
        let reference = match (&reply, &live) {
            (
                Some(DiscordReply {
                    reply_to: Some(id), ..
                }),
                _,
            ) => Some(id.clone()),
            (_, Some(live)) => self.original_message_id(live).await,
            _ => None,
        };
        let mut body = message_body(job, post);
        if let Some(id) = reference {
            body["message_reference"] = json!({ "message_id": id, "fail_if_not_exists": false });
        }
        let upload = upload(&post.attachment);
        let once = self.once(job, RESULT_POST);
        let uploads = std::slice::from_ref(&upload);
        let mut created = once.create(&body, uploads).await?;
        // Replying needs Read Message History; without it, post plainly.
        if let Err(e @ RestError::Api { .. }) = &created
            && e.code() == Some(50013)
            && body.get("message_reference").is_some()
        {
            tracing::warn!(error = %e, "cannot reply here; posting without the reply");
            body.as_object_mut().map(|b| b.remove("message_reference"));
            created = once.create(&body, uploads).await?;
        }
        let mut replaced_ack = false;
        let posted = match created {
            Ok(message) => message,
            // The bot cannot post here (not invited with the bot scope, or
            // missing Send Messages / Attach Files): answer through the
            // interaction while its token lives, saying what is missing.
            Err(e @ RestError::Api { .. })
                if matches!(e.code(), Some(50001 | 50013)) && live.is_some() =>
            {
                let Some(live) = &live else {
                    return Err(classify(e));
                };
                tracing::warn!(error = %e, "cannot post as the bot; answering through the interaction");
                let mut answer = json!({
                    "content": format!(
                        "{}\n-# I can't post in this channel as a bot: ask a moderator to give Word Up! Send Messages, Attach Files and Read Message History here.",
                        body["content"].as_str().unwrap_or_default()
                    ),
                    "components": body["components"],
                    "allowed_mentions": body["allowed_mentions"],
                });
                if answer["components"].is_null() {
                    answer.as_object_mut().map(|b| b.remove("components"));
                }
                let webhook = format!("/webhooks/{}/{}", live.application_id, live.token);
                // A button press's ack is ephemeral: the result goes in a
                // public follow-up (which Discord cannot be asked about, so
                // a lost answer may repeat it). A command's ack is public:
                // the result replaces it, an edit a retry cannot double.
                let (method, path) = if live.reply_to.is_some() {
                    (reqwest::Method::POST, webhook)
                } else {
                    replaced_ack = true;
                    (
                        reqwest::Method::PATCH,
                        format!("{webhook}/messages/@original"),
                    )
                };
                self.rest
                    .call(method, &path, Some(&answer), uploads)
                    .await
                    .map_err(classify)?
            }
            Err(e) => return Err(classify(e)),
        };
        let id = posted
            .get("id")
            .and_then(Value::as_str)
            .ok_or_else(|| {
                DeliveryError::Transient("Discord returned a message without an id".into())
            })?
            .to_owned();
        // The result is posted: the ack says so, and its preview goes.
        if let Some(live) = live.as_ref().filter(|_| !replaced_ack) {
            edit_original_with(
                &self.rest,
                live,
                &format!("**{}** — done ✅", escape(&shorten(&post.prompt, 300))),
                Picture::Clear,
            )
            .await;
        }
        Ok(id)
    }

    async fn original_message_id(&self, reply: &DiscordReply) -> Option<String> {
        let path = format!(
            "/webhooks/{}/{}/messages/@original",
            reply.application_id, reply.token
        );
        let message = self.rest.get(&path).await.ok()?;
        // An ephemeral ack cannot be replied to.
        let ephemeral = message.get("flags").and_then(Value::as_u64).unwrap_or(0) & 64 != 0;
        (!ephemeral)
            .then(|| message.get("id")?.as_str().map(str::to_owned))
            .flatten()
    }
}

fn upload(attachment: &Attachment) -> Upload {
    Upload {
        filename: attachment.filename.clone(),
        mime: attachment.mime,
        description: attachment.alt.clone(),
        bytes: attachment.bytes.clone(),
    }
}

/// "**a red fox** — denoising 2/4"
pub fn progress_text(job: &Job, progress: &Progress) -> String {
    let what = match &job.request {
        Request::Imagine(r) => format!("**{}**", escape(&shorten(&r.prompt, 300))),
        other => describe(other),
    };
    answer::progress_text(&what, progress)
}

/// Rows of buttons as Discord's components; empty rows are left out.
fn components(rows: Vec<Vec<ButtonId>>) -> Vec<CreateActionRow> {
    rows.into_iter()
        .filter(|row| !row.is_empty())
        .map(|row| {
            CreateActionRow::Buttons(
                row.into_iter()
                    .map(|b| {
                        CreateButton::new(b.to_string())
                            .label(b.label())
                            .style(ButtonStyle::Secondary)
                    })
                    .collect(),
            )
        })
        .collect()
}

/// The message for a result: text, buttons, a nonce for deduplication.
pub fn message_body(job: &Job, post: &ResultPost) -> Value {
    let rows: Vec<Vec<ButtonId>> = match post.kind {
        ResultKind::Grid => ButtonId::grid_rows(job.id),
        ResultKind::Upscaled => vec![ButtonId::upscale_row(job.id)],
    };
    let components = components(rows);
    let mut content = format!(
        "**{}** — {} — <@{}>",
        escape(&shorten(&post.prompt, 300)),
        post.what,
        job.origin.user_id
    );
    // Discord's subtext line: small and grey under the result.
    if let Some(reading) = &post.reading {
        content.push_str(&format!("\n-# {}", escape(&shorten(reading, 600))));
    }
    json!({
        "content": content,
        "allowed_mentions": { "users": [job.origin.user_id] },
        "components": components,
        // ≤ 25 characters; Discord returns the first message with this nonce.
        "nonce": format!("wu{}", job.id),
        "enforce_nonce": true,
    })
}

/// The interaction the job may answer through: its token alive, and the
/// ack its own (not a group's summary).
fn live_reply(job: &Job) -> Option<DiscordReply> {
    DiscordReply::of(&job.reply).filter(|r| !r.shared_ack && r.token_alive(chrono::Utc::now()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn client_errors_are_permanent_and_others_transient() {
        let api = |status: u16| RestError::Api {
            status: reqwest::StatusCode::from_u16(status).unwrap(),
            code: 0,
            message: String::new(),
        };
        assert!(matches!(classify(api(403)), DeliveryError::Permanent(_)));
        assert!(matches!(classify(api(502)), DeliveryError::Transient(_)));
        assert!(matches!(
            classify(RestError::GaveUp(crate::retry::GaveUp::RateLimited(
                std::time::Duration::from_secs(90)
            ))),
            DeliveryError::Transient(_)
        ));
    }
}
