//! The sweeper's store side: what `run_inconsistencies` finds and what `run_recount`
//! repairs. The damage only a bug or a hand-edited database causes is made with raw SQL
//! that both drivers accept, through the driver test's [`Tamper`]; these cases are called
//! from each driver's own test file rather than from `conformance_tests!`.

use super::fixture::{T0, detail, flow, ready, start, succeed};
use crate::{DynStore, Inconsistency};
use serde_json::json;
use std::future::Future;
use std::pin::Pin;
use weft_core::RunState;

/// Runs one SQL statement on the store's database, outside the store.
pub type Tamper = Box<dyn Fn(String) -> Pin<Box<dyn Future<Output = ()> + Send>> + Send + Sync>;

async fn all(store: &DynStore) -> Vec<Inconsistency> {
    let mut found = Vec::new();
    let mut after = None;
    loop {
        let (page, next) = store
            .run_inconsistencies(after.as_deref(), 2)
            .await
            .expect("run_inconsistencies");
        found.extend(page);
        match next {
            Some(n) => after = Some(n),
            None => return found,
        }
    }
}

/// A consistent store has nothing to repair, and recounting a consistent run changes
/// nothing.
pub async fn a_consistent_store_has_nothing_to_repair(store: DynStore) {
    let (pid, cid, _) = super::subflows::suspended(&store).await;
    let f = flow(
        &store,
        "name: pair\nnodes:\n  a: {type: noop}\n  b: {type: noop}\n",
    )
    .await;
    for _ in 0..3 {
        start(&store, f.run(json!(null), T0)).await;
    }
    assert_eq!(all(&store).await, vec![], "paged two runs at a time");
    for id in [&pid, &cid] {
        let fx = store.run_recount(id).await.expect("run_recount");
        assert!(fx.finished.is_empty() && fx.ready.is_empty(), "{fx:?}");
    }
    assert_eq!(detail(&store, &pid).await.run.state, RunState::Running);
}

/// A run whose live-task counter is wrong never finishes by itself; the search names it
/// and the recount finishes it once its tasks are done.
pub async fn wrong_counters_are_found_and_recounted(store: DynStore, tamper: Tamper) {
    let f = flow(
        &store,
        "name: pair\nnodes:\n  a: {type: noop}\n  b: {type: noop}\n",
    )
    .await;
    let (id, fx) = start(&store, f.run(json!(null), T0)).await;
    tamper(format!("UPDATE runs SET active = 7 WHERE id = '{id}'")).await;
    assert_eq!(
        all(&store).await,
        vec![Inconsistency::Counters { run_id: id.clone() }]
    );
    succeed(&store, &ready(&fx, &id, "a"), T0 + 10, json!(1)).await;
    succeed(&store, &ready(&fx, &id, "b"), T0 + 20, json!(2)).await;
    assert_eq!(
        detail(&store, &id).await.run.state,
        RunState::Running,
        "stuck: its counter says five tasks are still live"
    );
    let fx = store.run_recount(&id).await.expect("run_recount");
    assert_eq!(fx.finished.len(), 1, "{fx:?}");
    assert_eq!(fx.finished[0].state, RunState::Succeeded);
    assert_eq!(detail(&store, &id).await.run.state, RunState::Succeeded);
    assert_eq!(all(&store).await, vec![]);
}

/// A live child whose parent run is gone is an orphan; a suspended task whose child run
/// is gone has lost its child.
pub async fn orphans_and_lost_children_are_found(store: DynStore, tamper: Tamper) {
    let (pid, cid, _) = super::subflows::suspended(&store).await;
    tamper(format!("DELETE FROM runs WHERE id = '{pid}'")).await;
    let (pid2, cid2, _) = super::subflows::suspended(&store).await;
    tamper(format!("DELETE FROM runs WHERE id = '{cid2}'")).await;
    let found = all(&store).await;
    assert!(
        found.contains(&Inconsistency::Orphan {
            run_id: cid.clone(),
            parent_run: pid.clone(),
        }),
        "{found:?}"
    );
    let lost = found
        .iter()
        .find_map(|i| match i {
            Inconsistency::LostChild {
                run_id,
                node,
                attempt,
                child_run,
                child_state,
            } => Some((run_id, node, *attempt, child_run, *child_state)),
            _ => None,
        })
        .unwrap_or_else(|| panic!("no lost child in {found:?}"));
    assert_eq!(
        lost,
        (&pid2, &"sub".to_string(), 1, &Some(cid2.clone()), None),
        "{found:?}"
    );
    assert_eq!(found.len(), 2, "nothing else: {found:?}");
}
