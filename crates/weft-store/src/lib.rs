//! The storage contract every weft driver implements, grouped by entity (flows, runs, tasks,
//! dead letters, queues). Drivers translate their own errors into [`StoreError`] at this
//! boundary; no driver type crosses it.
//!
//! Writes that change what can run next return [`Effects`]: the tasks that became ready, the
//! earliest timer now due, and runs that finished. The engine applies them to its in-memory
//! queues only after the write committed, so nothing runs on the strength of an uncommitted
//! state change.

mod apikeys;
#[cfg(feature = "conformance")]
pub mod conformance;
mod error;
mod limits;
mod records;
pub mod schedules;

pub use apikeys::{ApiKeyRecord, ApiRole, NewApiKey};
pub use error::StoreError;
pub use limits::{KeyLimitRecord, KeySlotHold, LimitStore};
pub use records::*;

use async_trait::async_trait;
use serde::Serialize;
use serde_json::Value;
use std::sync::Arc;
use weft_core::FlowSpec;
use weft_core::time::Millis;

/// Result of a store call.
pub type StoreResult<T> = Result<T, StoreError>;

/// Flow definitions and their versions.
#[async_trait]
pub trait FlowStore: Send + Sync {
    /// Stores `spec` as a new version unless the latest version is identical; returns the
    /// version and whether it was created.
    async fn flow_put(&self, spec: &FlowSpec) -> StoreResult<(FlowRecord, bool)>;
    /// A version of a flow (the latest when `version` is `None`).
    async fn flow_get(&self, name: &str, version: Option<u32>) -> StoreResult<Option<FlowRecord>>;
    /// The latest version of every flow.
    async fn flow_list(&self) -> StoreResult<Vec<FlowRecord>>;
    /// Every stored version of a flow, oldest first; empty when the flow is unknown.
    async fn flow_versions(&self, name: &str) -> StoreResult<Vec<FlowRecord>>;
    /// Deletes every version of a flow and returns how many there were. Runs of the flow
    /// stay readable. [`StoreError::Conflict`] while a run of it is queued or running or
    /// has a dead task (which a replay would run again), [`StoreError::NotFound`] for an
    /// unknown flow.
    async fn flow_delete(&self, name: &str) -> StoreResult<u32>;
}

/// Runs.
#[async_trait]
pub trait RunStore: Send + Sync {
    /// Creates runs with their tasks. Each entry either creates its run or, when its
    /// idempotency key was seen before, returns the existing run.
    async fn run_create(&self, runs: Vec<NewRun>) -> StoreResult<(Vec<RunCreated>, Effects)>;
    /// One run and its tasks.
    async fn run_get(&self, id: &str) -> StoreResult<Option<RunDetail>>;
    /// Runs matching `filter`, newest first.
    async fn run_list(&self, filter: &RunFilter) -> StoreResult<Vec<RunRecord>>;
    /// Cancels a run, its unfinished tasks and its unfinished child runs.
    async fn run_cancel(&self, id: &str) -> StoreResult<Effects>;
    /// Retention: removes finished runs (succeeded, failed or cancelled) created before
    /// `cutoff`, by the time in their UUID v7 id, with their tasks (dead ones included) and
    /// idempotency keys. A queued or running run is never removed. A driver may keep more
    /// than asked, never less: PostgreSQL drops whole daily partitions, so it removes a day
    /// only once all of it is before `cutoff` and none of its runs is queued or running.
    /// Safe to call from several processes at once and to repeat.
    async fn run_prune(&self, cutoff: Millis) -> StoreResult<Pruned>;
    /// The sweeper's search: up to `limit` queued or running runs, in id order after
    /// `after`, are checked, and what is wrong with them is returned with the last id
    /// checked (`None` once the end is reached). See [`Inconsistency`] for what is looked
    /// for; only a bug or a hand-edited database produces any.
    async fn run_inconsistencies(
        &self,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<(Vec<Inconsistency>, Option<String>)>;
    /// Repairs a run's counters from its tasks: a queued or running run whose counters
    /// disagree with its tasks gets the true counts, and finishes (resuming its parent, if
    /// any) when none of its tasks can still run. Nothing for a run that agrees.
    async fn run_recount(&self, run_id: &str) -> StoreResult<Effects>;
}

/// Tasks: completions, timers and the ready set.
#[async_trait]
pub trait TaskStore: Send + Sync {
    /// Records attempt results and schedules what follows, atomically per result.
    async fn task_complete(&self, results: Vec<TaskResult>) -> StoreResult<Effects>;
    /// Moves tasks whose timer is due at `now` forward (delays finish, back-offs become ready).
    async fn task_promote_due(&self, now: Millis) -> StoreResult<Effects>;
    /// Every ready task, for rebuilding the in-memory queues at start-up. Tasks a previous
    /// process left running are handed back as ready (their attempt re-runs).
    async fn task_recover(&self) -> StoreResult<Effects>;
    /// What a task's templates may read: the run input and the outputs of `nodes`.
    async fn task_inputs(
        &self,
        run_id: &str,
        nodes: &[String],
    ) -> StoreResult<(Value, serde_json::Map<String, Value>)>;
}

/// The dead-letter queue: tasks that ran out of attempts.
#[async_trait]
pub trait DlqStore: Send + Sync {
    /// Dead tasks matching `filter`, newest first.
    async fn dlq_list(&self, filter: &DlqFilter) -> StoreResult<Vec<DeadTask>>;
    /// How many dead tasks match `filter` (its cursor and limit aside).
    async fn dlq_count(&self, filter: &DlqFilter) -> StoreResult<u64>;
    /// Gives a dead task a fresh set of attempts; its run resumes.
    async fn dlq_replay(&self, run_id: &str, node: &str) -> StoreResult<Effects>;
    /// Takes a dead task out of the dead-letter queue for good: it becomes `cancelled` and
    /// keeps its error and attempts; its run stays `failed`. Only a failed run's dead tasks
    /// can be discarded ([`StoreError::Conflict`] while the run is still running).
    async fn dlq_discard(&self, run_id: &str, node: &str) -> StoreResult<()>;
}

/// Queue settings that can change at run time.
#[async_trait]
pub trait QueueStore: Send + Sync {
    /// Every queue with stored settings.
    async fn queue_list(&self) -> StoreResult<Vec<QueueSettings>>;
    /// Creates or updates a queue's settings.
    async fn queue_put(&self, settings: &QueueSettings) -> StoreResult<()>;
}

/// API keys (only hashes of their secrets).
#[async_trait]
pub trait ApiKeyStore: Send + Sync {
    /// Stores a new key; [`StoreError::Conflict`] if its id is taken.
    async fn apikey_create(&self, key: &NewApiKey) -> StoreResult<ApiKeyRecord>;
    /// Every key, revoked ones included, oldest first.
    async fn apikey_list(&self) -> StoreResult<Vec<ApiKeyRecord>>;
    /// Revokes a key at `at`; [`StoreError::NotFound`] for an unknown id,
    /// [`StoreError::Conflict`] if it is already revoked.
    async fn apikey_revoke(&self, id: &str, at: Millis) -> StoreResult<ApiKeyRecord>;
}

/// Ownership of ready tasks by worker processes that share one database, and the leader
/// lease for singleton duties (timer firing, lease reaping, retention).
///
/// An engine that is the only process on its database (`weft up` on SQLite) keeps claims
/// in memory and never calls these. In a cluster every worker claims from the store:
/// a claimed task stays `ready` but carries its worker and a lease deadline, is invisible
/// to other claims, and its lease is extended by the worker's heartbeat. A task whose
/// lease ran out (its worker died or lost the database) is handed back by
/// [`ClaimStore::task_reap`] and runs again, as the same attempt: a lost worker does not
/// use up the node's retries. Should the lost worker still report a result, the first
/// result recorded wins and the other is ignored (at-least-once attempts, exactly-once
/// state changes, as everywhere else).
///
/// Every transition into `ready` (a successor unblocked, a timer fired, a replay) leaves
/// the task unclaimed.
#[async_trait]
pub trait ClaimStore: Send + Sync {
    /// Claims up to `limit` unclaimed ready tasks of `queue` for `worker` until
    /// `lease_until`: highest priority first, then the oldest run first. Concurrent
    /// claims never return the same task. A paused queue still hands out tasks: pausing is
    /// the worker's decision (it asks for `limit = 0`).
    async fn task_claim(
        &self,
        worker: &str,
        queue: &str,
        limit: u32,
        lease_until: Millis,
    ) -> StoreResult<Vec<ReadyTask>>;
    /// Extends every lease `worker` holds to `lease_until` and returns the tasks it still
    /// holds. A task the worker is running that is missing from the answer is no longer
    /// its own (cancelled, or reaped after the lease ran out): the worker stops it.
    async fn task_heartbeat(
        &self,
        worker: &str,
        lease_until: Millis,
    ) -> StoreResult<Vec<(String, String)>>;
    /// Gives back tasks `worker` claimed and has not started (it is shutting down): they
    /// are unclaimed at once, for any worker, instead of when the lease ends. A task that is
    /// no longer `worker`'s, or no longer ready, is left alone, and so is one another
    /// transaction is changing at that moment (it keeps its lease, which ends by itself).
    /// Returns how many were given back.
    async fn task_release(&self, worker: &str, tasks: &[ReadyTask]) -> StoreResult<u64>;
    /// Hands back every claimed task whose lease ended before `now`: it becomes unclaimed
    /// (ready for any worker) and its `error` notes the lost attempt ("lease of worker W
    /// expired at T"). Effects list the tasks handed back.
    async fn task_reap(&self, now: Millis) -> StoreResult<Effects>;
    /// Takes or renews the lease named `duty` for `holder` until `now + ttl_ms`; true if
    /// `holder` holds it now. Another holder's lease is taken only once it has ended.
    async fn leader_acquire(
        &self,
        duty: &str,
        holder: &str,
        now: Millis,
        ttl_ms: i64,
    ) -> StoreResult<bool>;
    /// Gives up `holder`'s lease on `duty` (a clean shutdown), so another process takes it
    /// over at once instead of after the lease ends.
    async fn leader_release(&self, duty: &str, holder: &str) -> StoreResult<()>;
    /// Who holds `duty` and until when, if anyone holds it at `now`.
    async fn leader_get(&self, duty: &str, now: Millis) -> StoreResult<Option<(String, Millis)>>;

    /// Tells the other processes on this database that `queues` have new unclaimed ready
    /// tasks, so their workers claim now instead of at their next poll. Called after the
    /// write that made the tasks ready committed; returns at once (the driver sends in the
    /// background and may coalesce many calls into one signal per queue).
    ///
    /// Best-effort: a lost announcement costs the workers at most one poll interval, never
    /// a task, since claims always read the store. The default does nothing (a store that
    /// only one process uses).
    fn announce_ready(&self, queues: &[&str]) {
        let _ = queues;
    }

    /// Announcements from any process on this database (this one included): one queue
    /// name per signal. An empty name stands for every queue: the driver sends it when it
    /// starts or resumes listening, since announcements made while it was not listening
    /// are lost. A receiver that lags should likewise treat every queue as announced.
    /// `None` (the default) when the store has no cross-process signal: workers then rely
    /// on polling alone.
    fn ready_announcements(&self) -> Option<tokio::sync::broadcast::Receiver<Arc<str>>> {
        None
    }
}

/// How long a member's row is kept after its last beat; older rows may be deleted.
pub const MEMBER_FORGET_AFTER_MS: Millis = 3_600_000;

/// Membership of the processes sharing one database (a cluster), so any of them can say
/// which processes there are and what they serve.
///
/// Every process of a cluster beats its [`MemberRecord`] regularly; a member that stops
/// beating (it stopped, died or lost the database) drops out of [`MemberStore::member_list`]
/// once its last beat is older than the staleness the caller asks for. Rows whose last beat
/// is more than [`MEMBER_FORGET_AFTER_MS`] older than a newer beat may be deleted by any
/// call; nothing else is ever deleted. An engine alone on its database never calls these.
#[async_trait]
pub trait MemberStore: Send + Sync {
    /// Creates or replaces the row of `member.node_id` with `member` (one row per node id,
    /// never a duplicate).
    async fn member_beat(&self, member: &MemberRecord) -> StoreResult<()>;
    /// The members whose last beat is newer than `now - stale_after_ms`, by node id.
    async fn member_list(&self, now: Millis, stale_after_ms: i64)
    -> StoreResult<Vec<MemberRecord>>;
}

/// Cron schedules and their fire step (see [`schedules`] for why a tick fires exactly once).
///
/// Fire times come from [`weft_core::schedule`]; the store keeps each schedule's next tick
/// in `next_fire_at` so the fire step is one indexed read of what is due.
#[async_trait]
pub trait ScheduleStore: Send + Sync {
    /// Creates or replaces a schedule (already validated); returns it and whether it was
    /// created. A replacement with the same `cron` and `timezone` keeps its next tick; any
    /// other change takes the first tick after `now`.
    async fn schedule_put(
        &self,
        spec: &weft_core::schedule::ScheduleSpec,
        now: Millis,
    ) -> StoreResult<(ScheduleRecord, bool)>;
    /// One schedule.
    async fn schedule_get(&self, name: &str) -> StoreResult<Option<ScheduleRecord>>;
    /// Every schedule, by name.
    async fn schedule_list(&self) -> StoreResult<Vec<ScheduleRecord>>;
    /// Deletes a schedule (its runs stay); [`StoreError::NotFound`] for an unknown name.
    async fn schedule_delete(&self, name: &str) -> StoreResult<()>;
    /// Pauses or resumes a schedule. Ticks due while paused never fire: resuming waits for
    /// the first tick after `now`. [`StoreError::NotFound`] for an unknown name.
    async fn schedule_set_paused(
        &self,
        name: &str,
        paused: bool,
        now: Millis,
    ) -> StoreResult<ScheduleRecord>;
    /// The fire step, in ONE transaction: up to `limit` unpaused schedules whose next tick
    /// is at or before `now` (earliest first) start a run per tick their misfire policy
    /// fires (idempotency key [`schedules::tick_key`]) and move on to their first tick after
    /// `now`. A tick whose flow is gone is reported with its error and skipped. A tick
    /// prepared ahead by [`ScheduleStore::schedule_prepare`] is released (its held roots
    /// become ready) instead of created, if the policy fires it and its flow version is
    /// still the one the schedule uses; otherwise its held run is deleted.
    async fn schedule_fire_due(
        &self,
        now: Millis,
        limit: u32,
    ) -> StoreResult<(Vec<FiredTick>, Effects)>;
    /// The latency-critical half of the fire step, in ONE transaction: every due tick that
    /// was prepared ahead, and that the fire step would release (its misfire policy fires
    /// it, its flow version is unchanged), is released now; nothing else changes. The fire
    /// step that follows finds these runs released (it reports them with `created: false`)
    /// and moves the schedules on. Calling it again, or failing before the fire step, is
    /// harmless: only held roots are released, once.
    async fn schedule_release_due(&self, now: Millis) -> StoreResult<(Vec<FiredTick>, Effects)>;
    /// Prepares ticks ahead, in ONE transaction: up to `limit` unpaused schedules whose next
    /// tick is after `now` and at most `until` (earliest first), and not prepared yet, get
    /// that tick's run created now, held: `queued`, its roots `pending` with no timer and a
    /// deferral naming the tick, so nothing but the fire step starts it (see
    /// [`schedules`]). Returns how many runs were prepared. Pausing, re-applying or
    /// deleting a schedule deletes its held run.
    async fn schedule_prepare(
        &self,
        now: Millis,
        until: Millis,
        limit: u32,
    ) -> StoreResult<(u32, Effects)>;
    /// Starts a run of a schedule now, whether paused or not, outside its ticks; `key` is
    /// the run's idempotency key ([`schedules::manual_key`]). [`StoreError::NotFound`] for an
    /// unknown schedule.
    async fn schedule_trigger(
        &self,
        name: &str,
        now: Millis,
        key: String,
    ) -> StoreResult<(FiredTick, Effects)>;
    /// The earliest next tick of any unpaused schedule.
    async fn schedule_next_due(&self) -> StoreResult<Option<Millis>>;
}

/// The schema version a database is at, and the one the driver writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaVersion {
    /// The database's version.
    pub found: i64,
    /// This build's version; the store is usable only when both agree.
    pub expected: i64,
}

/// Checks on the store as a whole.
#[async_trait]
pub trait HealthStore: Send + Sync {
    /// The schema versions, read from the database: a trivial read that also proves the
    /// store answers.
    async fn schema_version(&self) -> StoreResult<SchemaVersion>;
    /// What the database is and how many connections it takes, read from it now.
    async fn store_facts(&self) -> StoreResult<StoreFacts>;
}

/// The store as operators size it: its kind, this process's share of its connections,
/// the server's connection limit and its clock (see [`HealthStore::store_facts`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct StoreFacts {
    /// `sqlite` or `postgres`.
    pub kind: String,
    /// Connections this process's store may open at once.
    pub pool_size: u32,
    /// The server's `max_connections` (`None` for an embedded store, which has no server).
    pub max_connections: Option<u32>,
    /// Connections the server keeps for superusers and reserved roles
    /// (`superuser_reserved_connections` plus `reserved_connections` where it exists).
    pub reserved_connections: Option<u32>,
    /// The database server's clock now (`None` when it is this process's own clock).
    pub now: Option<Millis>,
}

/// A complete store.
pub trait Store:
    FlowStore
    + RunStore
    + TaskStore
    + ClaimStore
    + MemberStore
    + DlqStore
    + QueueStore
    + LimitStore
    + ApiKeyStore
    + ScheduleStore
    + HealthStore
{
    /// Flushes and closes; later calls fail with [`StoreError::Closed`].
    fn close(&self);
}

/// A shared store handle.
pub type DynStore = Arc<dyn Store>;

/// A flow document as a driver stored it, read back; [`StoreError::Corrupt`] if it no
/// longer parses.
pub fn stored_spec(name: &str, text: &str) -> StoreResult<FlowSpec> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("flow {name}: {e}")))
}

/// A stored flow document, compiled; [`StoreError::Corrupt`] if it no longer parses or
/// compiles (both drivers' flow caches are filled through this).
pub fn compile_stored(name: &str, text: &str) -> StoreResult<Arc<weft_core::CompiledFlow>> {
    let spec = stored_spec(name, text)?;
    let compiled =
        weft_core::compile(&spec).map_err(|e| StoreError::Corrupt(format!("flow {name}: {e}")))?;
    Ok(Arc::new(compiled))
}
