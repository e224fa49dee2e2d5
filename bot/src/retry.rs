//! Waiting out rate limits and transient failures, for both platforms' APIs.

use std::time::Duration;

use serde_json::Value;

/// Longest 429 wait honoured inline; longer ones fail the call (and the
/// caller's job retries later) rather than hold a worker.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);
/// Tries per call, the first included.
pub const MAX_ATTEMPTS: u32 = 6;

pub fn backoff(attempt: u32) -> Duration {
    Duration::from_millis(250 << attempt.min(5))
}

pub fn retry_after_header(headers: &reqwest::header::HeaderMap) -> Option<f64> {
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
