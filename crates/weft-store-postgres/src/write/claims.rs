//! Claims of ready tasks by worker processes sharing the database, and leader leases
//! (`weft_store::ClaimStore`).
//!
//! A claimed task stays `ready` with `lease_owner` and `lease_until` set; every transition
//! into or out of `ready` clears both (see `apply`, `dag`, `manage`), so only claimed ready
//! tasks carry a lease. Claims are one statement that locks the tasks it takes with
//! `FOR UPDATE SKIP LOCKED`: concurrent claimers pass over each other's rows instead of
//! waiting for them, and a row claimed by a transaction that committed after this one's
//! snapshot is re-checked (`lease_owner IS NULL`) and dropped. Neither claims nor heartbeats
//! ever wait for a task row, so they cannot deadlock with the writers, which lock run rows
//! first (see `W::lock_runs`); reaping changes tasks of several runs and locks those runs
//! first, like every other writer.

use super::W;
use crate::PostgresStore;
use crate::conv::{col, exec, row, rows, run_ms};
use std::sync::Arc;
use tokio_postgres::Row;
use weft_core::time::Millis;
use weft_store::*;

/// First key of the per-worker advisory lock that serialises a worker's heartbeats ("wefh");
/// the second is the worker's hash.
const HEARTBEAT_LOCK: i32 = 0x7765_6668;

const CLAIM: &str = "WITH picked AS MATERIALIZED (
         SELECT run_id, run_ms, node FROM tasks
         WHERE queue = $1 AND state = 'ready' AND lease_owner IS NULL
         ORDER BY priority DESC, run_ms, run_id, idx
         LIMIT $2
         FOR UPDATE SKIP LOCKED
     )
     UPDATE tasks t SET lease_owner = $3, lease_until = $4
     FROM picked p JOIN runs r ON r.id = p.run_id AND r.id_ms = p.run_ms
     WHERE t.run_id = p.run_id AND t.run_ms = p.run_ms AND t.node = p.node
     RETURNING t.run_id, t.node, t.attempt, r.flow, r.version, t.queue, t.priority, t.run_ms, t.idx";

// Rows a writer holds are in the middle of leaving `ready` (completed, cancelled, reaped) and
// are skipped: not extended and not reported, so the worker stops them.
const HEARTBEAT: &str = "WITH mine AS MATERIALIZED (
         SELECT run_id, run_ms, node FROM tasks
         WHERE lease_owner = $1 AND state = 'ready'
         FOR UPDATE SKIP LOCKED
     )
     UPDATE tasks t SET lease_until = $2
     FROM mine m
     WHERE t.run_id = m.run_id AND t.run_ms = m.run_ms AND t.node = m.node
     RETURNING t.run_id, t.node, t.run_ms, t.idx";

const RELEASE: &str = "WITH mine AS MATERIALIZED (
         SELECT t.run_id, t.run_ms, t.node FROM tasks t
         JOIN unnest($2::text[], $3::int8[], $4::text[]) AS u(run_id, ms, node)
           ON t.run_id = u.run_id AND t.run_ms = u.ms AND t.node = u.node
         WHERE t.lease_owner = $1 AND t.state = 'ready'
         FOR UPDATE OF t SKIP LOCKED
     )
     UPDATE tasks t SET lease_owner = NULL, lease_until = NULL
     FROM mine m
     WHERE t.run_id = m.run_id AND t.run_ms = m.run_ms AND t.node = m.node";

const REAP: &str = "UPDATE tasks t SET
         error = 'attempt ' || t.attempt::text || ' lost: lease of worker ' || t.lease_owner
                 || ' expired at ' || t.lease_until::text,
         lease_owner = NULL, lease_until = NULL
     FROM unnest($2::text[], $3::int8[], $4::text[]) AS u(run_id, ms, node)
     JOIN runs r ON r.id = u.run_id AND r.id_ms = u.ms
     WHERE t.run_id = u.run_id AND t.run_ms = u.ms AND t.node = u.node
       AND t.state = 'ready' AND t.lease_owner IS NOT NULL AND t.lease_until < $1
     RETURNING t.run_id, t.node, t.attempt, r.flow, r.version, t.queue, t.priority, t.run_ms, t.idx";

/// A task row of `CLAIM` or `REAP`, with its sort key (priority, run_ms, run_id, idx).
fn ready_task(r: &Row) -> StoreResult<((i32, i64, String, i32), ReadyTask)> {
    let run: &str = col(r, 0)?;
    let priority: i32 = col(r, 6)?;
    let task = ReadyTask {
        run_id: Arc::from(run),
        node: Arc::from(col::<&str>(r, 1)?),
        attempt: col::<i32>(r, 2)? as u32,
        flow: Arc::from(col::<&str>(r, 3)?),
        version: col::<i32>(r, 4)? as u32,
        queue: Arc::from(col::<&str>(r, 5)?),
        priority,
    };
    Ok(((-priority, col(r, 7)?, run.to_string(), col(r, 8)?), task))
}

/// Task rows in claim order: highest priority, then oldest run, then flow order.
fn in_claim_order(found: &[Row]) -> StoreResult<Vec<ReadyTask>> {
    let mut tasks = found
        .iter()
        .map(ready_task)
        .collect::<StoreResult<Vec<_>>>()?;
    tasks.sort_by(|a, b| a.0.cmp(&b.0));
    Ok(tasks.into_iter().map(|t| t.1).collect())
}

pub(crate) async fn task_claim(
    store: &PostgresStore,
    worker: &str,
    queue: &str,
    limit: u32,
    lease_until: Millis,
) -> StoreResult<Vec<ReadyTask>> {
    let client = store.client().await?;
    if limit == 0 {
        return Ok(Vec::new());
    }
    let limit = i64::from(limit);
    let claimed = rows(&client, CLAIM, &[&queue, &limit, &worker, &lease_until]).await?;
    in_claim_order(&claimed)
}

pub(crate) async fn task_heartbeat(
    store: &PostgresStore,
    worker: &str,
    lease_until: Millis,
) -> StoreResult<Vec<(String, String)>> {
    let mut client = store.client().await?;
    let w = W::begin(&mut client, store).await?;
    // One heartbeat per worker at a time: a second one would skip the rows the first holds
    // and tell the worker it lost them.
    exec(
        &w.tx,
        "SELECT pg_advisory_xact_lock($1::int4, hashtext($2::text))",
        &[&HEARTBEAT_LOCK, &worker],
    )
    .await?;
    let held = rows(&w.tx, HEARTBEAT, &[&worker, &lease_until]).await?;
    w.commit().await?;
    let mut held = held
        .iter()
        .map(|r| Ok(((col(r, 2)?, col(r, 0)?, col(r, 3)?), col(r, 1)?)))
        .collect::<StoreResult<Vec<((i64, String, i32), String)>>>()?;
    held.sort();
    Ok(held
        .into_iter()
        .map(|((_, run, _), node)| (run, node))
        .collect())
}

/// Unclaims `worker`'s unstarted tasks among `tasks`, passing over rows another
/// transaction holds (like claims, it never waits for a task row).
pub(crate) async fn task_release(
    store: &PostgresStore,
    worker: &str,
    tasks: &[ReadyTask],
) -> StoreResult<u64> {
    if tasks.is_empty() {
        return Ok(0);
    }
    let run: Vec<&str> = tasks.iter().map(|t| &*t.run_id).collect();
    let ms: Vec<i64> = run.iter().map(|id| run_ms(id)).collect();
    let node: Vec<&str> = tasks.iter().map(|t| &*t.node).collect();
    let client = store.client().await?;
    exec(&client, RELEASE, &[&worker, &run, &ms, &node]).await
}

pub(crate) async fn task_reap(store: &PostgresStore, now: Millis) -> StoreResult<Effects> {
    let mut client = store.client().await?;
    let mut w = W::begin(&mut client, store).await?;
    // Expired leases are found without locks, their runs are locked in id order (as every
    // writer does), and only leases still expired then are handed back: a lease renewed or
    // a task finished meanwhile is left alone.
    let found = rows(
        &w.tx,
        "SELECT run_id, run_ms, node FROM tasks
         WHERE lease_owner IS NOT NULL AND lease_until < $1 AND state = 'ready'",
        &[&now],
    )
    .await?;
    if found.is_empty() {
        return w.commit().await;
    }
    let mut keys: (Vec<String>, Vec<i64>, Vec<String>) = Default::default();
    for f in &found {
        keys.0.push(col(f, 0)?);
        keys.1.push(col(f, 1)?);
        keys.2.push(col(f, 2)?);
    }
    w.lock_runs(
        keys.0
            .iter()
            .map(String::as_str)
            .zip(keys.1.iter().copied()),
    )
    .await?;
    let reaped = rows(&w.tx, REAP, &[&now, &keys.0, &keys.1, &keys.2]).await?;
    w.fx.ready = in_claim_order(&reaped)?;
    w.commit().await
}

pub(crate) async fn leader_acquire(
    store: &PostgresStore,
    duty: &str,
    holder: &str,
    now: Millis,
    ttl_ms: i64,
) -> StoreResult<bool> {
    let client = store.client().await?;
    // ON CONFLICT DO UPDATE locks the existing row and re-checks the WHERE against its
    // latest version, so of racing processes exactly one takes a free or ended lease.
    let held = row(
        &client,
        "INSERT INTO leader_leases (duty, holder, until) VALUES ($1, $2, $3::int8 + $4::int8)
         ON CONFLICT (duty) DO UPDATE SET holder = excluded.holder, until = excluded.until
         WHERE leader_leases.until < $3 OR leader_leases.holder = excluded.holder
         RETURNING holder",
        &[&duty, &holder, &now, &ttl_ms],
    )
    .await?;
    Ok(held.is_some())
}

pub(crate) async fn leader_release(
    store: &PostgresStore,
    duty: &str,
    holder: &str,
) -> StoreResult<()> {
    let client = store.client().await?;
    exec(
        &client,
        "DELETE FROM leader_leases WHERE duty = $1 AND holder = $2",
        &[&duty, &holder],
    )
    .await?;
    Ok(())
}

pub(crate) async fn leader_get(
    store: &PostgresStore,
    duty: &str,
    now: Millis,
) -> StoreResult<Option<(String, Millis)>> {
    let client = store.client().await?;
    let found = row(
        &client,
        "SELECT holder, until FROM leader_leases WHERE duty = $1 AND until >= $2",
        &[&duty, &now],
    )
    .await?;
    found.map(|r| Ok((col(&r, 0)?, col(&r, 1)?))).transpose()
}
