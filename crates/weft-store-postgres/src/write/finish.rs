//! The end of runs: counter updates that finish them, and the outcomes finished child runs
//! hand to their parents' suspended tasks.

use super::W;
use super::apply::Res;
use super::dag::Deltas;
use crate::conv::{col, rows};
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Arc;
use weft_core::RunState;
use weft_core::time::Millis;
use weft_store::*;

/// An outcome a finished child run hands its parent's suspended task.
pub(crate) struct ParentOutcome {
    pub(crate) parent: String,
    pub(crate) node: String,
    pub(crate) child: String,
    pub(crate) outcome: Outcome,
}

impl W<'_> {
    /// Applies the runs' counter changes; a run with nothing left to do finishes, `failed`
    /// (naming its first dead node) if it has a dead task, else `succeeded`.
    pub(super) async fn adjust_runs(&mut self, deltas: Deltas) -> StoreResult<Vec<ParentOutcome>> {
        if deltas.list.is_empty() {
            return Ok(Vec::new());
        }
        let id: Vec<&str> = deltas.list.iter().map(|d| d.run.as_ref()).collect();
        let ms: Vec<i64> = deltas.list.iter().map(|d| d.ms).collect();
        let da: Vec<i32> = deltas.list.iter().map(|d| d.active).collect();
        let dd: Vec<i32> = deltas.list.iter().map(|d| d.dead).collect();
        let at: Vec<Millis> = deltas.list.iter().map(|d| d.at).collect();
        let ended = rows(
            &self.tx,
            "UPDATE runs r SET
                 active = r.active + u.da,
                 dead = r.dead + u.dd,
                 state = CASE WHEN r.active + u.da <= 0
                              THEN (CASE WHEN r.dead + u.dd > 0 THEN 'failed' ELSE 'succeeded' END)
                              ELSE 'running' END,
                 finished_at = CASE WHEN r.active + u.da <= 0 THEN u.at END,
                 error = CASE WHEN r.active + u.da <= 0 AND r.dead + u.dd > 0 THEN
                     (SELECT 'node ' || t.node || ': ' || coalesce(t.error, 'failed') FROM tasks t
                       WHERE t.run_id = r.id AND t.run_ms = r.id_ms AND t.state = 'dead'
                       ORDER BY t.finished_at, t.idx LIMIT 1) END
             FROM unnest($1::text[], $2::int8[], $3::int4[], $4::int4[], $5::int8[]) AS u(id, ms, da, dd, at)
             WHERE r.id = u.id AND r.id_ms = u.ms AND r.state IN ('queued', 'running')
             RETURNING r.id, r.state, r.flow, r.created_at, r.parent_run, r.parent_node, r.error, u.at",
            &[&id, &ms, &da, &dd, &at],
        )
        .await?;
        self.runs_ended(&deltas, &ended)
    }

    /// Effects of the runs' counter updates (rows as `adjust_runs` returns them): finished
    /// runs, and the outcomes finished child runs hand their parents.
    pub(super) fn runs_ended(
        &mut self,
        deltas: &Deltas,
        ended: &[tokio_postgres::Row],
    ) -> StoreResult<Vec<ParentOutcome>> {
        let mut by_id = HashMap::new();
        for e in ended {
            let state: String = col(e, 1)?;
            if state == "succeeded" || state == "failed" {
                by_id.insert(col::<String>(e, 0)?, e);
            }
        }
        let mut parents = Vec::new();
        for d in &deltas.list {
            let Some(e) = by_id.get(d.run.as_ref()) else {
                continue;
            };
            let state: String = col(e, 1)?;
            let state = RunState::parse(&state).unwrap_or(RunState::Failed);
            let error: Option<String> = col(e, 6)?;
            let finished = FinishedRun {
                id: d.run.to_string(),
                flow: col(e, 2)?,
                state,
                created_at: col(e, 3)?,
                finished_at: col(e, 7)?,
            };
            self.fx.changes.push(Change::RunFinished {
                run: finished.clone(),
                error: error.clone(),
            });
            self.fx.finished.push(finished);
            let (parent, node): (Option<String>, Option<String>) = (col(e, 4)?, col(e, 5)?);
            if let (Some(parent), Some(node)) = (parent, node) {
                let outcome = if state == RunState::Succeeded {
                    Outcome::Succeeded(Value::Null) // outputs are read in `parent_results`
                } else {
                    Outcome::Failed {
                        error: format!("child run {} failed: {}", d.run, error.unwrap_or_default()),
                        retryable: true,
                    }
                };
                parents.push(ParentOutcome {
                    parent,
                    node,
                    child: d.run.to_string(),
                    outcome,
                });
            }
        }
        Ok(parents)
    }

    /// Turns finished children into results for their parents' suspended tasks (those still
    /// waiting for exactly that child); a succeeded child hands its outputs by node.
    pub(crate) async fn parent_results(
        &mut self,
        done: Vec<ParentOutcome>,
    ) -> StoreResult<Vec<Res>> {
        if done.is_empty() {
            return Ok(Vec::new());
        }
        let parent: Vec<&str> = done.iter().map(|p| p.parent.as_str()).collect();
        let pms: Vec<i64> = parent.iter().map(|p| crate::conv::run_ms(p)).collect();
        let node: Vec<&str> = done.iter().map(|p| p.node.as_str()).collect();
        let child: Vec<&str> = done.iter().map(|p| p.child.as_str()).collect();
        let waiting = rows(
            &self.tx,
            "SELECT u.i::int8, t.attempt, r.flow, r.version
             FROM unnest($1::text[], $2::int8[], $3::text[], $4::text[]) WITH ORDINALITY AS u(run_id, ms, node, child, i)
             JOIN tasks t ON t.run_id = u.run_id AND t.run_ms = u.ms AND t.node = u.node
                         AND t.state = 'suspended' AND t.child_run = u.child
             JOIN runs r ON r.id = t.run_id AND r.id_ms = t.run_ms
             ORDER BY u.i",
            &[&parent, &pms, &node, &child],
        )
        .await?;
        if waiting.is_empty() {
            return Ok(Vec::new());
        }
        let ok_children: Vec<&str> = done
            .iter()
            .filter(|p| matches!(p.outcome, Outcome::Succeeded(_)))
            .map(|p| p.child.as_str())
            .collect();
        let mut outputs: HashMap<String, serde_json::Map<String, Value>> = HashMap::new();
        if !ok_children.is_empty() {
            let cms: Vec<i64> = ok_children.iter().map(|c| crate::conv::run_ms(c)).collect();
            let found = rows(
                &self.tx,
                "SELECT t.run_id, t.node, t.output FROM tasks t
                 JOIN unnest($1::text[], $2::int8[]) AS u(run_id, ms) ON t.run_id = u.run_id AND t.run_ms = u.ms
                 WHERE t.state = 'succeeded' ORDER BY t.run_id, t.idx",
                &[&ok_children, &cms],
            )
            .await?;
            for f in &found {
                let out = crate::conv::json(col(f, 2)?)?.unwrap_or(Value::Null);
                outputs
                    .entry(col(f, 0)?)
                    .or_default()
                    .insert(col(f, 1)?, out);
            }
        }
        let now = self.store.now();
        let mut out = Vec::with_capacity(waiting.len());
        let mut done: Vec<Option<ParentOutcome>> = done.into_iter().map(Some).collect();
        for w in &waiting {
            let i = col::<i64>(w, 0)? as usize - 1;
            let Some(p) = done[i].take() else { continue };
            let (flow_name, version): (String, i32) = (col(w, 2)?, col(w, 3)?);
            let flow = self
                .store
                .flow(&self.tx, &flow_name, version as u32)
                .await?;
            let Some(idx) = flow.node_index(&p.node) else {
                continue;
            };
            let outcome = match p.outcome {
                Outcome::Succeeded(_) => {
                    Outcome::Succeeded(Value::Object(outputs.remove(&p.child).unwrap_or_default()))
                }
                other => other,
            };
            out.push(Res {
                ms: pms[i],
                run: Arc::from(p.parent.as_str()),
                flow,
                version: version as u32,
                idx,
                attempt: col::<i32>(w, 1)? as u32,
                started_at: now,
                finished_at: now,
                outcome,
            });
        }
        Ok(out)
    }
}
