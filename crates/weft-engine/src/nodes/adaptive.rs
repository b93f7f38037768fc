//! Latency estimates per target, for adaptive timeouts: a sliding window of the latencies of
//! recent successful calls, from which a timeout is derived as
//! `clamp(percentile x factor, min, max)`.
//!
//! The window holds at most [`WINDOW_SAMPLES`] latencies no older than [`WINDOW_AGE_MS`], so
//! the estimate follows a target that became slower or faster within minutes. A percentile
//! is computed on demand by selection over a copy (O(n), n <= 1000): cheaper overall than
//! maintaining a histogram on every call, and exact.

use std::collections::VecDeque;
use std::time::Duration;
use weft_core::resilience::AdaptiveTimeout;
use weft_core::time::Millis;

/// Most latencies kept per target.
pub const WINDOW_SAMPLES: usize = 1000;
/// Oldest latency kept, in milliseconds (5 minutes).
pub const WINDOW_AGE_MS: Millis = 300_000;

/// Recent latencies of successful calls to one target.
#[derive(Debug, Default)]
pub struct LatencyWindow {
    /// (when observed, latency in ms), oldest first.
    samples: VecDeque<(Millis, f64)>,
}

/// A timeout chosen for one call, and why.
#[derive(Debug, Clone, PartialEq)]
pub struct ChosenTimeout {
    /// The timeout, in whole milliseconds.
    pub timeout: Duration,
    /// How it was derived, for error messages.
    pub why: String,
}

impl LatencyWindow {
    /// Records a successful call's latency observed at `now`.
    pub fn record(&mut self, now: Millis, latency: Duration) {
        if self.samples.len() == WINDOW_SAMPLES {
            self.samples.pop_front();
        }
        self.samples
            .push_back((now, latency.as_secs_f64() * 1000.0));
    }

    /// Drops latencies older than the window.
    fn expire(&mut self, now: Millis) {
        while self
            .samples
            .front()
            .is_some_and(|&(at, _)| at < now - WINDOW_AGE_MS)
        {
            self.samples.pop_front();
        }
    }

    /// Latencies in the window at `now`.
    pub fn len(&mut self, now: Millis) -> usize {
        self.expire(now);
        self.samples.len()
    }

    /// The `p`th percentile (nearest rank) of the latencies in the window, in ms.
    pub fn percentile(&mut self, now: Millis, p: f64) -> Option<f64> {
        self.expire(now);
        let n = self.samples.len();
        if n == 0 {
            return None;
        }
        let mut v: Vec<f64> = self.samples.iter().map(|s| s.1).collect();
        let rank = ((p / 100.0) * n as f64).ceil() as usize;
        let i = rank.clamp(1, n) - 1;
        let (_, x, _) = v.select_nth_unstable_by(i, f64::total_cmp);
        Some(*x)
    }

    /// The timeout for the next call under `policy`: `max` until `min_samples` latencies
    /// are known, then `clamp(percentile x factor, min, max)`.
    pub fn timeout(&mut self, now: Millis, policy: &AdaptiveTimeout) -> ChosenTimeout {
        let n = self.len(now);
        let bounds = format!(
            "bounded by {}..{}",
            weft_core::duration::format(policy.min),
            weft_core::duration::format(policy.max)
        );
        if n < policy.min_samples as usize {
            return ChosenTimeout {
                timeout: policy.max,
                why: format!(
                    "adaptive timeout: {n} of {} latencies needed are known, so max",
                    policy.min_samples
                ),
            };
        }
        let p = self.percentile(now, policy.percentile).unwrap_or(0.0);
        let ms = (p * policy.factor).ceil().max(1.0) as u64;
        let timeout = Duration::from_millis(ms).clamp(policy.min, policy.max);
        ChosenTimeout {
            timeout,
            why: format!(
                "adaptive timeout: p{} of {n} calls {p:.1}ms x {}, {bounds}",
                policy.percentile, policy.factor
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn policy() -> AdaptiveTimeout {
        AdaptiveTimeout {
            factor: 3.0,
            percentile: 99.0,
            min: Duration::from_millis(20),
            max: Duration::from_secs(10),
            min_samples: 20,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn max_until_enough_samples_then_percentile_times_factor() {
        let mut w = LatencyWindow::default();
        for i in 0..19 {
            w.record(1_000 + i, ms(10));
        }
        assert_eq!(w.timeout(2_000, &policy()).timeout, Duration::from_secs(10));
        w.record(1_019, ms(10));
        let t = w.timeout(2_000, &policy());
        assert_eq!(t.timeout, ms(30), "{t:?}");
        assert!(t.why.contains("p99 of 20 calls 10.0ms x 3"), "{}", t.why);
    }

    #[test]
    fn percentile_is_nearest_rank() {
        let mut w = LatencyWindow::default();
        for i in 1..=100 {
            w.record(0, ms(i));
        }
        assert_eq!(w.percentile(0, 99.0), Some(99.0));
        assert_eq!(w.percentile(0, 50.0), Some(50.0));
        assert_eq!(w.percentile(0, 100.0), Some(100.0));
        assert_eq!(w.percentile(0, 0.1), Some(1.0));
    }

    #[test]
    fn clamped_to_min_and_max() {
        let mut w = LatencyWindow::default();
        for _ in 0..20 {
            w.record(0, ms(1));
        }
        assert_eq!(w.timeout(0, &policy()).timeout, ms(20), "3ms is below min");
        for _ in 0..1000 {
            w.record(0, Duration::from_secs(60));
        }
        assert_eq!(w.timeout(0, &policy()).timeout, Duration::from_secs(10));
    }

    #[test]
    fn old_and_excess_samples_leave_the_window() {
        let mut w = LatencyWindow::default();
        for _ in 0..WINDOW_SAMPLES {
            w.record(0, ms(500));
        }
        for _ in 0..WINDOW_SAMPLES {
            w.record(1, ms(5));
        }
        assert_eq!(w.len(1), WINDOW_SAMPLES);
        assert_eq!(
            w.percentile(1, 100.0),
            Some(5.0),
            "the slow ones were pushed out"
        );
        assert_eq!(w.len(1 + WINDOW_AGE_MS), WINDOW_SAMPLES);
        assert_eq!(w.len(2 + WINDOW_AGE_MS), 0, "older than five minutes");
        assert_eq!(
            w.timeout(2 + WINDOW_AGE_MS, &policy()).timeout,
            policy().max
        );
    }
}
