//! The dead-letter queue: replaying and discarding dead tasks.

use super::*;

impl W {
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
            .prepare_cached("UPDATE tasks SET state = 'ready', attempt = 1, finished_at = NULL, lease_owner = NULL, lease_until = NULL WHERE run_id = ?1 AND node = ?2")
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
            .prepare_cached("UPDATE tasks SET state = 'cancelled', lease_owner = NULL, lease_until = NULL WHERE run_id = ?1 AND node = ?2")
            .and_then(|mut s| s.execute(params![run, node])))?;
        db(self
            .conn
            .prepare_cached("UPDATE runs SET dead = dead - 1 WHERE id = ?1")
            .and_then(|mut s| s.execute([run])))?;
        Ok(())
    }
}
