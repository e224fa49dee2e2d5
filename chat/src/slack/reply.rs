//! What a Slack job keeps for its replies: where the parent message is (its
//! thread holds the results; progress edits it) and the response URL.

use serde::{Deserialize, Serialize};

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SlackReply {
    pub channel: String,
    /// The parent message: results go in its thread, progress edits it.
    /// `None` until it is posted: a command is enqueued first, and the
    /// parent's ts is then the job's thread (`Origin::thread_id`).
    #[serde(default)]
    pub parent_ts: Option<String>,
    /// For follow-up jobs from buttons: the parent is someone else's message
    /// and is left alone.
    #[serde(default)]
    pub edit_parent: bool,
}

impl SlackReply {
    pub fn of(reply: &serde_json::Value) -> Option<SlackReply> {
        serde_json::from_value(reply.get("slack")?.clone()).ok()
    }

    pub fn to_value(&self) -> serde_json::Value {
        serde_json::json!({ "slack": self, "nsfw_allowed": false })
    }
}
