//! The sweeper: a periodic duty that repairs what only a bug or a hand-edited database
//! leaves behind, so that no run sits "running" for ever (issue: runs that never get
//! stuck). Lease expiry is the reaper's (`cluster.rs`); this finds, through
//! `RunStore::run_inconsistencies`, and repairs:
//!
//! - a live run whose counters disagree with its tasks: recounted, finishing it when none
//!   of its tasks can run any more;
//! - a live child run whose parent run is gone, succeeded or cancelled: cancelled;
//! - a subflow task waiting for a child run that is gone or already finished: resumed with
//!   the child's outputs when it succeeded, else failed (retryable, so the task's retry
//!   policy starts a new child or dead-letters it).
//!
//! In a cluster it also deletes the shared rate buckets and key slot holds that no longer
//! limit anything, so per-key limits do not leave a row for every key ever seen.
//!
//! Every repair is idempotent (a recount of a consistent run does nothing, a finished run
//! cannot be cancelled, a stale attempt result is ignored), so the duty needs no lease of
//! its own: a process alone on its store sweeps, and in a cluster the leader does.

use crate::engine::Inner;
use serde_json::{Map, Value};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use weft_core::{RunState, TaskState};
use weft_store::{Inconsistency, Outcome, ReadyTask, StoreError, TaskResult};

/// Live runs examined per store call.
const PAGE: u32 = 1000;

/// Runs sweeper passes every `EngineConfig::sweep_every` until shutdown.
pub(crate) async fn duty(inner: Arc<Inner>) {
    loop {
        tokio::select! {
            _ = tokio::time::sleep(inner.config.sweep_every) => {}
            _ = inner.stopping.cancelled() => return,
        }
        if inner.config.cluster.is_some() && !inner.is_leader.load(Ordering::SeqCst) {
            continue;
        }
        match pass(&inner).await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(repairs = n, "the sweeper repaired runs"),
            Err(e) => tracing::warn!(error = %e, "sweeper pass failed; trying again next time"),
        }
        if inner.config.cluster.is_some() {
            prune_limits(&inner).await;
        }
    }
}

/// How long ago a rate bucket's next start or a key slot's lease must have passed before
/// the sweeper deletes the row: a margin for the clocks of a cluster's workers, each of
/// which compares its own time with it.
const PRUNE_MARGIN_MS: i64 = 60_000;

/// Deletes the shared rate buckets and key slot holds that no longer limit anything (see
/// `LimitStore::limits_prune`): without it a per-key rate or concurrency key leaves a row
/// for every key ever seen. Only a cluster has them; the embedded store keeps limits in
/// memory.
async fn prune_limits(inner: &Arc<Inner>) {
    match inner
        .store
        .limits_prune(inner.now() - PRUNE_MARGIN_MS)
        .await
    {
        Ok(0) => {}
        Ok(n) => tracing::debug!(rows = n, "pruned spent rate buckets and key slots"),
        Err(e) => {
            tracing::warn!(error = %e, "pruning rate buckets and key slots failed; trying again next time")
        }
    }
}

/// One pass over every live run; the number of repairs made.
pub(crate) async fn pass(inner: &Arc<Inner>) -> Result<usize, StoreError> {
    let mut after: Option<String> = None;
    let mut repairs = 0;
    loop {
        let (found, next) = inner
            .store
            .run_inconsistencies(after.as_deref(), PAGE)
            .await?;
        for problem in found {
            if inner.stopping.is_cancelled() {
                return Ok(repairs);
            }
            match repair(inner, &problem).await {
                Ok(()) => repairs += 1,
                Err(e) => tracing::warn!(?problem, error = %e, "sweeper could not repair"),
            }
        }
        match next {
            Some(n) => after = Some(n),
            None => break,
        }
    }
    crate::health::sweep_passed();
    Ok(repairs)
}

async fn repair(inner: &Arc<Inner>, problem: &Inconsistency) -> Result<(), StoreError> {
    tracing::warn!(?problem, "sweeper repairing");
    match problem {
        Inconsistency::Counters { run_id } => {
            let fx = inner.store.run_recount(run_id).await?;
            inner.apply(fx);
            crate::health::swept("counters");
        }
        Inconsistency::Orphan { run_id, .. } => {
            match inner.store.run_cancel(run_id).await {
                Ok(fx) => inner.apply(fx),
                // It finished meanwhile: nothing left to repair.
                Err(StoreError::Conflict(_) | StoreError::NotFound(_)) => {}
                Err(e) => return Err(e),
            }
            crate::health::swept("orphan");
        }
        Inconsistency::LostChild {
            run_id,
            node,
            attempt,
            child_run,
            child_state,
        } => {
            let Some(parent) = inner.store.run_get(run_id).await? else {
                return Ok(());
            };
            let flow = inner
                .flow(&parent.run.flow, parent.run.version)
                .await
                .map_err(|e| StoreError::Corrupt(e.to_string()))?;
            let Some(n) = flow.node(node) else {
                return Err(StoreError::Corrupt(format!(
                    "run {run_id} has no node {node}"
                )));
            };
            let child = child_run.as_deref().unwrap_or("(none recorded)");
            let outcome = match (child_state, child_run) {
                (Some(RunState::Succeeded), Some(c)) => match inner.store.run_get(c).await? {
                    Some(d) => Outcome::Succeeded(Value::Object(
                        d.tasks
                            .into_iter()
                            .filter(|t| t.state == TaskState::Succeeded)
                            .map(|t| (t.node, t.output.unwrap_or(Value::Null)))
                            .collect::<Map<String, Value>>(),
                    )),
                    None => lost(child, "is gone"),
                },
                (Some(state), _) => lost(
                    child,
                    &format!("ended {} without resuming its parent", state.as_str()),
                ),
                (None, _) => lost(child, "is gone"),
            };
            let now = inner.now();
            let result = TaskResult {
                task: ReadyTask::of(run_id, &flow, parent.run.version, n, *attempt),
                started_at: now,
                finished_at: now,
                outcome,
            };
            let fx = inner.store.task_complete(vec![result]).await?;
            inner.apply(fx);
            crate::health::swept("lost_child");
        }
    }
    Ok(())
}

fn lost(child: &str, what: &str) -> Outcome {
    Outcome::Failed {
        error: format!("child run {child} {what}; the sweeper failed this attempt"),
        retryable: true,
    }
}
