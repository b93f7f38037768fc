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
use super::{RunId, W, new_change};
use crate::conv::{col, db, exec, rows, to_text};
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
    /// Position of each entry in the wave's batch.
    src: Vec<usize>,
}

impl Cols {
    fn push(
        &mut self,
        i: usize,
        r: &Res,
        text: Option<String>,
        at: Option<Millis>,
        rec: Option<String>,
    ) {
        self.src.push(i);
        self.run.push(r.run.to_string());
        self.ms.push(r.ms);
        self.node.push(r.flow.nodes[r.idx].name.clone());
        self.attempt.push(r.attempt as i32);
        self.text.push(text);
        self.at.push(at);
        self.rec.push(rec);
    }
}

/// One wave's outcome update for results of one kind: `$1..$7` are the results' columns
/// (see `Batch`), `$8..$9` their runs. The runs are locked first, in id order, by a
/// materialized CTE the update depends on, so every writer takes run locks in the same
/// order. Only the current attempt of a task in one of `states` is changed; the ordinals
/// of the results applied come back.
macro_rules! outcome_update {
    ($set:literal, $states:literal) => {
        concat!(
            "WITH l AS MATERIALIZED (
         SELECT 1 FROM runs r JOIN unnest($8::text[], $9::int8[]) AS k(id, ms) ON r.id = k.id AND r.id_ms = k.ms
         ORDER BY r.id FOR UPDATE OF r)
     UPDATE tasks t SET ",
            $set,
            ", lease_owner = NULL, lease_until = NULL
     FROM unnest($1::text[], $2::int8[], $3::text[], $4::int4[], $5::text[], $6::int8[], $7::text[])
          WITH ORDINALITY AS u(run_id, ms, node, attempt, text, at, rec, i)
     WHERE t.run_id = u.run_id AND t.run_ms = u.ms AND t.node = u.node AND t.attempt = u.attempt
       AND (SELECT count(*) FROM l) >= 0
       AND t.state IN (",
            $states,
            ")
     RETURNING u.i"
        )
    };
}

const SUCCEED: &str = outcome_update!(
    "state = 'succeeded', output = u.text, error = NULL, finished_at = u.at,
         deferred_reason = NULL, deferred_until = NULL",
    "'ready', 'running', 'suspended'"
);
const RETRY: &str = outcome_update!(
    "state = 'pending', attempt = t.attempt + 1, scheduled_at = u.at, error = u.text,
         deferred_reason = NULL, deferred_until = NULL,
         attempts = coalesce(t.attempts, '[]'::jsonb) || jsonb_build_array(u.rec::jsonb)",
    "'ready', 'running', 'suspended'"
);
const KILL: &str = outcome_update!(
    "state = 'dead', error = u.text, finished_at = u.at, scheduled_at = NULL,
         deferred_reason = NULL, deferred_until = NULL,
         attempts = coalesce(t.attempts, '[]'::jsonb) || jsonb_build_array(u.rec::jsonb)",
    "'ready', 'running', 'suspended'"
);
// Only the current attempt of a live task may start a child: suspend first, create after.
const SUSPEND: &str = outcome_update!(
    "state = 'suspended', child_run = u.text, deferred_reason = NULL, deferred_until = NULL",
    "'ready', 'running'"
);
// The attempt was not made: same attempt, no attempt record (docs/decisions/0008).
const DEFER: &str = outcome_update!(
    "state = 'pending', scheduled_at = u.at, deferred_until = u.at, deferred_reason = u.text,
         deferrals = t.deferrals + 1",
    "'ready', 'running'"
);

/// Locks runs' rows in id order (see `W::lock_runs`).
const LOCK_RUNS: &str = "SELECT 1 FROM runs r JOIN unnest($1::text[], $2::int8[]) AS u(id, ms)
       ON r.id = u.id AND r.id_ms = u.ms
     ORDER BY r.id FOR UPDATE OF r";

/// The whole wave in one statement, when every result succeeded and none has a successor
/// (single-node runs, the last node of a run): apply the results (as [`SUCCEED`]), then
/// count the applied ones into their runs (as `adjust_runs`). It is sent right behind
/// [`LOCK_RUNS`] (pipelined: one round trip for both), so every run is locked, in id order,
/// by a statement that has finished before any task row changes. Its rows:
/// the runs it updated (the columns of `adjust_runs`, then NULL), and the ordinals of the
/// applied results (NULLs, then the ordinal).
const SUCCEED_LAST: &str = "WITH done AS (
         UPDATE tasks t SET state = 'succeeded', output = u.text, error = NULL, finished_at = u.at,
             lease_owner = NULL, lease_until = NULL, deferred_reason = NULL, deferred_until = NULL
         FROM unnest($1::text[], $2::int8[], $3::text[], $4::int4[], $5::text[], $6::int8[], $7::text[])
              WITH ORDINALITY AS u(run_id, ms, node, attempt, text, at, rec, i)
         WHERE t.run_id = u.run_id AND t.run_ms = u.ms AND t.node = u.node AND t.attempt = u.attempt
           AND t.state IN ('ready', 'running', 'suspended')
         RETURNING u.i, u.run_id, u.ms, u.at),
     d AS (SELECT run_id, ms, count(*)::int4 AS n, max(at) AS at FROM done GROUP BY run_id, ms),
     e AS (
         UPDATE runs r SET
             active = r.active - d.n,
             state = CASE WHEN r.active - d.n <= 0
                          THEN (CASE WHEN r.dead > 0 THEN 'failed' ELSE 'succeeded' END)
                          ELSE 'running' END,
             finished_at = CASE WHEN r.active - d.n <= 0 THEN d.at END,
             error = CASE WHEN r.active - d.n <= 0 AND r.dead > 0 THEN
                 (SELECT 'node ' || t.node || ': ' || coalesce(t.error, 'failed') FROM tasks t
                   WHERE t.run_id = r.id AND t.run_ms = r.id_ms AND t.state = 'dead'
                   ORDER BY t.finished_at, t.idx LIMIT 1) END
         FROM d
         WHERE r.id = d.run_id AND r.id_ms = d.ms AND r.state IN ('queued', 'running')
         RETURNING r.id, r.state, r.flow, r.created_at, r.parent_run, r.parent_node, r.error, d.at)
     SELECT NULL::text, NULL::text, NULL::text, NULL::int8, NULL::text, NULL::text, NULL::text, NULL::int8, i
       FROM done
     UNION ALL
     SELECT e.*, NULL::int8 FROM e";

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
        rows(&self.tx, LOCK_RUNS, &[&id, &ms]).await?;
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
        // The runs' locks (see `lock_runs`) are taken by the first outcome statement itself,
        // in a locking CTE evaluated once before any task row is touched: one round trip less.
        let mut lock: Vec<(&str, i64)> = batch.iter().map(|r| (r.run.as_ref(), r.ms)).collect();
        lock.sort_unstable();
        lock.dedup();
        let (mut lock_id, mut lock_ms): (Vec<&str>, Vec<i64>) = lock.into_iter().unzip();

        let (mut ok, mut retry, mut kill, mut suspend, mut defer): (Cols, Cols, Cols, Cols, Cols) =
            Default::default();
        let mut dues = vec![None; batch.len()];
        for (i, r) in batch.iter().enumerate() {
            let node = &r.flow.nodes[r.idx];
            match &r.outcome {
                Outcome::Succeeded(output) => Cols::push(
                    &mut ok,
                    i,
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
                        Cols::push(&mut retry, i, r, Some(error.clone()), Some(at), Some(rec));
                    } else {
                        Cols::push(
                            &mut kill,
                            i,
                            r,
                            Some(error.clone()),
                            Some(r.finished_at),
                            Some(rec),
                        );
                    }
                }
                Outcome::StartChild(child) => {
                    Cols::push(&mut suspend, i, r, Some(child.id.clone()), None, None)
                }
                Outcome::Deferred { until, reason } => {
                    Cols::push(&mut defer, i, r, Some(reason.clone()), Some(*until), None)
                }
            }
        }
        let mut applied = vec![false; batch.len()];
        // Runs already counted by the single-statement path, with the rows it returned.
        let mut counted: Option<Vec<tokio_postgres::Row>> = None;
        let last = retry.run.is_empty()
            && kill.run.is_empty()
            && suspend.run.is_empty()
            && defer.run.is_empty()
            && batch
                .iter()
                .all(|r| r.flow.nodes[r.idx].successors.is_empty());
        if last && !ok.run.is_empty() {
            let cols = &ok;
            let lock = self.tx.prepare_cached(LOCK_RUNS).await.map_err(db)?;
            let apply = self.tx.prepare_cached(SUCCEED_LAST).await.map_err(db)?;
            let lock_params: [&(dyn tokio_postgres::types::ToSql + Sync); 2] = [&lock_id, &lock_ms];
            let apply_params: [&(dyn tokio_postgres::types::ToSql + Sync); 7] = [
                &cols.run,
                &cols.ms,
                &cols.node,
                &cols.attempt,
                &cols.text,
                &cols.at,
                &cols.rec,
            ];
            // Both go out before either answer comes back; the server runs them in order.
            let (_, got) = tokio::try_join!(
                self.tx.query(&lock, &lock_params),
                self.tx.query(&apply, &apply_params),
            )
            .map_err(db)?;
            let mut runs = Vec::new();
            for g in got {
                match col::<Option<i64>>(&g, 8)? {
                    Some(i) => applied[cols.src[i as usize - 1]] = true,
                    None => runs.push(g),
                }
            }
            counted = Some(runs);
            ok = Cols::default();
        }
        for (sql, cols) in [
            (SUCCEED, &ok),
            (RETRY, &retry),
            (KILL, &kill),
            (SUSPEND, &suspend),
            (DEFER, &defer),
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
                    &lock_id,
                    &lock_ms,
                ],
            )
            .await?;
            // Later statements find the runs locked already.
            lock_id.clear();
            lock_ms.clear();
            for d in &done {
                let i = col::<i64>(d, 0)? as usize - 1;
                applied[cols.src[i]] = true;
            }
        }

        let mut deltas = Deltas::default();
        let mut seeds = Vec::new();
        let mut children = Vec::new();
        for (i, r) in batch.into_iter().enumerate() {
            let node = &r.flow.nodes[r.idx];
            if !applied[i] {
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
                        self.fx.due_at(next);
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
                Outcome::Deferred { until, reason } => {
                    self.fx.changes.push(Change::Task(TaskChange {
                        error: Some(reason),
                        next_attempt_at: Some(until),
                        ..change(TaskState::Pending)
                    }));
                    self.fx.due_at(until);
                    deltas.add(&r.run, r.ms, 0, 0, at);
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

        if let Some(ended) = counted {
            // No successors: nothing to propagate, and the runs were updated already.
            return self.runs_ended(&deltas, &ended);
        }
        self.propagate(seeds, &mut deltas).await?;
        self.adjust_runs(deltas).await
    }
}
