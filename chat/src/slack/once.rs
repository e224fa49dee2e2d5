//! Posting at most once. Slack deduplicates nothing, and a post whose
//! answer was lost (a timeout, a 5xx) may have landed. So a post is
//! recorded as an intent first and carries metadata naming its job and
//! key; a second try of it looks for that metadata in the thread (or the
//! channel) before posting again.

use std::time::Duration;

use chrono::{DateTime, Utc};
use serde_json::{Value, json};
use wordup_queue::{DeliveryError, JobId, Queue};

use super::api::{SlackApi, SlackError};
use crate::delivery::classify;
use crate::retry::backoff;

/// The metadata `event_type` of our posts.
const POST_EVENT: &str = "wordup_post";
/// Tries of one post within a delivery; the job's own retries come after.
pub const TRIES: u32 = 4;
/// How far before the first try to look: Slack's clock and ours differ.
const CLOCK_SKEW: chrono::Duration = chrono::Duration::seconds(120);

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

/// What a look for an earlier try found.
enum Look<T> {
    /// It landed: this is it.
    Found(T),
    /// No earlier try, or it did not land: post.
    Post,
    /// Slack could not say (5xx, unreachable): posting could double it.
    Unknown(SlackError),
}

/// Looks for an earlier try of `key` of `job` with `find`, when there was one.
async fn look<T>(
    api: &SlackApi,
    queue: &Queue,
    job: JobId,
    key: &str,
    channel: &str,
    thread_ts: Option<&str>,
    find: impl Fn(&[Value]) -> Option<T>,
) -> Result<Look<T>, DeliveryError> {
    let since: Option<DateTime<Utc>> = queue
        .intend_post(job, key)
        .await
        .map_err(|e| DeliveryError::Transient(e.to_string()))?;
    let Some(since) = since else {
        return Ok(Look::Post);
    };
    match api
        .messages_since(channel, thread_ts, since - CLOCK_SKEW)
        .await
    {
        Ok(messages) => Ok(find(&messages).map_or(Look::Post, Look::Found)),
        Err(e) if e.is_transient() => Ok(Look::Unknown(e)),
        // Without a history scope the bot cannot look: a possible
        // duplicate is better than a result never posted.
        Err(e) => {
            tracing::warn!(error = %e, post = key, "cannot look for an earlier try; posting again");
            Ok(Look::Post)
        }
    }
}

/// Runs `attempt` until it succeeds, fails for good or runs out of tries,
/// each try after a look for an earlier one's result.
#[allow(clippy::too_many_arguments)]
async fn tries<T, F, Fut>(
    tries: u32,
    api: &SlackApi,
    queue: &Queue,
    job: JobId,
    key: &str,
    channel: &str,
    thread_ts: Option<&str>,
    find: impl Fn(&[Value]) -> Option<T>,
    mut attempt: F,
) -> Result<T, DeliveryError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<T, SlackError>>,
{
    let mut n = 0;
    loop {
        n += 1;
        let failed = match look(api, queue, job, key, channel, thread_ts, &find).await? {
            Look::Found(found) => return Ok(found),
            Look::Unknown(e) => e,
            Look::Post => match attempt().await {
                Ok(posted) => return Ok(posted),
                Err(e) if e.is_transient() => e,
                Err(e) => return Err(classify(e)),
            },
        };
        if n >= tries {
            return Err(classify(failed));
        }
        tokio::time::sleep(backoff(n).min(Duration::from_secs(4))).await;
    }
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
    let marker = marker(job, key);
    message["metadata"] = marker.clone();
    let channel = message["channel"].as_str().unwrap_or_default().to_owned();
    let thread = message["thread_ts"].as_str().map(str::to_owned);
    self::tries(
        tries,
        api,
        queue,
        job,
        key,
        &channel,
        thread.as_deref(),
        |messages| find_marked(messages, &marker),
        || api.post_message(&message),
    )
    .await
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
    upload: &super::api::SlackUpload<'_>,
) -> Result<String, DeliveryError> {
    tries(
        TRIES,
        api,
        queue,
        job,
        key,
        channel,
        Some(thread_ts),
        |messages| find_file(messages, upload.filename),
        || api.upload_file(channel, thread_ts, comment, upload),
    )
    .await
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
