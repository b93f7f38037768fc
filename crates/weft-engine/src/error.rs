//! Engine errors, each mapping to one kind of API response.

use weft_core::SpecError;
use weft_store::StoreError;

/// Why an engine call failed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum EngineError {
    /// The flow document is invalid; every problem is listed.
    #[error(transparent)]
    Invalid(#[from] SpecError),
    /// The schedule document is invalid; every problem is listed, each naming its field.
    #[error("invalid schedule: {}", .0.issues.iter().map(|i| i.to_string()).collect::<Vec<_>>().join("; "))]
    ScheduleInvalid(SpecError),
    /// The request itself is wrong (bad input JSON, unknown state name...).
    #[error("{0}")]
    BadRequest(String),
    /// No such flow, run or task.
    #[error("{0} not found")]
    NotFound(String),
    /// Conflicts with the current state.
    #[error("{0}")]
    Conflict(String),
    /// The store cannot take writes right now; nothing was accepted.
    #[error("{0}")]
    Unavailable(String),
    /// The engine is shutting down.
    #[error("weft is shutting down")]
    ShuttingDown,
    /// A bug or corrupted data.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<StoreError> for EngineError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::NotFound(what) => EngineError::NotFound(what),
            StoreError::Conflict(m) => EngineError::Conflict(m),
            StoreError::Unavailable(m) => EngineError::Unavailable(m),
            StoreError::Closed => EngineError::ShuttingDown,
            StoreError::Corrupt(m) => EngineError::Internal(m),
        }
    }
}
