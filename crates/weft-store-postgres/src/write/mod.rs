//! Writes. Every call is ONE transaction, whatever its batch size; inside it, statements
//! work on whole batches through `unnest($1::text[], ...)` arrays, so the number of round
//! trips depends on the shape of the work (outcome kinds, depth of skip chains), not on how
//! many runs or results the batch holds.
//!
//! DAG progress follows docs/decisions/0003 (counters `waiting`/`ok`/`doomed` per task,
//! `active`/`dead` per run). By concern: [`create`] (runs and their tasks), [`apply`]
//! (attempt results, in waves), [`dag`] (successors, activation, skips), [`finish`] (runs'
//! ends, resuming parents), [`manage`] (cancel, timers, the DLQ), [`claims`] (tasks claimed
//! by workers, leader leases); flows, queues and keys live here.

mod apply;
mod claims;
mod create;
mod dag;
mod finish;
mod manage;
mod members;
pub(crate) mod prepared;
pub(crate) mod schedules;

pub(crate) use claims::{
    leader_acquire, leader_get, leader_release, task_claim, task_heartbeat, task_reap, task_release,
};
pub(crate) use manage::{dlq_discard, dlq_replay, promote_due, run_cancel, run_recount};
pub(crate) use members::{member_beat, member_list, store_facts};

use crate::PostgresStore;
use crate::conv::{col, db, exec, fingerprint, row, rows, run_ms, to_text};
use crate::read::{KEY_COLS, to_key};
use apply::Res;
use deadpool_postgres::{Client, Transaction};
use std::sync::Arc;
use weft_core::FlowSpec;
use weft_core::time::Millis;
use weft_store::*;

/// First key of the per-flow advisory lock that serializes version numbering ("weff").
const FLOW_LOCK: i32 = 0x7765_6666;

/// One write transaction and the effects it has produced so far.
pub(crate) struct W<'a> {
    pub(crate) tx: Transaction<'a>,
    pub(crate) store: &'a PostgresStore,
    pub(crate) fx: Effects,
}

impl<'a> W<'a> {
    async fn begin(client: &'a mut Client, store: &'a PostgresStore) -> StoreResult<W<'a>> {
        let tx = client.transaction().await.map_err(db)?;
        Ok(W {
            tx,
            store,
            fx: Effects::default(),
        })
    }

    /// Commits; the effects are returned only once the commit succeeded.
    async fn commit(self) -> StoreResult<Effects> {
        self.tx.commit().await.map_err(db)?;
        Ok(self.fx)
    }
}

pub(crate) async fn run_create(
    store: &PostgresStore,
    runs: Vec<NewRun>,
) -> StoreResult<(Vec<RunCreated>, Effects)> {
    store
        .ensure_partitions(runs.iter().map(|r| run_ms(&r.id)))
        .await?;
    let mut client = store.client().await?;
    let mut w = W::begin(&mut client, store).await?;
    let created = w.create_runs(&runs).await?;
    Ok((created, w.commit().await?))
}

pub(crate) async fn task_complete(
    store: &PostgresStore,
    results: Vec<TaskResult>,
) -> StoreResult<Effects> {
    let children = results.iter().filter_map(|r| match &r.outcome {
        Outcome::StartChild(child) => Some(run_ms(&child.id)),
        _ => None,
    });
    store.ensure_partitions(children).await?;
    let mut client = store.client().await?;
    let mut w = W::begin(&mut client, store).await?;
    // Each result stands alone: one that cannot be applied (its flow version is gone, say) is
    // logged and left for re-running after a restart, while the others commit with their
    // effects. A database error is different: it fails the whole transaction, so nothing is
    // half-applied and the caller may send the batch again.
    let mut batch = Vec::with_capacity(results.len());
    for r in results {
        let flow = match store.flow(&w.tx, &r.task.flow, r.task.version).await {
            Ok(f) => f,
            Err(e @ (StoreError::NotFound(_) | StoreError::Corrupt(_))) => {
                tracing::error!(run = %r.task.run_id, node = %r.task.node, error = %e, "attempt result not applied; the attempt re-runs after restart");
                continue;
            }
            Err(e) => return Err(e),
        };
        let Some(idx) = flow.node_index(&r.task.node) else {
            tracing::error!(run = %r.task.run_id, node = %r.task.node, "attempt result for an unknown node not applied");
            continue;
        };
        batch.push(Res {
            ms: run_ms(&r.task.run_id),
            run: r.task.run_id,
            flow,
            version: r.task.version,
            idx,
            attempt: r.task.attempt,
            started_at: r.started_at,
            finished_at: r.finished_at,
            outcome: r.outcome,
        });
    }
    w.apply(batch).await?;
    w.commit().await
}

pub(crate) async fn flow_put(
    store: &PostgresStore,
    spec: &FlowSpec,
) -> StoreResult<(FlowRecord, bool)> {
    let text = to_text(spec)?;
    let hash = fingerprint(&text);
    let mut client = store.client().await?;
    let w = W::begin(&mut client, store).await?;
    exec(
        &w.tx,
        "SELECT pg_advisory_xact_lock($1::int4, hashtext($2::text))",
        &[&FLOW_LOCK, &spec.name],
    )
    .await?;
    let latest = row(
        &w.tx,
        "SELECT version, hash, created_at FROM flows WHERE name = $1 ORDER BY version DESC LIMIT 1",
        &[&spec.name],
    )
    .await?;
    let mut version = 1;
    if let Some(latest) = latest {
        let v: i32 = col(&latest, 0)?;
        if col::<String>(&latest, 1)? == hash {
            let rec = FlowRecord {
                name: spec.name.clone(),
                version: v as u32,
                spec: spec.clone(),
                created_at: col(&latest, 2)?,
            };
            w.commit().await?;
            return Ok((rec, false));
        }
        version = v + 1;
    }
    let now = store.now();
    exec(
        &w.tx,
        "INSERT INTO flows (name, version, spec, hash, created_at) VALUES ($1, $2, $3, $4, $5)",
        &[&spec.name, &version, &text, &hash, &now],
    )
    .await?;
    w.commit().await?;
    let rec = FlowRecord {
        name: spec.name.clone(),
        version: version as u32,
        spec: spec.clone(),
        created_at: now,
    };
    Ok((rec, true))
}

/// Deletes every version of a flow unless a run of it is live or has a dead task.
pub(crate) async fn flow_delete(store: &PostgresStore, name: &str) -> StoreResult<u32> {
    let mut client = store.client().await?;
    let mut w = W::begin(&mut client, store).await?;
    exec(
        &w.tx,
        "SELECT pg_advisory_xact_lock($1::int4, hashtext($2::text))",
        &[&FLOW_LOCK, &name],
    )
    .await?;
    w.drop_prepared_of_flow(name).await?;
    let counts = row(
        &w.tx,
        "SELECT (SELECT count(*) FROM runs WHERE flow = $1 AND state IN ('queued', 'running')),
                (SELECT count(*) FROM tasks t JOIN runs r ON r.id = t.run_id AND r.id_ms = t.run_ms
                  WHERE r.flow = $1 AND t.state = 'dead')",
        &[&name],
    )
    .await?
    .ok_or_else(|| StoreError::Corrupt("count returned no row".into()))?;
    let (live, dead): (i64, i64) = (col(&counts, 0)?, col(&counts, 1)?);
    if live > 0 {
        return Err(StoreError::Conflict(format!(
            "flow {name} has {live} queued or running runs; cancel them or let them finish first"
        )));
    }
    // A dead task could be replayed later, against whatever document then holds its version
    // number (a flow applied again after deletion starts at version 1).
    if dead > 0 {
        return Err(StoreError::Conflict(format!(
            "flow {name} has {dead} dead tasks in the DLQ; replay or discard them first"
        )));
    }
    let deleted = exec(&w.tx, "DELETE FROM flows WHERE name = $1", &[&name]).await?;
    if deleted == 0 {
        return Err(StoreError::NotFound(format!("flow {name}")));
    }
    w.commit().await?;
    store.flows.lock().retain(|(n, _), _| n != name);
    Ok(deleted as u32)
}

pub(crate) async fn queue_put(c: &Client, q: &QueueSettings) -> StoreResult<()> {
    exec(
        c,
        "INSERT INTO queues (name, concurrency, paused, rate_limit, rate_per_ms)
         VALUES ($1, $2, $3, $4, $5)
         ON CONFLICT (name) DO UPDATE SET concurrency = excluded.concurrency,
             paused = excluded.paused, rate_limit = excluded.rate_limit,
             rate_per_ms = excluded.rate_per_ms",
        &[
            &q.name,
            &(q.concurrency as i32),
            &q.paused,
            &q.rate.map(|r| r.limit as i32),
            &q.rate.map(|r| i64::try_from(r.per_ms).unwrap_or(i64::MAX)),
        ],
    )
    .await?;
    Ok(())
}

pub(crate) async fn apikey_create(c: &Client, k: &NewApiKey) -> StoreResult<ApiKeyRecord> {
    let inserted = row(
        c,
        &format!(
            "INSERT INTO api_keys (id, name, role, hash, created_at) VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (id) DO NOTHING RETURNING {KEY_COLS}"
        ),
        &[&k.id, &k.name, &k.role.as_str(), &k.hash, &k.created_at],
    )
    .await?;
    match inserted {
        Some(r) => to_key(&r),
        None => Err(StoreError::Conflict(format!("api key {} exists", k.id))),
    }
}

pub(crate) async fn apikey_revoke(c: &Client, id: &str, at: Millis) -> StoreResult<ApiKeyRecord> {
    let revoked = row(
        c,
        &format!(
            "UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL RETURNING {KEY_COLS}"
        ),
        &[&id, &at],
    )
    .await?;
    if let Some(r) = revoked {
        return to_key(&r);
    }
    let exists = !rows(c, "SELECT 1 FROM api_keys WHERE id = $1", &[&id])
        .await?
        .is_empty();
    Err(if exists {
        StoreError::Conflict(format!("api key {id} is already revoked"))
    } else {
        StoreError::NotFound(format!("api key {id}"))
    })
}

/// A change of task `idx` of a run, with no error.
pub(crate) fn new_change(
    run: &str,
    flow: &weft_core::CompiledFlow,
    idx: usize,
    state: weft_core::TaskState,
    attempt: u32,
    at: Millis,
) -> TaskChange {
    TaskChange {
        run_id: run.to_string(),
        flow: flow.name().to_string(),
        node: flow.nodes[idx].name.clone(),
        state,
        attempt,
        error: None,
        next_attempt_at: None,
        at,
    }
}

/// Shared handle type for run ids inside a batch.
pub(crate) type RunId = Arc<str>;
