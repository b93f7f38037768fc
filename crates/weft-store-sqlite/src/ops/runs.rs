//! Creating and cancelling runs.

use super::*;

impl W {
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
                    run.initial_state().as_str()
                ])
            }))?;
        fx.changes.push(Change::RunCreated {
            run_id: run.id.clone(),
            flow: flow.name().to_string(),
            state: run.initial_state(),
            at: run.created_at,
        });
        for (idx, node) in flow.nodes.iter().enumerate() {
            let is_root = node.needs.is_empty();
            let (state, due) = match (is_root, is_root.then(|| run.root_due(node)).flatten()) {
                (false, _) => ("waiting", None),
                (true, Some(due)) => ("pending", Some(due)),
                (true, None) => ("ready", None),
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
                fx.due_at(due);
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
                "UPDATE tasks SET state = 'cancelled', finished_at = ?2, lease_owner = NULL, lease_until = NULL
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
}

/// The text every UUID v7 id made at or after `ms` sorts at or above: its 48-bit time as the
/// id's first twelve hex digits (`xxxxxxxx-xxxx`). Ids compare as text in the same order as
/// their creation time, so "created before `ms`" is a range of the primary key.
pub(crate) fn v7_floor(ms: Millis) -> String {
    let ms = ms.clamp(0, 0xffff_ffff_ffff) as u64;
    format!("{:08x}-{:04x}", ms >> 16, ms & 0xffff)
}

impl W {
    /// Retention, one slice: removes up to `limit` finished runs created before `cutoff`
    /// (by their id) with their tasks; returns how many. Small slices keep the writer
    /// available to everything else between them.
    pub(crate) fn run_prune(&mut self, cutoff: Millis, limit: u32) -> R<u64> {
        let ids: Vec<String> = db(self
            .conn
            .prepare_cached(
                "SELECT id FROM runs WHERE id < ?1 AND state IN ('succeeded', 'failed', 'cancelled')
                 ORDER BY id LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![v7_floor(cutoff), limit], |r| r.get(0))?
                    .collect()
            }))?;
        for id in &ids {
            db(self
                .conn
                .prepare_cached("DELETE FROM tasks WHERE run_id = ?1")
                .and_then(|mut s| s.execute([id])))?;
            db(self
                .conn
                .prepare_cached("DELETE FROM runs WHERE id = ?1")
                .and_then(|mut s| s.execute([id])))?;
        }
        Ok(ids.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::v7_floor;

    #[test]
    fn v7_floor_orders_ids_by_their_time() {
        let at = |ms: u64| {
            uuid::Uuid::new_v7(uuid::Timestamp::from_unix(
                uuid::NoContext,
                ms / 1000,
                (ms % 1000) as u32 * 1_000_000,
            ))
            .to_string()
        };
        let ms = 1_700_000_000_123i64;
        let floor = v7_floor(ms);
        assert!(at(ms as u64 - 1) < floor, "an id one ms older sorts below");
        assert!(
            at(ms as u64) >= floor,
            "an id of the same ms sorts at or above"
        );
        assert!(at(ms as u64 + 1) > floor);
        assert_eq!(v7_floor(-5), "00000000-0000");
    }
}
