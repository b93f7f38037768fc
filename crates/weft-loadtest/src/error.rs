//! One error type for the crate; each variant says at which stage the test stopped, so the
//! CLI can tell "your scenario is wrong" from "the server is down" from "disk trouble".

/// Why a load test could not start or its results could not be kept.
#[derive(Debug, thiserror::Error)]
pub enum LoadtestError {
    /// The scenario is malformed or impossible; `path` names the field (empty for the root).
    #[error("scenario: {}{message}", if path.is_empty() { String::new() } else { format!("{path}: ") })]
    Scenario {
        /// Where in the document, e.g. `phases[1].duration`.
        path: String,
        /// What is wrong and what is allowed.
        message: String,
    },
    /// The target URL is not one traffic may be sent to.
    #[error("target: {0}")]
    Target(String),
    /// A check before the test failed (target down, unknown flow); no traffic was sent.
    #[error("pre-flight: {0}")]
    Preflight(String),
    /// A baseline could not be read or written.
    #[error("baseline: {0}")]
    Baseline(String),
    /// A file could not be read or written.
    #[error("{context}: {source}")]
    Io {
        /// What was being done.
        context: String,
        /// The cause.
        source: std::io::Error,
    },
}

impl LoadtestError {
    /// A scenario error at `path`.
    pub fn scenario(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self::Scenario {
            path: path.into(),
            message: message.into(),
        }
    }
}
