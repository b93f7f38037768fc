//! Retry policy: how many attempts a node gets and how long to wait between them.

use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Default number of attempts (1 = no retry).
pub const DEFAULT_MAX_ATTEMPTS: u32 = 1;
/// Default first back-off.
pub const DEFAULT_INITIAL_DELAY: Duration = Duration::from_secs(1);
/// Default growth factor between back-offs.
pub const DEFAULT_MULTIPLIER: f64 = 2.0;
/// Default cap on one back-off.
pub const DEFAULT_MAX_DELAY: Duration = Duration::from_secs(300);
/// Default jitter: the fraction of each back-off that is randomised.
pub const DEFAULT_JITTER: f64 = 0.1;

/// A resolved retry policy (durations parsed, defaults applied).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RetryPolicy {
    /// Total attempts, including the first.
    pub max_attempts: u32,
    /// Back-off before the second attempt.
    pub initial_delay: Duration,
    /// Each further back-off is the previous one times this.
    pub multiplier: f64,
    /// No back-off is longer than this.
    pub max_delay: Duration,
    /// Fraction in [0, 1]: a back-off `d` becomes a random value in `[d*(1-jitter), d]`.
    pub jitter: f64,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        Self {
            max_attempts: DEFAULT_MAX_ATTEMPTS,
            initial_delay: DEFAULT_INITIAL_DELAY,
            multiplier: DEFAULT_MULTIPLIER,
            max_delay: DEFAULT_MAX_DELAY,
            jitter: DEFAULT_JITTER,
        }
    }
}

impl RetryPolicy {
    /// The back-off after failed attempt number `attempt` (1-based), before jitter.
    pub fn base_delay(&self, attempt: u32) -> Duration {
        let exp = self
            .multiplier
            .powi(attempt.saturating_sub(1).min(64) as i32);
        let secs = (self.initial_delay.as_secs_f64() * exp).min(self.max_delay.as_secs_f64());
        Duration::from_secs_f64(secs.max(0.0))
    }

    /// The back-off after failed attempt `attempt`, with jitter drawn from `unit` in [0, 1).
    pub fn delay(&self, attempt: u32, unit: f64) -> Duration {
        let base = self.base_delay(attempt).as_secs_f64();
        Duration::from_secs_f64(base * (1.0 - self.jitter * unit.clamp(0.0, 1.0)))
    }

    /// True if a task that just failed attempt `attempt` may try again.
    pub fn allows_another(&self, attempt: u32) -> bool {
        attempt < self.max_attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_and_caps() {
        let p = RetryPolicy {
            max_attempts: 10,
            initial_delay: Duration::from_millis(100),
            multiplier: 3.0,
            max_delay: Duration::from_secs(1),
            jitter: 0.0,
        };
        assert_eq!(p.delay(1, 0.5), Duration::from_millis(100));
        assert_eq!(p.delay(2, 0.5), Duration::from_millis(300));
        assert_eq!(p.delay(3, 0.5), Duration::from_millis(900));
        assert_eq!(p.delay(4, 0.5), Duration::from_secs(1));
        assert!(p.allows_another(9) && !p.allows_another(10));
    }

    #[test]
    fn jitter_shrinks_within_bounds() {
        let p = RetryPolicy {
            jitter: 0.5,
            ..RetryPolicy::default()
        };
        assert_eq!(p.delay(1, 0.0), Duration::from_secs(1));
        assert_eq!(p.delay(1, 1.0), Duration::from_millis(500));
    }
}
