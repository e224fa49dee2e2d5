//! Waiting out rate limits and transient failures, for both platforms' APIs.

use std::time::Duration;

use serde_json::Value;

use crate::metrics::ApiCounters;

/// Longest 429 wait honoured inline; longer ones fail the call (and the
/// caller's job retries later) rather than hold a worker.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Tries per call, the first included.
pub const MAX_ATTEMPTS: u32 = 6;

pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 << attempt.min(5))
}

fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<f64> {
    headers
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<f64>().ok())
}

/// How long a 429 asks us to wait: the body's `retry_after` (seconds, with
/// a fraction) is the precise one; the `Retry-After` header is whole seconds.
pub fn retry_after(header: Option<f64>, body: &Value) -> Duration {
    let secs = body
        .get("retry_after")
        .and_then(Value::as_f64)
        .or(header)
        .unwrap_or(1.0);
    Duration::try_from_secs_f64(secs.max(0.0)).unwrap_or(MAX_RETRY_AFTER * 2)
}

/// Why [`send`] gave up without an answer worth reading. Request URLs
/// carry secrets (interaction tokens, response and upload URLs), so the
/// transport error is kept without its URL: it may reach a log or a job's
/// error.
#[derive(Debug, thiserror::Error)]
pub enum GaveUp {
    /// A 429 asked for a wait longer than [`MAX_RETRY_AFTER`], or the
    /// attempts ran out.
    #[error("rate limited for {0:?}, longer than we wait inline")]
    RateLimited(Duration),
    #[error("cannot reach the platform: {0}")]
    Transport(reqwest::Error),
}

impl From<reqwest::Error> for GaveUp {
    fn from(e: reqwest::Error) -> Self {
        GaveUp::Transport(e.without_url())
    }
}

/// Which failed tries [`send`] repeats.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resend {
    /// Connection failures, timeouts and 5xx: the call is a read, an edit
    /// or a delete, which a repeat cannot double.
    Freely,
    /// Only tries that surely did not land (no connection, a 429): after a
    /// timeout or a 5xx the platform may have posted, and only the caller
    /// can look before posting again.
    IfUnsent,
}

/// Sends the request `build` makes (again for each attempt), waiting out
/// 429s for their `retry_after` and retrying connection failures (and, when
/// `resend` allows, timeouts and 5xx) with backoff. Any other answer is the
/// caller's to read. `what` names the call in logs.
pub async fn send<F>(
    counters: &ApiCounters,
    what: &str,
    resend: Resend,
    mut build: F,
) -> Result<reqwest::Response, GaveUp>
where
    F: FnMut() -> Result<reqwest::RequestBuilder, reqwest::Error>,
{
    let mut attempt = 0;
    loop {
        attempt += 1;
        counters.requests.inc();
        let request = build()?;
        let response = match request.send().await {
            Ok(response) => response,
            Err(e)
                if attempt < MAX_ATTEMPTS
                    && (e.is_connect() || (e.is_timeout() && resend == Resend::Freely)) =>
            {
                counters.retries.inc();
                tokio::time::sleep(backoff(attempt)).await;
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let status = response.status();
        if status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            counters.rate_limited.inc();
            let header = retry_after_header(response.headers());
            let body: Value = response.json().await.unwrap_or(Value::Null);
            let wait = retry_after(header, &body);
            if wait > MAX_RETRY_AFTER || attempt >= MAX_ATTEMPTS {
                return Err(GaveUp::RateLimited(wait));
            }
            tracing::warn!(
                what,
                wait_ms = wait.as_millis() as u64,
                "rate limited; retrying"
            );
            counters.retries.inc();
            tokio::time::sleep(wait).await;
            continue;
        }
        if status.is_server_error() && resend == Resend::Freely && attempt < MAX_ATTEMPTS {
            counters.retries.inc();
            tokio::time::sleep(backoff(attempt)).await;
            continue;
        }
        return Ok(response);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_prefers_the_precise_body_value() {
        let body = serde_json::json!({"message": "You are being rate limited.", "retry_after": 0.25, "global": false});
        assert_eq!(retry_after(Some(1.0), &body), Duration::from_millis(250));
        assert_eq!(retry_after(Some(2.0), &Value::Null), Duration::from_secs(2));
        assert_eq!(retry_after(None, &Value::Null), Duration::from_secs(1));
        assert_eq!(
            retry_after(None, &serde_json::json!({"retry_after": -3})),
            Duration::ZERO
        );
    }
}
