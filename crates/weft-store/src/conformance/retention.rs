//! Retention: finished runs older than the cutoff go, with their tasks and idempotency
//! keys; live runs and newer runs stay. Drivers may keep more than asked (PostgreSQL drops
//! whole days), so the cases put old runs a whole day before the cutoff and only assert
//! that a day holding a live run keeps that run.

use super::fixture::*;
use crate::{DlqFilter, DynStore, NewRun, RunFilter};
use serde_json::json;
use weft_core::RunState;
use weft_core::time::Millis;

const DAY: Millis = 86_400_000;
/// Retention cases prune at this time: T0's whole day lies before it.
const CUTOFF: Millis = T0 + 3 * DAY;

const ONE: &str = "name: one\nnodes:\n  a: {type: noop, retry: {max_attempts: 1}}\n";

async fn exists(store: &DynStore, run: &str) -> bool {
    store.run_get(run).await.expect("run_get").is_some()
}

/// Starts `run` and reports its only task's result.
async fn finish(store: &DynStore, run: NewRun, ok: bool) -> String {
    let at = run.created_at;
    let (id, fx) = start(store, run).await;
    let task = ready(&fx, &id, "a");
    if ok {
        succeed(store, &task, at + 5, json!(1)).await;
    } else {
        fail(store, &task, at + 5, "boom", false).await;
    }
    id
}

/// Succeeded, failed (with a dead task) and cancelled runs of an old day are removed with
/// their tasks; a run created after the cutoff is untouched.
pub async fn prune_removes_finished_runs_of_old_days(store: DynStore) {
    let f = flow(&store, ONE).await;
    let ok = finish(&store, f.run_at(json!({}), T0), true).await;
    let failed = finish(&store, f.run_at(json!({}), T0 + 1_000), false).await;
    let (cancelled, _) = start(&store, f.run_at(json!({}), T0 + 2_000)).await;
    store.run_cancel(&cancelled).await.expect("run_cancel");
    let recent = finish(&store, f.run_at(json!({}), CUTOFF + DAY), true).await;
    let dead = DlqFilter {
        limit: 50,
        ..Default::default()
    };
    assert_eq!(store.dlq_list(&dead).await.expect("dlq_list").len(), 1);

    let pruned = store.run_prune(CUTOFF).await.expect("run_prune");
    assert_eq!(pruned.runs, 3, "the three old runs are removed: {pruned:?}");
    for id in [&ok, &failed, &cancelled] {
        assert!(!exists(&store, id).await, "old finished run {id} is gone");
    }
    assert!(
        exists(&store, &recent).await,
        "a run after the cutoff stays"
    );
    let listed = store
        .run_list(&RunFilter {
            limit: 50,
            ..Default::default()
        })
        .await
        .expect("run_list");
    assert_eq!(
        listed.iter().map(|r| r.id.as_str()).collect::<Vec<_>>(),
        vec![recent.as_str()],
        "only the recent run is listed"
    );
    assert!(
        store.dlq_list(&dead).await.expect("dlq_list").is_empty(),
        "the removed run's dead task left the dead-letter queue"
    );
}

/// A queued run older than the cutoff stays and can still finish; once it has, the next
/// pass removes it.
pub async fn prune_keeps_live_runs(store: DynStore) {
    let f = flow(&store, ONE).await;
    let (live, fx) = start(&store, f.run_at(json!({}), T0)).await;
    finish(&store, f.run_at(json!({}), T0 + 1_000), true).await;

    store.run_prune(CUTOFF).await.expect("run_prune");
    let d = detail(&store, &live).await;
    assert_eq!(d.run.state, RunState::Queued, "the live run is untouched");
    assert_eq!(d.tasks.len(), 1, "with its task");

    let done = succeed(&store, &ready(&fx, &live, "a"), CUTOFF, json!(2)).await;
    assert_eq!(finished(&done), vec![(live.clone(), RunState::Succeeded)]);
    store.run_prune(CUTOFF).await.expect("run_prune again");
    assert!(!exists(&store, &live).await, "finished now, so removed");
}

/// A removed run's idempotency key can be used again: it starts a new run.
pub async fn prune_frees_idempotency_keys(store: DynStore) {
    let f = flow(&store, ONE).await;
    let keyed = |at| NewRun {
        idempotency_key: Some("order-7".into()),
        ..f.run_at(json!({}), at)
    };
    let old = finish(&store, keyed(T0), true).await;
    store.run_prune(CUTOFF).await.expect("run_prune");
    let again = keyed(CUTOFF + DAY);
    let new_id = again.id.clone();
    let (created, _) = store.run_create(vec![again]).await.expect("run_create");
    assert!(created[0].created, "the key is free again");
    assert_eq!(created[0].id, new_id);
    assert_ne!(created[0].id, old);
}

/// Pruning an empty store, or pruning twice, removes nothing and fails nothing.
pub async fn prune_repeats_harmlessly(store: DynStore) {
    assert_eq!(store.run_prune(CUTOFF).await.expect("empty").runs, 0);
    let f = flow(&store, ONE).await;
    finish(&store, f.run_at(json!({}), T0), true).await;
    assert_eq!(store.run_prune(CUTOFF).await.expect("first").runs, 1);
    let second = store.run_prune(CUTOFF).await.expect("second");
    assert_eq!(second.runs, 0, "nothing left to remove: {second:?}");
}
