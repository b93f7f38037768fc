//! The records that cross the store boundary.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::sync::Arc;
use weft_core::nodes::NodeKind;
use weft_core::time::Millis;
use weft_core::{CompiledFlow, CompiledNode, FlowSpec, RunState, TaskState};

/// One stored version of a flow.
#[derive(Debug, Clone, Serialize)]
pub struct FlowRecord {
    /// Flow name.
    pub name: String,
    /// Version, from 1.
    pub version: u32,
    /// The document.
    pub spec: FlowSpec,
    /// When this version was stored.
    pub created_at: Millis,
}

/// A run to create.
#[derive(Debug, Clone)]
pub struct NewRun {
    /// Id (UUID v7 text).
    pub id: String,
    /// The flow version it runs.
    pub flow: Arc<CompiledFlow>,
    /// That version's number.
    pub version: u32,
    /// Input.
    pub input: Value,
    /// Deduplicates creates: a second create with the same key returns the first run.
    pub idempotency_key: Option<String>,
    /// The parent task, for a subflow's child run.
    pub parent: Option<(String, String)>,
    /// Creation time.
    pub created_at: Millis,
    /// When the run may start (a delayed or scheduled run): until then it is `queued` and
    /// its roots wait as durable timers. `None`, or a time not after `created_at`: at once.
    pub start_at: Option<Millis>,
}

impl NewRun {
    /// The start time when it is later than creation.
    pub fn deferred_start(&self) -> Option<Millis> {
        self.start_at.filter(|&t| t > self.created_at)
    }

    /// The state the run is created in: `queued` while its start is deferred, else what
    /// its flow's roots make it (see [`CompiledFlow::initial_run_state`]).
    pub fn initial_state(&self) -> RunState {
        match self.deferred_start() {
            Some(_) => RunState::Queued,
            None => self.flow.initial_run_state(),
        }
    }

    /// When root `node` becomes due: `None` for a root that is ready at once; a `delay`
    /// root's timer starts when the run starts; any other root of a delayed run waits for
    /// the start.
    pub fn root_due(&self, node: &CompiledNode) -> Option<Millis> {
        let start = self.deferred_start();
        match node.kind {
            NodeKind::Delay => Some(
                start.unwrap_or(self.created_at)
                    + node.delay.unwrap_or_default().as_millis() as Millis,
            ),
            _ => start,
        }
    }
}

/// Outcome of creating one run.
#[derive(Debug, Clone, Serialize)]
pub struct RunCreated {
    /// The run's id (the existing run's, for a duplicate idempotency key).
    pub id: String,
    /// False if the idempotency key matched an existing run.
    pub created: bool,
}

/// A run as stored.
#[derive(Debug, Clone, Serialize)]
pub struct RunRecord {
    /// Id.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// Flow version.
    pub version: u32,
    /// State.
    pub state: RunState,
    /// Input.
    pub input: Value,
    /// Why it failed, if it did.
    pub error: Option<String>,
    /// Idempotency key given at creation.
    pub idempotency_key: Option<String>,
    /// Parent run, for a child run.
    pub parent_run: Option<String>,
    /// Parent node, for a child run.
    pub parent_node: Option<String>,
    /// Created.
    pub created_at: Millis,
    /// Finished (terminal state reached).
    pub finished_at: Option<Millis>,
}

/// One past attempt of a task.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct AttemptRecord {
    /// Attempt number, from 1.
    pub attempt: u32,
    /// Start.
    pub started_at: Millis,
    /// End.
    pub finished_at: Millis,
    /// The error, for a failed attempt.
    pub error: Option<String>,
}

/// A node's state within one run.
#[derive(Debug, Clone, Serialize)]
pub struct TaskRecord {
    /// Node name.
    pub node: String,
    /// State.
    pub state: TaskState,
    /// Attempts started so far.
    pub attempt: u32,
    /// Queue.
    pub queue: String,
    /// When a pending task is due.
    pub scheduled_at: Option<Millis>,
    /// Output, once succeeded.
    pub output: Option<Value>,
    /// Last error.
    pub error: Option<String>,
    /// Every finished attempt, oldest first.
    pub attempts: Vec<AttemptRecord>,
    /// The child run, for a subflow node.
    pub child_run: Option<String>,
    /// When it finished.
    pub finished_at: Option<Millis>,
    /// Why the task is waiting without using an attempt, from its last
    /// [`Outcome::Deferred`]; cleared by its next attempt result.
    pub deferred: Option<Deferral>,
    /// In a cluster: the worker process (its node id) that has claimed this ready task and
    /// starts it when it has a free slot and its limits allow. Absent otherwise.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub claimed_by: Option<String>,
}

/// Why and until when a task was deferred (see [`Outcome::Deferred`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Deferral {
    /// Why, e.g. `circuit open for host api.example.com:443`.
    pub reason: String,
    /// When the task becomes ready again.
    pub until: Millis,
    /// How many times the task has been deferred, over its whole life.
    pub count: u32,
}

/// A run with its tasks, in flow order.
#[derive(Debug, Clone, Serialize)]
pub struct RunDetail {
    /// The run.
    pub run: RunRecord,
    /// Its tasks.
    pub tasks: Vec<TaskRecord>,
}

/// Which runs to list.
#[derive(Debug, Clone, Default)]
pub struct RunFilter {
    /// Only this flow.
    pub flow: Option<String>,
    /// Only this state.
    pub state: Option<RunState>,
    /// Only runs created before this id (ids sort by time): the cursor.
    pub before: Option<String>,
    /// Only runs created at or after this time.
    pub created_after: Option<Millis>,
    /// Only runs created strictly before this time.
    pub created_before: Option<Millis>,
    /// At most this many (default 50, max 1000).
    pub limit: u32,
}

/// A task that can run now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadyTask {
    /// Run id.
    pub run_id: Arc<str>,
    /// Flow name.
    pub flow: Arc<str>,
    /// Flow version.
    pub version: u32,
    /// Node name.
    pub node: Arc<str>,
    /// The attempt about to start (1-based).
    pub attempt: u32,
    /// Queue.
    pub queue: Arc<str>,
    /// Priority (higher first).
    pub priority: i32,
}

impl ReadyTask {
    /// The task of node `node` of a run of `flow` (version `version`), about to start `attempt`.
    pub fn of(
        run_id: &str,
        flow: &CompiledFlow,
        version: u32,
        node: &weft_core::CompiledNode,
        attempt: u32,
    ) -> Self {
        ReadyTask {
            run_id: Arc::from(run_id),
            flow: Arc::from(flow.name()),
            version,
            node: Arc::from(node.name.as_str()),
            attempt,
            queue: Arc::from(node.queue.as_str()),
            priority: node.priority,
        }
    }
}

/// What an attempt produced.
#[derive(Debug, Clone)]
pub enum Outcome {
    /// Succeeded with this output.
    Succeeded(Value),
    /// Failed; retried if the policy allows and `retryable`, else dead-lettered.
    Failed {
        /// Why.
        error: String,
        /// False for errors another attempt cannot fix.
        retryable: bool,
    },
    /// A subflow node asks to start a child run and wait for it.
    StartChild(Box<NewRun>),
    /// The attempt was not made (the target's circuit breaker is open): the task waits,
    /// `pending`, until `until`, then runs the same attempt again. No attempt is used up
    /// (docs/decisions/0008); the run stays running and `reason` is kept on the task.
    Deferred {
        /// When the task becomes ready again.
        until: Millis,
        /// Why, shown with the task (`circuit open for host H`).
        reason: String,
    },
}

/// The result of one attempt, reported by a worker.
#[derive(Debug, Clone)]
pub struct TaskResult {
    /// The task.
    pub task: ReadyTask,
    /// Start.
    pub started_at: Millis,
    /// End.
    pub finished_at: Millis,
    /// What happened.
    pub outcome: Outcome,
}

/// A run that reached a terminal state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FinishedRun {
    /// Run id.
    pub id: String,
    /// Flow name.
    pub flow: String,
    /// Final state.
    pub state: RunState,
    /// Creation time (for latency figures).
    pub created_at: Millis,
    /// Finish time.
    pub finished_at: Millis,
}

/// One state change a write made, reported so the engine can publish it as a live event.
///
/// Drivers report changes in the order they made them. Tasks that became ready are not
/// repeated here: they are in [`Effects::ready`], and a consumer that wants a single
/// causal order reads `changes` first, then `ready` (nothing in one write happens to a
/// task after it became ready).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A run was created, `queued` (or `running` when a root is a `delay`).
    RunCreated {
        /// Run id.
        run_id: String,
        /// Flow name.
        flow: String,
        /// Its first state.
        state: RunState,
        /// Creation time.
        at: Millis,
    },
    /// A failed run runs again: one of its dead tasks was replayed.
    RunResumed {
        /// Run id.
        run_id: String,
        /// Flow name.
        flow: String,
        /// When.
        at: Millis,
    },
    /// A run reached a terminal state (the same run is also in [`Effects::finished`]).
    RunFinished {
        /// The run.
        run: FinishedRun,
        /// Why it failed, for a failed run.
        error: Option<String>,
    },
    /// A task changed state.
    Task(TaskChange),
}

/// A task's new state. A failed attempt that will be retried shows as `pending` with the
/// attempt's `error` and the retry's `next_attempt_at`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TaskChange {
    /// Run id.
    pub run_id: String,
    /// Flow name.
    pub flow: String,
    /// Node name.
    pub node: String,
    /// New state: succeeded, pending (retry scheduled), dead, skipped, suspended or cancelled.
    pub state: TaskState,
    /// The attempt this change concerns (for a retry, the one that failed).
    pub attempt: u32,
    /// The error, for a failed attempt.
    pub error: Option<String>,
    /// When the next attempt is due, for a retry.
    pub next_attempt_at: Option<Millis>,
    /// When it changed.
    pub at: Millis,
}

/// What one retention pass removed.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct Pruned {
    /// Runs removed.
    pub runs: u64,
    /// Tables dropped whole (PostgreSQL's daily partitions); empty for drivers that delete rows.
    pub partitions: Vec<String>,
}

/// What a write changed that the engine must act on.
#[derive(Debug, Clone, Default)]
pub struct Effects {
    /// Tasks that became ready.
    pub ready: Vec<ReadyTask>,
    /// The earliest timer the write created, if any.
    pub next_due: Option<Millis>,
    /// Runs that finished.
    pub finished: Vec<FinishedRun>,
    /// Runs cancelled: their in-flight attempts must stop.
    pub cancelled: Vec<String>,
    /// Run and task state changes, in the order they were made (see [`Change`]).
    pub changes: Vec<Change>,
}

impl Effects {
    /// Notes a durable timer due at `at`: the engine wakes at the earliest one noted.
    pub fn due_at(&mut self, at: Millis) {
        self.next_due = Some(self.next_due.map_or(at, |d| d.min(at)));
    }

    /// Folds `other` into `self`.
    pub fn merge(&mut self, other: Effects) {
        self.ready.extend(other.ready);
        if let Some(at) = other.next_due {
            self.due_at(at);
        }
        self.finished.extend(other.finished);
        self.cancelled.extend(other.cancelled);
        self.changes.extend(other.changes);
    }
}

/// Which dead letters to list.
#[derive(Debug, Clone, Default)]
pub struct DlqFilter {
    /// Only this flow.
    pub flow: Option<String>,
    /// Only this node name.
    pub node: Option<String>,
    /// Only tasks whose last error contains this text (case-insensitive, ASCII folding).
    pub error_contains: Option<String>,
    /// Only tasks dead-lettered at or after this time.
    pub dead_after: Option<Millis>,
    /// Only tasks dead-lettered strictly before this time.
    pub dead_before: Option<Millis>,
    /// Only tasks that sort after this one in the list's order (newest first): the cursor.
    pub after: Option<DlqCursor>,
    /// At most this many (default 50, max 1000).
    pub limit: u32,
}

/// A position in the dead-letter list (which is ordered by dead time, run id and node,
/// all descending): the last task of a page, to continue after it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqCursor {
    /// Its dead time.
    pub dead_at: Millis,
    /// Its run.
    pub run_id: String,
    /// Its node.
    pub node: String,
}

impl DlqCursor {
    /// The cursor just after `task`.
    pub fn after(task: &DeadTask) -> Self {
        Self {
            dead_at: task.dead_at,
            run_id: task.run_id.clone(),
            node: task.node.clone(),
        }
    }

    /// The cursor as an opaque token for APIs: `<dead_at>.<run_id>.<node>`.
    pub fn encode(&self) -> String {
        format!("{}.{}.{}", self.dead_at, self.run_id, self.node)
    }

    /// Reads a token made by [`DlqCursor::encode`]; `None` if it is not one.
    pub fn decode(token: &str) -> Option<Self> {
        let mut parts = token.splitn(3, '.');
        let dead_at = parts.next()?.parse().ok()?;
        let run_id = parts.next().filter(|r| !r.is_empty())?.to_string();
        let node = parts.next().filter(|n| !n.is_empty())?.to_string();
        Some(Self {
            dead_at,
            run_id,
            node,
        })
    }
}

/// A dead-lettered task.
#[derive(Debug, Clone, Serialize)]
pub struct DeadTask {
    /// Run id.
    pub run_id: String,
    /// Flow name.
    pub flow: String,
    /// Node name.
    pub node: String,
    /// The last error.
    pub error: Option<String>,
    /// Every attempt.
    pub attempts: Vec<AttemptRecord>,
    /// When it was dead-lettered.
    pub dead_at: Millis,
}

/// A queue's run-time settings.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueSettings {
    /// Name.
    pub name: String,
    /// Attempts that may run at once.
    pub concurrency: u32,
    /// True while paused: nothing new starts.
    pub paused: bool,
    /// At most this many starts per interval across the queue's tasks, if set.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rate: Option<QueueRate>,
}

/// A queue's rate limit: at most `limit` starts per `per_ms` milliseconds, spaced evenly
/// (docs/decisions/0009).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct QueueRate {
    /// Starts per interval (at least 1).
    pub limit: u32,
    /// The interval in milliseconds (at least 1).
    pub per_ms: u64,
}

/// One process of a cluster, as it last reported itself (see [`MemberStore`](crate::MemberStore)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberRecord {
    /// The process's node id (unique per process): the key of its row.
    pub node_id: String,
    /// Host name.
    pub hostname: String,
    /// Process id.
    pub pid: u32,
    /// The roles it takes (`gateway`, `orchestrator`, `worker`).
    pub roles: Vec<String>,
    /// The queues its workers serve (empty unless it has the worker role).
    pub queues: Vec<MemberQueue>,
    /// When it started.
    pub started_at: Millis,
    /// When it last beat.
    pub beat_at: Millis,
    /// Attempts running on it now, across its queues.
    pub load: u32,
    /// True when it serves every queue (no list configured), including ones not yet in
    /// `queues` because it has not met them.
    pub all_queues: bool,
    /// Database connections its store may open at once (its pool's size).
    pub pool_size: u32,
    /// False while it drains (shutting down: it takes no new work).
    pub ready: bool,
    /// The database's own clock when the beat was written, set by the store (ignored on
    /// writing); `beat_at - store_beat_at` is the member's clock skew against the database,
    /// plus the beat's one-way trip. `None` from a store with no clock of its own (SQLite,
    /// which is the writing process).
    pub store_beat_at: Option<Millis>,
}

/// One queue a cluster member serves, with its load when the member last beat.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MemberQueue {
    /// Queue name.
    pub name: String,
    /// Its concurrency limit on that member.
    pub concurrency: u32,
    /// Attempts of it running there.
    pub running: u32,
}

/// A stored schedule (see [`ScheduleStore`](crate::ScheduleStore)).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ScheduleRecord {
    /// The document as applied; `paused` is the schedule's current state.
    pub spec: weft_core::schedule::ScheduleSpec,
    /// The next tick it waits for; `None` when its expression never fires again.
    pub next_fire_at: Option<Millis>,
    /// The last tick it fired (manual triggers excluded).
    pub last_fire_at: Option<Millis>,
    /// When it was first applied.
    pub created_at: Millis,
    /// When it was last applied, paused or resumed.
    pub updated_at: Millis,
}

/// One tick a fire step (or a manual trigger) fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct FiredTick {
    /// Schedule name.
    pub schedule: String,
    /// The tick's due time (the trigger time, for a manual trigger).
    pub fire_time: Millis,
    /// The run it started; `None` when it could not (see `error`).
    pub run_id: Option<String>,
    /// False when the tick's run already existed (the tick had fired before).
    pub created: bool,
    /// Why no run was started (the flow or its version is gone).
    pub error: Option<String>,
}

impl Inconsistency {
    /// Whether a live child run whose parent run is in `parent` (`None`: gone) is an
    /// orphan: its parent is gone, succeeded or cancelled. A failed parent keeps its
    /// children, since replaying one of its dead tasks resumes it.
    pub fn orphaned_by(parent: Option<RunState>) -> bool {
        parent.is_none_or(|s| matches!(s, RunState::Succeeded | RunState::Cancelled))
    }
}

/// What the sweeper finds wrong with a live run (see
/// [`RunStore::run_inconsistencies`](crate::RunStore::run_inconsistencies)).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Inconsistency {
    /// The run's counters of live and dead tasks disagree with its tasks: repaired by
    /// [`RunStore::run_recount`](crate::RunStore::run_recount).
    Counters {
        /// The run.
        run_id: String,
    },
    /// A child run whose parent run is gone, finished, or no longer waits for it:
    /// cancelled.
    Orphan {
        /// The child run.
        run_id: String,
        /// The parent it names.
        parent_run: String,
    },
    /// A subflow task waiting for a child run that is gone or already finished: the
    /// attempt fails (retryable), so the task's retry policy decides what happens next.
    LostChild {
        /// The waiting run.
        run_id: String,
        /// Its subflow node.
        node: String,
        /// The attempt waiting.
        attempt: u32,
        /// The child run it names.
        child_run: Option<String>,
        /// The child's state, when the child still exists.
        child_state: Option<RunState>,
    },
}
