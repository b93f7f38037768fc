//! Run and task states and the words used for them in the store, the API and the CLI.

use serde::{Deserialize, Serialize};

macro_rules! string_enum {
    ($(#[$m:meta])* $name:ident { $($(#[$vm:meta])* $v:ident => $s:literal),+ $(,)? }) => {
        $(#[$m])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(rename_all = "snake_case")]
        pub enum $name { $($(#[$vm])* $v),+ }
        impl $name {
            /// Every state, in lifecycle order.
            pub const ALL: &'static [$name] = &[$($name::$v),+];
            /// The state's name as stored and shown.
            pub fn as_str(self) -> &'static str { match self { $($name::$v => $s),+ } }
            /// Parses a stored or user-given name.
            pub fn parse(s: &str) -> Option<Self> { match s { $($s => Some($name::$v),)+ _ => None } }
        }
        impl std::fmt::Display for $name {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result { f.write_str(self.as_str()) }
        }
    };
}

string_enum!(
    /// Where a run is in its life.
    RunState {
        /// Accepted; no node has started yet.
        Queued => "queued",
        /// At least one node has been scheduled.
        Running => "running",
        /// Every node succeeded or was skipped.
        Succeeded => "succeeded",
        /// A node failed permanently (it is in the dead-letter queue); replaying it resumes the run.
        Failed => "failed",
        /// Cancelled by a user.
        Cancelled => "cancelled",
    }
);

string_enum!(
    /// Where one node of one run is in its life.
    TaskState {
        /// Waiting for upstream nodes (`needs`) to finish.
        Waiting => "waiting",
        /// Due at `scheduled_at`: a `delay` timer or a retry back-off.
        Pending => "pending",
        /// Runnable now; waiting for a worker slot in its queue.
        Ready => "ready",
        /// An attempt is executing.
        Running => "running",
        /// Waiting for a child run (`subflow`) to finish; holds no worker slot.
        Suspended => "suspended",
        /// Finished successfully.
        Succeeded => "succeeded",
        /// On the path a `branch` did not take, or all its upstream nodes were skipped.
        Skipped => "skipped",
        /// Out of attempts: in the dead-letter queue.
        Dead => "dead",
        /// Its run was cancelled before it finished.
        Cancelled => "cancelled",
    }
);

impl RunState {
    /// True once nothing more will happen to the run (replay can still revive a failed run).
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            RunState::Succeeded | RunState::Failed | RunState::Cancelled
        )
    }
}

impl TaskState {
    /// True once the task will not run again on its own.
    pub fn is_terminal(self) -> bool {
        matches!(
            self,
            TaskState::Succeeded | TaskState::Skipped | TaskState::Dead | TaskState::Cancelled
        )
    }
    /// True while the task counts toward its run's active work.
    pub fn is_active(self) -> bool {
        matches!(
            self,
            TaskState::Pending | TaskState::Ready | TaskState::Running | TaskState::Suspended
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for s in TaskState::ALL {
            assert_eq!(TaskState::parse(s.as_str()), Some(*s));
        }
        for s in RunState::ALL {
            assert_eq!(RunState::parse(s.as_str()), Some(*s));
        }
        assert_eq!(TaskState::parse("bogus"), None);
    }
}
