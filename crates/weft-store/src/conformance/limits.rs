//! Run-time key limits: stored by key, replaced by a later put, removed by delete.

use crate::{DynStore, KeyLimitRecord};

fn limit(key: &str, concurrency: u32, at: i64) -> KeyLimitRecord {
    KeyLimitRecord {
        key: key.into(),
        concurrency,
        updated_at: at,
    }
}

/// Puts are listed back by key; a second put of a key replaces it; delete removes it once.
pub async fn put_replace_list_delete(store: DynStore) {
    assert!(store.limit_list().await.expect("limit_list").is_empty());
    store
        .limit_put(&limit("customer:b", 2, 1))
        .await
        .expect("put");
    store
        .limit_put(&limit("customer:a", 5, 2))
        .await
        .expect("put");
    store
        .limit_put(&limit("customer:b", 7, 3))
        .await
        .expect("replace");
    assert_eq!(
        store.limit_list().await.expect("limit_list"),
        vec![limit("customer:a", 5, 2), limit("customer:b", 7, 3)]
    );
    assert!(store.limit_delete("customer:a").await.expect("delete"));
    assert!(
        !store
            .limit_delete("customer:a")
            .await
            .expect("delete again")
    );
    assert_eq!(
        store.limit_list().await.expect("limit_list"),
        vec![limit("customer:b", 7, 3)]
    );
}
