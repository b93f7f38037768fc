//! The flow document as users write it, in YAML or JSON.
//!
//! Parsing goes through a JSON value first so that YAML and JSON documents produce the same
//! error paths (`nodes.charge.retry.max_attempts`) and unknown fields are rejected in both.

use crate::error::{Issue, SpecError};
pub use crate::limits::{ConcurrencySpec, RateLimitSpec};
use indexmap::IndexMap;
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// A flow: a named DAG of nodes.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FlowSpec {
    /// Unique flow name (letters, digits, `_`, `-`, `.`; at most 128 characters).
    pub name: String,
    /// Free text shown in listings.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Settings every node inherits unless it sets its own.
    #[serde(default, skip_serializing_if = "NodeDefaults::is_empty")]
    pub defaults: NodeDefaults,
    /// The nodes, by name, in document order.
    pub nodes: IndexMap<String, NodeSpec>,
}

/// Node settings that can be given once per flow.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeDefaults {
    /// Retry policy.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// Per-attempt timeout, e.g. `30s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Queue the node's tasks go to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Priority inside the queue; higher runs first.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Per-key concurrency limit (see [`crate::limits`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencySpec>,
    /// Rate limit on starts (see [`crate::limits`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
}

impl NodeDefaults {
    fn is_empty(&self) -> bool {
        self == &NodeDefaults::default()
    }
}

/// One node of a flow.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NodeSpec {
    /// The node type, one of the catalog's (`noop`, `http`, ...).
    #[serde(rename = "type")]
    pub kind: String,
    /// Free text.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Upstream nodes that must finish before this one starts.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub needs: Vec<String>,
    /// Type-specific parameters; strings may be templates (`{{ input.x }}`).
    #[serde(default, skip_serializing_if = "Value::is_null")]
    pub params: Value,
    /// Retry policy (overrides the flow default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub retry: Option<RetrySpec>,
    /// Per-attempt timeout (overrides the flow default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timeout: Option<String>,
    /// Queue (overrides the flow default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub queue: Option<String>,
    /// Priority inside the queue (overrides the flow default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub priority: Option<i32>,
    /// Per-key concurrency limit (overrides the flow default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub concurrency: Option<ConcurrencySpec>,
    /// Rate limit on starts (overrides the flow default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<RateLimitSpec>,
    /// Circuit breaker on the node's target, for `http` and `email` (see
    /// [`crate::resilience`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub circuit_breaker: Option<crate::resilience::BreakerSpec>,
    /// Timeout derived from the target's observed latency, for `http` and `email` (see
    /// [`crate::resilience`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub adaptive_timeout: Option<crate::resilience::AdaptiveTimeoutSpec>,
}

/// Retry settings as written; any field left out takes the default in [`crate::retry`].
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetrySpec {
    /// Total attempts including the first (1 to 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_attempts: Option<u32>,
    /// First back-off, e.g. `1s`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub initial_delay: Option<String>,
    /// Growth factor between back-offs (1.0 to 10.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub multiplier: Option<f64>,
    /// Cap on one back-off, e.g. `5m`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_delay: Option<String>,
    /// Randomised fraction of each back-off (0.0 to 1.0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub jitter: Option<f64>,
}

/// Parses a YAML or JSON flow document (JSON is detected by a leading `{`).
///
/// Only the shape is checked here; [`crate::compile`] checks the meaning.
pub fn parse_flow(text: &str) -> Result<FlowSpec, SpecError> {
    if text.len() > crate::MAX_FLOW_BYTES {
        return Err(SpecError::one(
            "",
            format!(
                "document is {} bytes; the limit is {} bytes",
                text.len(),
                crate::MAX_FLOW_BYTES
            ),
        ));
    }
    let value = parse_document(text)?;
    flow_from_value(value)
}

/// Parses YAML or JSON text into a JSON value, with the syntax error's position.
pub fn parse_document(text: &str) -> Result<Value, SpecError> {
    let trimmed = text.trim_start();
    if trimmed.starts_with('{') {
        serde_json::from_str(text).map_err(|e| {
            SpecError::one(
                "",
                format!(
                    "malformed JSON at line {} column {}: {e}",
                    e.line(),
                    e.column()
                ),
            )
        })
    } else {
        serde_saphyr::from_str_with_options::<Value>(
            text,
            serde_saphyr::options! { strict_booleans: true },
        )
        .map_err(|e| SpecError::one("", format!("malformed YAML: {e}")))
    }
}

/// Turns an already-parsed document into a [`FlowSpec`], naming the path of any shape error.
pub fn flow_from_value(value: Value) -> Result<FlowSpec, SpecError> {
    if !value.is_object() {
        return Err(SpecError::one(
            "",
            "a flow document must be a mapping with `name` and `nodes`",
        ));
    }
    serde_path_to_error::deserialize::<_, FlowSpec>(value).map_err(|e| {
        let path = clean_path(&e.path().to_string());
        SpecError {
            issues: vec![Issue::new(path, e.into_inner().to_string())],
        }
    })
}

/// serde_path_to_error writes `.` for the root and `?` for unknown positions.
fn clean_path(p: &str) -> String {
    if p == "." {
        String::new()
    } else {
        p.replace(".?", "").trim_start_matches('.').to_string()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn yaml_and_json_parse_to_the_same_spec() {
        let yaml = "name: f\nnodes:\n  a:\n    type: noop\n  b:\n    type: log\n    needs: [a]\n    params: {message: hi}\n";
        let json = r#"{"name":"f","nodes":{"a":{"type":"noop"},"b":{"type":"log","needs":["a"],"params":{"message":"hi"}}}}"#;
        assert_eq!(parse_flow(yaml).unwrap(), parse_flow(json).unwrap());
    }

    #[test]
    fn unknown_field_names_its_path_and_the_allowed_fields() {
        let err =
            parse_flow("name: f\nnodes:\n  a:\n    type: noop\n    retries: 3\n").unwrap_err();
        let issue = &err.issues[0];
        assert_eq!(issue.path, "nodes.a.retries");
        assert!(
            issue.message.contains("unknown field `retries`"),
            "{}",
            issue.message
        );
        assert!(issue.message.contains("`retry`"), "{}", issue.message);
    }

    #[test]
    fn wrong_type_names_its_path() {
        let err =
            parse_flow("name: f\nnodes:\n  a:\n    type: noop\n    retry: {max_attempts: many}\n")
                .unwrap_err();
        assert_eq!(err.issues[0].path, "nodes.a.retry.max_attempts");
    }

    #[test]
    fn malformed_documents_say_where() {
        let err = parse_flow("{\"name\": \"f\", ").unwrap_err();
        assert!(
            err.issues[0]
                .message
                .starts_with("malformed JSON at line 1"),
            "{}",
            err.issues[0].message
        );
        let err = parse_flow("name: [unclosed\n").unwrap_err();
        assert!(
            err.issues[0].message.starts_with("malformed YAML"),
            "{}",
            err.issues[0].message
        );
    }

    #[test]
    fn yaml_1_1_words_stay_strings_and_duplicates_are_rejected() {
        let spec =
            parse_flow("name: n\nnodes:\n  y: {type: noop}\n  on: {type: noop, needs: [y]}\n")
                .unwrap();
        assert_eq!(spec.name, "n");
        assert_eq!(spec.nodes["on"].needs, vec!["y".to_string()]);
        let err = parse_flow("name: f\nnodes:\n  a: {type: noop}\n  a: {type: log}\n").unwrap_err();
        assert!(
            err.issues[0].message.contains("uplicate"),
            "{}",
            err.issues[0].message
        );
    }

    #[test]
    fn oversized_documents_are_rejected() {
        let big = format!(
            "name: f\ndescription: \"{}\"\nnodes: {{}}\n",
            "x".repeat(crate::MAX_FLOW_BYTES)
        );
        assert!(
            parse_flow(&big).unwrap_err().issues[0]
                .message
                .contains("limit")
        );
    }
}
