//! The job model: platform-neutral requests and where they came from.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};

/// Images in a grid (/imagine, re-roll, variations): U and V buttons
/// per row, and the count the engine draws.
pub const GRID_IMAGES: u8 = 4;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct JobId(pub i64);

impl fmt::Display for JobId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

/// Fast jobs are claimed before relax jobs; relax jobs age into fast ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Tier {
    Fast,
    Relax,
}

impl Tier {
    pub fn as_str(self) -> &'static str {
        match self {
            Tier::Fast => "fast",
            Tier::Relax => "relax",
        }
    }

    pub fn parse(s: &str) -> Option<Tier> {
        match s {
            "fast" => Some(Tier::Fast),
            "relax" => Some(Tier::Relax),
            _ => None,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobState {
    Queued,
    Running,
    Succeeded,
    Failed,
    Cancelled,
}

impl JobState {
    pub fn as_str(self) -> &'static str {
        match self {
            JobState::Queued => "queued",
            JobState::Running => "running",
            JobState::Succeeded => "succeeded",
            JobState::Failed => "failed",
            JobState::Cancelled => "cancelled",
        }
    }

    pub fn parse(s: &str) -> Option<JobState> {
        [
            JobState::Queued,
            JobState::Running,
            JobState::Succeeded,
            JobState::Failed,
            JobState::Cancelled,
        ]
        .into_iter()
        .find(|state| state.as_str() == s)
    }

    pub fn is_finished(self) -> bool {
        matches!(
            self,
            JobState::Succeeded | JobState::Failed | JobState::Cancelled
        )
    }
}

/// Where a request came from and where its results go. Ids are the
/// platform's own, as text; `workspace_id` is a Discord guild or a Slack team.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    pub platform: String,
    pub workspace_id: String,
    pub channel_id: String,
    pub thread_id: Option<String>,
    pub user_id: String,
}

/// Width and height ratio as the user typed it (`--ar 16:9`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct AspectRatio {
    pub width: u32,
    pub height: u32,
}

impl AspectRatio {
    pub const SQUARE: AspectRatio = AspectRatio {
        width: 1,
        height: 1,
    };
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ImagineRequest {
    pub prompt: String,
    pub negative_prompt: Option<String>,
    pub aspect: AspectRatio,
    pub seed: u64,
    pub steps: Option<u32>,
    pub guidance: Option<f32>,
    pub style: Option<String>,
    pub images: u32,
    /// Model id or directory; `None` means the engine's default.
    pub model: Option<String>,
    /// `--draft`: decoded with the engine's draft decoder (TAESD) instead of
    /// the model's VAE. Absent in requests stored before it existed.
    #[serde(default)]
    pub draft: bool,
    /// `--quality K`: K candidates drawn per image shown, the best kept by
    /// CLIP score. 1 (draw what is shown) in requests stored before it existed.
    #[serde(default = "one")]
    pub quality: u32,
    /// `--chaos N`, 0–100: how much the grid's images may differ from each
    /// other (each image's conditioning and guidance jittered from its seed).
    /// 0 in requests stored before it existed.
    #[serde(default)]
    pub chaos: u32,
    /// `--tile`: a seamless texture (circular padding in every convolution).
    #[serde(default)]
    pub tile: bool,
    /// Set when the prompt has an image (`/imagine` with an attachment): the
    /// image weight `--iw`, 0–2, how much of the image stays. The image is
    /// the job's input ([`Queue::input`](crate::Queue::input) under its
    /// idempotency key) and the grid is drawn from it by img2img.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_weight: Option<f32>,
}

fn one() -> u32 {
    1
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum UpscaleMode {
    /// The GAN upscaler alone.
    Plain,
    /// GAN ×2, then img2img at low strength.
    Subtle,
    /// GAN ×2, then img2img at higher strength.
    Creative,
}

impl UpscaleMode {
    pub const ALL: [UpscaleMode; 3] = [
        UpscaleMode::Plain,
        UpscaleMode::Subtle,
        UpscaleMode::Creative,
    ];

    pub fn name(self) -> &'static str {
        match self {
            UpscaleMode::Plain => "plain",
            UpscaleMode::Subtle => "subtle",
            UpscaleMode::Creative => "creative",
        }
    }

    pub fn parse(name: &str) -> Option<UpscaleMode> {
        UpscaleMode::ALL
            .into_iter()
            .find(|mode| mode.name() == name)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum VaryStrength {
    Subtle,
    Strong,
}

/// What a job asks the engine to do. Follow-ups name their parent job and,
/// where one image is meant, its index in the parent's output.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Request {
    Imagine(ImagineRequest),
    Upscale {
        parent: JobId,
        index: u8,
        mode: UpscaleMode,
    },
    Vary {
        parent: JobId,
        index: u8,
        strength: VaryStrength,
        /// Remix: the edited /imagine the variation is drawn for, in place of
        /// the one at the root of its chain.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        remix: Option<Box<ImagineRequest>>,
    },
    Reroll {
        parent: JobId,
    },
    /// `/imagine-analyze`: the prompt read and its phrases weighed by CLIP,
    /// answered in text; nothing is drawn.
    Analyze {
        prompt: String,
    },
    /// `/describe`: prompt suggestions for an image, from CLIP's features
    /// ranked against the vocabulary. The image is the job's input
    /// ([`Queue::input`](crate::Queue::input) under its idempotency key).
    Describe {},
    /// A stored request this release cannot read (a kind from a newer
    /// release, say): never enqueued, never run; it lets the job be failed
    /// and its requester told why.
    #[serde(skip)]
    Unreadable {
        error: String,
    },
}

impl Request {
    pub fn kind(&self) -> &'static str {
        match self {
            Request::Imagine(_) => "imagine",
            Request::Upscale { .. } => "upscale",
            Request::Vary { .. } => "vary",
            Request::Reroll { .. } => "reroll",
            Request::Analyze { .. } => "analyze",
            Request::Describe {} => "describe",
            Request::Unreadable { .. } => "unreadable",
        }
    }

    pub fn parent(&self) -> Option<JobId> {
        match self {
            Request::Imagine(_)
            | Request::Analyze { .. }
            | Request::Describe {}
            | Request::Unreadable { .. } => None,
            Request::Upscale { parent, .. }
            | Request::Vary { parent, .. }
            | Request::Reroll { parent } => Some(*parent),
        }
    }
}

/// A job to enqueue.
#[derive(Debug, Clone)]
pub struct NewJob {
    /// The platform's interaction id, prefixed by the platform; the same key
    /// enqueued twice yields the first job.
    pub idempotency_key: Option<String>,
    pub tier: Tier,
    pub origin: Origin,
    pub request: Request,
    /// Jobs with equal batch keys may be claimed together and run as one GPU batch.
    pub batch_key: String,
    /// Adapter data kept with the job and never read by the queue.
    pub reply: serde_json::Value,
}

/// The outcome of an enqueue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Enqueued {
    pub id: JobId,
    /// False when the idempotency key already named a job.
    pub created: bool,
}

/// A job past its quota check ([`crate::Queue::enqueue_checked`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Admitted {
    pub id: JobId,
    /// False when the idempotency key already named a job.
    pub created: bool,
    /// 1-based place in line: for a new job, as of its insert (no worker can
    /// have claimed it yet); `None` once a job is no longer queued.
    pub position: Option<i64>,
}

/// Progress of a running job, as stored on it and published to listeners.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Progress {
    pub stage: String,
    pub step: u32,
    pub total: u32,
}

/// A job as stored.
#[derive(Debug, Clone)]
pub struct Job {
    pub id: JobId,
    pub idempotency_key: Option<String>,
    pub tier: Tier,
    pub state: JobState,
    pub origin: Origin,
    pub reply: serde_json::Value,
    pub request: Request,
    pub batch_key: String,
    /// Claim order: jobs are claimed by ascending `(sort_key, id)`.
    pub sort_key: DateTime<Utc>,
    pub attempt: i32,
    pub max_attempts: i32,
    pub run_at: DateTime<Utc>,
    pub enqueued_at: DateTime<Utc>,
    pub started_at: Option<DateTime<Utc>>,
    pub lease_expires_at: Option<DateTime<Utc>>,
    pub finished_at: Option<DateTime<Utc>>,
    pub cancel_requested: bool,
    pub last_error: Option<String>,
    pub progress: Option<Progress>,
}

/// A job held under a lease by one worker. `attempt` fences every write the
/// worker makes: once the lease is lost, its writes are refused.
#[derive(Debug, Clone)]
pub struct ClaimedJob {
    pub job: Job,
}

impl ClaimedJob {
    pub fn id(&self) -> JobId {
        self.job.id
    }

    pub fn attempt(&self) -> i32 {
        self.job.attempt
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_stored_before_draft_existed_read_as_full() {
        let stored = r#"{"kind": "imagine", "prompt": "a fox", "negative_prompt": null,
            "aspect": {"width": 1, "height": 1}, "seed": 7, "steps": null,
            "guidance": null, "style": null, "images": 4, "model": null}"#;
        let Request::Imagine(request) = serde_json::from_str::<Request>(stored).unwrap() else {
            panic!("not an imagine")
        };
        assert!(!request.draft);
        let draft = ImagineRequest {
            draft: true,
            ..request
        };
        let json = serde_json::to_value(Request::Imagine(draft.clone())).unwrap();
        assert_eq!(json["draft"], true);
        assert_eq!(
            serde_json::from_value::<Request>(json).unwrap(),
            Request::Imagine(draft)
        );
    }
}
