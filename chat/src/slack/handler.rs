//! Slash commands and button presses → commands → responses, for the HTTP
//! endpoints and Socket Mode alike.

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use slack_morphism::prelude::{
    SlackCommandEvent, SlackInteractionBlockActionsEvent, SlackInteractionEvent,
    SlackInteractionMessageActionEvent, SlackInteractionViewSubmissionEvent, SlackView,
};
use tracing::Instrument;
use wordup_queue::{DeliveryError, JobId, Origin};

use super::api::SlackApi;
use super::blocks::escape;
use super::blocks::relabel;
use super::delivery::{FILE_POST, PARENT_POST};
use super::once;
use super::reply::SlackReply;
use crate::ack::{ACK_BUDGET, Handled};
use crate::buttons::{Action, ButtonId, vote_label};
use crate::commands::answer::{OUR_FAULT, error_text, group_text, outcome_text};
use crate::commands::describe::Fetcher;
use crate::commands::remix::{self, RemixForm};
use crate::commands::{
    Accepted, CommandError, Commands, Invocation, UserError, analyze, help, imagine, position_text,
    reply_text,
};
use crate::grammar::ImagineArgs;
use crate::text::shorten;

pub const PLATFORM: &str = "slack";
/// The Describe message shortcut's callback id (in the app's manifest).
pub const DESCRIBE: &str = "describe";
/// The Remix modal's callback id.
pub const REMIX: &str = "remix";
/// The "Imagine from this image" message shortcut's callback id (in the
/// app's manifest), and its modal's.
pub const IMAGINE: &str = "imagine";
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

/// Where a Remix form's result goes, kept in the view's private metadata
/// (a view submission says nothing of the message its form came from).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RemixPlace {
    pub job: JobId,
    pub channel: String,
    pub thread: String,
}

/// Where an Imagine form's image is, kept in the view's private metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImaginePlace {
    pub channel: String,
    /// The file's `url_private`, fetched with the bot token on submission.
    pub file: String,
}

/// The "Imagine from this image" modal view: the prompt, with the
/// /imagine grammar (`--iw` included).
pub fn imagine_view(place: &ImaginePlace) -> Value {
    json!({
        "type": "modal",
        "callback_id": IMAGINE,
        "private_metadata": serde_json::to_string(place).unwrap_or_default(),
        "title": { "type": "plain_text", "text": "Imagine from image" },
        "submit": { "type": "plain_text", "text": "Imagine" },
        "close": { "type": "plain_text", "text": "Cancel" },
        "blocks": [{
            "type": "input",
            "block_id": remix::PROMPT_FIELD,
            "label": { "type": "plain_text", "text": "Prompt; --iw 0–2 sets how much of the image stays (default 1)" },
            "element": {
                "type": "plain_text_input",
                "action_id": remix::PROMPT_FIELD,
                "multiline": true,
                "max_length": remix::PROMPT_FIELD_CHARS.min(3000),
            },
        }],
    })
}

/// Tells `user` something privately in `channel` (and thread).
async fn tell(api: &SlackApi, channel: &str, thread: Option<&str>, user: &str, text: &str) {
    let mut message = json!({ "channel": channel, "user": user, "text": text });
    if let Some(thread) = thread {
        message["thread_ts"] = json!(thread);
    }
    if let Err(e) = api.call("chat.postEphemeral", &message).await {
        tracing::warn!(error = %e, "the requester was not told");
    }
}

/// The Remix modal view. Slack's limits: a title of 24 characters, an
/// input's initial value and max length of 3000.
pub fn remix_view(form: &RemixForm, place: &RemixPlace) -> Value {
    let chars = remix::PROMPT_FIELD_CHARS.min(3000);
    json!({
        "type": "modal",
        "callback_id": REMIX,
        "private_metadata": serde_json::to_string(place).unwrap_or_default(),
        "title": { "type": "plain_text", "text": "Remix" },
        "submit": { "type": "plain_text", "text": "Remix" },
        "close": { "type": "plain_text", "text": "Cancel" },
        "blocks": [
            {
                "type": "input",
                "block_id": remix::PROMPT_FIELD,
                "label": { "type": "plain_text", "text": format!("Prompt of job {}, with any parameters", form.job) },
                "element": {
                    "type": "plain_text_input",
                    "action_id": remix::PROMPT_FIELD,
                    "multiline": true,
                    "initial_value": shorten(&form.prompt, chars),
                    "max_length": chars,
                },
            },
            {
                "type": "input",
                "block_id": remix::IMAGE_FIELD,
                "label": { "type": "plain_text", "text": "Image to start from (1–4)" },
                "element": {
                    "type": "plain_text_input",
                    "action_id": remix::IMAGE_FIELD,
                    "initial_value": "1",
                    "max_length": 1,
                },
            },
        ],
    })
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
            "/imagine-board" => Handled::now(ephemeral(&self.commands.board_answer(
                PLATFORM,
                &event.channel_id.0,
                &event.user_id.0,
            ))),
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
        let mut all = match imagine::check_all(text, &self.commands.config) {
            Ok(all) => all,
            Err(e) => return Handled::now(ephemeral(&format!("⚠️ {e}"))),
        };
        if all.len() > 1 {
            return self.imagine_group(event, all, text).await;
        }
        let args = all.remove(0);
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
            let accepted = app.commands.imagine(&invocation, &args, None).await?;
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

    /// A permutation prompt: one job per prompt, each with its own parent
    /// message (and thread); the requester gets the list privately.
    async fn imagine_group(
        &self,
        event: SlackCommandEvent,
        all: Vec<ImagineArgs>,
        text: &str,
    ) -> Handled {
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
                edit_parent: true,
            }
            .to_value(),
        };
        let headline = format!("*{}*", escape(text));
        let app = self.clone();
        let task = self.commands.pending.spawn(async move {
            app.queue_with_parents(&invocation, &all, None, &headline)
                .await
        });
        self.acked_text(task, event.response_url.0.to_string())
            .await
    }

    /// The jobs of one or more prompts (with the prompts' image, if any),
    /// each with its parent message; returns the list for the requester.
    async fn queue_with_parents(
        &self,
        invocation: &Invocation,
        all: &[ImagineArgs],
        image: Option<&image::RgbImage>,
        headline: &str,
    ) -> Result<String, CommandError> {
        let origin = &invocation.origin;
        let group = self.commands.imagine_group(invocation, all, image).await?;
        for (prompt, accepted) in group.queued.iter().filter(|(_, a)| a.created) {
            let parent = format!(
                "<@{}>: *{}* — {}",
                origin.user_id,
                escape(prompt),
                position_text(accepted.position)
            );
            // A refusal cancels this job (the bot cannot post here), and
            // the others would fail alike: said once, for all.
            self.post_parent(&origin.channel_id, accepted, &parent)
                .await?;
        }
        Ok(group_text(headline, &group, WHERE_POSTED, escape))
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
            SlackInteractionEvent::MessageAction(event) if event.callback_id.0 == IMAGINE => {
                return self.imagine_form(event).await;
            }
            SlackInteractionEvent::ViewSubmission(event) => return self.submitted(event),
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
        if button.action == Action::Vote {
            let (app, channel, user, ts) = (
                self.clone(),
                channel.id.0.clone(),
                user.id.0.clone(),
                message.origin.ts.0.clone(),
            );
            let mut blocks = serde_json::to_value(&message.content.blocks).unwrap_or(Value::Null);
            let text = message.content.text.clone().unwrap_or_default();
            let task = async move {
                match app.commands.vote(button.job, PLATFORM, &user).await {
                    Ok(vote) => {
                        relabel(&mut blocks, &button.to_string(), &vote_label(vote.total));
                        if let Err(e) = app
                            .api
                            .update_message(&channel, &ts, &text, Some(&blocks))
                            .await
                        {
                            tracing::warn!(error = %e, "the vote count was not shown");
                        }
                        None
                    }
                    Err(e) => Some(error_text(&e)),
                }
            };
            let task = self.commands.pending.spawn(task.instrument(span.clone()));
            // Told privately only when the vote was refused.
            let Some(response_url) = event.response_url.as_ref().map(|u| u.0.to_string()) else {
                return Handled::now(Value::Null);
            };
            let api = self.api.clone();
            return Handled {
                response: Value::Null,
                after: Some(Box::pin(async move {
                    if let Ok(Some(text)) = task.await {
                        let body = json!({ "response_type": "ephemeral", "replace_original": false, "text": text });
                        if let Err(e) = api.respond(&response_url, &body).await {
                            tracing::warn!(error = %e, "could not answer a vote");
                        }
                    }
                })),
            };
        }
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
        if button.action == Action::Remix {
            let place = RemixPlace {
                job: button.job,
                channel: channel.id.0.clone(),
                thread: root,
            };
            return self.remix_form(&event, place, span).await;
        }
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

    /// 🎛️ Remix pressed: a modal view with the grid's /imagine to edit,
    /// opened with the press's trigger (valid for 3 s, so at once); a
    /// refusal goes to the presser through the response URL.
    async fn remix_form(
        &self,
        event: &SlackInteractionBlockActionsEvent,
        place: RemixPlace,
        span: tracing::Span,
    ) -> Handled {
        let Some(user) = &event.user else {
            return Handled::now(Value::Null);
        };
        let invocation = Invocation {
            origin: Origin {
                platform: PLATFORM.to_owned(),
                workspace_id: event.team.id.0.clone(),
                channel_id: place.channel.clone(),
                thread_id: Some(place.thread.clone()),
                user_id: user.id.0.clone(),
            },
            idempotency_key: format!("{PLATFORM}:{}", event.trigger_id.0),
            channel_nsfw: false,
            reply: Value::Null,
        };
        let opened = async {
            let form = self.commands.remix_form(&invocation, place.job).await?;
            let view = remix_view(&form, &place);
            self.api
                .call(
                    "views.open",
                    &json!({ "trigger_id": event.trigger_id.0, "view": view }),
                )
                .await
                .map_err(|e| {
                    tracing::warn!(error = %e, "the Remix form was not opened");
                    UserError::FormNotOpened
                })?;
            Ok::<_, CommandError>(())
        };
        match opened.instrument(span.clone()).await {
            Ok(()) => Handled::now(Value::Null),
            Err(e) => {
                let text = error_text(&e);
                self.answer_privately(event, span, async move { text })
            }
        }
    }

    /// A submitted modal (Remix, or Imagine from an image): the modal
    /// closes (an empty 200), the jobs are enqueued, and the outcome goes to
    /// the requester as an ephemeral message in the channel (a view
    /// submission has no response URL).
    fn submitted(&self, event: SlackInteractionViewSubmissionEvent) -> Handled {
        let SlackView::Modal(view) = &event.view.view else {
            return Handled::now(Value::Null);
        };
        let metadata = view.private_metadata.as_deref().unwrap_or_default();
        let callback = view.callback_id.as_ref().map(|c| c.0.as_str());
        let field = |name: &str| {
            event
                .view
                .state_params
                .state
                .as_ref()
                .and_then(|state| state.values.get(&name.into()))
                .and_then(|block| block.get(&name.into()))
                .and_then(|value| value.value.clone())
                .unwrap_or_default()
        };
        let prompt = field(remix::PROMPT_FIELD);
        match callback {
            Some(REMIX) => match serde_json::from_str::<RemixPlace>(metadata) {
                Ok(place) => self.remix(&event, place, prompt, field(remix::IMAGE_FIELD)),
                Err(_) => {
                    tracing::warn!("a Remix form without its grid");
                    Handled::now(Value::Null)
                }
            },
            Some(IMAGINE) => match serde_json::from_str::<ImaginePlace>(metadata) {
                Ok(place) => self.imagine_from_image(&event, place, prompt),
                Err(_) => {
                    tracing::warn!("an Imagine form without its image");
                    Handled::now(Value::Null)
                }
            },
            _ => Handled::now(Value::Null),
        }
    }

    /// A submitted Remix form: a strong variation of the chosen image of
    /// the grid, with the edited prompt, in the grid's thread.
    fn remix(
        &self,
        event: &SlackInteractionViewSubmissionEvent,
        place: RemixPlace,
        prompt: String,
        image: String,
    ) -> Handled {
        let user = event.user.id.0.clone();
        let view_id = event.view.state_params.id.0.clone();
        let invocation = Invocation {
            origin: Origin {
                platform: PLATFORM.to_owned(),
                workspace_id: event.team.id.0.clone(),
                channel_id: place.channel.clone(),
                thread_id: Some(place.thread.clone()),
                user_id: user.clone(),
            },
            // One job per submitted view, however often it is delivered.
            idempotency_key: format!("{PLATFORM}:view:{view_id}"),
            channel_nsfw: false,
            reply: SlackReply {
                channel: place.channel.clone(),
                parent_ts: Some(place.thread.clone()),
                edit_parent: false,
            }
            .to_value(),
        };
        let span = tracing::info_span!("form", job = %place.job);
        let (commands, api) = (self.commands.clone(), self.api.clone());
        let task = async move {
            let accepted = commands
                .remix(&invocation, place.job, &image, &prompt)
                .await;
            let headline = format!("Remixing job {}", place.job);
            let text = outcome_text(&headline, Ok(accepted), WHERE_POSTED);
            tell(&api, &place.channel, Some(&place.thread), &user, &text).await;
        };
        Handled {
            response: Value::Null,
            after: Some(Box::pin(task.instrument(span))),
        }
    }

    /// "Imagine from this image" on a message: a modal asks for the prompt
    /// (opened at once: the trigger lives 3 s); the file is fetched when
    /// the form comes back.
    async fn imagine_form(&self, event: SlackInteractionMessageActionEvent) -> Handled {
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
                .and_then(|f| f.url_private.clone())
        });
        let response_url = event.response_url.0.to_string();
        let refuse = |text: &'static str| {
            let api = self.api.clone();
            Handled {
                response: Value::Null,
                after: Some(Box::pin(async move {
                    if let Err(e) = api.respond(&response_url, &ephemeral(text)).await {
                        tracing::warn!(error = %e, "could not answer through the response URL");
                    }
                })),
            }
        };
        let (Some(file), Some(channel)) = (file, event.channel.as_ref()) else {
            return refuse("⚠️ that message has no image to start from");
        };
        let place = ImaginePlace {
            channel: channel.id.0.clone(),
            file: file.to_string(),
        };
        let opened = self
            .api
            .call(
                "views.open",
                &json!({ "trigger_id": event.trigger_id.0, "view": imagine_view(&place) }),
            )
            .await;
        match opened {
            Ok(_) => Handled::now(Value::Null),
            Err(e) => {
                tracing::warn!(error = %e, "the Imagine form was not opened");
                refuse("⚠️ the form could not be opened; please use the shortcut again")
            }
        }
    }

    /// A submitted Imagine form: the image fetched with the bot token, then
    /// /imagine from it, each job with its parent message in the channel.
    fn imagine_from_image(
        &self,
        event: &SlackInteractionViewSubmissionEvent,
        place: ImaginePlace,
        prompt: String,
    ) -> Handled {
        let user = event.user.id.0.clone();
        let view_id = event.view.state_params.id.0.clone();
        let invocation = Invocation {
            origin: Origin {
                platform: PLATFORM.to_owned(),
                workspace_id: event.team.id.0.clone(),
                channel_id: place.channel.clone(),
                thread_id: None,
                user_id: user.clone(),
            },
            idempotency_key: format!("{PLATFORM}:view:{view_id}"),
            channel_nsfw: false,
            reply: SlackReply {
                channel: place.channel.clone(),
                parent_ts: None,
                edit_parent: true,
            }
            .to_value(),
        };
        let span = tracing::info_span!("form", view = %view_id);
        let (app, api) = (self.clone(), self.api.clone());
        let task = async move {
            let queued = async {
                let all = imagine::check_all(&prompt, &app.commands.config)?;
                let image = app.images.image(&place.file).await?;
                let headline = format!("*{}* from your image", escape(&prompt));
                app.queue_with_parents(&invocation, &all, Some(&image), &headline)
                    .await
            }
            .await;
            let text = queued.unwrap_or_else(|e| error_text(&e));
            tell(&api, &place.channel, None, &user, &text).await;
        };
        Handled {
            response: Value::Null,
            after: Some(Box::pin(task.instrument(span))),
        }
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
    /// Like [`Self::acked`], for a task that composes its own text.
    async fn acked_text(
        &self,
        mut task: tokio::task::JoinHandle<Result<String, CommandError>>,
        response_url: String,
    ) -> Handled {
        let text =
            |result: Result<Result<String, CommandError>, tokio::task::JoinError>| match result {
                Ok(Ok(text)) => text,
                Ok(Err(e)) => error_text(&e),
                Err(e) => {
                    tracing::error!(error = %e, "command task failed");
                    OUR_FAULT.to_owned()
                }
            };
        match tokio::time::timeout(ACK_BUDGET, &mut task).await {
            Ok(result) => Handled::now(ephemeral(&text(result))),
            Err(_) => {
                let api = self.api.clone();
                Handled {
                    response: ephemeral("⏳ working on it…"),
                    after: Some(Box::pin(async move {
                        let text = text(task.await);
                        if let Err(e) = api.respond(&response_url, &ephemeral(&text)).await {
                            tracing::warn!(error = %e, "could not answer through the response URL");
                        }
                    })),
                }
            }
        }
    }

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
