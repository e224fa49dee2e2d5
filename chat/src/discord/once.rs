//! Posting at most once on Discord, whose nonce deduplicates for a few
//! minutes only: a repeat looks in the channel, from the first try on, for
//! our message with the same content and buttons
//! ([`crate::once::post_once`]).

use serde_json::Value;
use tokio::sync::OnceCell;
use wordup_queue::{DeliveryError, Job, Queue};

use super::rest::{DiscordRest, RestError, Upload};
use crate::once::{TRIES, post_once};
/// Messages per page of a look (Discord's most), and pages looked at.
const PAGE: usize = 100;
const MAX_PAGES: usize = 10;
/// Discord's epoch, in milliseconds since the Unix epoch.
const DISCORD_EPOCH_MS: i64 = 1_420_070_400_000;

/// The smallest snowflake of a message created at `at` or later.
pub fn snowflake_at(at: chrono::DateTime<chrono::Utc>) -> u64 {
    let ms = (at.timestamp_millis() - DISCORD_EPOCH_MS).max(0);
    u64::try_from(ms).unwrap_or(0) << 22
}

/// Every button's custom_id in a message's components, in order.
fn custom_ids(message: &Value) -> Vec<&str> {
    message["components"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|row| row["components"].as_array().into_iter().flatten())
        .filter_map(|b| b["custom_id"].as_str())
        .collect()
}

/// The message among `messages` that `author` posted with `body`'s content
/// and buttons: buttons carry the job's id, and a notice's text names its
/// requester and reason.
pub fn find_posted<'a>(messages: &'a [Value], author: &str, body: &Value) -> Option<&'a Value> {
    messages.iter().find(|m| {
        m["author"]["id"] == author
            && m["content"] == body["content"]
            && custom_ids(m) == custom_ids(body)
    })
}

/// A post of one job's message in one channel.
pub struct Post<'a> {
    pub rest: &'a DiscordRest,
    pub queue: &'a Queue,
    /// The bot's own user id (the author of what it posted), asked of
    /// Discord when first needed.
    pub me: &'a OnceCell<String>,
    pub job: &'a Job,
    /// The post's name among the job's posts.
    pub key: &'a str,
    pub channel_id: &'a str,
}

impl Post<'_> {
    /// Creates `body` (with `uploads`) in the channel at most once and
    /// returns the message. The outer error is the queue's; the inner one
    /// is Discord's last answer, for the caller to read.
    pub async fn create(
        &self,
        body: &Value,
        uploads: &[Upload],
    ) -> Result<Result<Value, RestError>, DeliveryError> {
        let path = &format!("/channels/{}/messages", self.channel_id);
        post_once(
            self.queue,
            self.job.id,
            self.key,
            TRIES,
            |since| self.look(body, since),
            || {
                self.rest
                    .call(reqwest::Method::POST, path, Some(body), uploads)
            },
        )
        .await
    }

    /// Our message with `body`'s content and buttons, posted since `since`.
    /// Discord pages forward from `after`: the 100 messages right after it,
    /// newest first.
    async fn look(
        &self,
        body: &Value,
        since: chrono::DateTime<chrono::Utc>,
    ) -> Result<Option<Value>, RestError> {
        let author = self
            .me
            .get_or_try_init(|| async {
                let user = self.rest.get("/users/@me").await?;
                Ok::<_, RestError>(user["id"].as_str().unwrap_or_default().to_owned())
            })
            .await?;
        let mut after = snowflake_at(since);
        for _ in 0..MAX_PAGES {
            let path = format!(
                "/channels/{}/messages?after={after}&limit={PAGE}",
                self.channel_id
            );
            let page = self.rest.get(&path).await?;
            let page = page.as_array().map(Vec::as_slice).unwrap_or_default();
            if let Some(found) = find_posted(page, author, body) {
                return Ok(Some(found.clone()));
            }
            let newest = page
                .iter()
                .filter_map(|m| m["id"].as_str()?.parse::<u64>().ok())
                .max();
            match newest {
                Some(newest) if page.len() >= PAGE => after = newest,
                _ => return Ok(None),
            }
        }
        tracing::warn!(
            post = self.key,
            "an earlier try was not found in {MAX_PAGES} pages; posting again"
        );
        Ok(None)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn snowflakes_count_milliseconds_from_discords_epoch() {
        let at = chrono::DateTime::from_timestamp_millis(DISCORD_EPOCH_MS + 1000).unwrap();
        assert_eq!(snowflake_at(at), 1000 << 22);
        let before = chrono::DateTime::from_timestamp_millis(0).unwrap();
        assert_eq!(snowflake_at(before), 0);
    }

    #[test]
    fn an_earlier_try_is_ours_with_the_same_content_and_buttons() {
        let buttons = |job: u64| {
            json!([{ "type": 1, "components": [
                { "type": 2, "custom_id": format!("wu:u1:{job}") },
                { "type": 2, "custom_id": format!("wu:v1:{job}") },
            ]}])
        };
        let body = json!({ "content": "**fox** — seed 1", "components": buttons(42) });
        let messages = vec![
            json!({ "id": "1", "author": { "id": "other" }, "content": "**fox** — seed 1", "components": buttons(42) }),
            json!({ "id": "2", "author": { "id": "bot" }, "content": "**fox** — seed 1", "components": buttons(41) }),
            json!({ "id": "3", "author": { "id": "bot" }, "content": "**fox** — seed 2", "components": buttons(42) }),
            json!({ "id": "4", "author": { "id": "bot" }, "content": "**fox** — seed 1", "components": buttons(42) }),
        ];
        assert_eq!(
            find_posted(&messages, "bot", &body).map(|m| &m["id"]),
            Some(&json!("4"))
        );
        assert_eq!(find_posted(&messages[..3], "bot", &body), None);
        let notice = json!({ "content": "<@7> ⚠️ it failed" });
        let notices = vec![
            json!({ "id": "5", "author": { "id": "bot" }, "content": "<@7> ⚠️ it failed", "components": [] }),
        ];
        assert_eq!(
            find_posted(&notices, "bot", &notice).map(|m| &m["id"]),
            Some(&json!("5"))
        );
    }
}
