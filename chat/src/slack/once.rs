//! Posting at most once on Slack, which deduplicates nothing: a post
//! carries metadata naming its job and key, and a repeat looks for that
//! metadata (or a file's name) in the thread or channel
//! ([`crate::once::post_once`]).

use serde_json::{Value, json};
use wordup_queue::{DeliveryError, JobId, Queue};

use super::api::{SlackApi, SlackUpload};
use crate::delivery::classify;
use crate::once::post_once;

/// The metadata `event_type` of our posts.
const POST_EVENT: &str = "wordup_post";

/// The metadata that marks post `key` of `job`.
pub fn marker(job: JobId, key: &str) -> Value {
    json!({
        "event_type": POST_EVENT,
        "event_payload": { "job": job.to_string(), "post": key },
    })
}

/// The ts of the message among `messages` that carries `marker`.
pub fn find_marked(messages: &[Value], marker: &Value) -> Option<String> {
    messages
        .iter()
        .find(|m| {
            m["metadata"]["event_type"] == marker["event_type"]
                && m["metadata"]["event_payload"] == marker["event_payload"]
        })
        .and_then(|m| m["ts"].as_str())
        .map(str::to_owned)
}

/// The id of the file named `filename` among `messages`' files.
pub fn find_file(messages: &[Value], filename: &str) -> Option<String> {
    messages
        .iter()
        .flat_map(|m| m["files"].as_array().into_iter().flatten())
        .find(|f| f["name"] == filename)
        .and_then(|f| f["id"].as_str())
        .map(str::to_owned)
}

/// Posts `message` (a chat.postMessage body) as post `key` of `job`, at
/// most once, in up to `tries` tries; returns its ts.
pub async fn post_message(
    tries: u32,
    api: &SlackApi,
    queue: &Queue,
    job: JobId,
    key: &str,
    mut message: Value,
) -> Result<String, DeliveryError> {
    let marker = &marker(job, key);
    message["metadata"] = marker.clone();
    let channel = message["channel"].as_str().unwrap_or_default();
    let thread = message["thread_ts"].as_str();
    let message = &message;
    post_once(
        queue,
        job,
        key,
        tries,
        |since| async move {
            let messages = api.messages_since(channel, thread, since).await?;
            Ok(find_marked(&messages, marker))
        },
        || api.post_message(message),
    )
    .await?
    .map_err(classify)
}

/// Uploads a file into a thread as post `key` of `job`, at most once (its
/// name is the job's own); returns the file's id.
#[allow(clippy::too_many_arguments)]
pub async fn upload_file(
    api: &SlackApi,
    queue: &Queue,
    job: JobId,
    key: &str,
    channel: &str,
    thread_ts: &str,
    comment: &str,
    upload: &SlackUpload<'_>,
) -> Result<String, DeliveryError> {
    post_once(
        queue,
        job,
        key,
        crate::once::TRIES,
        |since| async move {
            let messages = api.messages_since(channel, Some(thread_ts), since).await?;
            Ok(find_file(&messages, upload.filename))
        },
        || api.upload_file(channel, thread_ts, comment, upload),
    )
    .await?
    .map_err(classify)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_earlier_try_is_found_by_its_marker_and_a_file_by_its_name() {
        let ours = marker(JobId(42), "slack:buttons");
        let messages = vec![
            json!({ "ts": "1.1", "text": "someone else" }),
            json!({ "ts": "1.2", "metadata": marker(JobId(42), "notice:ended") }),
            json!({ "ts": "1.3", "metadata": marker(JobId(41), "slack:buttons") }),
            json!({ "ts": "1.4", "metadata": ours.clone(),
                    "files": [{ "id": "F1", "name": "wordup-42-grid.png" }] }),
        ];
        for (marker, found) in [
            (ours, Some("1.4")),
            (marker(JobId(42), "notice:ended"), Some("1.2")),
            (marker(JobId(43), "slack:buttons"), None),
        ] {
            assert_eq!(find_marked(&messages, &marker).as_deref(), found);
        }
        assert_eq!(
            find_file(&messages, "wordup-42-grid.png").as_deref(),
            Some("F1")
        );
        assert_eq!(find_file(&messages, "wordup-43-grid.png"), None);
    }
}
