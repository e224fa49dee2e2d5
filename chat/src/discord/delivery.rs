//! Posting results to Discord with the bot token (the interaction token
//! may have expired by the time a job is done), and the ack's edits while
//! the token lives.

use serde_json::{Value, json};
use serenity::all::{ButtonStyle, CreateActionRow, CreateButton};
use wordup_queue::{Job, Progress, Request};

use super::handler::{edit_original, escape};
use super::reply::DiscordReply;
use super::rest::{DiscordRest, RestError, Upload};
use crate::buttons::ButtonId;
use crate::commands::answer;
use crate::commands::queue_status::describe;
use crate::delivery::classify;
use crate::text::shorten;
use wordup_queue::{DeliveryError, ResultKind, ResultPost};

#[derive(Debug, Clone)]
pub struct DiscordDelivery {
    pub rest: DiscordRest,
}

impl DiscordDelivery {
    pub fn new(rest: DiscordRest) -> DiscordDelivery {
        DiscordDelivery { rest }
    }

    /// The largest attachment the job's channel takes, in bytes.
    pub fn attachment_limit(&self, job: &Job) -> u64 {
        DiscordReply::of(&job.reply).map_or(super::reply::DEFAULT_ATTACHMENT_LIMIT, |r| {
            r.attachment_limit()
        })
    }

    /// Shows progress in the ack while its token lives; silent after.
    pub async fn progress(&self, job: &Job, progress: &Progress) {
        if let Some(reply) = live_reply(job) {
            edit_original(&self.rest, &reply, &progress_text(job, progress)).await;
        }
    }

    /// Tells the requester something (a blocked image, a failure): in the
    /// ack while its token lives, else as a message that mentions them.
    pub async fn notice(&self, job: &Job, text: &str) -> Result<(), DeliveryError> {
        if let Some(reply) = live_reply(job) {
            edit_original(&self.rest, &reply, &format!("⚠️ {text}")).await;
            return Ok(());
        }
        let body = json!({
            "content": format!("<@{}> ⚠️ {text}", job.origin.user_id),
            "allowed_mentions": { "users": [job.origin.user_id] },
            "nonce": format!("wn{}", job.id),
            "enforce_nonce": true,
        });
        self.rest
            .post(
                &format!("/channels/{}/messages", job.origin.channel_id),
                &body,
            )
            .await
            .map(drop)
            .map_err(classify)
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
        let upload = Upload {
            filename: post.attachment.filename.clone(),
            mime: post.attachment.mime,
            description: post.attachment.alt.clone(),
            bytes: post.attachment.bytes.clone(),
        };
        let path = format!("/channels/{}/messages", job.origin.channel_id);
        let posted = match self
            .rest
            .call(
                reqwest::Method::POST,
                &path,
                Some(&body),
                std::slice::from_ref(&upload),
            )
            .await
        {
            Ok(message) => message,
            // The bot cannot post here (not invited with the bot scope, or
            // missing Send Messages / Attach Files): answer through the
            // interaction while its token lives, and say what is missing.
            Err(e @ RestError::Api { .. })
                if matches!(e.code(), Some(50001 | 50013)) && live.is_some() =>
            {
                let Some(live) = &live else {
                    return Err(classify(e));
                };
                tracing::warn!(error = %e, "cannot post as the bot; answering through the interaction");
                body.as_object_mut().map(|b| b.remove("message_reference"));
                body["content"] = json!(format!(
                    "{}\n-# I can't post in this channel as a bot: ask a moderator to give Word Up! Send Messages, Attach Files and Read Message History here.",
                    body["content"].as_str().unwrap_or_default()
                ));
                let path = format!("/webhooks/{}/{}", live.application_id, live.token);
                self.rest
                    .call(
                        reqwest::Method::POST,
                        &path,
                        Some(&body),
                        std::slice::from_ref(&upload),
                    )
                    .await
                    .map_err(classify)?
            }
            // Replying needs Read Message History; without it, post plainly.
            Err(e @ RestError::Api { .. })
                if e.code() == Some(50013) && body.get("message_reference").is_some() =>
            {
                tracing::warn!(error = %e, "cannot reply here; posting without the reply");
                body.as_object_mut().map(|b| b.remove("message_reference"));
                self.rest
                    .call(
                        reqwest::Method::POST,
                        &path,
                        Some(&body),
                        std::slice::from_ref(&upload),
                    )
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
        if let Some(live) = &live {
            edit_original(
                &self.rest,
                live,
                &format!("**{}** — done ✅", escape(&shorten(&post.prompt, 300))),
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

/// "**a red fox** — denoising 2/4"
pub fn progress_text(job: &Job, progress: &Progress) -> String {
    let what = match &job.request {
        Request::Imagine(r) => format!("**{}**", escape(&shorten(&r.prompt, 300))),
        other => describe(other),
    };
    answer::progress_text(&what, progress)
}

/// The message for a result: text, buttons, a nonce for deduplication.
pub fn message_body(job: &Job, post: &ResultPost) -> Value {
    let rows: Vec<Vec<ButtonId>> = match post.kind {
        ResultKind::Grid => ButtonId::grid_rows(job.id),
        ResultKind::Upscaled => vec![ButtonId::upscale_row(job.id)],
    };
    let components: Vec<CreateActionRow> = rows
        .into_iter()
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
        .collect();
    json!({
        "content": format!(
            "**{}** — {} — <@{}>",
            escape(&shorten(&post.prompt, 300)),
            post.what,
            job.origin.user_id
        ),
        "allowed_mentions": { "users": [job.origin.user_id] },
        "components": components,
        // ≤ 25 characters; Discord returns the first message with this nonce.
        "nonce": format!("wu{}", job.id),
        "enforce_nonce": true,
    })
}

fn live_reply(job: &Job) -> Option<DiscordReply> {
    DiscordReply::of(&job.reply).filter(|r| r.token_alive(chrono::Utc::now()))
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
