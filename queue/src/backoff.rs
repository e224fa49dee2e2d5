//! Retry delays: exponential with jitter, capped.

use std::time::Duration;

#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BackoffPolicy {
    /// Delay before the second attempt, before jitter.
    pub base: Duration,
    /// No delay exceeds this, jitter included.
    pub max: Duration,
    /// Fraction of the delay that is randomised, in [0, 1]: with 0.5 a 10 s
    /// delay becomes anything between 5 and 10 s ("equal jitter").
    pub jitter: f64,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            base: Duration::from_secs(5),
            max: Duration::from_secs(300),
            jitter: 0.5,
        }
    }
}

impl BackoffPolicy {
    /// Delay after `failed_attempt` (1-based) failed; `unit` is a uniform
    /// random number in [0, 1) so that callers and tests choose the randomness.
    pub fn delay(&self, failed_attempt: i32, unit: f64) -> Duration {
        let exponent = failed_attempt.saturating_sub(1).clamp(0, 30);
        let full = (self.base.as_secs_f64() * 2f64.powi(exponent)).min(self.max.as_secs_f64());
        let jitter = self.jitter.clamp(0.0, 1.0);
        let unit = unit.clamp(0.0, 1.0);
        Duration::from_secs_f64(full * (1.0 - jitter * unit))
    }

    pub fn delay_with_thread_rng(&self, failed_attempt: i32) -> Duration {
        self.delay(failed_attempt, rand::random::<f64>())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(policy: BackoffPolicy, attempt: i32, unit: f64, expected_secs: f64) {
        let got = policy.delay(attempt, unit).as_secs_f64();
        assert!(
            (got - expected_secs).abs() < 1e-9,
            "attempt {attempt}, unit {unit}: got {got}, expected {expected_secs}"
        );
    }

    #[test]
    fn schedule_doubles_then_caps() {
        let policy = BackoffPolicy {
            base: Duration::from_secs(5),
            max: Duration::from_secs(60),
            jitter: 0.5,
        };
        for (attempt, unit, expected) in [
            (1, 0.0, 5.0),
            (2, 0.0, 10.0),
            (3, 0.0, 20.0),
            (4, 0.0, 40.0),
            (5, 0.0, 60.0),
            (50, 0.0, 60.0),
            (1, 1.0, 2.5),
            (3, 0.5, 15.0),
            (5, 1.0, 30.0),
            (0, 0.0, 5.0),
        ] {
            check(policy, attempt, unit, expected);
        }
    }

    #[test]
    fn no_jitter_is_exact() {
        let policy = BackoffPolicy {
            base: Duration::from_millis(100),
            max: Duration::from_secs(1),
            jitter: 0.0,
        };
        for (attempt, unit, expected) in [(1, 0.9, 0.1), (2, 0.3, 0.2), (5, 0.7, 1.0)] {
            check(policy, attempt, unit, expected);
        }
    }
}
