//! What the commands do, for every platform: a pure part that decides and a
//! thin async part that reads and writes the queue. The platform adapters
//! (`discord`, `slack`) turn wire payloads into [`Invocation`]s and render
//! the outcomes.

pub mod analyze;
pub mod answer;
pub mod cancel;
pub mod delete;
pub mod describe;
pub mod help;
pub mod imagine;
pub mod press;
pub mod queue_status;
pub mod remix;
pub mod settings;
#[cfg(test)]
mod test_jobs;

use wordup_queue::{ChannelSettings, JobId, NewJob, Origin, Queue, QueueError, Request, Tier};

use crate::grammar::GrammarError;
use crate::policy::Blocklist;

/// Limits and policy the commands enforce.
#[derive(Debug, Clone)]
pub struct CommandConfig {
    /// Jobs a user may have queued or running at once.
    pub max_active_per_user: i64,
    /// Jobs a user may enqueue per UTC day.
    pub max_jobs_per_day: i64,
    /// Tier when neither the prompt nor the channel names one.
    pub default_tier: Tier,
    pub blocklist: Blocklist,
    /// Days finished jobs are kept, for the message on a button that outlived its grid.
    pub retention_days: f64,
    /// The model's tokenizer, to refuse over-long prompts before they are
    /// queued; `None` leaves the count to the engine.
    pub tokenizer: Option<std::sync::Arc<wordup_tokenizer::ClipTokenizer>>,
    /// Board links for /board; `None` when boards are off.
    pub boards: Option<crate::web::link::BoardLinks>,
}

/// The commands with what they need.
#[derive(Debug, Clone)]
pub struct Commands {
    pub queue: Queue,
    pub config: CommandConfig,
    /// Work that must finish before the process exits.
    pub pending: crate::ack::Pending,
}

/// One command use or button press, as the adapter saw it.
#[derive(Debug, Clone)]
pub struct Invocation {
    pub origin: Origin,
    /// The platform's id for this interaction, prefixed with the platform:
    /// the same interaction delivered twice makes one job.
    pub idempotency_key: String,
    /// Whether the platform marks the channel NSFW.
    pub channel_nsfw: bool,
    /// Adapter data stored with the job for progress edits and delivery.
    pub reply: serde_json::Value,
}

impl Invocation {
    /// The job this invocation asks for, with the channel's NSFW decision in
    /// the reply data the engine reads.
    pub fn job(
        &self,
        channel: &ChannelSettings,
        idempotency_key: String,
        tier: Tier,
        request: Request,
        batch_key: String,
    ) -> NewJob {
        let mut reply = self.reply.clone();
        if let Some(map) = reply.as_object_mut() {
            map.insert(
                "nsfw_allowed".into(),
                (channel.allow_nsfw && self.channel_nsfw).into(),
            );
        }
        NewJob {
            idempotency_key: Some(idempotency_key),
            tier,
            origin: self.origin.clone(),
            request,
            batch_key,
            reply,
        }
    }
}

/// A job was enqueued (or had been, for a repeated interaction).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Accepted {
    pub job: JobId,
    /// Place in line; `None` once a worker has it.
    pub position: Option<i64>,
    pub created: bool,
}

/// Why a command was refused; shown to the user as is.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum UserError {
    #[error("{0}")]
    Grammar(#[from] GrammarError),
    #[error("your prompt contains a blocked term (\"{0}\"), so it was not queued")]
    BlockedTerm(String),
    #[error("you already have {limit} jobs waiting or running; try again when one finishes")]
    TooManyActive { limit: i64 },
    #[error("your prompt is {tokens} tokens long; the limit is {limit}, so it was not queued")]
    TooManyTokens { tokens: usize, limit: usize },
    #[error("you have reached today's limit of {limit} jobs; it resets at 00:00 UTC")]
    DailyLimit { limit: i64 },
    #[error("that grid is no longer available (results are kept for {days} days)")]
    UnknownGrid { days: f64 },
    #[error("that job has not finished yet")]
    NotFinished,
    #[error("that image is not available")]
    NoSuchImage,
    #[error("only the person who asked for this grid can use its buttons in this channel")]
    NotYourGrid,
    #[error("NSFW output can only be allowed in channels marked NSFW")]
    NsfwChannelOnly,
    #[error("only a channel moderator can change settings")]
    NotAllowed,
    #[error("{0}")]
    BadSetting(String),
    #[error("I can't post in this channel: invite me first (`/invite @Word Up!`)")]
    CannotPostHere,
    #[error("\"{0}\" is not a job number; /queue lists yours")]
    BadJobNumber(String),
    #[error("there is no job {0}")]
    NoSuchJob(JobId),
    #[error("job {0} is not yours to cancel")]
    NotYourJob(JobId),
    #[error("job {0} has already finished")]
    AlreadyFinished(JobId),
    #[error("you have no jobs waiting or running")]
    NothingToCancel,
    #[error("you have several jobs; say which to cancel: {0}")]
    WhichJob(String),
    #[error(
        "only the person who asked for this result, or someone who manages the channel, can delete it"
    )]
    NotYourResult,
    #[error("that button starts no job")]
    NotAFollowUp,
    /// An image for /describe that was refused: the text says why.
    #[error("{0}")]
    BadImage(String),
    #[error(
        "`--iw` weighs the prompt's image, and there is none: attach an image to /imagine (or use the Imagine shortcut on a message with one)"
    )]
    ImageWeightWithoutImage,
    #[error("\"{0}\" is not an image of the grid: write 1, 2, 3 or 4")]
    BadImageNumber(String),
    #[error("boards are not set up on this server (WORDUP_BOARD_SECRET)")]
    NoBoards,
    #[error("the Remix form could not be opened; please press Remix again")]
    FormNotOpened,
    /// One prompt of a permutation prompt was refused.
    #[error("in `{prompt}`: {error}")]
    InPermutation {
        prompt: String,
        error: Box<UserError>,
    },
}

/// A command's failure: the user's mistake, or ours.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    User(#[from] UserError),
    #[error("queue: {0}")]
    Queue(#[from] QueueError),
}

impl CommandError {
    /// The text to show the user. Internal errors are not described: they
    /// go to the log.
    pub fn user_message(&self) -> String {
        match self {
            CommandError::User(e) => e.to_string(),
            CommandError::Queue(_) => {
                "something went wrong on our side; please try again in a minute".to_owned()
            }
        }
    }
}

impl CommandError {
    /// Logs our own failures (the user is only told that something went wrong).
    pub fn log(&self) {
        if let CommandError::Queue(e) = self {
            tracing::error!(error = %e, "command failed");
        }
    }
}

/// A command's text for the user: its answer, or what went wrong.
pub fn reply_text(result: Result<String, CommandError>) -> String {
    match result {
        Ok(text) => text,
        Err(e) => answer::error_text(&e),
    }
}

impl From<GrammarError> for CommandError {
    fn from(e: GrammarError) -> Self {
        CommandError::User(UserError::Grammar(e))
    }
}

impl Commands {
    /// /board's answer: a private link to the channel's board, or why there is none.
    pub fn board_answer(&self, platform: &str, channel: &str, user: &str) -> String {
        match &self.config.boards {
            Some(boards) => boards.answer(platform, channel, user),
            None => format!("⚠️ {}", UserError::NoBoards),
        }
    }

    /// Enqueues unless the user is over a quota; the counts are read and
    /// the job inserted with no other enqueue of that user's in between.
    pub async fn enqueue_within_quota(&self, job: &NewJob) -> Result<Accepted, CommandError> {
        let admitted = self
            .queue
            .enqueue_checked(job, |counts| {
                quota_verdict(&self.config, counts.queued + counts.running, counts.today)
            })
            .await??;
        Ok(Accepted {
            job: admitted.id,
            position: admitted.position,
            created: admitted.created,
        })
    }

    /// The job a repeated interaction made, so replays answer the same.
    pub async fn replayed(&self, key: &str) -> Result<Option<Accepted>, CommandError> {
        let Some(job) = self.queue.job_by_idempotency_key(key).await? else {
            return Ok(None);
        };
        Ok(Some(Accepted {
            job: job.id,
            position: self.queue.position(job.id).await?,
            created: false,
        }))
    }
}

/// Pure quota decision.
pub fn quota_verdict(config: &CommandConfig, active: i64, today: i64) -> Result<(), UserError> {
    if active >= config.max_active_per_user {
        return Err(UserError::TooManyActive {
            limit: config.max_active_per_user,
        });
    }
    if today >= config.max_jobs_per_day {
        return Err(UserError::DailyLimit {
            limit: config.max_jobs_per_day,
        });
    }
    Ok(())
}

/// "queued — #3 in line", or that a worker has it.
pub fn position_text(position: Option<i64>) -> String {
    match position {
        Some(1) => "queued — next in line".to_owned(),
        Some(n) => format!("queued — #{n} in line"),
        None => "started".to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quotas_refuse_at_the_limit() {
        let config = CommandConfig {
            max_active_per_user: 3,
            max_jobs_per_day: 10,
            default_tier: Tier::Fast,
            blocklist: Blocklist::default(),
            retention_days: 30.0,
            tokenizer: None,
            boards: None,
        };
        for (active, today, expected) in [
            (0, 0, Ok(())),
            (2, 9, Ok(())),
            (3, 0, Err(UserError::TooManyActive { limit: 3 })),
            (0, 10, Err(UserError::DailyLimit { limit: 10 })),
        ] {
            assert_eq!(
                quota_verdict(&config, active, today),
                expected,
                "{active} {today}"
            );
        }
        assert_eq!(position_text(Some(4)), "queued — #4 in line");
    }
}
