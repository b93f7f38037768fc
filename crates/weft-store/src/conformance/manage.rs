//! Management operations behind the API: listing and deleting flow versions, listing runs
//! by creation time, and discarding dead tasks.

use super::fixture::{T0, detail, fail, flow, ready, spec, start, task};
use crate::{DlqFilter, DynStore, RunFilter, StoreError};
use serde_json::json;
use weft_core::{RunState, TaskState};

const ONE: &str = "name: managed\nnodes:\n  a: {type: noop}\n";
const TWO: &str = "name: managed\nnodes:\n  a: {type: noop}\n  b: {type: noop, needs: [a]}\n";
const FAILING: &str = "name: failing\nnodes:\n  charge: {type: fail}\n  side: {type: noop}\n";

/// Every version comes back, oldest first; an unknown flow has none.
pub async fn flow_versions_oldest_first(store: DynStore) {
    store.flow_put(&spec(ONE)).await.expect("put 1");
    store.flow_put(&spec(TWO)).await.expect("put 2");
    let versions = store.flow_versions("managed").await.expect("versions");
    let numbers: Vec<u32> = versions.iter().map(|v| v.version).collect();
    assert_eq!(numbers, vec![1, 2]);
    assert_eq!(versions[1].spec.nodes.len(), 2);
    assert!(
        store
            .flow_versions("nope")
            .await
            .expect("versions")
            .is_empty()
    );
}

/// Deleting a flow whose runs are finished removes every version; the runs stay readable.
pub async fn flow_delete_keeps_finished_runs(store: DynStore) {
    store.flow_put(&spec(ONE)).await.expect("put 1");
    let f = flow(&store, TWO).await;
    let (id, _) = start(&store, f.run(json!(null), T0)).await;
    store.run_cancel(&id).await.expect("cancel");
    assert_eq!(store.flow_delete("managed").await.expect("delete"), 2);
    assert!(
        store
            .flow_get("managed", None)
            .await
            .expect("get")
            .is_none()
    );
    assert!(
        store
            .flow_versions("managed")
            .await
            .expect("versions")
            .is_empty()
    );
    assert_eq!(detail(&store, &id).await.run.state, RunState::Cancelled);
    match store.flow_delete("managed").await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("second delete: expected NotFound, got {other:?}"),
    }
}

/// A flow with a queued or running run cannot be deleted.
pub async fn flow_delete_conflicts_while_run_live(store: DynStore) {
    let f = flow(&store, ONE).await;
    start(&store, f.run(json!(null), T0)).await;
    match store.flow_delete("managed").await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("delete with a live run: expected Conflict, got {other:?}"),
    }
    assert!(
        store
            .flow_get("managed", None)
            .await
            .expect("get")
            .is_some()
    );
}

/// A flow with a dead task cannot be deleted: a replay would run it against whatever
/// document later holds its version number. Once the task is discarded it can.
pub async fn flow_delete_conflicts_while_a_task_is_dead(store: DynStore) {
    let f = flow(&store, FAILING).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    fail(&store, &ready(&fx, &id, "charge"), T0 + 10, "boom", false).await;
    super::fixture::succeed(&store, &ready(&fx, &id, "side"), T0 + 20, json!(null)).await;
    match store.flow_delete("failing").await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("delete with a dead task: expected Conflict, got {other:?}"),
    }
    store.dlq_discard(&id, "charge").await.expect("discard");
    assert_eq!(store.flow_delete("failing").await.expect("delete"), 1);
}

/// `created_after` is inclusive and `created_before` exclusive; both combine with the cursor.
pub async fn run_list_filters_by_creation_time(store: DynStore) {
    let f = flow(&store, ONE).await;
    let mut ids = Vec::new();
    for i in 0..4 {
        ids.push(start(&store, f.run(json!(i), T0 + i * 1_000)).await.0);
    }
    let list = |after: Option<i64>, before: Option<i64>| RunFilter {
        created_after: after,
        created_before: before,
        limit: 100,
        ..RunFilter::default()
    };
    let got = |runs: Vec<crate::RunRecord>| runs.into_iter().map(|r| r.id).collect::<Vec<_>>();
    let mid = store
        .run_list(&list(Some(T0 + 1_000), Some(T0 + 3_000)))
        .await
        .expect("run_list");
    assert_eq!(got(mid), vec![ids[2].clone(), ids[1].clone()]);
    let late = store
        .run_list(&list(Some(T0 + 3_000), None))
        .await
        .expect("run_list");
    assert_eq!(got(late), vec![ids[3].clone()]);
    let early = store
        .run_list(&list(None, Some(T0 + 1)))
        .await
        .expect("run_list");
    assert_eq!(got(early), vec![ids[0].clone()]);
}

/// Discarding a dead task of a failed run cancels the task, leaves the DLQ, keeps the run failed.
pub async fn discard_cancels_dead_task_of_failed_run(store: DynStore) {
    let f = flow(&store, FAILING).await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    fail(&store, &ready(&fx, &id, "charge"), T0 + 10, "boom", false).await;
    match store.dlq_discard(&id, "charge").await {
        Err(StoreError::Conflict(_)) => {}
        other => panic!("discard while the run still runs: expected Conflict, got {other:?}"),
    }
    super::fixture::succeed(&store, &ready(&fx, &id, "side"), T0 + 20, json!(null)).await;
    assert_eq!(detail(&store, &id).await.run.state, RunState::Failed);
    store.dlq_discard(&id, "charge").await.expect("discard");
    let d = detail(&store, &id).await;
    assert_eq!(d.run.state, RunState::Failed, "the run stays failed");
    let charge = task(&d, "charge");
    assert_eq!(charge.state, TaskState::Cancelled);
    assert_eq!(charge.error.as_deref(), Some("boom"));
    assert!(
        store
            .dlq_list(&DlqFilter::default())
            .await
            .expect("dlq")
            .is_empty()
    );
    match store.dlq_discard(&id, "charge").await {
        Err(StoreError::NotFound(_)) => {}
        other => panic!("second discard: expected NotFound, got {other:?}"),
    }
    assert!(
        store.dlq_replay(&id, "charge").await.is_err(),
        "a discarded task is not replayable"
    );
}
