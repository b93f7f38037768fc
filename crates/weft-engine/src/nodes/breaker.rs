//! Circuit breakers per call target (`host:port`), kept in each worker process.
//!
//! A breaker is closed until `failure_threshold` failures fall within `window`; it then
//! opens for `reset_timeout`, during which no attempt reaches the target: the worker defers
//! the task (or fails the attempt, for `fail_fast` nodes). After that time it is half-open
//! and lets `half_open_probes` attempts through: a successful probe closes it, a failed one
//! opens it again for twice as long (up to `max_reset_timeout`).
//!
//! Only failures that say the target is unhealthy count: connection errors, timeouts and
//! 5xx or 429 answers (any retryable failure). A 4xx caused by the request does not.
//!
//! The settings of a target's breaker are those of the node that used it last; nodes
//! without `circuit_breaker:` neither consult nor feed it. The registry also keeps each
//! target's latencies for adaptive timeouts (see [`super::adaptive`]). The state machine
//! takes the time as an argument so tests drive it with a fake clock.

use super::adaptive::{ChosenTimeout, LatencyWindow};
use parking_lot::Mutex;
use serde::Serialize;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use weft_core::resilience::{AdaptiveTimeout, BreakerPolicy};
use weft_core::time::Millis;

/// How long a task waits when the half-open breaker has no probe slot free: the probes'
/// results are due soon, so it asks again after this (or `reset_timeout`, if shorter).
pub const HALF_OPEN_RECHECK: Duration = Duration::from_secs(1);

/// A breaker's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum CircuitState {
    /// Calls go through; failures are counted.
    Closed,
    /// A few probe calls go through; their results decide.
    HalfOpen,
    /// No call goes through until the reset time.
    Open,
}

impl CircuitState {
    /// The `weft_circuit_state` gauge value: 0 closed, 1 half-open, 2 open.
    pub fn gauge(self) -> f64 {
        match self {
            CircuitState::Closed => 0.0,
            CircuitState::HalfOpen => 1.0,
            CircuitState::Open => 2.0,
        }
    }

    /// Its name, as in the API.
    pub fn as_str(self) -> &'static str {
        match self {
            CircuitState::Closed => "closed",
            CircuitState::HalfOpen => "half_open",
            CircuitState::Open => "open",
        }
    }
}

/// What a call's result says about its target.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The target answered well.
    Healthy,
    /// The target failed (connect error, timeout, 5xx, 429).
    Unhealthy,
    /// Says nothing about the target (the call was abandoned).
    Neutral,
}

/// Whether a call may go ahead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Go ahead; `probe` when it is one of the half-open breaker's probes.
    Allowed {
        /// A half-open probe.
        probe: bool,
    },
    /// Not now: ask again at `until`.
    Rejected {
        /// When the breaker lets a call through again (at the earliest).
        until: Millis,
    },
}

/// One target's breaker state machine.
#[derive(Debug, Clone)]
pub struct Breaker {
    policy: BreakerPolicy,
    state: CircuitState,
    /// Failure times within the window, oldest first (closed state).
    failures: Vec<Millis>,
    opened_at: Option<Millis>,
    /// The current open time (grows after failed probes).
    open_for: Duration,
    /// Probes let through and not yet finished (half-open state).
    probes_out: u32,
}

fn ms(d: Duration) -> Millis {
    d.as_millis().min(i64::MAX as u128) as Millis
}

impl Breaker {
    /// A closed breaker.
    pub fn new(policy: BreakerPolicy) -> Self {
        let open_for = policy.reset_timeout;
        Self {
            policy,
            state: CircuitState::Closed,
            failures: Vec::new(),
            opened_at: None,
            open_for,
            probes_out: 0,
        }
    }

    /// Takes the settings of the node that used the target last.
    pub fn set_policy(&mut self, policy: &BreakerPolicy) {
        if &self.policy != policy {
            self.policy = policy.clone();
            self.open_for = self
                .open_for
                .clamp(policy.reset_timeout, policy.max_reset_timeout);
        }
    }

    /// The state at `now` (an open breaker whose time is up is half-open).
    pub fn state(&mut self, now: Millis) -> CircuitState {
        self.tick(now);
        self.state
    }

    /// When the breaker lets the next call through, if it is open.
    pub fn reopens_at(&self) -> Option<Millis> {
        match self.state {
            CircuitState::Open => self.opened_at.map(|t| t + ms(self.open_for)),
            _ => None,
        }
    }

    /// Failures counted in the window at `now`.
    pub fn failures_in_window(&mut self, now: Millis) -> usize {
        self.tick(now);
        self.failures.len()
    }

    /// When it last opened.
    pub fn opened_at(&self) -> Option<Millis> {
        self.opened_at
    }

    /// Moves time forward: drops failures older than the window; an open breaker whose
    /// time is up becomes half-open. Returns the new state if it changed.
    fn tick(&mut self, now: Millis) -> Option<CircuitState> {
        let oldest = now - ms(self.policy.window);
        self.failures.retain(|&t| t > oldest);
        if self.state == CircuitState::Open && self.reopens_at().is_some_and(|t| now >= t) {
            self.state = CircuitState::HalfOpen;
            self.probes_out = 0;
            return Some(CircuitState::HalfOpen);
        }
        None
    }

    /// Asks to make a call at `now`; returns the decision and the state change it caused.
    pub fn admit(&mut self, now: Millis) -> (Admission, Option<CircuitState>) {
        let changed = self.tick(now);
        let admission = match self.state {
            CircuitState::Closed => Admission::Allowed { probe: false },
            CircuitState::Open => Admission::Rejected {
                until: self.reopens_at().unwrap_or(now),
            },
            CircuitState::HalfOpen if self.probes_out < self.policy.half_open_probes => {
                self.probes_out += 1;
                Admission::Allowed { probe: true }
            }
            CircuitState::HalfOpen => Admission::Rejected {
                until: now + ms(HALF_OPEN_RECHECK.min(self.policy.reset_timeout)),
            },
        };
        (admission, changed)
    }

    /// Records the result of a call admitted as `probe` (or not); returns the state change.
    /// Only probes decide a half-open breaker; results of calls admitted before the breaker
    /// opened are ignored while it is open or half-open.
    pub fn record(&mut self, now: Millis, probe: bool, verdict: Verdict) -> Option<CircuitState> {
        self.tick(now);
        match (self.state, probe, verdict) {
            (CircuitState::HalfOpen, true, Verdict::Healthy) => {
                self.state = CircuitState::Closed;
                self.failures.clear();
                self.open_for = self.policy.reset_timeout;
                self.opened_at = None;
                self.probes_out = 0;
                Some(CircuitState::Closed)
            }
            (CircuitState::HalfOpen, true, Verdict::Unhealthy) => {
                self.open_for = (self.open_for * 2).min(self.policy.max_reset_timeout);
                self.open(now)
            }
            (CircuitState::HalfOpen, true, Verdict::Neutral) => {
                self.release_probe();
                None
            }
            (CircuitState::Closed, _, Verdict::Unhealthy) => {
                self.failures.push(now);
                if self.failures.len() >= self.policy.failure_threshold as usize {
                    self.open_for = self.policy.reset_timeout;
                    return self.open(now);
                }
                None
            }
            _ => None,
        }
    }

    /// Frees the slot of a probe that ended without a verdict.
    pub fn release_probe(&mut self) {
        if self.state == CircuitState::HalfOpen {
            self.probes_out = self.probes_out.saturating_sub(1);
        }
    }

    fn open(&mut self, now: Millis) -> Option<CircuitState> {
        self.state = CircuitState::Open;
        self.opened_at = Some(now);
        self.failures.clear();
        self.probes_out = 0;
        Some(CircuitState::Open)
    }
}

/// A target's breaker as reported by `GET /v1/breakers` and `weft breakers`.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct BreakerInfo {
    /// `host:port`.
    pub target: String,
    /// Its state now.
    pub state: CircuitState,
    /// Failures counted in the window now.
    pub failures_in_window: usize,
    /// The failure threshold in force.
    pub failure_threshold: u32,
    /// When it last opened, while open or half-open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub opened_at: Option<Millis>,
    /// When it lets a probe through, while open.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_probe_at: Option<Millis>,
    /// The adaptive timeout the next call would get, in ms, for targets with one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub adaptive_timeout_ms: Option<u64>,
    /// Successful calls' latencies known for adaptive timeouts.
    pub latency_samples: usize,
}

#[derive(Default)]
struct Target {
    breaker: Option<Breaker>,
    latency: LatencyWindow,
    adaptive: Option<AdaptiveTimeout>,
}

/// Every target's breaker and latencies in this process.
#[derive(Default)]
pub struct Breakers {
    targets: Mutex<HashMap<String, Target>>,
}

/// The result of asking to call a target.
pub enum Gate {
    /// Go ahead; report the result through the permit.
    Go(Permit),
    /// The breaker is open until `until`.
    Open {
        /// When it lets a call through again.
        until: Millis,
    },
}

/// A call under way. Dropping it without [`Permit::finish`] (the attempt was cancelled or
/// hit its node timeout) frees its probe slot without judging the target.
pub struct Permit {
    breakers: Arc<Breakers>,
    target: String,
    probe: bool,
    guarded: bool,
    done: bool,
}

impl Breakers {
    /// Asks to call `target` at `now` under `policy` (`None`: the node has no breaker, the
    /// call always goes ahead and is not counted).
    pub fn admit(
        self: &Arc<Self>,
        target: &str,
        policy: Option<&BreakerPolicy>,
        now: Millis,
    ) -> Gate {
        let mut probe = false;
        if let Some(policy) = policy {
            let mut targets = self.targets.lock();
            let t = targets.entry(target.to_string()).or_default();
            let b = t
                .breaker
                .get_or_insert_with(|| Breaker::new(policy.clone()));
            b.set_policy(policy);
            let (admission, changed) = b.admit(now);
            transition(target, changed);
            match admission {
                Admission::Rejected { until } => return Gate::Open { until },
                Admission::Allowed { probe: p } => probe = p,
            }
        }
        Gate::Go(Permit {
            breakers: self.clone(),
            target: target.to_string(),
            probe,
            guarded: policy.is_some(),
            done: false,
        })
    }

    /// The timeout for the next call to `target` under `policy`.
    pub fn timeout(&self, target: &str, policy: &AdaptiveTimeout, now: Millis) -> ChosenTimeout {
        let mut targets = self.targets.lock();
        let t = targets.entry(target.to_string()).or_default();
        t.adaptive = Some(policy.clone());
        t.latency.timeout(now, policy)
    }

    /// Every target's breaker and latency figures at `now`, by target.
    pub fn list(&self, now: Millis) -> Vec<BreakerInfo> {
        let mut targets = self.targets.lock();
        let mut out: Vec<BreakerInfo> = targets
            .iter_mut()
            .map(|(name, t)| {
                let adaptive = t.adaptive.clone();
                let adaptive_timeout_ms =
                    adaptive.map(|p| t.latency.timeout(now, &p).timeout.as_millis() as u64);
                let latency_samples = t.latency.len(now);
                let (state, failures, threshold, opened_at, next) = match &mut t.breaker {
                    Some(b) => {
                        let state = b.state(now);
                        let opened = (state != CircuitState::Closed)
                            .then(|| b.opened_at())
                            .flatten();
                        (
                            state,
                            b.failures_in_window(now),
                            b.policy.failure_threshold,
                            opened,
                            b.reopens_at(),
                        )
                    }
                    None => (CircuitState::Closed, 0, 0, None, None),
                };
                BreakerInfo {
                    target: name.clone(),
                    state,
                    failures_in_window: failures,
                    failure_threshold: threshold,
                    opened_at,
                    next_probe_at: next,
                    adaptive_timeout_ms,
                    latency_samples,
                }
            })
            .collect();
        out.sort_by(|a, b| a.target.cmp(&b.target));
        out
    }

    fn record(&self, target: &str, probe: bool, verdict: Verdict, now: Millis) {
        let mut targets = self.targets.lock();
        if let Some(b) = targets.get_mut(target).and_then(|t| t.breaker.as_mut()) {
            transition(target, b.record(now, probe, verdict));
        }
    }

    fn record_latency(&self, target: &str, latency: Duration, now: Millis) {
        let mut targets = self.targets.lock();
        targets
            .entry(target.to_string())
            .or_default()
            .latency
            .record(now, latency);
    }
}

impl Permit {
    /// Reports the call's result: `latency` is kept for adaptive timeouts when the call
    /// succeeded.
    pub fn finish(mut self, verdict: Verdict, latency: Duration, now: Millis) {
        self.done = true;
        if verdict == Verdict::Healthy {
            self.breakers.record_latency(&self.target, latency, now);
        }
        if self.guarded {
            self.breakers.record(&self.target, self.probe, verdict, now);
        }
    }
}

impl Drop for Permit {
    fn drop(&mut self) {
        if !self.done && self.guarded && self.probe {
            let mut targets = self.breakers.targets.lock();
            if let Some(b) = targets
                .get_mut(&self.target)
                .and_then(|t| t.breaker.as_mut())
            {
                b.release_probe();
            }
        }
    }
}

/// Publishes a state change to the metrics.
fn transition(target: &str, to: Option<CircuitState>) {
    let Some(to) = to else { return };
    tracing::info!(
        target_host = target,
        state = to.as_str(),
        "circuit breaker changed state"
    );
    metrics::counter!("weft_circuit_transitions_total", "target" => target.to_string(), "to" => to.as_str())
        .increment(1);
    metrics::gauge!("weft_circuit_state", "target" => target.to_string()).set(to.gauge());
}

#[cfg(test)]
mod tests;
