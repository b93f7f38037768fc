//! The store's own lifecycle.

use crate::{DynStore, StoreError};

/// After `close`, calls fail with `Closed` rather than succeeding or hanging.
pub async fn close_makes_later_calls_fail(store: DynStore) {
    store.queue_list().await.expect("queue_list before close");
    store.close();
    let read = store.flow_list().await;
    let settings = crate::QueueSettings {
        name: "q".into(),
        concurrency: 1,
        paused: false,
        rate: None,
    };
    let write = store.queue_put(&settings).await;
    assert!(
        matches!(read, Err(StoreError::Closed)),
        "flow_list after close: {read:?}"
    );
    assert!(
        matches!(write, Err(StoreError::Closed)),
        "queue_put after close: {write:?}"
    );
}
