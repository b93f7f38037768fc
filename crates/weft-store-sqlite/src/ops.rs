//! Write operations, run on the writer thread inside a batch transaction.
//!
//! A run's DAG state lives in counters on its task rows: `waiting` (upstream nodes not yet
//! finished) and `ok` (upstream nodes that succeeded). Finishing a node touches only its
//! direct successors, so a join over 1,000 parents costs 1,000 small updates in total, not a
//! scan per parent. `runs.active` counts tasks that can still make progress; when it reaches
//! zero the run is finished, in the same transaction as the completion that emptied it.

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

type R<T> = StoreResult<T>;

fn db<T>(r: rusqlite::Result<T>) -> R<T> {
    r.map_err(classify)
}

/// What `run_adjust` reads back: state, flow, created_at, parent run, parent node, active.
type AdjustedRun = (String, String, Millis, Option<String>, Option<String>, i64);

/// Where one task is, identified for an update.
struct TaskKey<'a> {
    run: &'a str,
    flow: &'a Arc<CompiledFlow>,
    version: u32,
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
        let spec: FlowSpec = serde_json::from_str(&text)
            .map_err(|e| StoreError::Corrupt(format!("flow {name}: {e}")))?;
        let compiled = Arc::new(
            weft_core::compile(&spec)
                .map_err(|e| StoreError::Corrupt(format!("flow {name}: {e}")))?,
        );
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
                "INSERT INTO queues (name, concurrency, paused) VALUES (?1, ?2, ?3)
                 ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency, paused = excluded.paused",
            )
            .and_then(|mut s| s.execute(params![q.name, q.concurrency, q.paused])))?;
        Ok(())
    }

    // ---- runs -------------------------------------------------------------------------

    pub(crate) fn run_create(&mut self, run: &NewRun, fx: &mut Effects) -> R<RunCreated> {
        if let Some(key) = &run.idempotency_key {
            let existing: Option<String> = db(self
                .conn
                .prepare_cached("SELECT id FROM runs WHERE flow = ?1 AND idem = ?2")
                .and_then(|mut s| {
                    s.query_row(params![run.flow.name(), key], |r| r.get(0))
                        .optional()
                }))?;
            if let Some(id) = existing {
                return Ok(RunCreated { id, created: false });
            }
        }
        let flow = &run.flow;
        let input =
            serde_json::to_string(&run.input).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let (parent_run, parent_node) = match &run.parent {
            Some((r, n)) => (Some(r.as_str()), Some(n.as_str())),
            None => (None, None),
        };
        db(self
            .conn
            .prepare_cached(
                "INSERT INTO runs (id, flow, version, state, input, idem, parent_run, parent_node, active, created_at)
                 VALUES (?1, ?2, ?3, ?10, ?4, ?5, ?6, ?7, ?8, ?9)",
            )
            .and_then(|mut s| {
                s.execute(params![
                    run.id,
                    flow.name(),
                    run.version,
                    input,
                    run.idempotency_key,
                    parent_run,
                    parent_node,
                    flow.roots.len() as i64,
                    run.created_at,
                    initial_state(flow).as_str()
                ])
            }))?;
        fx.changes.push(Change::RunCreated {
            run_id: run.id.clone(),
            flow: flow.name().to_string(),
            state: initial_state(flow),
            at: run.created_at,
        });
        let now = run.created_at;
        for (idx, node) in flow.nodes.iter().enumerate() {
            let is_root = node.needs.is_empty();
            let (state, due) = match (is_root, node.kind) {
                (false, _) => ("waiting", None),
                (true, NodeKind::Delay) => (
                    "pending",
                    Some(now + node.delay.unwrap_or_default().as_millis() as Millis),
                ),
                (true, _) => ("ready", None),
            };
            db(self
                .conn
                .prepare_cached(
                    "INSERT INTO tasks (run_id, node, idx, state, waiting, ok, attempt, queue, priority, scheduled_at)
                     VALUES (?1, ?2, ?3, ?4, ?5, 0, 1, ?6, ?7, ?8)",
                )
                .and_then(|mut s| {
                    s.execute(params![run.id, node.name, idx as i64, state, node.needs.len() as i64, node.queue, node.priority, due])
                }))?;
            if let Some(due) = due {
                fx.next_due = Some(fx.next_due.map_or(due, |d: Millis| d.min(due)));
            } else if is_root {
                fx.ready
                    .push(ReadyTask::of(&run.id, flow, run.version, node, 1));
            }
        }
        Ok(RunCreated {
            id: run.id.clone(),
            created: true,
        })
    }

    pub(crate) fn run_cancel(&mut self, id: &str, fx: &mut Effects) -> R<()> {
        let now = self.now();
        let row: Option<(String, Millis, Option<String>, Option<String>)> = db(self
            .conn
            .prepare_cached(
                "UPDATE runs SET state = 'cancelled', active = 0, finished_at = ?2
                 WHERE id = ?1 AND state IN ('queued', 'running', 'failed')
                 RETURNING flow, created_at, parent_run, parent_node",
            )
            .and_then(|mut s| {
                s.query_row(params![id, now], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
                })
                .optional()
            }))?;
        let Some((flow, created_at, parent_run, parent_node)) = row else {
            let state: Option<String> = db(self
                .conn
                .prepare_cached("SELECT state FROM runs WHERE id = ?1")
                .and_then(|mut s| s.query_row([id], |r| r.get(0)).optional()))?;
            return Err(match state {
                None => StoreError::NotFound(format!("run {id}")),
                Some(s) => StoreError::Conflict(format!("run {id} is already {s}")),
            });
        };
        let cancelled: Vec<(String, u32)> = db(self
            .conn
            .prepare_cached(
                "UPDATE tasks SET state = 'cancelled', finished_at = ?2
                 WHERE run_id = ?1 AND state IN ('waiting', 'pending', 'ready', 'running', 'suspended')
                 RETURNING node, attempt",
            )
            .and_then(|mut s| s.query_map(params![id, now], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()))?;
        for (node, attempt) in cancelled {
            fx.changes.push(Change::Task(TaskChange {
                run_id: id.to_string(),
                flow: flow.clone(),
                node,
                state: TaskState::Cancelled,
                attempt,
                error: None,
                next_attempt_at: None,
                at: now,
            }));
        }
        fx.cancelled.push(id.to_string());
        let finished = FinishedRun {
            id: id.to_string(),
            flow,
            state: RunState::Cancelled,
            created_at,
            finished_at: now,
        };
        fx.changes.push(Change::RunFinished {
            run: finished.clone(),
            error: None,
        });
        fx.finished.push(finished);
        let children: Vec<String> = db(self
            .conn
            .prepare_cached("SELECT id FROM runs WHERE parent_run = ?1 AND state IN ('queued', 'running', 'failed')")
            .and_then(|mut s| s.query_map([id], |r| r.get(0))?.collect()))?;
        for child in children {
            self.run_cancel(&child, fx)?;
        }
        if let (Some(parent), Some(node)) = (parent_run, parent_node) {
            let outcome = Outcome::Failed {
                error: format!("child run {id} was cancelled"),
                retryable: false,
            };
            self.resume_parent(&parent, &node, outcome, fx)?;
        }
        Ok(())
    }

    // ---- tasks ------------------------------------------------------------------------

    /// Applies one attempt result. A result for an attempt that is no longer current (the
    /// run was cancelled, or the attempt was handed to another worker) is ignored.
    pub(crate) fn task_complete(&mut self, r: TaskResult, fx: &mut Effects) -> R<()> {
        let flow = self.flow(&r.task.flow, r.task.version)?;
        let idx = flow
            .node_index(&r.task.node)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown node {}", r.task.node)))?;
        let key = TaskKey {
            run: &r.task.run_id,
            flow: &flow,
            version: r.task.version,
        };
        self.apply_outcome(
            &key,
            idx,
            r.task.attempt,
            r.started_at,
            r.finished_at,
            r.outcome,
            fx,
        )
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_outcome(
        &mut self,
        key: &TaskKey,
        idx: NodeIdx,
        attempt: u32,
        started_at: Millis,
        finished_at: Millis,
        outcome: Outcome,
        fx: &mut Effects,
    ) -> R<()> {
        let node = &key.flow.nodes[idx];
        match outcome {
            Outcome::Succeeded(output) => {
                let text = serde_json::to_string(&output)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                let n = db(self
                    .conn
                    .prepare_cached(
                        "UPDATE tasks SET state = 'succeeded', output = ?4, error = NULL, finished_at = ?5
                         WHERE run_id = ?1 AND node = ?2 AND attempt = ?3 AND state IN ('ready', 'running', 'suspended')",
                    )
                    .and_then(|mut s| s.execute(params![key.run, node.name, attempt, text, finished_at])))?;
                if n == 0 {
                    return Ok(());
                }
                task_change(fx, key, idx, TaskState::Succeeded, attempt, finished_at);
                let taken = branch_choice(key.flow, idx, &output);
                let activated = self.propagate(key, idx, taken, finished_at, fx)?;
                self.run_adjust(key.run, activated - 1, 0, finished_at, fx)
            }
            Outcome::Failed { error, retryable } => {
                let record = AttemptRecord {
                    attempt,
                    started_at,
                    finished_at,
                    error: Some(error.clone()),
                };
                let rec = serde_json::to_string(&record)
                    .map_err(|e| StoreError::Corrupt(e.to_string()))?;
                if retryable && node.retry.allows_another(attempt) {
                    let delay = node.retry.delay(attempt, rand::rng().random::<f64>());
                    let due = finished_at + delay.as_millis() as Millis;
                    let n = db(self
                        .conn
                        .prepare_cached(
                            "UPDATE tasks SET state = 'pending', attempt = attempt + 1, scheduled_at = ?4, error = ?5,
                                 attempts = json_insert(coalesce(attempts, '[]'), '$[#]', json(?6))
                             WHERE run_id = ?1 AND node = ?2 AND attempt = ?3 AND state IN ('ready', 'running', 'suspended')",
                        )
                        .and_then(|mut s| s.execute(params![key.run, node.name, attempt, due, error, rec])))?;
                    if n > 0 {
                        fx.changes.push(Change::Task(TaskChange {
                            error: Some(error),
                            next_attempt_at: Some(due),
                            ..new_change(key, idx, TaskState::Pending, attempt, finished_at)
                        }));
                        fx.next_due = Some(fx.next_due.map_or(due, |d: Millis| d.min(due)));
                        self.run_adjust(key.run, 0, 0, finished_at, fx)?;
                    }
                    return Ok(());
                }
                let n = db(self
                    .conn
                    .prepare_cached(
                        "UPDATE tasks SET state = 'dead', error = ?4, finished_at = ?5, scheduled_at = NULL,
                             attempts = json_insert(coalesce(attempts, '[]'), '$[#]', json(?6))
                         WHERE run_id = ?1 AND node = ?2 AND attempt = ?3 AND state IN ('ready', 'running', 'suspended')",
                    )
                    .and_then(|mut s| s.execute(params![key.run, node.name, attempt, &error, finished_at, rec])))?;
                if n > 0 {
                    fx.changes.push(Change::Task(TaskChange {
                        error: Some(error),
                        ..new_change(key, idx, TaskState::Dead, attempt, finished_at)
                    }));
                    self.run_adjust(key.run, -1, 1, finished_at, fx)?;
                }
                Ok(())
            }
            Outcome::StartChild(child) => {
                // Suspend first: only the current attempt of a live task may start a child.
                let n = db(self
                    .conn
                    .prepare_cached(
                        "UPDATE tasks SET state = 'suspended', child_run = ?4
                         WHERE run_id = ?1 AND node = ?2 AND attempt = ?3 AND state IN ('ready', 'running')",
                    )
                    .and_then(|mut s| s.execute(params![key.run, node.name, attempt, child.id])))?;
                if n == 0 {
                    return Ok(());
                }
                task_change(fx, key, idx, TaskState::Suspended, attempt, finished_at);
                let created = self.run_create(&child, fx)?;
                if created.id != child.id {
                    db(self
                        .conn
                        .prepare_cached(
                            "UPDATE tasks SET child_run = ?3 WHERE run_id = ?1 AND node = ?2",
                        )
                        .and_then(|mut s| s.execute(params![key.run, node.name, created.id])))?;
                }
                self.run_adjust(key.run, 0, 0, finished_at, fx)
            }
        }
    }

    /// Counts node `idx`'s success toward each successor; activates or skips those whose
    /// upstream is now complete. Returns how many tasks became active.
    fn propagate(
        &mut self,
        key: &TaskKey,
        idx: NodeIdx,
        taken: Option<bool>,
        now: Millis,
        fx: &mut Effects,
    ) -> R<i64> {
        let mut activated = 0;
        // (node whose successors to visit, it succeeded, branch choice if it is a branch)
        let mut work: Vec<(NodeIdx, bool, Option<bool>)> = vec![(idx, true, taken)];
        while let Some((from, succeeded, taken)) = work.pop() {
            let from_node = &key.flow.nodes[from];
            for &succ in &from_node.successors {
                let doomed = match (taken, &from_node.branch) {
                    (Some(t), Some(paths)) => {
                        let off_path = if t { &paths.otherwise } else { &paths.then };
                        off_path.contains(&succ)
                    }
                    _ => false,
                };
                let succ_name = &key.flow.nodes[succ].name;
                let counted = db(self
                    .conn
                    .prepare_cached(
                        "UPDATE tasks SET waiting = waiting - 1, ok = ok + ?3, doomed = max(doomed, ?4)
                         WHERE run_id = ?1 AND node = ?2 AND state = 'waiting'",
                    )
                    .and_then(|mut s| {
                        s.execute(params![key.run, succ_name, (succeeded && !doomed) as i64, doomed as i64])
                    }))?;
                if counted == 0 {
                    continue;
                }
                let row: Option<(i64, i64, i64)> = db(self
                    .conn
                    .prepare_cached(
                        "SELECT waiting, ok, doomed FROM tasks WHERE run_id = ?1 AND node = ?2",
                    )
                    .and_then(|mut s| {
                        s.query_row(params![key.run, succ_name], |r| {
                            Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                        })
                        .optional()
                    }))?;
                let Some((waiting, ok, doomed)) = row else {
                    continue;
                };
                if waiting > 0 {
                    continue;
                }
                if ok > 0 && doomed == 0 {
                    self.activate(key, succ, now, fx)?;
                    activated += 1;
                } else {
                    db(self
                        .conn
                        .prepare_cached("UPDATE tasks SET state = 'skipped', finished_at = ?3 WHERE run_id = ?1 AND node = ?2")
                        .and_then(|mut s| s.execute(params![key.run, succ_name, now])))?;
                    task_change(fx, key, succ, TaskState::Skipped, 1, now);
                    work.push((succ, false, None));
                }
            }
        }
        Ok(activated)
    }

    /// A task whose upstream is complete: a `delay` starts its timer, anything else is ready.
    fn activate(&mut self, key: &TaskKey, idx: NodeIdx, now: Millis, fx: &mut Effects) -> R<()> {
        let node = &key.flow.nodes[idx];
        if node.kind == NodeKind::Delay {
            let due = now + node.delay.unwrap_or_default().as_millis() as Millis;
            db(self
                .conn
                .prepare_cached("UPDATE tasks SET state = 'pending', scheduled_at = ?3 WHERE run_id = ?1 AND node = ?2")
                .and_then(|mut s| s.execute(params![key.run, node.name, due])))?;
            fx.next_due = Some(fx.next_due.map_or(due, |d: Millis| d.min(due)));
        } else {
            db(self
                .conn
                .prepare_cached("UPDATE tasks SET state = 'ready' WHERE run_id = ?1 AND node = ?2")
                .and_then(|mut s| s.execute(params![key.run, node.name])))?;
            fx.ready
                .push(ReadyTask::of(key.run, key.flow, key.version, node, 1));
        }
        Ok(())
    }

    /// Adjusts a run's counters and finishes it when nothing is left to run.
    fn run_adjust(
        &mut self,
        run: &str,
        active_delta: i64,
        dead_delta: i64,
        now: Millis,
        fx: &mut Effects,
    ) -> R<()> {
        // UPDATE then SELECT rather than UPDATE ... RETURNING: RETURNING builds a temporary
        // table per execution, which on this hot path cost more than the second lookup.
        let changed = db(self
            .conn
            .prepare_cached(
                "UPDATE runs SET
                     active = active + ?2,
                     dead = dead + ?3,
                     state = CASE WHEN active + ?2 <= 0 THEN (CASE WHEN dead + ?3 > 0 THEN 'failed' ELSE 'succeeded' END)
                                  ELSE 'running' END,
                     finished_at = CASE WHEN active + ?2 <= 0 THEN ?4 ELSE NULL END
                 WHERE id = ?1 AND state IN ('queued', 'running')",
            )
            .and_then(|mut s| s.execute(params![run, active_delta, dead_delta, now])))?;
        if changed == 0 {
            return Ok(());
        }
        let row: Option<AdjustedRun> = db(self
            .conn
            .prepare_cached(
                "SELECT state, flow, created_at, parent_run, parent_node, active FROM runs WHERE id = ?1",
            )
            .and_then(|mut s| {
                s.query_row([run], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?))
                })
                .optional()
            }))?;
        let Some((state, flow, created_at, parent_run, parent_node, active)) = row else {
            return Ok(());
        };
        if active > 0 {
            return Ok(());
        }
        let state = RunState::parse(&state).unwrap_or(RunState::Failed);
        let mut child_error = None;
        if state == RunState::Failed {
            let cause: Option<String> = db(self
                .conn
                .prepare_cached("SELECT 'node ' || node || ': ' || coalesce(error, 'failed') FROM tasks WHERE run_id = ?1 AND state = 'dead' LIMIT 1")
                .and_then(|mut s| s.query_row([run], |r| r.get(0)).optional()))?;
            db(self
                .conn
                .prepare_cached("UPDATE runs SET error = ?2 WHERE id = ?1")
                .and_then(|mut s| s.execute(params![run, cause])))?;
            child_error = cause;
        }
        let finished = FinishedRun {
            id: run.to_string(),
            flow,
            state,
            created_at,
            finished_at: now,
        };
        fx.changes.push(Change::RunFinished {
            run: finished.clone(),
            error: child_error.clone(),
        });
        fx.finished.push(finished);
        if let (Some(parent), Some(node)) = (parent_run, parent_node) {
            let outcome = if state == RunState::Succeeded {
                Outcome::Succeeded(Value::Object(self.outputs(run)?))
            } else {
                Outcome::Failed {
                    error: format!(
                        "child run {run} failed: {}",
                        child_error.unwrap_or_default()
                    ),
                    retryable: true,
                }
            };
            self.resume_parent(&parent, &node, outcome, fx)?;
        }
        Ok(())
    }

    /// Hands a finished child run's outcome to the suspended parent task.
    fn resume_parent(
        &mut self,
        parent: &str,
        node: &str,
        outcome: Outcome,
        fx: &mut Effects,
    ) -> R<()> {
        let row: Option<(String, u32, u32)> = db(self
            .conn
            .prepare_cached(
                "SELECT r.flow, r.version, t.attempt FROM tasks t JOIN runs r ON r.id = t.run_id
                 WHERE t.run_id = ?1 AND t.node = ?2 AND t.state = 'suspended'",
            )
            .and_then(|mut s| {
                s.query_row(params![parent, node], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })
                .optional()
            }))?;
        let Some((flow_name, version, attempt)) = row else {
            return Ok(());
        };
        let flow = self.flow(&flow_name, version)?;
        let Some(idx) = flow.node_index(node) else {
            return Ok(());
        };
        let now = self.now();
        self.apply_outcome(
            &TaskKey {
                run: parent,
                flow: &flow,
                version,
            },
            idx,
            attempt,
            now,
            now,
            outcome,
            fx,
        )
    }

    /// Succeeded outputs of a run, by node.
    fn outputs(&mut self, run: &str) -> R<serde_json::Map<String, Value>> {
        let rows: Vec<(String, Option<String>)> = db(self
            .conn
            .prepare_cached("SELECT node, output FROM tasks WHERE run_id = ?1 AND state = 'succeeded' ORDER BY idx")
            .and_then(|mut s| s.query_map([run], |r| Ok((r.get(0)?, r.get(1)?)))?.collect()))?;
        let mut map = serde_json::Map::new();
        for (node, out) in rows {
            map.insert(node, crate::conv::json(out)?.unwrap_or(Value::Null));
        }
        Ok(map)
    }

    /// Fires due timers: finished delays complete, back-offs become ready.
    pub(crate) fn promote_due(&mut self, now: Millis, fx: &mut Effects) -> R<()> {
        const LIMIT: i64 = 2048;
        let due: Vec<(String, String, u32, String, u32, Millis)> = db(self
            .conn
            .prepare_cached(
                "SELECT t.run_id, t.node, t.attempt, r.flow, r.version, t.scheduled_at FROM tasks t JOIN runs r ON r.id = t.run_id
                 WHERE t.state = 'pending' AND t.scheduled_at <= ?1 ORDER BY t.scheduled_at LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![now, LIMIT], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?, r.get(5)?)))?
                    .collect()
            }))?;
        let more = due.len() as i64 == LIMIT;
        for (run, node, attempt, flow_name, version, scheduled_at) in due {
            let flow = self.flow(&flow_name, version)?;
            let Some(idx) = flow.node_index(&node) else {
                continue;
            };
            let key = TaskKey {
                run: &run,
                flow: &flow,
                version,
            };
            if flow.nodes[idx].kind == NodeKind::Delay {
                db(self
                    .conn
                    .prepare_cached("UPDATE tasks SET state = 'ready' WHERE run_id = ?1 AND node = ?2 AND state = 'pending'")
                    .and_then(|mut s| s.execute(params![run, node])))?;
                let output = serde_json::json!({ "fired_at": weft_core::time::rfc3339(now), "due_at": weft_core::time::rfc3339(scheduled_at) });
                self.apply_outcome(
                    &key,
                    idx,
                    attempt,
                    scheduled_at,
                    now,
                    Outcome::Succeeded(output),
                    fx,
                )?;
            } else {
                db(self
                    .conn
                    .prepare_cached("UPDATE tasks SET state = 'ready', scheduled_at = NULL WHERE run_id = ?1 AND node = ?2 AND state = 'pending'")
                    .and_then(|mut s| s.execute(params![run, node])))?;
                let n = &flow.nodes[idx];
                fx.ready
                    .push(ReadyTask::of(&run, &flow, version, n, attempt));
            }
        }
        let next = if more { Some(now) } else { self.next_due()? };
        if let Some(next) = next {
            fx.next_due = Some(fx.next_due.map_or(next, |d: Millis| d.min(next)));
        }
        Ok(())
    }

    fn next_due(&mut self) -> R<Option<Millis>> {
        db(self
            .conn
            .prepare_cached("SELECT min(scheduled_at) FROM tasks WHERE state = 'pending'")
            .and_then(|mut s| s.query_row([], |r| r.get(0))))
    }

    /// Start-up: tasks a previous process left running are ready again; report every ready
    /// task and the next timer.
    pub(crate) fn recover(&mut self, fx: &mut Effects) -> R<()> {
        // This store never writes `running`: attempts in flight live in the engine's memory
        // and their tasks stay `ready` here, so whatever was running when the process
        // stopped is simply ready again. Live runs are found through `runs_state`.
        let rows: Vec<(String, String, u32, String, u32, String, i32)> = db(self
            .conn
            .prepare_cached(
                "SELECT t.run_id, t.node, t.attempt, r.flow, r.version, t.queue, t.priority
                 FROM runs r JOIN tasks t ON t.run_id = r.id
                 WHERE r.state IN ('queued', 'running') AND t.state = 'ready' ORDER BY r.id",
            )
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok((
                        r.get(0)?,
                        r.get(1)?,
                        r.get(2)?,
                        r.get(3)?,
                        r.get(4)?,
                        r.get(5)?,
                        r.get(6)?,
                    ))
                })?
                .collect()
            }))?;
        for (run, node, attempt, flow, version, queue, priority) in rows {
            fx.ready.push(ReadyTask {
                run_id: Arc::from(run.as_str()),
                flow: Arc::from(flow.as_str()),
                version,
                node: Arc::from(node.as_str()),
                attempt,
                queue: Arc::from(queue.as_str()),
                priority,
            });
        }
        fx.next_due = self.next_due()?;
        Ok(())
    }

    pub(crate) fn dlq_replay(&mut self, run: &str, node: &str, fx: &mut Effects) -> R<()> {
        let row: Option<(String, u32, String)> = db(self
            .conn
            .prepare_cached("SELECT r.flow, r.version, r.state FROM tasks t JOIN runs r ON r.id = t.run_id WHERE t.run_id = ?1 AND t.node = ?2 AND t.state = 'dead'")
            .and_then(|mut s| s.query_row(params![run, node], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?))).optional()))?;
        let Some((flow_name, version, run_state)) = row else {
            return Err(StoreError::NotFound(format!(
                "dead task {node} of run {run}"
            )));
        };
        if run_state == "cancelled" {
            return Err(StoreError::Conflict(format!(
                "run {run} was cancelled; its dead tasks cannot be replayed"
            )));
        }
        let flow = self.flow(&flow_name, version)?;
        let n = flow
            .node(node)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown node {node}")))?;
        db(self
            .conn
            .prepare_cached("UPDATE tasks SET state = 'ready', attempt = 1, finished_at = NULL WHERE run_id = ?1 AND node = ?2")
            .and_then(|mut s| s.execute(params![run, node])))?;
        db(self
            .conn
            .prepare_cached("UPDATE runs SET active = active + 1, dead = dead - 1, state = 'running', finished_at = NULL, error = NULL WHERE id = ?1")
            .and_then(|mut s| s.execute([run])))?;
        if run_state == "failed" {
            fx.changes.push(Change::RunResumed {
                run_id: run.to_string(),
                flow: flow_name,
                at: self.now(),
            });
        }
        fx.ready.push(ReadyTask::of(run, &flow, version, n, 1));
        Ok(())
    }

    pub(crate) fn dlq_discard(&mut self, run: &str, node: &str) -> R<()> {
        let state: Option<String> = db(self
            .conn
            .prepare_cached("SELECT r.state FROM tasks t JOIN runs r ON r.id = t.run_id WHERE t.run_id = ?1 AND t.node = ?2 AND t.state = 'dead'")
            .and_then(|mut s| s.query_row(params![run, node], |r| r.get(0)).optional()))?;
        let Some(state) = state else {
            return Err(StoreError::NotFound(format!(
                "dead task {node} of run {run}"
            )));
        };
        if state != "failed" {
            return Err(StoreError::Conflict(format!(
                "run {run} is {state}; a dead task can be discarded once its run has failed"
            )));
        }
        db(self
            .conn
            .prepare_cached("UPDATE tasks SET state = 'cancelled' WHERE run_id = ?1 AND node = ?2")
            .and_then(|mut s| s.execute(params![run, node])))?;
        db(self
            .conn
            .prepare_cached("UPDATE runs SET dead = dead - 1 WHERE id = ?1")
            .and_then(|mut s| s.execute([run])))?;
        Ok(())
    }
}

/// A change of task `idx` of `key`'s run, with no error.
fn new_change(
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
fn task_change(
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

/// A run starts `queued` (waiting for a worker), or `running` when a root is a `delay`
/// whose timer starts at once.
fn initial_state(flow: &CompiledFlow) -> RunState {
    if flow
        .roots
        .iter()
        .any(|&r| flow.nodes[r].kind == NodeKind::Delay)
    {
        RunState::Running
    } else {
        RunState::Queued
    }
}

/// For a `branch` node, which path its output chose.
fn branch_choice(flow: &CompiledFlow, idx: NodeIdx, output: &Value) -> Option<bool> {
    flow.nodes[idx].branch.as_ref()?;
    Some(output.get("taken").and_then(Value::as_str) == Some("then"))
}
