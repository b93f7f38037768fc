//! Attempt results and everything that follows from them in the same transaction:
//! successors, skips, retries, dead letters, the run's end and a waiting parent.

use super::*;

impl W {
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
    pub(super) fn apply_outcome(
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
                        "UPDATE tasks SET state = 'succeeded', output = ?4, error = NULL, finished_at = ?5,
                             lease_owner = NULL, lease_until = NULL, deferred_reason = NULL, deferred_until = NULL
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
                                 lease_owner = NULL, lease_until = NULL, deferred_reason = NULL, deferred_until = NULL,
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
                        fx.due_at(due);
                        self.run_adjust(key.run, 0, 0, finished_at, fx)?;
                    }
                    return Ok(());
                }
                let n = db(self
                    .conn
                    .prepare_cached(
                        "UPDATE tasks SET state = 'dead', error = ?4, finished_at = ?5, scheduled_at = NULL,
                             lease_owner = NULL, lease_until = NULL, deferred_reason = NULL, deferred_until = NULL,
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
                        "UPDATE tasks SET state = 'suspended', child_run = ?4, lease_owner = NULL, lease_until = NULL,
                             deferred_reason = NULL, deferred_until = NULL
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
            Outcome::Deferred { until, reason } => {
                // Same attempt, no attempt record: nothing was tried (docs/decisions/0008).
                let n = db(self
                    .conn
                    .prepare_cached(
                        "UPDATE tasks SET state = 'pending', scheduled_at = ?4, deferred_until = ?4, deferred_reason = ?5,
                             deferrals = deferrals + 1, lease_owner = NULL, lease_until = NULL
                         WHERE run_id = ?1 AND node = ?2 AND attempt = ?3 AND state IN ('ready', 'running')",
                    )
                    .and_then(|mut s| s.execute(params![key.run, node.name, attempt, until, reason])))?;
                if n > 0 {
                    fx.changes.push(Change::Task(TaskChange {
                        error: Some(reason),
                        next_attempt_at: Some(until),
                        ..new_change(key, idx, TaskState::Pending, attempt, finished_at)
                    }));
                    fx.due_at(until);
                    self.run_adjust(key.run, 0, 0, finished_at, fx)?;
                }
                Ok(())
            }
        }
    }

    /// Counts node `idx`'s success toward each successor; activates or skips those whose
    /// upstream is now complete. Returns how many tasks became active.
    pub(super) fn propagate(
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
    pub(super) fn activate(
        &mut self,
        key: &TaskKey,
        idx: NodeIdx,
        now: Millis,
        fx: &mut Effects,
    ) -> R<()> {
        let node = &key.flow.nodes[idx];
        if node.kind == NodeKind::Delay {
            let due = now + node.delay.unwrap_or_default().as_millis() as Millis;
            db(self
                .conn
                .prepare_cached("UPDATE tasks SET state = 'pending', scheduled_at = ?3 WHERE run_id = ?1 AND node = ?2")
                .and_then(|mut s| s.execute(params![key.run, node.name, due])))?;
            fx.due_at(due);
        } else {
            db(self
                .conn
                .prepare_cached("UPDATE tasks SET state = 'ready', lease_owner = NULL, lease_until = NULL WHERE run_id = ?1 AND node = ?2")
                .and_then(|mut s| s.execute(params![key.run, node.name])))?;
            fx.ready
                .push(ReadyTask::of(key.run, key.flow, key.version, node, 1));
        }
        Ok(())
    }

    /// The sweeper's repair: gives a live run the counts of its live and dead tasks when
    /// its counters disagree (finishing it when nothing can run any more).
    pub(crate) fn run_recount(&mut self, run: &str, fx: &mut Effects) -> R<()> {
        let counts: Option<(i64, i64, i64, i64)> = db(self
            .conn
            .prepare_cached(
                "SELECT r.active, r.dead,
                    (SELECT count(*) FROM tasks t WHERE t.run_id = r.id
                       AND t.state IN ('pending', 'ready', 'running', 'suspended')),
                    (SELECT count(*) FROM tasks t WHERE t.run_id = r.id AND t.state = 'dead')
                 FROM runs r WHERE r.id = ?1 AND r.state IN ('queued', 'running')",
            )
            .and_then(|mut s| {
                s.query_row([run], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?)))
                    .optional()
            }))?;
        let Some((active, dead, live, dead_tasks)) = counts else {
            return Ok(());
        };
        if (active, dead) != (live, dead_tasks) {
            tracing::warn!(
                run,
                active,
                live,
                dead,
                dead_tasks,
                "repairing a run's counters"
            );
            let now = self.now();
            self.run_adjust(run, live - active, dead_tasks - dead, now, fx)?;
        }
        Ok(())
    }

    /// Adjusts a run's counters and finishes it when nothing is left to run.
    pub(super) fn run_adjust(
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
    pub(super) fn resume_parent(
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
    pub(super) fn outputs(&mut self, run: &str) -> R<serde_json::Map<String, Value>> {
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
}

/// For a `branch` node, which path its output chose.
pub(super) fn branch_choice(flow: &CompiledFlow, idx: NodeIdx, output: &Value) -> Option<bool> {
    flow.nodes[idx].branch.as_ref()?;
    Some(output.get("taken").and_then(Value::as_str) == Some("then"))
}
