//! The sweeper's store cases (weft_store::conformance::sweep) on PostgreSQL, with the
//! damage made through a plain client on the test schema.

mod common;

use std::sync::Arc;
use weft_store::DynStore;
use weft_store::conformance::sweep::{self, Tamper};

async fn setup() -> (DynStore, Tamper, common::SchemaGuard) {
    let (store, guard) = common::fresh().await;
    let client = Arc::new(common::raw(&guard.schema).await);
    let tamper: Tamper = Box::new(move |sql| {
        let client = client.clone();
        Box::pin(async move {
            client.batch_execute(&sql).await.expect("tamper");
        })
    });
    (store, tamper, guard)
}

#[tokio::test]
async fn wrong_counters_are_found_and_recounted() {
    let (store, tamper, _guard) = setup().await;
    sweep::wrong_counters_are_found_and_recounted(store, tamper).await;
}

#[tokio::test]
async fn orphans_and_lost_children_are_found() {
    let (store, tamper, _guard) = setup().await;
    sweep::orphans_and_lost_children_are_found(store, tamper).await;
}
