//! Write operations, run on the writer thread inside a batch transaction.
//!
//! A run's DAG state lives in counters on its task rows: `waiting` (upstream nodes not yet
//! finished) and `ok` (upstream nodes that succeeded). Finishing a node touches only its
//! direct successors, so a join over 1,000 parents costs 1,000 small updates in total, not a
//! scan per parent. `runs.active` counts tasks that can still make progress; when it reaches
//! zero the run is finished, in the same transaction as the completion that emptied it.
//!
//! By concern: [`runs`] (create, cancel), [`tasks`] (results and what follows them),
//! [`timers`] (due timers, start-up recovery), [`dlq`] (replay, discard), [`claims`] (tasks
//! claimed by workers, leader leases), [`members`] (cluster membership); flows, queues and the shared helpers live here.

mod claims;
mod dlq;
mod members;
mod runs;
mod tasks;
mod timers;

use crate::conv::{classify, fingerprint};
use rand::Rng;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use weft_core::nodes::NodeKind;
use weft_core::time::{Clock, Millis, SystemClock};
use weft_core::{CompiledFlow, FlowSpec, NodeIdx, RunState, TaskState};
use weft_store::*;

/// The writer thread's state: its connection and a cache of compiled flow versions.
pub struct W {
    pub(crate) conn: Connection,
    /// Set by `Writer::close`: exit after this batch.
    pub(crate) stop: bool,
    flows: HashMap<(String, u32), Arc<CompiledFlow>>,
    clock: Box<dyn Clock>,
}

pub(super) type R<T> = StoreResult<T>;

pub(super) fn db<T>(r: rusqlite::Result<T>) -> R<T> {
    r.map_err(classify)
}

/// What `run_adjust` reads back: state, flow, created_at, parent run, parent node, active.
pub(super) type AdjustedRun = (String, String, Millis, Option<String>, Option<String>, i64);

/// Where one task is, identified for an update.
pub(super) struct TaskKey<'a> {
    pub(super) run: &'a str,
    pub(super) flow: &'a Arc<CompiledFlow>,
    pub(super) version: u32,
}

impl W {
    pub(crate) fn new(conn: Connection) -> Self {
        Self {
            conn,
            stop: false,
            flows: HashMap::new(),
            clock: Box::new(SystemClock),
        }
    }

    pub(crate) fn now(&self) -> Millis {
        self.clock.now_ms()
    }

    /// Starts the WAL over now, while the writer is otherwise idle, instead of in whatever
    /// write comes next: after a checkpoint has copied the whole WAL, the next transaction
    /// that writes a page restarts it and, at its commit, truncates the file
    /// (`journal_size_limit = 0`), which takes milliseconds per ten MB of WAL. Rewriting the
    /// header's `user_version` with its own value is the smallest such write. Best effort:
    /// while a reader still uses the old WAL nothing restarts, as for any write.
    pub(crate) fn restart_wal(&mut self) {
        let same = self
            .conn
            .query_row("PRAGMA user_version", [], |r| r.get::<_, i64>(0))
            .and_then(|v| self.conn.pragma_update(None, "user_version", v));
        if let Err(e) = same {
            tracing::debug!(error = %e, "could not start the WAL over");
        }
    }

    pub(crate) fn forget_cache(&mut self) {
        self.conn.flush_prepared_statement_cache();
    }

    /// A compiled flow version, from the cache or the `flows` table.
    pub(crate) fn flow(&mut self, name: &str, version: u32) -> R<Arc<CompiledFlow>> {
        if let Some(f) = self.flows.get(&(name.to_string(), version)) {
            return Ok(f.clone());
        }
        let text: String = db(self
            .conn
            .prepare_cached("SELECT spec FROM flows WHERE name = ?1 AND version = ?2")
            .and_then(|mut s| s.query_row(params![name, version], |r| r.get(0))))
        .map_err(|_| StoreError::NotFound(format!("flow {name} version {version}")))?;
        let compiled = compile_stored(name, &text)?;
        self.flows
            .insert((name.to_string(), version), compiled.clone());
        Ok(compiled)
    }

    pub(crate) fn flow_put(&mut self, spec: &FlowSpec) -> R<(FlowRecord, bool)> {
        let text = serde_json::to_string(spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let hash = fingerprint(&text);
        let latest: Option<(u32, String, Millis)> = db(self
            .conn
            .prepare_cached("SELECT version, hash, created_at FROM flows WHERE name = ?1 ORDER BY version DESC LIMIT 1")
            .and_then(|mut s| s.query_row([&spec.name], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()))?;
        if let Some((version, h, created_at)) = &latest
            && *h == hash
        {
            let rec = FlowRecord {
                name: spec.name.clone(),
                version: *version,
                spec: spec.clone(),
                created_at: *created_at,
            };
            return Ok((rec, false));
        }
        let version = latest.map(|l| l.0 + 1).unwrap_or(1);
        let now = self.now();
        db(self
            .conn
            .prepare_cached("INSERT INTO flows (name, version, spec, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)")
            .and_then(|mut s| s.execute(params![spec.name, version, text, hash, now])))?;
        Ok((
            FlowRecord {
                name: spec.name.clone(),
                version,
                spec: spec.clone(),
                created_at: now,
            },
            true,
        ))
    }

    /// Deletes every version of a flow unless a run of it is still live. The compiled-flow
    /// cache forgets it too: a flow applied again under the same name starts at version 1.
    pub(crate) fn flow_delete(&mut self, name: &str) -> R<u32> {
        self.drop_prepared_of_flow(name)?;
        let live: i64 = db(self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM runs WHERE flow = ?1 AND state IN ('queued', 'running')",
            )
            .and_then(|mut s| s.query_row([name], |r| r.get(0))))?;
        if live > 0 {
            return Err(StoreError::Conflict(format!(
                "flow {name} has {live} queued or running runs; cancel them or let them finish first"
            )));
        }
        // A dead task could be replayed later, against whatever document then holds its
        // version number (a flow applied again after deletion starts at version 1).
        let dead: i64 = db(self
            .conn
            .prepare_cached(
                "SELECT count(*) FROM tasks t JOIN runs r ON r.id = t.run_id WHERE r.flow = ?1 AND t.state = 'dead'",
            )
            .and_then(|mut s| s.query_row([name], |r| r.get(0))))?;
        if dead > 0 {
            return Err(StoreError::Conflict(format!(
                "flow {name} has {dead} dead tasks in the DLQ; replay or discard them first"
            )));
        }
        let deleted = db(self
            .conn
            .prepare_cached("DELETE FROM flows WHERE name = ?1")
            .and_then(|mut s| s.execute([name])))?;
        if deleted == 0 {
            return Err(StoreError::NotFound(format!("flow {name}")));
        }
        self.flows.retain(|(n, _), _| n != name);
        Ok(deleted as u32)
    }

    pub(crate) fn queue_put(&mut self, q: &QueueSettings) -> R<()> {
        db(self
            .conn
            .prepare_cached(
                "INSERT INTO queues (name, concurrency, paused, rate_limit, rate_per_ms)
                 VALUES (?1, ?2, ?3, ?4, ?5)
                 ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,
                     paused = excluded.paused, rate_limit = excluded.rate_limit,
                     rate_per_ms = excluded.rate_per_ms",
            )
            .and_then(|mut s| {
                s.execute(params![
                    q.name,
                    q.concurrency,
                    q.paused,
                    q.rate.map(|r| r.limit),
                    q.rate.map(|r| i64::try_from(r.per_ms).unwrap_or(i64::MAX)),
                ])
            }))?;
        Ok(())
    }

    // ---- runs -------------------------------------------------------------------------
}

/// A change of task `idx` of `key`'s run, with no error.
pub(super) fn new_change(
    key: &TaskKey,
    idx: NodeIdx,
    state: TaskState,
    attempt: u32,
    at: Millis,
) -> TaskChange {
    TaskChange {
        run_id: key.run.to_string(),
        flow: key.flow.name().to_string(),
        node: key.flow.nodes[idx].name.clone(),
        state,
        attempt,
        error: None,
        next_attempt_at: None,
        at,
    }
}

/// Reports a task's new state for the event log.
pub(super) fn task_change(
    fx: &mut Effects,
    key: &TaskKey,
    idx: NodeIdx,
    state: TaskState,
    attempt: u32,
    at: Millis,
) {
    fx.changes
        .push(Change::Task(new_change(key, idx, state, attempt, at)));
}

/// The columns a ready task is reported with (recovered, claimed or reaped), in
/// [`ready_task`]'s order: `run_id, node, attempt, flow, version, queue, priority`.
pub(super) type TaskRow = (String, String, u32, String, u32, String, i32);

pub(super) fn ready_task(
    (run, node, attempt, flow, version, queue, priority): TaskRow,
) -> ReadyTask {
    ReadyTask {
        run_id: Arc::from(run.as_str()),
        flow: Arc::from(flow.as_str()),
        version,
        node: Arc::from(node.as_str()),
        attempt,
        queue: Arc::from(queue.as_str()),
        priority,
    }
}

pub(super) fn task_row(r: &rusqlite::Row<'_>) -> rusqlite::Result<TaskRow> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}
