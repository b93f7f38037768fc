//! Events the engine publishes as runs progress.

use serde::Serialize;
use weft_core::RunState;

/// Something that happened to a run.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Event {
    /// A run reached a terminal state.
    RunFinished {
        /// Run id.
        run_id: String,
        /// Flow.
        flow: String,
        /// Final state.
        state: RunState,
        /// Creation time (ms since epoch).
        created_at: i64,
        /// Finish time (ms since epoch).
        finished_at: i64,
    },
}
