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
    /// Sends an email over SMTP.
    Email,
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
        NodeKind::Email,
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
            NodeKind::Email => "email",
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
            NodeKind::Email => {
                "Sends an email over SMTP (STARTTLS, TLS or plain) through a pooled connection; subject and body are templates."
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
            NodeKind::Email => schemars::schema_for!(EmailParams),
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

/// How an `email` node's SMTP connection is secured.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum SmtpTls {
    /// Connect in plain text, then upgrade with STARTTLS; a server that does not offer it
    /// is an error (default; port 587).
    #[default]
    Starttls,
    /// TLS from the first byte, "SMTPS" (port 465).
    Tls,
    /// No encryption (port 25); only for relays on a trusted network.
    None,
}

/// The values `tls` accepts, in the order the docs list them.
pub const SMTP_TLS_MODES: &[&str] = &["starttls", "tls", "none"];

impl SmtpTls {
    /// The name used in flows and the config file.
    pub fn as_str(self) -> &'static str {
        match self {
            SmtpTls::Starttls => "starttls",
            SmtpTls::Tls => "tls",
            SmtpTls::None => "none",
        }
    }

    /// Parses a name from [`SMTP_TLS_MODES`].
    pub fn parse(s: &str) -> Option<Self> {
        match s.trim().to_ascii_lowercase().as_str() {
            "starttls" => Some(SmtpTls::Starttls),
            "tls" => Some(SmtpTls::Tls),
            "none" => Some(SmtpTls::None),
            _ => None,
        }
    }

    /// The port used when none is given: 587, 465 or 25.
    pub fn default_port(self) -> u16 {
        match self {
            SmtpTls::Starttls => 587,
            SmtpTls::Tls => 465,
            SmtpTls::None => 25,
        }
    }
}

/// One address or a list of them, e.g. `a@example.com` or `["Ann <a@example.com>", ...]`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(untagged, expecting = "an email address or a list of email addresses")]
pub enum Addresses {
    /// A single address.
    One(String),
    /// Several addresses.
    Many(Vec<String>),
}

impl Addresses {
    /// The addresses, in order.
    pub fn as_slice(&self) -> &[String] {
        match self {
            Addresses::One(a) => std::slice::from_ref(a),
            Addresses::Many(v) => v,
        }
    }
}

/// SMTP server settings an `email` node gives itself instead of (or on top of) the
/// process-wide `[email]` settings.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SmtpParams {
    /// Server host name. When set, nothing else is inherited from the process-wide
    /// settings: port and tls take their own defaults, and no credentials are sent unless
    /// `username` and `password_env` are given here.
    #[serde(default)]
    pub host: Option<String>,
    /// Server port, 1 to 65535 (default: 587 for `starttls`, 465 for `tls`, 25 for `none`).
    #[serde(default)]
    pub port: Option<u32>,
    /// `starttls` (default), `tls` or `none`.
    #[serde(default)]
    pub tls: Option<SmtpTls>,
    /// User name for SMTP AUTH; needs `password_env`.
    #[serde(default)]
    pub username: Option<String>,
    /// Name of the environment variable, on the workers, that holds the password. A flow
    /// never contains the password itself.
    #[serde(default)]
    pub password_env: Option<String>,
}

/// Parameters of `email`.
#[derive(Debug, Clone, Serialize, Deserialize, JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct EmailParams {
    /// Recipient(s): `a@example.com`, `Ann <a@example.com>`, or a list; templates.
    pub to: Addresses,
    /// Carbon-copy recipient(s).
    #[serde(default)]
    pub cc: Option<Addresses>,
    /// Blind-copy recipient(s): in the envelope, not in the headers.
    #[serde(default)]
    pub bcc: Option<Addresses>,
    /// Reply-To address(es).
    #[serde(default)]
    pub reply_to: Option<Addresses>,
    /// Sender (default: the process-wide `[email] from`).
    #[serde(default)]
    pub from: Option<String>,
    /// Subject; a template.
    pub subject: String,
    /// Plain-text body; a template. At least one of `body` and `html` is required; both
    /// make a multipart/alternative message.
    #[serde(default)]
    pub body: Option<String>,
    /// HTML body; a template.
    #[serde(default)]
    pub html: Option<String>,
    /// SMTP server settings (default: the process-wide `[email]` settings).
    #[serde(default)]
    pub smtp: Option<SmtpParams>,
}

/// Checks an email address as a `From`/`To` header would need it: `a@example.com` or
/// `Name <a@example.com>`.
pub fn check_mailbox(text: &str) -> Result<(), String> {
    text.parse::<lettre::message::Mailbox>()
        .map(|_| ())
        .map_err(|e| {
            format!("{text:?} is not a valid email address ({e}); expected `name@example.com` or `Name <name@example.com>`")
        })
}

impl EmailParams {
    /// Problems that can be seen before templates are rendered, each as (field path under
    /// `params`, message). Fields holding templates are checked when the node runs.
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        let mut address = |field: String, text: &str| {
            if !crate::template::is_template(text)
                && let Err(e) = check_mailbox(text)
            {
                out.push((field, e));
            }
        };
        for (field, list) in [
            ("to", Some(&self.to)),
            ("cc", self.cc.as_ref()),
            ("bcc", self.bcc.as_ref()),
            ("reply_to", self.reply_to.as_ref()),
        ] {
            match list {
                Some(Addresses::One(a)) => address(field.to_string(), a),
                Some(Addresses::Many(v)) => {
                    for (i, a) in v.iter().enumerate() {
                        address(format!("{field}[{i}]"), a);
                    }
                }
                None => {}
            }
        }
        if let Some(from) = &self.from {
            address("from".to_string(), from);
        }
        if self.to.as_slice().is_empty() {
            out.push(("to".into(), "needs at least one recipient".into()));
        }
        if self.body.is_none() && self.html.is_none() {
            out.push((
                "body".into(),
                "an email needs `body` (plain text), `html`, or both".into(),
            ));
        }
        if let Some(smtp) = &self.smtp {
            out.extend(
                smtp.problems()
                    .into_iter()
                    .map(|(f, m)| (format!("smtp.{f}"), m)),
            );
        }
        out
    }
}

impl SmtpParams {
    /// Problems with these settings, each as (field, message).
    pub fn problems(&self) -> Vec<(String, String)> {
        let mut out = Vec::new();
        if let Some(h) = &self.host
            && (h.trim().is_empty() || h.chars().any(|c| c.is_whitespace() || c == '/'))
        {
            out.push((
                "host".into(),
                format!(
                    "{h:?} is not a host name; expected e.g. `smtp.example.com` or an IP address"
                ),
            ));
        }
        if let Some(p) = self.port
            && !(1..=65535).contains(&p)
        {
            out.push(("port".into(), format!("{p} is not a port; use 1 to 65535")));
        }
        if let Some(name) = &self.password_env
            && !is_env_var_name(name)
        {
            out.push((
                "password_env".into(),
                format!("{name:?} is not an environment variable name; use letters, digits and `_` (the variable holds the password, which never goes in a flow)"),
            ));
        }
        match (&self.username, &self.password_env) {
            (Some(_), None) => out.push((
                "password_env".into(),
                "`username` needs `password_env`, the environment variable holding the password"
                    .into(),
            )),
            (None, Some(_)) => {
                out.push(("username".into(), "`password_env` needs `username`".into()))
            }
            _ => {}
        }
        out
    }
}

/// True if `name` can be an environment variable name: letters, digits and `_`, not
/// starting with a digit.
pub fn is_env_var_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
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

    fn email_issues(params: &str) -> Vec<crate::error::Issue> {
        let doc = format!("name: f\nnodes:\n  m: {{type: email, params: {{{params}}}}}\n");
        let spec = crate::spec::parse_flow(&doc).expect("parses");
        match crate::validate::compile(&spec) {
            Ok(_) => Vec::new(),
            Err(e) => e.issues,
        }
    }

    fn has(issues: &[crate::error::Issue], path: &str, needle: &str) -> bool {
        issues
            .iter()
            .any(|i| i.path == path && i.message.contains(needle))
    }

    #[test]
    fn a_valid_email_node_compiles_and_templated_addresses_wait_for_run_time() {
        let i = email_issues(
            "to: ['{{ input.email }}', 'Ops <ops@example.com>'], from: 'Shop <shop@example.com>', subject: 'Hi {{ input.name }}', html: '<p>hi</p>', smtp: {host: smtp.example.com, port: 2525, tls: tls, username: u, password_env: SMTP_PASSWORD}",
        );
        assert!(i.is_empty(), "{i:?}");
    }

    #[test]
    fn email_validation_names_the_field() {
        let i = email_issues("to: 'bob@', subject: s, body: b");
        assert!(
            has(&i, "nodes.m.params.to", "not a valid email address"),
            "{i:?}"
        );
        let i = email_issues("to: [a@example.com, nope], cc: 'x y', subject: s, body: b");
        assert!(has(&i, "nodes.m.params.to[1]", "\"nope\""), "{i:?}");
        assert!(
            has(&i, "nodes.m.params.cc", "not a valid email address"),
            "{i:?}"
        );
        let i = email_issues("to: a@example.com, subject: s");
        assert!(has(&i, "nodes.m.params.body", "`html`"), "{i:?}");
        let i = email_issues("to: a@example.com, subject: s, body: b, smtp: {tls: ssl}");
        assert!(
            has(
                &i,
                "nodes.m.params.smtp.tls",
                "expected one of `starttls`, `tls`, `none`"
            ),
            "{i:?}"
        );
        let i = email_issues("to: a@example.com, subject: s, body: b, smtp: {port: 0}");
        assert!(has(&i, "nodes.m.params.smtp.port", "1 to 65535"), "{i:?}");
        let i = email_issues(
            "to: a@example.com, subject: s, body: b, smtp: {username: u, password_env: 'bad-name'}",
        );
        assert!(
            has(
                &i,
                "nodes.m.params.smtp.password_env",
                "not an environment variable name"
            ),
            "{i:?}"
        );
        let i = email_issues("to: a@example.com, subject: s, body: b, password: x");
        assert!(
            has(&i, "nodes.m.params.password", "unknown field `password`"),
            "{i:?}"
        );
        let i = email_issues("to: 5, subject: s, body: b");
        assert!(
            has(&i, "nodes.m.params.to", "an email address or a list"),
            "{i:?}"
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
