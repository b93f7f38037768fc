//! Errors a flow document can have, each tied to the path of the offending value.

use serde::Serialize;

/// One problem in a flow document: where it is and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Issue {
    /// Dotted path into the document, e.g. `nodes.charge.needs[0]`; empty for the whole document.
    pub path: String,
    /// What is wrong and what is allowed instead.
    pub message: String,
}

impl Issue {
    /// An issue at `path`.
    pub fn new(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            path: path.into(),
            message: message.into(),
        }
    }
}

impl std::fmt::Display for Issue {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        if self.path.is_empty() {
            write!(f, "{}", self.message)
        } else {
            write!(f, "{}: {}", self.path, self.message)
        }
    }
}

/// A flow document that cannot be accepted. Lists every problem found, not just the first.
#[derive(Debug, Clone, thiserror::Error)]
#[error("invalid flow: {}", .issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
pub struct SpecError {
    /// Every problem found.
    pub issues: Vec<Issue>,
}

impl SpecError {
    /// A single-issue error.
    pub fn one(path: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            issues: vec![Issue::new(path, message)],
        }
    }
}
