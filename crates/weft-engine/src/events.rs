//! Events the engine publishes as runs progress.
//!
//! Two streams exist, for two audiences:
//! - [`Event`] (through `Engine::subscribe`): an in-process notification that a run
//!   finished, for `wait_run` and the benchmarks; it carries no history.
//! - [`LiveEvent`] (through [`EventLog`]): every run and node state change, numbered by
//!   `seq` and kept in a bounded ring so that a client can resume after a disconnect. The
//!   API streams these over SSE and WebSocket.
//!
//! Live events are built from the store's [`Change`]s after the write committed, so a
//! client never sees a state that could still be rolled back.

mod log;

pub use log::{
    DEFAULT_EVENT_BUFFER, DEFAULT_SUBSCRIBER_LAG, EventFilter, EventLog, Gap, Lagged, Subscription,
};

use serde::Serialize;
use weft_core::time::Millis;
use weft_core::{RunState, TaskState};
use weft_store::{Change, ReadyTask, TaskChange};

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

/// One published state change: `{"seq", "at", "kind": "run"|"node", ...}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LiveEvent {
    /// Position in this process's event log, from 1, with no holes.
    pub seq: u64,
    /// When the change happened (ms since epoch).
    pub at: Millis,
    /// What changed.
    #[serde(flatten)]
    pub body: EventBody,
}

/// A run event or a node event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum EventBody {
    /// A run changed state.
    Run(RunEvent),
    /// A node of a run changed state.
    Node(NodeEvent),
}

/// The two kinds of events, for filtering and as the SSE `event:` name.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum EventKind {
    /// [`EventBody::Run`].
    Run,
    /// [`EventBody::Node`].
    Node,
}

impl EventKind {
    /// `run` or `node`.
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Run => "run",
            EventKind::Node => "node",
        }
    }

    /// Parses `run` or `node`.
    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "run" => Some(EventKind::Run),
            "node" => Some(EventKind::Node),
            _ => None,
        }
    }
}

/// A run's state change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RunEvent {
    /// Run id.
    pub run_id: String,
    /// Flow name.
    pub flow: String,
    /// What happened.
    pub state: RunEventState,
    /// Why it failed, for `failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// What happened to a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RunEventState {
    /// Accepted.
    Created,
    /// Its first node started (or a root `delay` started its timer).
    Started,
    /// Every node succeeded or was skipped.
    Succeeded,
    /// A node is dead.
    Failed,
    /// Cancelled.
    Cancelled,
    /// Failed, then running again: a dead node was replayed.
    Resumed,
}

/// A node's state change within one run.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NodeEvent {
    /// Run id.
    pub run_id: String,
    /// Flow name.
    pub flow: String,
    /// Node name.
    pub node: String,
    /// What happened.
    pub state: NodeEventState,
    /// The attempt concerned, from 1.
    pub attempt: u32,
    /// The attempt's error, for `attempt_failed` and `dead`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the next attempt is due, for `attempt_failed`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_attempt_at: Option<Millis>,
}

/// What happened to a node.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum NodeEventState {
    /// Runnable; waiting for a worker slot.
    Ready,
    /// An attempt started.
    Running,
    /// Finished successfully.
    Succeeded,
    /// An attempt failed; another is scheduled at `next_attempt_at`.
    AttemptFailed,
    /// Out of attempts: dead-lettered.
    Dead,
    /// Not run: on a path not taken.
    Skipped,
    /// Waiting for its child run.
    Suspended,
    /// Its run was cancelled.
    Cancelled,
}

impl LiveEvent {
    /// An event not yet published (its `seq` is assigned by [`EventLog::publish`]).
    pub fn new(at: Millis, body: EventBody) -> Self {
        Self { seq: 0, at, body }
    }

    /// Run or node.
    pub fn kind(&self) -> EventKind {
        match self.body {
            EventBody::Run(_) => EventKind::Run,
            EventBody::Node(_) => EventKind::Node,
        }
    }

    /// The run it concerns.
    pub fn run_id(&self) -> &str {
        match &self.body {
            EventBody::Run(r) => &r.run_id,
            EventBody::Node(n) => &n.run_id,
        }
    }

    /// The flow of that run.
    pub fn flow(&self) -> &str {
        match &self.body {
            EventBody::Run(r) => &r.flow,
            EventBody::Node(n) => &n.flow,
        }
    }
}

/// Appends the live events of one committed write to `out`, in causal order: the store's
/// changes in the order it made them, then the tasks that became ready (see [`Change`]).
pub(crate) fn from_effects(
    changes: Vec<Change>,
    ready: &[ReadyTask],
    now: Millis,
    out: &mut Vec<LiveEvent>,
) {
    for change in changes {
        match change {
            Change::RunCreated {
                run_id,
                flow,
                state,
                at,
            } => {
                let started = state == RunState::Running;
                let created = run_event(run_id, flow, RunEventState::Created, None);
                if started {
                    let mut s = created.clone();
                    if let EventBody::Run(r) = &mut s {
                        r.state = RunEventState::Started;
                    }
                    out.push(LiveEvent::new(at, created));
                    out.push(LiveEvent::new(at, s));
                } else {
                    out.push(LiveEvent::new(at, created));
                }
            }
            Change::RunResumed { run_id, flow, at } => {
                let body = run_event(run_id, flow, RunEventState::Resumed, None);
                out.push(LiveEvent::new(at, body));
            }
            Change::RunFinished { run, error } => {
                let state = match run.state {
                    RunState::Succeeded => RunEventState::Succeeded,
                    RunState::Cancelled => RunEventState::Cancelled,
                    _ => RunEventState::Failed,
                };
                let body = run_event(run.id, run.flow, state, error);
                out.push(LiveEvent::new(run.finished_at, body));
            }
            Change::Task(t) => {
                if let Some(ev) = task_event(t) {
                    out.push(ev);
                }
            }
        }
    }
    for t in ready {
        out.push(node_started(t, NodeEventState::Ready, now));
    }
}

/// The event of a task `t` becoming `state` (ready, or running when an attempt starts).
pub(crate) fn node_started(t: &ReadyTask, state: NodeEventState, at: Millis) -> LiveEvent {
    LiveEvent::new(
        at,
        EventBody::Node(NodeEvent {
            run_id: t.run_id.to_string(),
            flow: t.flow.to_string(),
            node: t.node.to_string(),
            state,
            attempt: t.attempt,
            error: None,
            next_attempt_at: None,
        }),
    )
}

/// The event of run `t`'s first node starting.
pub(crate) fn run_started(t: &ReadyTask, at: Millis) -> LiveEvent {
    let body = run_event(
        t.run_id.to_string(),
        t.flow.to_string(),
        RunEventState::Started,
        None,
    );
    LiveEvent::new(at, body)
}

fn run_event(
    run_id: String,
    flow: String,
    state: RunEventState,
    error: Option<String>,
) -> EventBody {
    EventBody::Run(RunEvent {
        run_id,
        flow,
        state,
        error,
    })
}

fn task_event(t: TaskChange) -> Option<LiveEvent> {
    let state = match t.state {
        TaskState::Succeeded => NodeEventState::Succeeded,
        TaskState::Pending => NodeEventState::AttemptFailed,
        TaskState::Dead => NodeEventState::Dead,
        TaskState::Skipped => NodeEventState::Skipped,
        TaskState::Suspended => NodeEventState::Suspended,
        TaskState::Cancelled => NodeEventState::Cancelled,
        TaskState::Ready => NodeEventState::Ready,
        TaskState::Running => NodeEventState::Running,
        TaskState::Waiting => return None,
    };
    Some(LiveEvent::new(
        t.at,
        EventBody::Node(NodeEvent {
            run_id: t.run_id,
            flow: t.flow,
            node: t.node,
            state,
            attempt: t.attempt,
            error: t.error,
            next_attempt_at: t.next_attempt_at,
        }),
    ))
}
