//! The built-in node types: their parameters (checked when a flow is applied) and the
//! catalog entry that describes each one. The handlers that run them live in `weft-engine`;
//! keeping the parameter types here lets validation reject bad parameters before anything
//! is stored.

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;

/// Every built-in node type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeKind {
    /// Does nothing; succeeds with `null`.
    Noop,
    /// Writes a templated message to the log.
    Log,
    /// Waits durably for a duration without holding a worker slot.
    Delay,
    /// Builds a JSON value from the input and upstream outputs.
    Transform,
    /// Evaluates a condition and skips the nodes on the path not taken.
    Branch,
    /// Makes an HTTP request.
    Http,
    /// Fails on purpose, to exercise retries and the dead-letter queue.
    Fail,
    /// Starts a child run of another flow and waits for it durably.
    Subflow,
}

impl NodeKind {
    /// Every type, in catalog order.
    pub const ALL: &'static [NodeKind] = &[
        NodeKind::Noop,
        NodeKind::Log,
        NodeKind::Delay,
        NodeKind::Transform,
        NodeKind::Branch,
        NodeKind::Http,
        NodeKind::Fail,
        NodeKind::Subflow,
    ];

    /// The name used in flow documents.
    pub fn as_str(self) -> &'static str {
        match self {
            NodeKind::Noop => "noop",
            NodeKind::Log => "log",
            NodeKind::Delay => "delay",
            NodeKind::Transform => "transform",
            NodeKind::Branch => "branch",
            NodeKind::Http => "http",
            NodeKind::Fail => "fail",
            NodeKind::Subflow => "subflow",
        }
    }

    /// Looks a type up by name.
    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.iter().copied().find(|k| k.as_str() == s)
    }

    /// One-line description for the catalog.
    pub fn description(self) -> &'static str {
        match self {
            NodeKind::Noop => "Does nothing and succeeds with null. Useful as a join point.",
            NodeKind::Log => "Writes a templated message to weft's log; output is the message.",
            NodeKind::Delay => {
                "Waits durably for `duration` without holding a worker slot or memory."
            }
            NodeKind::Transform => {
                "Builds JSON from the run input and upstream outputs; output is `value` rendered."
            }
            NodeKind::Branch => {
                "Evaluates `condition`; nodes listed under the path not taken are skipped."
            }
            NodeKind::Http => {
                "Makes an HTTP request over a shared keep-alive pool; output is status, headers and body."
            }
            NodeKind::Fail => {
                "Fails on purpose (optionally only the first `times` attempts), for testing retries and the DLQ."
            }
            NodeKind::Subflow => {
                "Starts a child run of `flow` with `input` and waits durably for it; output is the child's node outputs."
            }
        }
    }

    /// JSON Schema of the type's `params`.
    pub fn params_schema(self) -> Value {
        let schema = match self {
            NodeKind::Noop => schemars::schema_for!(NoopParams),
            NodeKind::Log => schemars::schema_for!(LogParams),
            NodeKind::Delay => schemars::schema_for!(DelayParams),
            NodeKind::Transform => schemars::schema_for!(TransformParams),
            NodeKind::Branch => schemars::schema_for!(BranchParams),
            NodeKind::Http => schemars::schema_for!(HttpParams),
            NodeKind::Fail => schemars::schema_for!(FailParams),
            NodeKind::Subflow => schemars::schema_for!(SubflowParams),
        };
        serde_json::to_value(schema).unwrap_or(Value::Null)
    }
}

/// `noop` takes no parameters.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct NoopParams {}

/// Log levels a `log` node may use.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum LogLevel {
    /// Debug.
    Debug,
    /// Info (default).
    #[default]
    Info,
    /// Warning.
    Warn,
    /// Error.
    Error,
}

/// Parameters of `log`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct LogParams {
    /// The message; a template.
    pub message: String,
    /// Level (default `info`).
    #[serde(default)]
    pub level: LogLevel,
}

/// Parameters of `delay`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct DelayParams {
    /// How long to wait, e.g. `10m`, `1h`, `2d` (not templated).
    pub duration: String,
}

/// Parameters of `transform`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct TransformParams {
    /// Any JSON; every string in it is a template.
    pub value: Value,
}

/// Parameters of `branch`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct BranchParams {
    /// A template expression, e.g. `{{ input.amount > 100 }}`; truthy takes `then`.
    pub condition: String,
    /// Downstream nodes that run only when the condition holds.
    #[serde(default)]
    pub then: Vec<String>,
    /// Downstream nodes that run only when it does not.
    #[serde(default, rename = "else")]
    pub otherwise: Vec<String>,
}

/// How an `http` node reads the response body.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ResponseFormat {
    /// JSON when the content type says so, text otherwise (default).
    #[default]
    Auto,
    /// Always parse as JSON (a parse error fails the attempt).
    Json,
    /// Always keep as text.
    Text,
}

/// Status codes an `http` node treats as failure unless told otherwise.
pub const DEFAULT_HTTP_FAIL_ON: &[&str] = &["4xx", "5xx"];
/// HTTP methods an `http` node accepts.
pub const HTTP_METHODS: &[&str] = &["GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS"];

/// Parameters of `http`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct HttpParams {
    /// Method (default `GET`).
    #[serde(default = "default_method")]
    pub method: String,
    /// Absolute http(s) URL; a template.
    pub url: String,
    /// Request headers; values are templates.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// Request body: a string is sent as is, anything else as JSON.
    #[serde(default)]
    pub body: Option<Value>,
    /// Timeout of the request itself (default: the node's timeout).
    #[serde(default)]
    pub timeout: Option<String>,
    /// Status codes that fail the attempt: exact (`404`), classes (`5xx`) or ranges (`500-599`).
    /// Default `["4xx", "5xx"]`.
    #[serde(default)]
    pub fail_on: Option<Vec<String>>,
    /// How to read the body (default `auto`).
    #[serde(default)]
    pub response: ResponseFormat,
}

fn default_method() -> String {
    "GET".into()
}

/// Parameters of `fail`.
#[derive(Debug, Clone, Default, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct FailParams {
    /// The error message; a template.
    #[serde(default)]
    pub message: Option<String>,
    /// Fail only the first `times` attempts, then succeed; absent means always fail.
    #[serde(default)]
    pub times: Option<u32>,
}

/// Parameters of `subflow`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SubflowParams {
    /// Name of the flow to run.
    pub flow: String,
    /// Version to run (default: the latest when the child starts).
    #[serde(default)]
    pub version: Option<u32>,
    /// The child's input; strings are templates.
    #[serde(default)]
    pub input: Value,
}

/// A status-code matcher parsed from `fail_on`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    /// Lowest matching code.
    pub lo: u16,
    /// Highest matching code.
    pub hi: u16,
}

impl StatusRange {
    /// Parses `404`, `5xx` or `500-599`.
    pub fn parse(s: &str) -> Result<Self, String> {
        let help =
            "expected a status code (404), a class (5xx) or a range (500-599) between 100 and 599";
        let t = s.trim().to_ascii_lowercase();
        let code = |x: &str| x.parse::<u16>().ok().filter(|c| (100..=599).contains(c));
        let r = if let Some(class) = t.strip_suffix("xx") {
            let d = class
                .parse::<u16>()
                .ok()
                .filter(|d| (1..=5).contains(d))
                .ok_or_else(|| format!("{s:?}: {help}"))?;
            StatusRange {
                lo: d * 100,
                hi: d * 100 + 99,
            }
        } else if let Some((a, b)) = t.split_once('-') {
            match (code(a), code(b)) {
                (Some(lo), Some(hi)) if lo <= hi => StatusRange { lo, hi },
                _ => return Err(format!("{s:?}: {help}")),
            }
        } else {
            let c = code(&t).ok_or_else(|| format!("{s:?}: {help}"))?;
            StatusRange { lo: c, hi: c }
        };
        Ok(r)
    }

    /// True if `status` is in the range.
    pub fn contains(&self, status: u16) -> bool {
        (self.lo..=self.hi).contains(&status)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_ranges_parse() {
        assert_eq!(
            StatusRange::parse("5xx").unwrap(),
            StatusRange { lo: 500, hi: 599 }
        );
        assert_eq!(
            StatusRange::parse("404").unwrap(),
            StatusRange { lo: 404, hi: 404 }
        );
        assert_eq!(
            StatusRange::parse("400-451").unwrap(),
            StatusRange { lo: 400, hi: 451 }
        );
        assert!(StatusRange::parse("6xx").is_err());
        assert!(StatusRange::parse("500-400").is_err());
        assert!(
            StatusRange::parse("abc")
                .unwrap_err()
                .contains("class (5xx)")
        );
    }

    #[test]
    fn every_kind_has_a_schema_and_round_trips_its_name() {
        for k in NodeKind::ALL {
            assert_eq!(NodeKind::parse(k.as_str()), Some(*k));
            assert!(k.params_schema().is_object(), "{k:?}");
        }
    }
}
