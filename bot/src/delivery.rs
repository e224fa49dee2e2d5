//! What the engine hands an adapter to post: platform-neutral results.

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

#[derive(Debug, Clone)]
pub struct ResultPost {
    pub kind: ResultKind,
    /// The prompt as the user typed it.
    pub prompt: String,
    /// What this result is: "seed 42 · 16:9", "image 2 upscaled", ...
    pub what: String,
    pub attachment: Attachment,
}

/// A delivery failure: retry later, or give up.
#[derive(Debug, thiserror::Error)]
pub enum DeliveryError {
    #[error("{0}")]
    Transient(String),
    #[error("{0}")]
    Permanent(String),
}
