//! Errors every driver maps its own failures into.

/// What went wrong in the store.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist.
    #[error("{0} not found")]
    NotFound(String),
    /// The request conflicts with the current state (e.g. replaying a task that is not dead).
    #[error("conflict: {0}")]
    Conflict(String),
    /// The storage medium refused the write (disk full, read-only, I/O error). Nothing of
    /// the failed write was kept; it may be retried.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// The store was closed.
    #[error("store is closed")]
    Closed,
    /// Stored data could not be read back (a bug or a corrupted file).
    #[error("corrupt data: {0}")]
    Corrupt(String),
}
