//! Slash commands and button presses → commands → responses, for the HTTP
//! endpoints and Socket Mode alike.

use serde_json::{Value, json};
use slack_morphism::prelude::{
    SlackCommandEvent, SlackInteractionBlockActionsEvent, SlackInteractionEvent,
    SlackInteractionMessageActionEvent,
};
use tracing::Instrument;
use wordup_queue::{DeliveryError, Origin};

use super::api::SlackApi;
use super::blocks::escape;
use super::delivery::{FILE_POST, PARENT_POST};
use super::once;
use super::reply::SlackReply;
use crate::ack::{ACK_BUDGET, Handled};
use crate::buttons::{Action, ButtonId};
use crate::commands::answer::{OUR_FAULT, error_text, outcome_text};
use crate::commands::describe::Fetcher;
use crate::commands::{
    Accepted, CommandError, Commands, Invocation, UserError, analyze, help, imagine, position_text,
    reply_text,
};

pub const PLATFORM: &str = "slack";
/// The Describe message shortcut's callback id (in the app's manifest).
pub const DESCRIBE: &str = "describe";
/// Where a job's result goes, for the text of a repeated command.
const WHERE_POSTED: &str = "in the thread";

#[derive(Clone)]
pub struct SlackApp {
    pub commands: Commands,
    pub api: SlackApi,
    /// Fetches files (with the bot token) for the Describe shortcut.
    pub images: Fetcher,
    /// Users who may change channel settings; empty: anyone in the channel.
    pub settings_admins: Vec<String>,
}

pub fn ephemeral(text: &str) -> Value {
    json!({ "response_type": "ephemeral", "text": text })
}

impl SlackApp {
    pub async fn command(&self, event: SlackCommandEvent) -> Handled {
        let span =
            tracing::info_span!("command", name = %event.command.0, trigger = %event.trigger_id.0);
        self.command_in_span(event).instrument(span).await
    }

    async fn command_in_span(&self, event: SlackCommandEvent) -> Handled {
        let text = event.text.clone().unwrap_or_default();
        match event.command.0.as_str() {
            "/imagine" if text.trim().eq_ignore_ascii_case("help") => Handled::now(ephemeral(
                &help::text("/imagine-settings", "/imagine-queue", "/imagine-cancel"),
            )),
            "/imagine" => self.imagine(event, &text).await,
            "/imagine-analyze" => self.analyze(event, &text).await,
            "/imagine-queue" => Handled::now(ephemeral(&reply_text(
                self.commands.queue_status(PLATFORM, &event.user_id.0).await,
            ))),
            "/imagine-cancel" => {
                let text = match crate::commands::cancel::parse_target(&text) {
                    Ok(target) => {
                        self.commands
                            .cancel(PLATFORM, &event.user_id.0, target)
                            .await
                    }
                    Err(e) => Err(e.into()),
                };
                Handled::now(ephemeral(&reply_text(text)))
            }
            "/imagine-settings" => {
                let change = match super::settings_text::parse(&text) {
                    Ok(change) => change,
                    Err(e) => return Handled::now(ephemeral(&format!("⚠️ {e}"))),
                };
                if !change.is_empty()
                    && !self.settings_admins.is_empty()
                    && !self.settings_admins.contains(&event.user_id.0)
                {
                    return Handled::now(ephemeral(&format!("⚠️ {}", UserError::NotAllowed)));
                }
                // Slack marks no channel NSFW, so NSFW output stays off here.
                Handled::now(ephemeral(&reply_text(
                    self.commands
                        .settings(PLATFORM, &event.channel_id.0, false, &change)
                        .await,
                )))
            }
            other => Handled::now(ephemeral(&format!("unknown command {other}"))),
        }
    }

    async fn imagine(&self, event: SlackCommandEvent, text: &str) -> Handled {
        let args = match imagine::check(text, &self.commands.config) {
            Ok(args) => args,
            Err(e) => return Handled::now(ephemeral(&format!("⚠️ {e}"))),
        };
        let origin = Origin {
            platform: PLATFORM.to_owned(),
            workspace_id: event.team_id.0.clone(),
            channel_id: event.channel_id.0.clone(),
            thread_id: None,
            user_id: event.user_id.0.clone(),
        };
        let key = format!("{PLATFORM}:{}", event.trigger_id.0);
        let headline = format!("<@{}>: *{}*", origin.user_id, escape(&args.prompt));
        let app = self.clone();
        let task_headline = headline.clone();
        let task = self.commands.pending.spawn(async move {
            // Slash commands cannot be used in threads: the results go in
            // the thread of a parent message that says what was asked. The
            // job is enqueued first, so that a Slack that cannot take the
            // parent message loses no command: the engine posts it then.
            let invocation = Invocation {
                origin: origin.clone(),
                idempotency_key: key,
                channel_nsfw: false,
                reply: SlackReply {
                    channel: origin.channel_id.clone(),
                    parent_ts: None,
                    edit_parent: true,
                }
                .to_value(),
            };
            let accepted = app.commands.imagine(&invocation, &args).await?;
            if accepted.created {
                let text = format!("{task_headline} — {}", position_text(accepted.position));
                app.post_parent(&origin.channel_id, &accepted, &text)
                    .await?;
            }
            Ok(accepted)
        });
        self.acked(
            task,
            event.response_url.0.to_string(),
            "Your image".to_owned(),
        )
        .await
    }

    /// `/imagine-analyze`: enqueued like `/imagine`, answered in the channel
    /// by the engine; no parent message, nothing drawn.
    async fn analyze(&self, event: SlackCommandEvent, text: &str) -> Handled {
        let args = match analyze::check(text, &self.commands.config) {
            Ok(args) => args,
            Err(e) => return Handled::now(ephemeral(&format!("⚠️ {e}"))),
        };
        let origin = Origin {
            platform: PLATFORM.to_owned(),
            workspace_id: event.team_id.0.clone(),
            channel_id: event.channel_id.0.clone(),
            thread_id: None,
            user_id: event.user_id.0.clone(),
        };
        let invocation = Invocation {
            origin: origin.clone(),
            idempotency_key: format!("{PLATFORM}:{}", event.trigger_id.0),
            channel_nsfw: false,
            reply: SlackReply {
                channel: origin.channel_id.clone(),
                parent_ts: None,
                edit_parent: false,
            }
            .to_value(),
        };
        let app = self.clone();
        let task = self
            .commands
            .pending
            .spawn(async move { app.commands.analyze(&invocation, &args).await });
        self.acked(
            task,
            event.response_url.0.to_string(),
            "Your analysis".to_owned(),
        )
        .await
    }

    /// Posts a new job's parent message and records it as the job's thread,
    /// unless the engine got there first (then ours is deleted). Where Slack
    /// refuses for good (the bot is not in the channel), the job is
    /// cancelled and the requester told at once; where it may take the
    /// message later, the engine posts it.
    async fn post_parent(
        &self,
        channel: &str,
        accepted: &Accepted,
        text: &str,
    ) -> Result<(), CommandError> {
        // One try within the ack's time; the engine's later tries look for
        // this one (it may have landed though its answer was lost).
        let ours = match once::post_message(
            1,
            &self.api,
            &self.commands.queue,
            accepted.job,
            PARENT_POST,
            json!({ "channel": channel, "text": text }),
        )
        .await
        {
            Ok(ts) => ts,
            Err(e @ DeliveryError::Transient(_)) => {
                tracing::warn!(error = %e, "no parent message yet; the engine posts it");
                return Ok(());
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot post the parent message");
                let queue = &self.commands.queue;
                queue.cancel(accepted.job).await?;
                // Told here and now: no later notice for this cancellation.
                queue.claim_notice(accepted.job).await?;
                return Err(UserError::CannotPostHere.into());
            }
        };
        match self.commands.queue.set_thread(accepted.job, &ours).await {
            Ok(Some(thread)) if thread != ours => {
                if let Err(e) = self.api.delete_message(channel, &ours).await {
                    tracing::warn!(error = %e, "a second parent message was not deleted");
                }
            }
            Ok(_) => {}
            Err(e) => tracing::warn!(error = %e, "the parent message was not recorded"),
        }
        Ok(())
    }

    pub async fn interaction(&self, event: SlackInteractionEvent) -> Handled {
        let event = match event {
            SlackInteractionEvent::BlockActions(event) => event,
            SlackInteractionEvent::MessageAction(event) if event.callback_id.0 == DESCRIBE => {
                return self.describe(event);
            }
            _ => return Handled::now(Value::Null),
        };
        let Some(action) = event.actions.as_ref().and_then(|a| a.first()) else {
            return Handled::now(Value::Null);
        };
        let Some(button) = ButtonId::parse(&action.action_id.0) else {
            return Handled::now(Value::Null);
        };
        let span = tracing::info_span!("button", id = %button);
        let (Some(channel), Some(user), Some(message)) =
            (&event.channel, &event.user, &event.message)
        else {
            return Handled::now(Value::Null);
        };
        if button.action == Action::Delete {
            if event.response_url.is_none() {
                return Handled::now(Value::Null);
            }
            let app = self.clone();
            let (channel, user, ts) = (
                channel.id.0.clone(),
                user.id.0.clone(),
                message.origin.ts.0.clone(),
            );
            let task = self.commands.pending.spawn(
                async move { app.delete_result(button, &channel, &user, &ts).await }
                    .instrument(span.clone()),
            );
            return self.answer_privately(&event, span, async move {
                task.await.unwrap_or_else(|_| OUR_FAULT.to_owned())
            });
        }
        // Results of a press go in the same thread as the grid.
        let root = message
            .origin
            .thread_ts
            .clone()
            .unwrap_or_else(|| message.origin.ts.clone())
            .0;
        let invocation = Invocation {
            origin: Origin {
                platform: PLATFORM.to_owned(),
                workspace_id: event.team.id.0.clone(),
                channel_id: channel.id.0.clone(),
                thread_id: Some(root.clone()),
                user_id: user.id.0.clone(),
            },
            idempotency_key: button.press_key(PLATFORM, &event.trigger_id.0),
            channel_nsfw: false,
            reply: SlackReply {
                channel: channel.id.0.clone(),
                parent_ts: Some(root),
                edit_parent: false,
            }
            .to_value(),
        };
        let commands = self.commands.clone();
        let task = self.commands.pending.spawn(
            async move { commands.press(&invocation, &button).await }.instrument(span.clone()),
        );
        let headline = button.headline();
        self.answer_privately(&event, span, async move {
            outcome_text(&headline, task.await, WHERE_POSTED)
        })
    }

    /// The Describe message shortcut: acked with an empty 200; the
    /// message's image is fetched with the bot token and the job enqueued,
    /// and the requester told privately through the response URL; the
    /// engine answers in the channel.
    fn describe(&self, event: SlackInteractionMessageActionEvent) -> Handled {
        let span = tracing::info_span!("describe", trigger = %event.trigger_id.0);
        let response_url = event.response_url.0.to_string();
        let file = event.message.as_ref().and_then(|m| {
            let files = m.content.files.as_ref()?;
            files
                .iter()
                .find(|f| {
                    f.mimetype
                        .as_ref()
                        .is_some_and(|t| t.0.starts_with("image/"))
                })
                .or(files.first())
                .cloned()
        });
        let invocation = event.channel.as_ref().map(|channel| Invocation {
            origin: Origin {
                platform: PLATFORM.to_owned(),
                workspace_id: event.team.id.0.clone(),
                channel_id: channel.id.0.clone(),
                thread_id: None,
                user_id: event.user.id.0.clone(),
            },
            idempotency_key: format!("{PLATFORM}:{}", event.trigger_id.0),
            channel_nsfw: false,
            reply: SlackReply {
                channel: channel.id.0.clone(),
                parent_ts: None,
                edit_parent: false,
            }
            .to_value(),
        });
        let (app, api) = (self.clone(), self.api.clone());
        let task = async move {
            let text = match (file.and_then(|f| f.url_private), invocation) {
                (None, _) => "⚠️ that message has no image to describe".to_owned(),
                (_, None) => "⚠️ Describe works on messages in channels".to_owned(),
                (Some(url), Some(invocation)) => {
                    let accepted = async {
                        if let Some(replayed) =
                            app.commands.replayed(&invocation.idempotency_key).await?
                        {
                            return Ok(replayed);
                        }
                        let image = app.images.image(url.as_str()).await?;
                        app.commands.describe(&invocation, &image).await
                    }
                    .await;
                    outcome_text("Describing the image", Ok(accepted), "in the channel")
                }
            };
            if let Err(e) = api.respond(&response_url, &ephemeral(&text)).await {
                tracing::warn!(error = %e, "could not answer through the response URL");
            }
        };
        Handled {
            response: Value::Null,
            after: Some(Box::pin(task.instrument(span))),
        }
    }

    /// Buttons are acked with an empty 200; what happened (`text`, once
    /// known) goes to the presser alone through the response URL.
    fn answer_privately(
        &self,
        event: &SlackInteractionBlockActionsEvent,
        span: tracing::Span,
        text: impl std::future::Future<Output = String> + Send + 'static,
    ) -> Handled {
        let Some(response_url) = event.response_url.as_ref().map(|u| u.0.to_string()) else {
            return Handled::now(Value::Null);
        };
        let api = self.api.clone();
        Handled {
            response: Value::Null,
            after: Some(Box::pin(
                async move {
                    let body = json!({ "response_type": "ephemeral", "replace_original": false, "text": text.await });
                    if let Err(e) = api.respond(&response_url, &body).await {
                        tracing::warn!(error = %e, "could not answer a button press");
                    }
                }
                .instrument(span),
            )),
        }
    }

    /// ❌: deletes the buttons message `ts` and the file shared with it,
    /// for the job's requester or a settings admin. Returns what to tell
    /// the presser.
    async fn delete_result(&self, button: ButtonId, channel: &str, user: &str, ts: &str) -> String {
        let manages = self.settings_admins.iter().any(|admin| admin == user);
        if let Err(e) = self.commands.may_delete(button.job, user, manages).await {
            e.log();
            return error_text(&e);
        }
        if let Err(e) = self.api.delete_message(channel, ts).await {
            tracing::warn!(error = %e, "a result was not deleted");
            return "⚠️ I could not delete that message; please try again".to_owned();
        }
        // The image is a message of its own in the thread: the file's.
        match self.commands.queue.post(button.job, FILE_POST).await {
            Ok(Some(file)) => {
                if let Err(e) = self.api.delete_file(&file.message_id).await {
                    tracing::warn!(error = %e, "a result's file was not deleted");
                    return "⚠️ I deleted the buttons but not the image; please try again"
                        .to_owned();
                }
            }
            Ok(None) => {}
            Err(e) => {
                tracing::warn!(error = %e, "a result's file is unknown");
            }
        }
        format!("Deleted the result of job {}.", button.job)
    }

    /// Waits up to [`ACK_BUDGET`] for the enqueue: answers with the outcome,
    /// else with "working on it" and the outcome through the response URL.
    async fn acked(
        &self,
        mut task: tokio::task::JoinHandle<Result<Accepted, CommandError>>,
        response_url: String,
        headline: String,
    ) -> Handled {
        match tokio::time::timeout(ACK_BUDGET, &mut task).await {
            Ok(result) => Handled::now(ephemeral(&outcome_text(&headline, result, WHERE_POSTED))),
            Err(_) => {
                let api = self.api.clone();
                Handled {
                    response: ephemeral("⏳ working on it…"),
                    after: Some(Box::pin(async move {
                        let text = outcome_text(&headline, task.await, WHERE_POSTED);
                        if let Err(e) = api.respond(&response_url, &ephemeral(&text)).await {
                            tracing::warn!(error = %e, "could not answer through the response URL");
                        }
                    })),
                }
            }
        }
    }
}
