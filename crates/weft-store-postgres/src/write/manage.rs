//! Cancelling runs, firing due timers, and the dead-letter queue.

use super::W;
use super::apply::Res;
use super::finish::ParentOutcome;
use crate::PostgresStore;
use crate::conv::{col, exec, row, rows, run_ms};
use std::sync::Arc;
use weft_core::nodes::NodeKind;
use weft_core::time::Millis;
use weft_core::{RunState, TaskState};
use weft_store::*;

/// Most due timers fired by one call; the rest are reported as due now.
const PROMOTE_LIMIT: i64 = 2048;

/// Cancels a run, its unfinished tasks and, depth first, its unfinished child runs; a
/// cancelled child fails its parent's task for good.
pub(crate) async fn run_cancel(store: &PostgresStore, id: &str) -> StoreResult<Effects> {
    let mut client = store.client().await?;
    let mut w = W::begin(&mut client, store).await?;
    let now = store.now();
    let mut stack = vec![id.to_string()];
    let mut parent = None;
    while let Some(run) = stack.pop() {
        let ms = run_ms(&run);
        let cancelled = row(
            &w.tx,
            "UPDATE runs SET state = 'cancelled', active = 0, finished_at = $3
             WHERE id = $1 AND id_ms = $2 AND state IN ('queued', 'running', 'failed')
             RETURNING flow, created_at, parent_run, parent_node",
            &[&run, &ms, &now],
        )
        .await?;
        let Some(cancelled) = cancelled else {
            if run != id {
                continue;
            }
            let state = row(
                &w.tx,
                "SELECT state FROM runs WHERE id = $1 AND id_ms = $2",
                &[&run, &ms],
            )
            .await?;
            return Err(match state {
                None => StoreError::NotFound(format!("run {id}")),
                Some(s) => {
                    StoreError::Conflict(format!("run {id} is already {}", col::<String>(&s, 0)?))
                }
            });
        };
        let flow: String = col(&cancelled, 0)?;
        if run == id {
            let (p, n): (Option<String>, Option<String>) =
                (col(&cancelled, 2)?, col(&cancelled, 3)?);
            parent = p.zip(n);
        }
        let tasks = rows(
            &w.tx,
            "UPDATE tasks SET state = 'cancelled', finished_at = $3, lease_owner = NULL, lease_until = NULL
             WHERE run_id = $1 AND run_ms = $2 AND state IN ('waiting', 'pending', 'ready', 'running', 'suspended')
             RETURNING node, attempt, idx",
            &[&run, &ms, &now],
        )
        .await?;
        let mut tasks: Vec<(i32, String, i32)> = tasks
            .iter()
            .map(|t| Ok((col(t, 2)?, col(t, 0)?, col(t, 1)?)))
            .collect::<StoreResult<_>>()?;
        tasks.sort();
        for (_, node, attempt) in tasks {
            w.fx.changes.push(Change::Task(TaskChange {
                run_id: run.clone(),
                flow: flow.clone(),
                node,
                state: TaskState::Cancelled,
                attempt: attempt as u32,
                error: None,
                next_attempt_at: None,
                at: now,
            }));
        }
        w.fx.cancelled.push(run.clone());
        let finished = FinishedRun {
            id: run.clone(),
            flow,
            state: RunState::Cancelled,
            created_at: col(&cancelled, 1)?,
            finished_at: now,
        };
        w.fx.changes.push(Change::RunFinished {
            run: finished.clone(),
            error: None,
        });
        w.fx.finished.push(finished);
        let children = rows(
            &w.tx,
            "SELECT id FROM runs WHERE parent_run = $1 AND state IN ('queued', 'running', 'failed') ORDER BY id DESC",
            &[&run],
        )
        .await?;
        for c in &children {
            stack.push(col(c, 0)?);
        }
    }
    if let Some((parent, node)) = parent {
        let outcome = Outcome::Failed {
            error: format!("child run {id} was cancelled"),
            retryable: false,
        };
        let results = w
            .parent_results(vec![ParentOutcome {
                parent,
                node,
                child: id.to_string(),
                outcome,
            }])
            .await?;
        w.apply(results).await?;
    }
    w.commit().await
}

/// Fires due timers: finished delays succeed, back-offs become ready.
pub(crate) async fn promote_due(store: &PostgresStore, now: Millis) -> StoreResult<Effects> {
    let mut client = store.client().await?;
    let mut w = W::begin(&mut client, store).await?;
    // Due timers are found without locks, their runs are locked in id order (as every
    // writer does), and only timers still pending then are fired: a timer fired meanwhile
    // by another process is skipped.
    let found = rows(
        &w.tx,
        "SELECT t.run_id, t.run_ms, t.node, t.attempt, r.flow, r.version, t.scheduled_at
         FROM tasks t JOIN runs r ON r.id = t.run_id AND r.id_ms = t.run_ms
         WHERE t.state = 'pending' AND t.scheduled_at <= $1
         ORDER BY t.scheduled_at LIMIT $2",
        &[&now, &PROMOTE_LIMIT],
    )
    .await?;
    let more = found.len() as i64 == PROMOTE_LIMIT;
    let mut due_tasks = Vec::with_capacity(found.len());
    for f in &found {
        let (run_id, node_name, flow_name, version): (String, String, String, i32) =
            (col(f, 0)?, col(f, 2)?, col(f, 4)?, col(f, 5)?);
        let flow = match store.flow(&w.tx, &flow_name, version as u32).await {
            Ok(flow) => flow,
            Err(e @ (StoreError::NotFound(_) | StoreError::Corrupt(_))) => {
                tracing::error!(run = %run_id, node = %node_name, error = %e, "due timer not fired");
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(idx) = flow.node_index(&node_name) else {
            continue;
        };
        let (ms, attempt, scheduled_at): (i64, i32, i64) = (col(f, 1)?, col(f, 3)?, col(f, 6)?);
        due_tasks.push((
            run_id,
            ms,
            node_name,
            attempt as u32,
            scheduled_at,
            flow,
            version as u32,
            idx,
        ));
    }
    w.lock_runs(due_tasks.iter().map(|t| (t.0.as_str(), t.1)))
        .await?;
    let run: Vec<&str> = due_tasks.iter().map(|t| t.0.as_str()).collect();
    let ms: Vec<i64> = due_tasks.iter().map(|t| t.1).collect();
    let node: Vec<&str> = due_tasks.iter().map(|t| t.2.as_str()).collect();
    let attempt: Vec<i32> = due_tasks.iter().map(|t| t.3 as i32).collect();
    let delay: Vec<bool> = due_tasks
        .iter()
        .map(|t| t.5.nodes[t.7].kind == NodeKind::Delay)
        .collect();
    let fired = if run.is_empty() {
        Vec::new()
    } else {
        rows(
            &w.tx,
            "UPDATE tasks t SET state = 'ready', scheduled_at = CASE WHEN u.delay THEN t.scheduled_at END,
                 lease_owner = NULL, lease_until = NULL
             FROM unnest($1::text[], $2::int8[], $3::text[], $4::int4[], $5::bool[])
                  AS u(run_id, ms, node, attempt, delay)
             WHERE t.run_id = u.run_id AND t.run_ms = u.ms AND t.node = u.node
               AND t.attempt = u.attempt AND t.state = 'pending'
             RETURNING u.run_id, u.node",
            &[&run, &ms, &node, &attempt, &delay],
        )
        .await?
    };
    let fired: std::collections::HashSet<(String, String)> = fired
        .iter()
        .map(|f| Ok((col(f, 0)?, col(f, 1)?)))
        .collect::<StoreResult<_>>()?;
    let mut fire = Vec::new();
    for (run_id, ms, node_name, attempt, scheduled_at, flow, version, idx) in due_tasks {
        if !fired.contains(&(run_id.clone(), node_name)) {
            continue;
        }
        if flow.nodes[idx].kind == NodeKind::Delay {
            let output = serde_json::json!({
                "fired_at": weft_core::time::rfc3339(now),
                "due_at": weft_core::time::rfc3339(scheduled_at),
            });
            fire.push(Res {
                run: Arc::from(run_id.as_str()),
                ms,
                flow,
                version,
                idx,
                attempt,
                started_at: scheduled_at,
                finished_at: now,
                outcome: Outcome::Succeeded(output),
            });
        } else {
            w.fx.ready.push(ReadyTask::of(
                &run_id,
                &flow,
                version,
                &flow.nodes[idx],
                attempt,
            ));
        }
    }
    w.apply(fire).await?;
    let next = if more {
        Some(now)
    } else {
        crate::read::next_due(&w.tx).await?
    };
    if let Some(next) = next {
        w.fx.due_at(next);
    }
    w.commit().await
}

/// Gives a dead task a fresh set of attempts; its run runs again.
pub(crate) async fn dlq_replay(
    store: &PostgresStore,
    run: &str,
    node: &str,
) -> StoreResult<Effects> {
    let mut client = store.client().await?;
    let mut w = W::begin(&mut client, store).await?;
    let ms = run_ms(run);
    let found = row(
        &w.tx,
        "SELECT r.flow, r.version, r.state FROM tasks t JOIN runs r ON r.id = t.run_id AND r.id_ms = t.run_ms
         WHERE t.run_id = $1 AND t.run_ms = $2 AND t.node = $3 AND t.state = 'dead' FOR UPDATE",
        &[&run, &ms, &node],
    )
    .await?;
    let Some(found) = found else {
        return Err(StoreError::NotFound(format!(
            "dead task {node} of run {run}"
        )));
    };
    let (flow_name, version, run_state): (String, i32, String) =
        (col(&found, 0)?, col(&found, 1)?, col(&found, 2)?);
    if run_state == "cancelled" {
        return Err(StoreError::Conflict(format!(
            "run {run} was cancelled; its dead tasks cannot be replayed"
        )));
    }
    let flow = store.flow(&w.tx, &flow_name, version as u32).await?;
    let n = flow
        .node(node)
        .ok_or_else(|| StoreError::Corrupt(format!("unknown node {node}")))?;
    exec(
        &w.tx,
        "UPDATE tasks SET state = 'ready', attempt = 1, finished_at = NULL, lease_owner = NULL, lease_until = NULL
         WHERE run_id = $1 AND run_ms = $2 AND node = $3",
        &[&run, &ms, &node],
    )
    .await?;
    exec(
        &w.tx,
        "UPDATE runs SET active = active + 1, dead = dead - 1, state = 'running', finished_at = NULL, error = NULL
         WHERE id = $1 AND id_ms = $2",
        &[&run, &ms],
    )
    .await?;
    if run_state == "failed" {
        w.fx.changes.push(Change::RunResumed {
            run_id: run.to_string(),
            flow: flow_name,
            at: store.now(),
        });
    }
    w.fx.ready
        .push(ReadyTask::of(run, &flow, version as u32, n, 1));
    w.commit().await
}

/// Takes a dead task of a failed run out of the DLQ for good.
pub(crate) async fn dlq_discard(store: &PostgresStore, run: &str, node: &str) -> StoreResult<()> {
    let mut client = store.client().await?;
    let w = W::begin(&mut client, store).await?;
    let ms = run_ms(run);
    let found = row(
        &w.tx,
        "SELECT r.state FROM tasks t JOIN runs r ON r.id = t.run_id AND r.id_ms = t.run_ms
         WHERE t.run_id = $1 AND t.run_ms = $2 AND t.node = $3 AND t.state = 'dead' FOR UPDATE",
        &[&run, &ms, &node],
    )
    .await?;
    let Some(found) = found else {
        return Err(StoreError::NotFound(format!(
            "dead task {node} of run {run}"
        )));
    };
    let state: String = col(&found, 0)?;
    if state != "failed" {
        return Err(StoreError::Conflict(format!(
            "run {run} is {state}; a dead task can be discarded once its run has failed"
        )));
    }
    exec(
        &w.tx,
        "UPDATE tasks SET state = 'cancelled', lease_owner = NULL, lease_until = NULL
         WHERE run_id = $1 AND run_ms = $2 AND node = $3",
        &[&run, &ms, &node],
    )
    .await?;
    exec(
        &w.tx,
        "UPDATE runs SET dead = dead - 1 WHERE id = $1 AND id_ms = $2",
        &[&run, &ms],
    )
    .await?;
    w.commit().await?;
    Ok(())
}

/// The sweeper's repair: a live run whose counters disagree with its tasks gets the true
/// counts (and finishes, resuming its parent, when nothing can run any more). The run's
/// row is locked first, as completions lock it, so a completion in flight either committed
/// before the count or applies its own change on top of the corrected counters.
pub(crate) async fn run_recount(store: &PostgresStore, run: &str) -> StoreResult<Effects> {
    let mut client = store.client().await?;
    let mut w = W::begin(&mut client, store).await?;
    let ms = run_ms(run);
    let found = row(
        &w.tx,
        "SELECT active, dead FROM runs WHERE id = $1 AND id_ms = $2 AND state IN ('queued', 'running') FOR UPDATE",
        &[&run, &ms],
    )
    .await?;
    let Some(found) = found else {
        return w.commit().await;
    };
    let (active, dead): (i32, i32) = (col(&found, 0)?, col(&found, 1)?);
    let counts = row(
        &w.tx,
        "SELECT count(*) FILTER (WHERE state IN ('pending', 'ready', 'running', 'suspended')),
                count(*) FILTER (WHERE state = 'dead')
         FROM tasks WHERE run_id = $1 AND run_ms = $2",
        &[&run, &ms],
    )
    .await?
    .ok_or_else(|| StoreError::Corrupt(format!("no task count for run {run}")))?;
    let (live, dead_tasks): (i64, i64) = (col(&counts, 0)?, col(&counts, 1)?);
    if (i64::from(active), i64::from(dead)) != (live, dead_tasks) {
        tracing::warn!(
            run,
            active,
            live,
            dead,
            dead_tasks,
            "repairing a run's counters"
        );
        let mut deltas = super::dag::Deltas::default();
        let id: super::RunId = std::sync::Arc::from(run);
        deltas.add(
            &id,
            ms,
            (live - i64::from(active)) as i32,
            (dead_tasks - i64::from(dead)) as i32,
            store.now(),
        );
        let parents = w.adjust_runs(deltas).await?;
        let batch = w.parent_results(parents).await?;
        w.apply(batch).await?;
    }
    w.commit().await
}
