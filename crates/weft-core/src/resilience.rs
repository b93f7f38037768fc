//! Circuit breakers and adaptive timeouts for nodes that call a remote target (`http`,
//! `email`), as written in a flow and as compiled. The engine keeps the breakers and the
//! latency estimates per target in each worker process (weft-engine `nodes::breaker`).
//!
//! Both are opt-in per node: a node without `circuit_breaker:` never defers, and one without
//! `adaptive_timeout:` uses its fixed timeouts only. `circuit_breaker: {}` turns a breaker
//! on with every default below.

use crate::duration;
use crate::error::Issue;
use serde::{Deserialize, Serialize};
use std::time::Duration;

/// Default failures within [`DEFAULT_BREAKER_WINDOW`] that open a breaker.
pub const DEFAULT_FAILURE_THRESHOLD: u32 = 5;
/// Default window failures are counted in.
pub const DEFAULT_BREAKER_WINDOW: Duration = Duration::from_secs(30);
/// Default time a breaker stays open before letting a probe through.
pub const DEFAULT_RESET_TIMEOUT: Duration = Duration::from_secs(10);
/// Default cap on the open time, which doubles after each failed probe.
pub const DEFAULT_MAX_RESET_TIMEOUT: Duration = Duration::from_secs(300);
/// Default attempts let through while half-open.
pub const DEFAULT_HALF_OPEN_PROBES: u32 = 1;

/// Default multiplier of the observed latency percentile.
pub const DEFAULT_ADAPTIVE_FACTOR: f64 = 3.0;
/// Default latency percentile the timeout is derived from.
pub const DEFAULT_ADAPTIVE_PERCENTILE: f64 = 99.0;
/// Default lower bound of an adaptive timeout.
pub const DEFAULT_ADAPTIVE_MIN: Duration = Duration::from_millis(100);
/// Default number of observed latencies needed before the adaptive value is used (until
/// then the timeout is `max`).
pub const DEFAULT_ADAPTIVE_MIN_SAMPLES: u32 = 20;

/// `circuit_breaker:` as written; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerSpec {
    /// Failures within `window` that open the breaker (at least 1; default 5).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub failure_threshold: Option<i64>,
    /// The window failures are counted in (longer than zero; default 30s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<String>,
    /// How long the breaker stays open before a probe (longer than zero; default 10s).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reset_timeout: Option<String>,
    /// Cap on the open time, which doubles after each failed probe (at least
    /// `reset_timeout`; default 5m).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_reset_timeout: Option<String>,
    /// Attempts let through while half-open (at least 1; default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub half_open_probes: Option<i64>,
    /// While open, fail attempts (retry policy applies) instead of deferring tasks
    /// (default false).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fail_fast: Option<bool>,
}

/// `adaptive_timeout:` as written; every field is optional.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdaptiveTimeoutSpec {
    /// Multiplier of the latency percentile (greater than 0, at most 100; default 3).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub factor: Option<f64>,
    /// Which percentile of successful calls' latencies (greater than 0, at most 100;
    /// default 99).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub percentile: Option<f64>,
    /// Lower bound (longer than zero; default 100ms).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<String>,
    /// Upper bound, also used until enough latencies are known (longer than zero, at least
    /// `min`; default the node's `timeout`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<String>,
    /// Latencies needed before the adaptive value is used (at least 1; default 20).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_samples: Option<i64>,
}

/// A compiled circuit-breaker policy.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerPolicy {
    /// Failures within `window` that open the breaker.
    pub failure_threshold: u32,
    /// The window failures are counted in.
    pub window: Duration,
    /// First open time.
    pub reset_timeout: Duration,
    /// Cap on the open time.
    pub max_reset_timeout: Duration,
    /// Attempts let through while half-open.
    pub half_open_probes: u32,
    /// Fail attempts instead of deferring tasks while open.
    pub fail_fast: bool,
}

impl Default for BreakerPolicy {
    fn default() -> Self {
        Self {
            failure_threshold: DEFAULT_FAILURE_THRESHOLD,
            window: DEFAULT_BREAKER_WINDOW,
            reset_timeout: DEFAULT_RESET_TIMEOUT,
            max_reset_timeout: DEFAULT_MAX_RESET_TIMEOUT,
            half_open_probes: DEFAULT_HALF_OPEN_PROBES,
            fail_fast: false,
        }
    }
}

/// A compiled adaptive-timeout policy.
#[derive(Debug, Clone, PartialEq)]
pub struct AdaptiveTimeout {
    /// Multiplier of the percentile.
    pub factor: f64,
    /// The percentile, in (0, 100].
    pub percentile: f64,
    /// Lower bound.
    pub min: Duration,
    /// Upper bound, and the timeout until `min_samples` latencies are known.
    pub max: Duration,
    /// Latencies needed before the adaptive value is used.
    pub min_samples: u32,
}

/// Compiles `circuit_breaker` at `path`, pushing every problem to `issues`.
pub fn compile_breaker(
    path: &str,
    spec: &BreakerSpec,
    issues: &mut Vec<Issue>,
) -> Option<BreakerPolicy> {
    let before = issues.len();
    let d = BreakerPolicy::default();
    let p = BreakerPolicy {
        failure_threshold: count(
            &format!("{path}.failure_threshold"),
            spec.failure_threshold,
            d.failure_threshold,
            issues,
        ),
        window: positive(&format!("{path}.window"), &spec.window, d.window, issues),
        reset_timeout: positive(
            &format!("{path}.reset_timeout"),
            &spec.reset_timeout,
            d.reset_timeout,
            issues,
        ),
        max_reset_timeout: positive(
            &format!("{path}.max_reset_timeout"),
            &spec.max_reset_timeout,
            d.max_reset_timeout,
            issues,
        ),
        half_open_probes: count(
            &format!("{path}.half_open_probes"),
            spec.half_open_probes,
            d.half_open_probes,
            issues,
        ),
        fail_fast: spec.fail_fast.unwrap_or(false),
    };
    if issues.len() == before && p.max_reset_timeout < p.reset_timeout {
        issues.push(Issue::new(
            format!("{path}.max_reset_timeout"),
            format!(
                "must be at least reset_timeout ({}), got {}",
                duration::format(p.reset_timeout),
                duration::format(p.max_reset_timeout)
            ),
        ));
    }
    (issues.len() == before).then_some(p)
}

/// Compiles `adaptive_timeout` at `path` for a node whose attempt timeout is `timeout` (the
/// default `max`), pushing every problem to `issues`.
pub fn compile_adaptive(
    path: &str,
    spec: &AdaptiveTimeoutSpec,
    timeout: Duration,
    issues: &mut Vec<Issue>,
) -> Option<AdaptiveTimeout> {
    let before = issues.len();
    let factor = spec.factor.unwrap_or(DEFAULT_ADAPTIVE_FACTOR);
    if !(factor > 0.0 && factor <= 100.0) {
        issues.push(Issue::new(
            format!("{path}.factor"),
            format!("must be greater than 0 and at most 100, got {factor}"),
        ));
    }
    let percentile = spec.percentile.unwrap_or(DEFAULT_ADAPTIVE_PERCENTILE);
    if !(percentile > 0.0 && percentile <= 100.0) {
        issues.push(Issue::new(
            format!("{path}.percentile"),
            format!("must be greater than 0 and at most 100, got {percentile}"),
        ));
    }
    let min = positive(
        &format!("{path}.min"),
        &spec.min,
        DEFAULT_ADAPTIVE_MIN,
        issues,
    );
    let max = positive(&format!("{path}.max"), &spec.max, timeout, issues);
    let min_samples = count(
        &format!("{path}.min_samples"),
        spec.min_samples,
        DEFAULT_ADAPTIVE_MIN_SAMPLES,
        issues,
    );
    if issues.len() == before && min > max {
        issues.push(Issue::new(
            format!("{path}.min"),
            format!(
                "must be at most max ({}), got {}",
                duration::format(max),
                duration::format(min)
            ),
        ));
    }
    (issues.len() == before).then_some(AdaptiveTimeout {
        factor,
        percentile,
        min,
        max,
        min_samples,
    })
}

/// A count of at least 1, or `default` when absent.
fn count(path: &str, v: Option<i64>, default: u32, issues: &mut Vec<Issue>) -> u32 {
    match v {
        None => default,
        Some(v) if v < 1 => {
            issues.push(Issue::new(path, format!("must be at least 1, got {v}")));
            default
        }
        Some(v) if v > i64::from(u32::MAX) => {
            issues.push(Issue::new(
                path,
                format!("must be at most {}, got {v}", u32::MAX),
            ));
            default
        }
        Some(v) => v as u32,
    }
}

/// A duration longer than zero, or `default` when absent.
fn positive(
    path: &str,
    v: &Option<String>,
    default: Duration,
    issues: &mut Vec<Issue>,
) -> Duration {
    let Some(text) = v else { return default };
    match duration::parse(text) {
        Ok(d) if d.is_zero() => {
            issues.push(Issue::new(path, "must be longer than zero, e.g. 10s"));
            default
        }
        Ok(d) => d,
        Err(e) => {
            issues.push(Issue::new(path, e));
            default
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn breaker_issues(spec: BreakerSpec) -> Vec<Issue> {
        let mut issues = Vec::new();
        compile_breaker("nodes.a.circuit_breaker", &spec, &mut issues);
        issues
    }

    #[test]
    fn flows_compile_with_settings_on_http_nodes_only() {
        let ok = "name: f\nnodes:\n  a:\n    type: http\n    params: {url: \"http://x/\"}\n    timeout: 9s\n    circuit_breaker: {failure_threshold: 2, fail_fast: true}\n    adaptive_timeout: {}\n";
        let flow = crate::compile(&crate::parse_flow(ok).unwrap()).unwrap();
        let a = &flow.nodes[0];
        let b = a.breaker.as_ref().unwrap();
        assert_eq!((b.failure_threshold, b.fail_fast), (2, true));
        assert_eq!(
            a.adaptive_timeout.as_ref().unwrap().max,
            Duration::from_secs(9)
        );
        let plain = "name: f\nnodes:\n  a:\n    type: http\n    params: {url: \"http://x/\"}\n";
        let flow = crate::compile(&crate::parse_flow(plain).unwrap()).unwrap();
        assert!(flow.nodes[0].breaker.is_none() && flow.nodes[0].adaptive_timeout.is_none());

        let bad = "name: f\nnodes:\n  a:\n    type: log\n    params: {message: hi}\n    circuit_breaker: {}\n";
        let err = crate::compile(&crate::parse_flow(bad).unwrap()).unwrap_err();
        assert_eq!(err.issues[0].path, "nodes.a.circuit_breaker");
        assert!(
            err.issues[0].message.contains("(http, email), not log"),
            "{err}"
        );
        let typo = "name: f\nnodes:\n  a:\n    type: http\n    params: {url: \"http://x/\"}\n    circuit_breaker: {treshold: 2}\n";
        let err = crate::parse_flow(typo).unwrap_err();
        assert_eq!(err.issues[0].path, "nodes.a.circuit_breaker.treshold");
    }

    #[test]
    fn empty_breaker_takes_every_default() {
        let mut issues = Vec::new();
        let p = compile_breaker("p", &BreakerSpec::default(), &mut issues).unwrap();
        assert!(issues.is_empty());
        assert_eq!(p, BreakerPolicy::default());
    }

    #[test]
    fn bad_breaker_values_name_their_field() {
        let issues = breaker_issues(BreakerSpec {
            failure_threshold: Some(0),
            window: Some("0s".into()),
            reset_timeout: Some("-1s".into()),
            half_open_probes: Some(-2),
            ..Default::default()
        });
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(
            paths,
            [
                "nodes.a.circuit_breaker.failure_threshold",
                "nodes.a.circuit_breaker.window",
                "nodes.a.circuit_breaker.reset_timeout",
                "nodes.a.circuit_breaker.half_open_probes",
            ]
        );
        assert!(
            issues[0].message.contains("at least 1, got 0"),
            "{issues:?}"
        );
        assert!(issues[1].message.contains("longer than zero"), "{issues:?}");
        let issues = breaker_issues(BreakerSpec {
            reset_timeout: Some("1m".into()),
            max_reset_timeout: Some("30s".into()),
            ..Default::default()
        });
        assert_eq!(issues[0].path, "nodes.a.circuit_breaker.max_reset_timeout");
        assert!(issues[0].message.contains("at least reset_timeout (1m)"));
    }

    #[test]
    fn adaptive_defaults_max_to_the_node_timeout_and_rejects_bad_values() {
        let mut issues = Vec::new();
        let t = compile_adaptive(
            "a",
            &AdaptiveTimeoutSpec::default(),
            Duration::from_secs(7),
            &mut issues,
        )
        .unwrap();
        assert_eq!(t.max, Duration::from_secs(7));
        assert_eq!((t.factor, t.percentile), (3.0, 99.0));

        let spec = AdaptiveTimeoutSpec {
            factor: Some(0.0),
            percentile: Some(101.0),
            min_samples: Some(0),
            ..Default::default()
        };
        let mut issues = Vec::new();
        assert!(compile_adaptive("a", &spec, Duration::from_secs(1), &mut issues).is_none());
        let paths: Vec<&str> = issues.iter().map(|i| i.path.as_str()).collect();
        assert_eq!(paths, ["a.factor", "a.percentile", "a.min_samples"]);

        let spec = AdaptiveTimeoutSpec {
            min: Some("2s".into()),
            max: Some("1s".into()),
            ..Default::default()
        };
        let mut issues = Vec::new();
        compile_adaptive("a", &spec, Duration::from_secs(1), &mut issues);
        assert_eq!(issues[0].path, "a.min");
        assert!(
            issues[0].message.contains("at most max (1s), got 2s"),
            "{issues:?}"
        );
    }
}
