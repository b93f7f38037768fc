//! Attempt results and everything that follows from them in the same transaction:
//! successors, skips, retries, dead letters, the runs' ends and waiting parents.
//!
//! A batch is applied in waves, each a handful of array statements over the whole batch:
//! (1) the results' own state changes (one `UPDATE ... FROM unnest` per outcome kind; a
//! result whose attempt is not current matches no row and is ignored), (2) child runs,
//! (3) successor counters, repeated while skips propagate, (4) run counters, which also
//! finish runs, and (5) the results finished child runs hand their parents, which start the
//! next wave. Every result is checked against the state before the batch, exactly as if the
//! results were applied one after another: a result can only become applicable through a
//! timer, a replay or a child run, never through another result of the same batch.

use super::dag::{Deltas, Seed};
use super::finish::ParentOutcome;
use super::{RunId, W, due, new_change};
use crate::conv::{col, exec, rows, to_text};
use rand::Rng;
use serde_json::Value;
use std::collections::HashSet;
use std::sync::Arc;
use weft_core::time::Millis;
use weft_core::{CompiledFlow, NodeIdx, TaskState};
use weft_store::*;

/// One result to apply, resolved against its flow version.
pub(crate) struct Res {
    pub(crate) run: RunId,
    pub(crate) ms: i64,
    pub(crate) flow: Arc<CompiledFlow>,
    pub(crate) version: u32,
    pub(crate) idx: NodeIdx,
    pub(crate) attempt: u32,
    pub(crate) started_at: Millis,
    pub(crate) finished_at: Millis,
    pub(crate) outcome: Outcome,
}

/// For a `branch` node, which path its output chose.
fn branch_choice(flow: &CompiledFlow, idx: NodeIdx, output: &Value) -> Option<bool> {
    flow.nodes[idx].branch.as_ref()?;
    Some(output.get("taken").and_then(Value::as_str) == Some("then"))
}

/// The arrays of one outcome kind's `UPDATE`.
#[derive(Default)]
struct Cols {
    run: Vec<String>,
    ms: Vec<i64>,
    node: Vec<String>,
    attempt: Vec<i32>,
    text: Vec<Option<String>>,
    at: Vec<Option<Millis>>,
    rec: Vec<Option<String>>,
}

impl Cols {
    fn push(&mut self, r: &Res, text: Option<String>, at: Option<Millis>, rec: Option<String>) {
        self.run.push(r.run.to_string());
        self.ms.push(r.ms);
        self.node.push(r.flow.nodes[r.idx].name.clone());
        self.attempt.push(r.attempt as i32);
        self.text.push(text);
        self.at.push(at);
        self.rec.push(rec);
    }
}

const SUCCEED: &str =
    "UPDATE tasks t SET state = 'succeeded', output = u.text, error = NULL, finished_at = u.at,
         lease_owner = NULL, lease_until = NULL
     FROM unnest($1::text[], $2::int8[], $3::text[], $4::int4[], $5::text[], $6::int8[], $7::text[])
          AS u(run_id, ms, node, attempt, text, at, rec)
     WHERE t.run_id = u.run_id AND t.run_ms = u.ms AND t.node = u.node AND t.attempt = u.attempt
       AND t.state IN ('ready', 'running', 'suspended')
     RETURNING u.run_id, u.node, u.attempt";
const RETRY: &str = "UPDATE tasks t SET state = 'pending', attempt = t.attempt + 1, scheduled_at = u.at, error = u.text,
         lease_owner = NULL, lease_until = NULL,
         attempts = coalesce(t.attempts, '[]'::jsonb) || jsonb_build_array(u.rec::jsonb)
     FROM unnest($1::text[], $2::int8[], $3::text[], $4::int4[], $5::text[], $6::int8[], $7::text[])
          AS u(run_id, ms, node, attempt, text, at, rec)
     WHERE t.run_id = u.run_id AND t.run_ms = u.ms AND t.node = u.node AND t.attempt = u.attempt
       AND t.state IN ('ready', 'running', 'suspended')
     RETURNING u.run_id, u.node, u.attempt";
const KILL: &str =
    "UPDATE tasks t SET state = 'dead', error = u.text, finished_at = u.at, scheduled_at = NULL,
         lease_owner = NULL, lease_until = NULL,
         attempts = coalesce(t.attempts, '[]'::jsonb) || jsonb_build_array(u.rec::jsonb)
     FROM unnest($1::text[], $2::int8[], $3::text[], $4::int4[], $5::text[], $6::int8[], $7::text[])
          AS u(run_id, ms, node, attempt, text, at, rec)
     WHERE t.run_id = u.run_id AND t.run_ms = u.ms AND t.node = u.node AND t.attempt = u.attempt
       AND t.state IN ('ready', 'running', 'suspended')
     RETURNING u.run_id, u.node, u.attempt";
// Only the current attempt of a live task may start a child: suspend first, create after.
const SUSPEND: &str = "UPDATE tasks t SET state = 'suspended', child_run = u.text, lease_owner = NULL, lease_until = NULL
     FROM unnest($1::text[], $2::int8[], $3::text[], $4::int4[], $5::text[], $6::int8[], $7::text[])
          AS u(run_id, ms, node, attempt, text, at, rec)
     WHERE t.run_id = u.run_id AND t.run_ms = u.ms AND t.node = u.node AND t.attempt = u.attempt
       AND t.state IN ('ready', 'running')
     RETURNING u.run_id, u.node, u.attempt";

impl W<'_> {
    /// Locks the rows of `runs`, in id order, before any of their tasks is touched.
    ///
    /// Every write that changes a run's tasks holds its run row first, and takes those
    /// locks in one global order, so concurrent batches over overlapping runs (several
    /// completers, a promoter, other processes) queue instead of deadlocking.
    pub(crate) async fn lock_runs<'r>(
        &mut self,
        runs: impl Iterator<Item = (&'r str, i64)>,
    ) -> StoreResult<()> {
        let mut runs: Vec<(&str, i64)> = runs.collect();
        runs.sort_unstable();
        runs.dedup();
        if runs.is_empty() {
            return Ok(());
        }
        let (id, ms): (Vec<&str>, Vec<i64>) = runs.into_iter().unzip();
        rows(
            &self.tx,
            "SELECT 1 FROM runs r JOIN unnest($1::text[], $2::int8[]) AS u(id, ms)
               ON r.id = u.id AND r.id_ms = u.ms
             ORDER BY r.id FOR UPDATE OF r",
            &[&id, &ms],
        )
        .await?;
        Ok(())
    }

    /// Applies a batch of results and whatever they lead to.
    pub(crate) async fn apply(&mut self, mut batch: Vec<Res>) -> StoreResult<()> {
        while !batch.is_empty() {
            let parents = self.wave(batch).await?;
            batch = self.parent_results(parents).await?;
        }
        Ok(())
    }

    /// One wave; returns what finished child runs hand their parents.
    async fn wave(&mut self, mut batch: Vec<Res>) -> StoreResult<Vec<ParentOutcome>> {
        // Of several results for one attempt only the first counts, as if applied in order.
        let mut seen = HashSet::new();
        batch.retain(|r| seen.insert((r.run.clone(), r.idx, r.attempt)));
        self.lock_runs(batch.iter().map(|r| (r.run.as_ref(), r.ms)))
            .await?;

        let (mut ok, mut retry, mut kill, mut suspend) = Default::default();
        let mut dues = vec![None; batch.len()];
        for (i, r) in batch.iter().enumerate() {
            let node = &r.flow.nodes[r.idx];
            match &r.outcome {
                Outcome::Succeeded(output) => Cols::push(
                    &mut ok,
                    r,
                    Some(to_text(output)?),
                    Some(r.finished_at),
                    None,
                ),
                Outcome::Failed { error, retryable } => {
                    let rec = to_text(&AttemptRecord {
                        attempt: r.attempt,
                        started_at: r.started_at,
                        finished_at: r.finished_at,
                        error: Some(error.clone()),
                    })?;
                    if *retryable && node.retry.allows_another(r.attempt) {
                        let delay = node.retry.delay(r.attempt, rand::rng().random::<f64>());
                        let at = r.finished_at + delay.as_millis() as Millis;
                        dues[i] = Some(at);
                        Cols::push(&mut retry, r, Some(error.clone()), Some(at), Some(rec));
                    } else {
                        Cols::push(
                            &mut kill,
                            r,
                            Some(error.clone()),
                            Some(r.finished_at),
                            Some(rec),
                        );
                    }
                }
                Outcome::StartChild(child) => {
                    Cols::push(&mut suspend, r, Some(child.id.clone()), None, None)
                }
            }
        }
        let mut applied: HashSet<(String, String, i32)> = HashSet::new();
        for (sql, cols) in [
            (SUCCEED, &ok),
            (RETRY, &retry),
            (KILL, &kill),
            (SUSPEND, &suspend),
        ] {
            let cols: &Cols = cols;
            if cols.run.is_empty() {
                continue;
            }
            let done = rows(
                &self.tx,
                sql,
                &[
                    &cols.run,
                    &cols.ms,
                    &cols.node,
                    &cols.attempt,
                    &cols.text,
                    &cols.at,
                    &cols.rec,
                ],
            )
            .await?;
            for d in &done {
                applied.insert((col(d, 0)?, col(d, 1)?, col(d, 2)?));
            }
        }

        let mut deltas = Deltas::default();
        let mut seeds = Vec::new();
        let mut children = Vec::new();
        for (i, r) in batch.into_iter().enumerate() {
            let node = &r.flow.nodes[r.idx];
            let key = (r.run.to_string(), node.name.clone(), r.attempt as i32);
            if !applied.contains(&key) {
                continue;
            }
            let at = r.finished_at;
            let change = |state| new_change(&r.run, &r.flow, r.idx, state, r.attempt, at);
            match r.outcome {
                Outcome::Succeeded(output) => {
                    self.fx
                        .changes
                        .push(Change::Task(change(TaskState::Succeeded)));
                    seeds.push(Seed {
                        taken: branch_choice(&r.flow, r.idx, &output),
                        run: r.run.clone(),
                        ms: r.ms,
                        flow: r.flow.clone(),
                        version: r.version,
                        idx: r.idx,
                        succeeded: true,
                        at,
                    });
                    deltas.add(&r.run, r.ms, -1, 0, at);
                }
                Outcome::Failed { error, .. } => match dues[i] {
                    Some(next) => {
                        self.fx.changes.push(Change::Task(TaskChange {
                            error: Some(error),
                            next_attempt_at: Some(next),
                            ..change(TaskState::Pending)
                        }));
                        due(&mut self.fx, next);
                        deltas.add(&r.run, r.ms, 0, 0, at);
                    }
                    None => {
                        self.fx.changes.push(Change::Task(TaskChange {
                            error: Some(error),
                            ..change(TaskState::Dead)
                        }));
                        deltas.add(&r.run, r.ms, -1, 1, at);
                    }
                },
                Outcome::StartChild(child) => {
                    self.fx
                        .changes
                        .push(Change::Task(change(TaskState::Suspended)));
                    deltas.add(&r.run, r.ms, 0, 0, at);
                    children.push((r.run.clone(), r.ms, node.name.clone(), *child));
                }
            }
        }

        if !children.is_empty() {
            let runs: Vec<NewRun> = children.iter().map(|c| c.3.clone()).collect();
            let created = self.create_runs(&runs).await?;
            // A child whose idempotency key was used before: the parent waits for that run.
            for ((run, ms, node, child), got) in children.iter().zip(created) {
                if got.id != child.id {
                    exec(
                        &self.tx,
                        "UPDATE tasks SET child_run = $4 WHERE run_id = $1 AND run_ms = $2 AND node = $3",
                        &[&run.as_ref(), ms, node, &got.id],
                    )
                    .await?;
                }
            }
        }

        self.propagate(seeds, &mut deltas).await?;
        self.adjust_runs(deltas).await
    }
}
