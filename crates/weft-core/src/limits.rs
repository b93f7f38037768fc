//! Per-key concurrency limits and rate limits on node starts, as written in a flow and as
//! compiled (docs/decisions/0009-keys-and-work-rate-limits.md).
//!
//! A key is a template over the run (`customer:{{ input.customer_id }}`). It may read only
//! `input` and `run`, never an upstream node's output, so it is known when the run is
//! created: the engine renders it once per run instead of once per attempt, which keeps a
//! keyed task as cheap to dispatch as a plain one.

use crate::duration;
use crate::error::Issue;
use crate::template;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use std::time::Duration;

/// Longest rendered key kept; longer keys are cut (they are identities, not data).
pub const MAX_KEY_LEN: usize = 256;

/// `concurrency:` as written: at most `limit` attempts with the same rendered `key` run at
/// once, across every node and flow that uses that key.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ConcurrencySpec {
    /// The key, a template over `input` and `run`, e.g. `customer:{{ input.customer_id }}`.
    pub key: String,
    /// Attempts with that key that may run at once (at least 1).
    pub limit: i64,
}

/// `rate_limit:` as written: at most `limit` starts per `per`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimitSpec {
    /// Starts allowed per interval (at least 1).
    pub limit: i64,
    /// The interval, e.g. `1s` (longer than zero).
    pub per: String,
    /// One bucket per rendered key (a template over `input` and `run`); without it the
    /// node has one bucket of its own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub key: Option<String>,
}

/// A compiled per-key concurrency limit.
#[derive(Debug, Clone, PartialEq)]
pub struct KeyLimit {
    /// The key template.
    pub key: String,
    /// Default limit (a run-time override per rendered key takes precedence).
    pub limit: u32,
}

/// A compiled rate limit.
#[derive(Debug, Clone, PartialEq)]
pub struct RateLimit {
    /// Starts per interval.
    pub limit: u32,
    /// The interval.
    pub per: Duration,
    /// The key template, if the limit is per key.
    pub key: Option<String>,
}

impl RateLimit {
    /// Time between two starts at the sustained rate, in milliseconds (at least 1 µs worth).
    pub fn emission_interval_us(&self) -> u64 {
        (self.per.as_micros() as u64 / u64::from(self.limit)).max(1)
    }
}

/// The keys of one task, rendered.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RenderedKeys {
    /// The concurrency key, if the node has a concurrency limit.
    pub concurrency: Option<Arc<str>>,
    /// The rate-limit key, if the node has a per-key rate limit.
    pub rate: Option<Arc<str>>,
}

/// Compiles `concurrency` at `path`, pushing every problem to `issues`.
pub fn compile_concurrency(
    path: &str,
    spec: &ConcurrencySpec,
    issues: &mut Vec<Issue>,
) -> Option<KeyLimit> {
    let limit = positive(&format!("{path}.limit"), spec.limit, issues);
    let key_ok = check_key(&format!("{path}.key"), &spec.key, issues);
    Some(KeyLimit {
        key: spec.key.clone(),
        limit: limit?,
    })
    .filter(|_| key_ok)
}

/// Compiles `rate_limit` at `path`, pushing every problem to `issues`.
pub fn compile_rate(
    path: &str,
    spec: &RateLimitSpec,
    issues: &mut Vec<Issue>,
) -> Option<RateLimit> {
    let limit = positive(&format!("{path}.limit"), spec.limit, issues);
    let per = match duration::parse(&spec.per) {
        Ok(d) if d.is_zero() => {
            issues.push(Issue::new(
                format!("{path}.per"),
                "must be longer than zero, e.g. 1s",
            ));
            None
        }
        Ok(d) => Some(d),
        Err(e) => {
            issues.push(Issue::new(format!("{path}.per"), e));
            None
        }
    };
    let key_ok = spec
        .key
        .as_ref()
        .is_none_or(|k| check_key(&format!("{path}.key"), k, issues));
    Some(RateLimit {
        limit: limit?,
        per: per?,
        key: spec.key.clone(),
    })
    .filter(|_| key_ok)
}

fn positive(path: &str, v: i64, issues: &mut Vec<Issue>) -> Option<u32> {
    if v < 1 {
        issues.push(Issue::new(path, format!("must be at least 1, got {v}")));
        None
    } else if v > i64::from(u32::MAX) {
        issues.push(Issue::new(
            path,
            format!("must be at most {}, got {v}", u32::MAX),
        ));
        None
    } else {
        Some(v as u32)
    }
}

/// A key must be non-empty and may read only `input` and `run`.
fn check_key(path: &str, key: &str, issues: &mut Vec<Issue>) -> bool {
    if key.trim().is_empty() {
        issues.push(Issue::new(
            path,
            "must not be empty; e.g. `customer:{{ input.customer_id }}`",
        ));
        return false;
    }
    if !template::is_template(key) {
        return true;
    }
    let refs = match template::references(key) {
        Ok(r) => r,
        Err(e) => {
            issues.push(Issue::new(path, e));
            return false;
        }
    };
    let mut ok = true;
    for r in refs {
        let top = r.split('.').next().unwrap_or("");
        if top != "input" && top != "run" {
            issues.push(Issue::new(
                path,
                format!("reads `{r}`; a key may read only `input` and `run` (it is fixed when the run is created)"),
            ));
            ok = false;
        }
    }
    ok
}

/// Renders a key template against `{input, run}`. A non-string result (a number) is used
/// as its JSON text.
pub fn render_key(key: &str, ctx: &Value) -> Result<Arc<str>, String> {
    let v = template::render_str(key, ctx)?;
    let mut s = match v {
        Value::String(s) => s,
        other => other.to_string(),
    };
    if s.len() > MAX_KEY_LEN {
        let mut cut = MAX_KEY_LEN;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    Ok(Arc::from(s))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_render_from_input_and_run() {
        let ctx = json!({"input": {"c": 7}, "run": {"id": "r1", "flow": "f"}});
        assert_eq!(
            &*render_key("customer:{{ input.c }}", &ctx).unwrap(),
            "customer:7"
        );
        assert_eq!(&*render_key("{{ input.c }}", &ctx).unwrap(), "7");
        assert_eq!(&*render_key("fixed", &ctx).unwrap(), "fixed");
        assert!(render_key("{{ input.missing }}", &ctx).is_err());
    }

    #[test]
    fn emission_interval_spreads_the_interval() {
        let r = RateLimit {
            limit: 10,
            per: Duration::from_secs(1),
            key: None,
        };
        assert_eq!(r.emission_interval_us(), 100_000);
    }
}
