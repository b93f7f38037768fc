//! The shared test-database helpers (see `weft_store_postgres::testing`).

#[allow(unused_imports)]
pub use weft_store_postgres::testing::*;

use std::sync::Arc;
use weft_core::CompiledFlow;
use weft_store::{FlowStore, NewRun};
use weft_store_postgres::PostgresStore;

/// Stores `yaml` as a flow and compiles it.
#[allow(dead_code)]
pub async fn flow(store: &PostgresStore, yaml: &str) -> Arc<CompiledFlow> {
    let spec = weft_core::parse_flow(yaml).expect("parse");
    store.flow_put(&spec).await.expect("flow_put");
    Arc::new(weft_core::compile(&spec).expect("compile"))
}

/// `n` new runs of version 1 of `flow`: fresh UUID v7 ids, null input, no key.
#[allow(dead_code)]
pub fn runs(flow: &Arc<CompiledFlow>, n: usize) -> Vec<NewRun> {
    (0..n)
        .map(|_| NewRun {
            id: uuid::Uuid::now_v7().to_string(),
            flow: flow.clone(),
            version: 1,
            input: serde_json::Value::Null,
            idempotency_key: None,
            parent: None,
            created_at: 0,
            start_at: None,
        })
        .collect()
}
