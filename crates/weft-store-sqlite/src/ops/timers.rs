//! Due timers (delays, back-offs) and start-up recovery of ready work.

use super::*;

impl W {
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
                    .prepare_cached("UPDATE tasks SET state = 'ready', lease_owner = NULL, lease_until = NULL WHERE run_id = ?1 AND node = ?2 AND state = 'pending'")
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
                    .prepare_cached("UPDATE tasks SET state = 'ready', scheduled_at = NULL, lease_owner = NULL, lease_until = NULL WHERE run_id = ?1 AND node = ?2 AND state = 'pending'")
                    .and_then(|mut s| s.execute(params![run, node])))?;
                let n = &flow.nodes[idx];
                fx.ready
                    .push(ReadyTask::of(&run, &flow, version, n, attempt));
            }
        }
        let next = if more { Some(now) } else { self.next_due()? };
        if let Some(next) = next {
            fx.due_at(next);
        }
        Ok(())
    }

    pub(super) fn next_due(&mut self) -> R<Option<Millis>> {
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
        let rows: Vec<TaskRow> = db(self
            .conn
            .prepare_cached(
                "SELECT t.run_id, t.node, t.attempt, r.flow, r.version, t.queue, t.priority
                 FROM runs r JOIN tasks t ON t.run_id = r.id
                 WHERE r.state IN ('queued', 'running') AND t.state = 'ready' ORDER BY r.id",
            )
            .and_then(|mut s| s.query_map([], task_row)?.collect()))?;
        fx.ready.extend(rows.into_iter().map(ready_task));
        fx.next_due = self.next_due()?;
        Ok(())
    }
}
