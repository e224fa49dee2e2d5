//! The contract between the engine, which finishes jobs, and the chat
//! adapters, which post their results: platform-neutral types and the
//! [`Delivery`] trait. It lives here because both sides depend on the queue
//! and on nothing of each other.

use std::future::Future;

use crate::{Job, Progress};

/// An image file to upload, with its alt text.
#[derive(Debug, Clone)]
pub struct Attachment {
    pub filename: String,
    pub mime: &'static str,
    pub bytes: Vec<u8>,
    pub alt: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ResultKind {
    /// Four images in a 2×2 grid, with U1–U4, V1–V4 and 🔄 under it.
    Grid,
    /// One upscaled image, with subtle and strong variation buttons.
    Upscaled,
}

/// A finished result, ready to post.
#[derive(Debug, Clone)]
pub struct ResultPost {
    pub kind: ResultKind,
    /// The prompt as the user typed it.
    pub prompt: String,
    /// What this result is: "seed 42 · 16:9", "image 2 upscaled ×4", ...
    pub what: String,
    /// How the prompt was read, when the engine could say: "read as
    /// subject: a lighthouse · style: art nouveau · least shown: …".
    pub reading: Option<String>,
    pub attachment: Attachment,
}

/// Where a result was posted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Posted {
    pub channel_id: String,
    pub message_id: String,
}

/// A delivery failure: retry later, or give up.
#[derive(Debug, Clone, thiserror::Error)]
pub enum DeliveryError {
    /// Worth retrying later (network, rate limits, the platform's 5xx).
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}

/// Posting to the platform a job came from.
pub trait Delivery: Send + Sync + 'static {
    /// Largest upload the job's destination takes, in bytes.
    fn attachment_limit(&self, job: &Job) -> u64;
    /// Whether the destination allows NSFW output (the safety check is skipped).
    fn nsfw_allowed(&self, job: &Job) -> bool;
    /// Shows progress to the requester, with a preview of the images so
    /// far when there is one (it stays until the next preview or the end);
    /// best effort.
    fn progress(
        &self,
        job: &Job,
        progress: &Progress,
        preview: Option<&Attachment>,
    ) -> impl Future<Output = ()> + Send;
    /// Posts a result; the same job posted twice must yield one message.
    fn post(
        &self,
        job: &Job,
        post: &ResultPost,
    ) -> impl Future<Output = Result<Posted, DeliveryError>> + Send;
    /// Answers a job whose result is text (`/imagine-analyze`, `/describe`),
    /// with `choices` buttons that each run one of the job's stored prompt
    /// suggestions; the same job answered twice must yield one answer.
    fn answer(
        &self,
        job: &Job,
        text: &str,
        choices: u8,
    ) -> impl Future<Output = Result<Posted, DeliveryError>> + Send;
    /// Tells the requester why there is no (full) result; a notice with
    /// the same `key` for the same job is posted once.
    fn notice(
        &self,
        job: &Job,
        key: &str,
        text: &str,
    ) -> impl Future<Output = Result<(), DeliveryError>> + Send;
}
