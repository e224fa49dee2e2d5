//! Interactions → commands → responses, for the HTTP endpoint and the
//! gateway alike. A response must reach Discord within 3 s: database work
//! gets [`ACK_BUDGET`], and whatever is left runs after a deferred ack.

use std::ops::ControlFlow;
use std::time::Duration;

use serde_json::{Value, json};
use serenity::all::{
    ActionRowComponent, Attachment, CommandDataOption, CommandInteraction, ComponentInteraction,
    CreateInteractionResponse, CreateInteractionResponseMessage, Interaction, ModalInteraction,
    Permissions,
};
use tracing::Instrument;
use wordup_queue::{JobId, Origin, Queue};

use super::reply::DiscordReply;
use super::rest::{DiscordRest, Upload};
use crate::ack::{ACK_BUDGET, Handled};
use crate::buttons::{Action, ButtonId, vote_label};
use crate::commands::answer::{OUR_FAULT, accepted_text, error_text, group_text};
use crate::commands::describe::Fetcher;
use crate::commands::remix::{self, RemixForm};
use crate::commands::settings::SettingsChange;
use crate::commands::{
    Accepted, CommandError, Commands, Invocation, UserError, help, imagine, reply_text,
};
use crate::grammar::ImagineArgs;
use crate::text::shorten;

pub const PLATFORM: &str = "discord";
/// Where a job's result goes, for the text of a repeated command.
const WHERE_POSTED: &str = "in this channel";

#[derive(Clone)]
pub struct DiscordApp {
    pub commands: Commands,
    pub rest: DiscordRest,
    /// Fetches attachments for /describe.
    pub images: Fetcher,
}

impl DiscordApp {
    /// Handles a verified interaction. `channel_nsfw` is whether Discord
    /// marks the channel NSFW (read from the raw payload, which serenity's
    /// model drops).
    pub async fn handle(&self, interaction: Interaction, channel_nsfw: bool) -> Handled {
        match interaction {
            Interaction::Ping(_) => now(CreateInteractionResponse::Pong),
            Interaction::Command(command) => {
                let span = tracing::info_span!("command", name = %command.data.name, interaction = %command.id);
                self.command(command, channel_nsfw).instrument(span).await
            }
            Interaction::Component(component) => {
                let span = tracing::info_span!("button", id = %component.data.custom_id, interaction = %component.id);
                self.component(component, channel_nsfw)
                    .instrument(span)
                    .await
            }
            Interaction::Modal(modal) => {
                let span = tracing::info_span!("form", id = %modal.data.custom_id, interaction = %modal.id);
                self.remix(modal, channel_nsfw).instrument(span).await
            }
            _ => now(ephemeral("this interaction is not supported")),
        }
    }

    /// 🎛️ Remix pressed: the form, prefilled with the grid's /imagine. A
    /// modal must be the interaction's first response, so the check runs
    /// within the ack's budget.
    async fn remix_form(&self, component: &ComponentInteraction, button: ButtonId) -> Handled {
        let invocation = Invocation {
            origin: origin(component.guild_id, component.channel_id, component.user.id),
            idempotency_key: format!("{PLATFORM}:{}", component.id),
            channel_nsfw: false,
            reply: Value::Null,
        };
        let form = tokio::time::timeout(
            ACK_BUDGET,
            self.commands.remix_form(&invocation, button.job),
        )
        .await;
        match form {
            Ok(Ok(form)) => Handled::now(remix_modal(&form)),
            Ok(Err(e)) => now(ephemeral(&error_text(&e))),
            Err(_) => now(ephemeral(
                "⚠️ the form could not be opened in time; please press Remix again",
            )),
        }
    }

    /// 👍: the presser's vote counted (or taken back) within the ack's
    /// budget, and the message updated in place with the new count.
    async fn vote(&self, component: &ComponentInteraction, button: ButtonId) -> Handled {
        let user = component.user.id.to_string();
        let voted =
            tokio::time::timeout(ACK_BUDGET, self.commands.vote(button.job, PLATFORM, &user)).await;
        match voted {
            Ok(Ok(vote)) => {
                let mut rows =
                    serde_json::to_value(&component.message.components).unwrap_or(Value::Null);
                relabel(&mut rows, &button.to_string(), &vote_label(vote.total));
                // UPDATE_MESSAGE: the buttons' message, edited as the response.
                Handled::now(json!({ "type": 7, "data": { "components": rows } }))
            }
            Ok(Err(e)) => now(ephemeral(&error_text(&e))),
            Err(_) => now(ephemeral(
                "⚠️ your vote could not be counted in time; please press 👍 again",
            )),
        }
    }

    /// A submitted Remix form: a job like a button press's.
    async fn remix(&self, modal: ModalInteraction, channel_nsfw: bool) -> Handled {
        let Some(job) = remix_form_job(&modal.data.custom_id) else {
            return now(ephemeral("this form is not one of ours"));
        };
        let prompt = form_field(&modal, remix::PROMPT_FIELD);
        let image = form_field(&modal, remix::IMAGE_FIELD);
        let reply = DiscordReply {
            application_id: modal.application_id.to_string(),
            interaction_id: modal.id.to_string(),
            token: modal.token.clone(),
            attachment_size_limit: u64::from(modal.attachment_size_limit),
            reply_to: modal.message.as_ref().map(|m| m.id.to_string()),
            shared_ack: false,
        };
        let invocation = Invocation {
            origin: origin(modal.guild_id, modal.channel_id, modal.user.id),
            idempotency_key: format!("{PLATFORM}:{}", modal.id),
            channel_nsfw,
            reply: reply.to_value(false),
        };
        let headline = format!("Remixing job {job}: **{}**", escape(&shorten(&prompt, 200)));
        let commands = self.commands.clone();
        let enqueue = self
            .commands
            .pending
            .spawn(async move { commands.remix(&invocation, job, &image, &prompt).await });
        self.acked(enqueue, reply, headline, true).await
    }

    async fn command(&self, command: CommandInteraction, channel_nsfw: bool) -> Handled {
        match command.data.name.as_str() {
            "imagine" => self.imagine(command, channel_nsfw, false).await,
            "imagine-analyze" => self.imagine(command, channel_nsfw, true).await,
            // The slash command (an attachment option) and the message
            // context-menu command (the message's image).
            "describe" | "Describe" => self.describe(command, channel_nsfw).await,
            "queue" => {
                let text = self
                    .commands
                    .queue_status(PLATFORM, &command.user.id.to_string())
                    .await;
                now(ephemeral(&reply_text(text)))
            }
            "settings" => {
                let change = settings_change(&command.data.options);
                if !change.is_empty() && !may_manage(&command) {
                    return now(ephemeral(
                        &crate::commands::UserError::NotAllowed.to_string(),
                    ));
                }
                let text = self
                    .commands
                    .settings(
                        PLATFORM,
                        &command.channel_id.to_string(),
                        channel_nsfw,
                        &change,
                    )
                    .await;
                now(ephemeral(&reply_text(text)))
            }
            "cancel" => {
                let target = command
                    .data
                    .options
                    .iter()
                    .find(|o| o.name == "job")
                    .and_then(|o| o.value.as_i64())
                    .filter(|id| *id > 0)
                    .map(wordup_queue::JobId);
                let text = self
                    .commands
                    .cancel(PLATFORM, &command.user.id.to_string(), target)
                    .await;
                now(ephemeral(&reply_text(text)))
            }
            "help" => now(ephemeral(&help::text("/settings", "/queue", "/cancel"))),
            "board" => now(ephemeral(&self.commands.board_answer(
                PLATFORM,
                &command.channel_id.to_string(),
                &command.user.id.to_string(),
            ))),
            other => now(ephemeral(&format!("unknown command /{other}"))),
        }
    }

    /// `/imagine`, or with `analyze` `/imagine-analyze` (the same grammar,
    /// answered in text instead of drawn).
    async fn imagine(
        &self,
        command: CommandInteraction,
        channel_nsfw: bool,
        analyze: bool,
    ) -> Handled {
        let text = option_str(&command.data.options, "prompt").unwrap_or_default();
        let checked = if analyze {
            imagine::check(text, &self.commands.config).map(|args| vec![args])
        } else {
            imagine::check_all(text, &self.commands.config)
        };
        let mut all = match checked {
            Ok(all) => all,
            Err(e) => return now(ephemeral(&format!("⚠️ {e}"))),
        };
        // An image prompt: checked at once as Discord describes it, fetched
        // in the enqueue task.
        let image_url = match command_image(&command).filter(|_| !analyze) {
            Some(attachment) => match precheck(attachment) {
                Ok(()) => Some(attachment.url.clone()),
                Err(e) => return now(ephemeral(&format!("⚠️ {e}"))),
            },
            None => None,
        };
        if all.len() > 1 {
            let text = text.to_owned();
            return self
                .imagine_group(command, channel_nsfw, all, &text, image_url)
                .await;
        }
        let args = all.remove(0);
        let (reply, invocation) = command_invocation(&command, channel_nsfw, false);
        let (commands, images) = (self.commands.clone(), self.images.clone());
        let enqueue = self.commands.pending.spawn(async move {
            if analyze {
                return commands.analyze(&invocation, &args).await;
            }
            let image = match image_url {
                Some(url) => {
                    if let Some(replayed) = commands.replayed(&invocation.idempotency_key).await? {
                        return Ok(replayed);
                    }
                    Some(images.image(&url).await?)
                }
                None => None,
            };
            commands.imagine(&invocation, &args, image.as_ref()).await
        });
        let prompt = escape(&shorten(text, 200));
        let headline = if analyze {
            format!("analysing **{prompt}**")
        } else {
            format!("**{prompt}**")
        };
        self.acked(enqueue, reply, headline, false).await
    }

    /// A permutation prompt: its jobs share the ack, which lists them; each
    /// result is a message of its own in the channel.
    async fn imagine_group(
        &self,
        command: CommandInteraction,
        channel_nsfw: bool,
        all: Vec<ImagineArgs>,
        text: &str,
        image_url: Option<String>,
    ) -> Handled {
        let (reply, invocation) = command_invocation(&command, channel_nsfw, true);
        let headline = format!("**{}**", escape(&shorten(text, 200)));
        let (commands, images) = (self.commands.clone(), self.images.clone());
        let task = self.commands.pending.spawn(async move {
            let image = match image_url {
                Some(url) => Some(images.image(&url).await?),
                None => None,
            };
            let group = commands
                .imagine_group(&invocation, &all, image.as_ref())
                .await?;
            Ok(group_text(&headline, &group, WHERE_POSTED, escape))
        });
        self.acked_text(task, reply).await
    }

    /// Like [`Self::acked`], for a task that composes its own text: a
    /// refusal within the budget is private, anything else edits a public ack.
    async fn acked_text(
        &self,
        mut task: tokio::task::JoinHandle<Result<String, CommandError>>,
        reply: DiscordReply,
    ) -> Handled {
        let outcome = tokio::time::timeout(ACK_BUDGET, &mut task).await;
        let rest = self.rest.clone();
        let text = match outcome {
            Ok(Ok(Ok(text))) => Some(text),
            Ok(Ok(Err(e))) => return now(ephemeral(&error_text(&e))),
            Ok(Err(join)) => {
                tracing::error!(error = %join, "enqueue task failed");
                return now(ephemeral(OUR_FAULT));
            }
            Err(_) => None,
        };
        Handled {
            response: to_json(&CreateInteractionResponse::Defer(
                CreateInteractionResponseMessage::new(),
            )),
            after: Some(Box::pin(async move {
                let text = match text {
                    Some(text) => text,
                    None => match task.await {
                        Ok(Ok(text)) => text,
                        Ok(Err(e)) => error_text(&e),
                        Err(_) => OUR_FAULT.to_owned(),
                    },
                };
                edit_original(&rest, &reply, &text).await;
            })),
        }
    }

    /// /describe: the attachment is checked at once (type and size as
    /// Discord reports them), then fetched and enqueued within the ack's
    /// budget or after a deferred ack; the engine's answer replaces the ack.
    async fn describe(&self, command: CommandInteraction, channel_nsfw: bool) -> Handled {
        let Some(attachment) = command_image(&command) else {
            return now(ephemeral(
                "⚠️ there is no image to describe: attach one, or use Describe on a message with an image",
            ));
        };
        if let Err(e) = precheck(attachment) {
            return now(ephemeral(&format!("⚠️ {e}")));
        }
        let url = attachment.url.clone();
        let headline = format!(
            "describing **{}**",
            escape(&shorten(&attachment.filename, 100))
        );
        let (reply, invocation) = command_invocation(&command, channel_nsfw, false);
        let (commands, images) = (self.commands.clone(), self.images.clone());
        let enqueue = self.commands.pending.spawn(async move {
            if let Some(replayed) = commands.replayed(&invocation.idempotency_key).await? {
                return Ok(replayed);
            }
            let image = images.image(&url).await?;
            commands.describe(&invocation, &image).await
        });
        self.acked(enqueue, reply, headline, false).await
    }

    async fn component(&self, component: ComponentInteraction, channel_nsfw: bool) -> Handled {
        let Some(button) = ButtonId::parse(&component.data.custom_id) else {
            return now(ephemeral("this button is not one of ours"));
        };
        let reply = DiscordReply {
            application_id: component.application_id.to_string(),
            interaction_id: component.id.to_string(),
            token: component.token.clone(),
            attachment_size_limit: u64::from(component.attachment_size_limit),
            reply_to: Some(component.message.id.to_string()),
            shared_ack: false,
        };
        match button.action {
            Action::Delete => return self.delete_result(&component, button, reply),
            Action::Remix => return self.remix_form(&component, button).await,
            Action::Vote => return self.vote(&component, button).await,
            _ => {}
        }
        let invocation = Invocation {
            origin: origin(component.guild_id, component.channel_id, component.user.id),
            idempotency_key: button.press_key(PLATFORM, &component.id.to_string()),
            channel_nsfw,
            reply: reply.to_value(false),
        };
        let commands = self.commands.clone();
        let enqueue = self
            .commands
            .pending
            .spawn(async move { commands.press(&invocation, &button).await });
        let headline = format!("{} — job {}", button.headline(), button.job);
        self.acked(enqueue, reply, headline, true).await
    }

    /// ❌: deletes the message the button is on, for the job's requester or
    /// a member who may manage messages here. Acked at once (privately);
    /// the outcome follows as an edit.
    fn delete_result(
        &self,
        component: &ComponentInteraction,
        button: ButtonId,
        reply: DiscordReply,
    ) -> Handled {
        let manages = component
            .member
            .as_ref()
            .and_then(|m| m.permissions)
            .is_some_and(|p| p.manage_messages() || p.administrator());
        let presser = component.user.id.to_string();
        let path = format!(
            "/channels/{}/messages/{}",
            component.channel_id, component.message.id
        );
        let (commands, rest) = (self.commands.clone(), self.rest.clone());
        Handled {
            response: to_json(&CreateInteractionResponse::Defer(
                CreateInteractionResponseMessage::new().ephemeral(true),
            )),
            after: Some(Box::pin(async move {
                let text = match commands.may_delete(button.job, &presser, manages).await {
                    Err(e) => {
                        e.log();
                        error_text(&e)
                    }
                    Ok(()) => match rest.delete(&path).await {
                        Ok(_) => format!("Deleted the result of job {}.", button.job),
                        Err(e) => {
                            tracing::warn!(error = %e, "a result was not deleted");
                            "⚠️ I could not delete that message; please try again".to_owned()
                        }
                    },
                };
                edit_original(&rest, &reply, &text).await;
            })),
        }
    }

    /// Waits up to [`ACK_BUDGET`] for the enqueue: answers with the outcome
    /// when it is in, else with a deferred ack and an edit once it is.
    async fn acked(
        &self,
        mut enqueue: tokio::task::JoinHandle<Result<Accepted, CommandError>>,
        reply: DiscordReply,
        headline: String,
        private: bool,
    ) -> Handled {
        let outcome = tokio::time::timeout(ACK_BUDGET, &mut enqueue).await;
        let rest = self.rest.clone();
        let queue = self.commands.queue.clone();
        match outcome {
            Ok(Ok(Ok(accepted))) => {
                // A deferred ack, then the position as an edit: the ack is
                // what Discord must see in time, and the edit can wait for it.
                Handled {
                    response: to_json(&CreateInteractionResponse::Defer(
                        CreateInteractionResponseMessage::new().ephemeral(private),
                    )),
                    after: Some(Box::pin(async move {
                        edit_place_in_line(&rest, &queue, &reply, &headline, &accepted).await;
                    })),
                }
            }
            Ok(Ok(Err(e))) => now(ephemeral(&error_text(&e))),
            Ok(Err(join)) => {
                tracing::error!(error = %join, "enqueue task failed");
                now(ephemeral(OUR_FAULT))
            }
            Err(_) => Handled {
                response: to_json(&CreateInteractionResponse::Defer(
                    CreateInteractionResponseMessage::new().ephemeral(private),
                )),
                after: Some(Box::pin(async move {
                    let text = match enqueue.await {
                        Ok(Ok(accepted)) => {
                            edit_place_in_line(&rest, &queue, &reply, &headline, &accepted).await;
                            return;
                        }
                        Ok(Err(e)) => error_text(&e),
                        Err(_) => OUR_FAULT.to_owned(),
                    };
                    edit_original(&rest, &reply, &text).await;
                })),
            },
        }
    }
}

/// Edits the interaction's original response, retrying briefly while
/// Discord has not yet seen our ack (10015 Unknown Webhook / 10062).
pub async fn edit_original(rest: &DiscordRest, reply: &DiscordReply, content: &str) {
    edit_original_with(rest, reply, content, Picture::Keep).await;
}

/// What an edit of the ack does with the picture it may show.
#[derive(Debug, Clone, Copy)]
pub enum Picture<'a> {
    /// Leaves the attachments as they are (an edit without `attachments`).
    Keep,
    /// Removes them: `attachments` lists what stays, here nothing.
    Clear,
    /// Replaces them with this one.
    Show(&'a Upload),
}

/// [`edit_original`] that also keeps, clears or replaces the picture.
pub async fn edit_original_with(
    rest: &DiscordRest,
    reply: &DiscordReply,
    content: &str,
    picture: Picture<'_>,
) {
    for attempt in 0..EDIT_TRIES {
        if edit_once(rest, reply, content, picture, attempt)
            .await
            .is_break()
        {
            return;
        }
    }
}

/// "queued — #N in line" as an edit of the ack, with the place re-read
/// before each try: once an engine has the job, its own edits (progress,
/// done) are newer, and a retried "queued" must not land on top of them.
/// A try whose read comes just before the claim can still land over the
/// engine's first progress edit; its next progress edit replaces it.
async fn edit_place_in_line(
    rest: &DiscordRest,
    queue: &Queue,
    reply: &DiscordReply,
    headline: &str,
    accepted: &Accepted,
) {
    let mut current = accepted.clone();
    for attempt in 0..EDIT_TRIES {
        if accepted.position.is_some() {
            match queue.position(accepted.job).await {
                Ok(None) => return,
                Ok(position) => current.position = position,
                Err(e) => tracing::debug!(error = %e, "place in line not re-read"),
            }
        }
        let text = accepted_text(headline, &current, WHERE_POSTED);
        if edit_once(rest, reply, &text, Picture::Keep, attempt)
            .await
            .is_break()
        {
            return;
        }
    }
}

const EDIT_TRIES: u32 = 5;

/// One try of an edit of the original response: `Continue` after a wait
/// when Discord has not seen the ack yet, else `Break`.
async fn edit_once(
    rest: &DiscordRest,
    reply: &DiscordReply,
    content: &str,
    picture: Picture<'_>,
    attempt: u32,
) -> ControlFlow<()> {
    let path = format!(
        "/webhooks/{}/{}/messages/@original",
        reply.application_id, reply.token
    );
    let mut body = json!({ "content": content, "allowed_mentions": { "parse": [] } });
    let uploads = match picture {
        Picture::Keep => &[][..],
        Picture::Clear => {
            body["attachments"] = json!([]);
            &[][..]
        }
        Picture::Show(upload) => std::slice::from_ref(upload),
    };
    match rest
        .call(reqwest::Method::PATCH, &path, Some(&body), uploads)
        .await
    {
        Ok(_) => ControlFlow::Break(()),
        Err(e) if matches!(e.code(), Some(10015 | 10062 | 10008)) && attempt + 1 < EDIT_TRIES => {
            tokio::time::sleep(Duration::from_millis(300 * u64::from(attempt + 1))).await;
            ControlFlow::Continue(())
        }
        Err(e) => {
            tracing::warn!(error = %e, "could not edit the interaction response");
            ControlFlow::Break(())
        }
    }
}

fn now(response: CreateInteractionResponse) -> Handled {
    Handled::now(to_json(&response))
}

/// Escapes Discord markdown so a prompt shows as typed: emphasis, code,
/// spoilers, quotes, masked links (`[text](url)`), headings, and the
/// `<@id>`, `<#id>` and `<t:…>` forms; line breaks become spaces, so no
/// line of a prompt can start a heading or a list. Mentions are also off by
/// `allowed_mentions` on everything we post.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '*' | '_' | '~' | '`' | '|' | '>' | '<' | '[' | ']' | '(' | ')' | '#' | '\\' => {
                out.push('\\');
                out.push(c);
            }
            '\n' | '\r' => out.push(' '),
            c => out.push(c),
        }
    }
    out
}

pub fn origin(
    guild: Option<serenity::all::GuildId>,
    channel: serenity::all::ChannelId,
    user: serenity::all::UserId,
) -> Origin {
    Origin {
        platform: PLATFORM.to_owned(),
        // Direct messages have no guild.
        workspace_id: guild.map_or_else(|| "dm".to_owned(), |g| g.to_string()),
        // A command used in a thread carries the thread's id as its channel.
        channel_id: channel.to_string(),
        thread_id: None,
        user_id: user.to_string(),
    }
}

fn option_str<'a>(options: &'a [CommandDataOption], name: &str) -> Option<&'a str> {
    options
        .iter()
        .find(|o| o.name == name)
        .and_then(|o| o.value.as_str())
}

fn settings_change(options: &[CommandDataOption]) -> SettingsChange {
    let flag = |name: &str| {
        options
            .iter()
            .find(|o| o.name == name)
            .and_then(|o| o.value.as_bool())
    };
    SettingsChange {
        style: option_str(options, "style").map(str::to_owned),
        tier: option_str(options, "tier").map(str::to_owned),
        quality: options
            .iter()
            .find(|o| o.name == "quality")
            .and_then(|o| o.value.as_i64()),
        restrict_buttons: flag("restrict_buttons"),
        allow_nsfw: flag("nsfw"),
    }
}

/// The image a /describe points at: its attachment option, or for the
/// message command the target message's first image attachment.
/// A command's reply data (its interaction's token) and its invocation;
/// `shared_ack` for the jobs of a permutation prompt.
fn command_invocation(
    command: &CommandInteraction,
    channel_nsfw: bool,
    shared_ack: bool,
) -> (DiscordReply, Invocation) {
    let reply = DiscordReply {
        application_id: command.application_id.to_string(),
        interaction_id: command.id.to_string(),
        token: command.token.clone(),
        attachment_size_limit: u64::from(command.attachment_size_limit),
        reply_to: None,
        shared_ack,
    };
    let invocation = Invocation {
        origin: origin(command.guild_id, command.channel_id, command.user.id),
        idempotency_key: format!("{PLATFORM}:{}", command.id),
        channel_nsfw,
        reply: reply.to_value(false),
    };
    (reply, invocation)
}

/// The image a command is about: the message's (a message command) or the
/// `image` option's.
fn command_image(command: &CommandInteraction) -> Option<&Attachment> {
    let resolved = &command.data.resolved;
    if let Some(target) = command.data.target_id {
        let message = resolved.messages.get(&target.to_message_id())?;
        return message
            .attachments
            .iter()
            .find(|a| {
                a.content_type
                    .as_deref()
                    .is_some_and(|t| t.starts_with("image/"))
            })
            .or(message.attachments.first());
    }
    let id = command
        .data
        .options
        .iter()
        .find(|o| o.name == "image")?
        .value
        .as_attachment_id()?;
    resolved.attachments.get(&id)
}

/// What Discord says about an attachment, checked before fetching it (the
/// fetch checks the bytes again: these are the uploader's claims).
fn precheck(attachment: &Attachment) -> Result<(), UserError> {
    let limit = crate::fetch::MAX_BYTES;
    if u64::from(attachment.size) > limit {
        return Err(UserError::BadImage(format!(
            "that file is {:.1} MB; the limit is {} MB",
            f64::from(attachment.size) / 1e6,
            limit / (1024 * 1024)
        )));
    }
    match attachment.content_type.as_deref() {
        Some("image/png" | "image/jpeg" | "image/webp") | None => Ok(()),
        Some(_) => Err(UserError::BadImage(
            "that file is not a PNG, JPEG or WebP image".into(),
        )),
    }
}

/// Changing settings takes Manage Channels (or Administrator) in the channel.
fn may_manage(command: &CommandInteraction) -> bool {
    command
        .member
        .as_ref()
        .and_then(|m| m.permissions)
        .is_some_and(|p| p.contains(Permissions::MANAGE_CHANNELS) || p.administrator())
}

pub fn ephemeral(text: &str) -> CreateInteractionResponse {
    CreateInteractionResponse::Message(
        CreateInteractionResponseMessage::new()
            .content(text)
            .ephemeral(true),
    )
}

/// Sets the label of the button `custom_id` in a message's component rows.
pub fn relabel(rows: &mut Value, custom_id: &str, label: &str) {
    for row in rows.as_array_mut().into_iter().flatten() {
        for button in row["components"].as_array_mut().into_iter().flatten() {
            if button["custom_id"] == custom_id {
                button["label"] = json!(label);
            }
        }
    }
}

/// The Remix form's custom id: the grid's job.
fn remix_form_id(job: JobId) -> String {
    format!("wu-remix:{job}")
}

fn remix_form_job(custom_id: &str) -> Option<JobId> {
    let id: i64 = custom_id.strip_prefix("wu-remix:")?.parse().ok()?;
    (id > 0).then_some(JobId(id))
}

/// What was typed in a submitted form's field `name` (empty if absent).
fn form_field(modal: &ModalInteraction, name: &str) -> String {
    modal
        .data
        .components
        .iter()
        .flat_map(|row| &row.components)
        .find_map(|component| match component {
            ActionRowComponent::InputText(input) if input.custom_id == name => input.value.clone(),
            _ => None,
        })
        .unwrap_or_default()
}

/// The Remix modal (interaction response type 9): the prompt, prefilled
/// and editable, and which image to start from. Discord's limits: a title
/// of 45 characters, labels of 45, values of 4000.
fn remix_modal(form: &RemixForm) -> Value {
    json!({
        "type": 9,
        "data": {
            "custom_id": remix_form_id(form.job),
            "title": format!("Remix job {}", form.job),
            "components": [
                { "type": 1, "components": [{
                    "type": 4,
                    "custom_id": remix::PROMPT_FIELD,
                    "style": 2,
                    "label": "Prompt, with any parameters",
                    "value": shorten(&form.prompt, remix::PROMPT_FIELD_CHARS),
                    "min_length": 1,
                    "max_length": remix::PROMPT_FIELD_CHARS,
                    "required": true,
                }]},
                { "type": 1, "components": [{
                    "type": 4,
                    "custom_id": remix::IMAGE_FIELD,
                    "style": 1,
                    "label": "Image to start from (1–4)",
                    "value": "1",
                    "min_length": 1,
                    "max_length": 1,
                    "required": true,
                }]},
            ],
        },
    })
}

fn to_json(response: &CreateInteractionResponse) -> Value {
    serde_json::to_value(response).unwrap_or_else(|_| json!({ "type": 1 }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_markdown_in_prompts() {
        for (prompt, shown) in [
            ("a *bold* `x`", "a \\*bold\\* \\`x\\`"),
            (
                "[Free Nitro](https://evil.example)",
                "\\[Free Nitro\\]\\(https://evil.example\\)",
            ),
            ("<@123> <#456> <t:0>", "\\<@123\\> \\<\\#456\\> \\<t:0\\>"),
            ("||spoiler|| > quote", "\\|\\|spoiler\\|\\| \\> quote"),
            ("line\n# heading\n- item", "line \\# heading - item"),
            ("plain words", "plain words"),
        ] {
            assert_eq!(escape(prompt), shown, "{prompt:?}");
        }
    }

    #[test]
    fn responses_have_discords_shape() {
        assert_eq!(
            to_json(&CreateInteractionResponse::Pong),
            json!({"type": 1, "data": null})
        );
        let v = to_json(&ephemeral("hi"));
        assert_eq!(v["type"], 4);
        assert_eq!(v["data"]["content"], "hi");
        assert_eq!(v["data"]["flags"], 64);
    }
}
