//! API keys: stored with their hash, listed oldest first, revoked once; and the schema check.

use super::fixture::T0;
use crate::{ApiRole, DynStore, NewApiKey, StoreError};

fn key(id: &str, role: ApiRole, at: i64) -> NewApiKey {
    NewApiKey {
        id: id.into(),
        name: Some(format!("{id} key")),
        role,
        hash: format!("hash-of-{id}"),
        created_at: at,
    }
}

/// A new store has no keys.
pub async fn empty_store_has_no_keys(store: DynStore) {
    assert!(store.apikey_list().await.expect("apikey_list").is_empty());
}

/// What is created is listed back, hash and role included, oldest first.
pub async fn create_list_round_trip(store: DynStore) {
    let admin = store
        .apikey_create(&key("b1", ApiRole::Admin, T0 + 5))
        .await
        .expect("apikey_create admin");
    assert_eq!(admin.revoked_at, None);
    let mut viewer = key("a1", ApiRole::Viewer, T0);
    viewer.name = None;
    store
        .apikey_create(&viewer)
        .await
        .expect("apikey_create viewer");
    let listed = store.apikey_list().await.expect("apikey_list");
    let summary: Vec<_> = listed
        .iter()
        .map(|k| {
            (
                k.id.as_str(),
                k.role,
                k.hash.as_str(),
                k.name.clone(),
                k.created_at,
            )
        })
        .collect();
    assert_eq!(
        summary,
        vec![
            ("a1", ApiRole::Viewer, "hash-of-a1", None, T0),
            (
                "b1",
                ApiRole::Admin,
                "hash-of-b1",
                Some("b1 key".into()),
                T0 + 5
            ),
        ]
    );
}

/// Ids are unique.
pub async fn create_duplicate_id_conflicts(store: DynStore) {
    store
        .apikey_create(&key("k1", ApiRole::Admin, T0))
        .await
        .expect("apikey_create");
    let again = store
        .apikey_create(&key("k1", ApiRole::Viewer, T0 + 1))
        .await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
    let listed = store.apikey_list().await.expect("apikey_list");
    assert_eq!(listed.len(), 1);
    assert_eq!(listed[0].role, ApiRole::Admin);
}

/// Revoking stamps the key and keeps it listed; a second revoke conflicts.
pub async fn revoke_marks_key_once(store: DynStore) {
    store
        .apikey_create(&key("k1", ApiRole::Operator, T0))
        .await
        .expect("apikey_create");
    let revoked = store.apikey_revoke("k1", T0 + 10).await.expect("revoke");
    assert_eq!(revoked.revoked_at, Some(T0 + 10));
    let listed = store.apikey_list().await.expect("apikey_list");
    assert_eq!(listed[0].revoked_at, Some(T0 + 10));
    let again = store.apikey_revoke("k1", T0 + 20).await;
    assert!(matches!(again, Err(StoreError::Conflict(_))), "{again:?}");
}

/// Revoking an unknown key is not found.
pub async fn revoke_missing_is_not_found(store: DynStore) {
    let r = store.apikey_revoke("nope", T0).await;
    assert!(matches!(r, Err(StoreError::NotFound(_))), "{r:?}");
}

/// A freshly opened store is at the schema version its driver writes.
pub async fn schema_is_current(store: DynStore) {
    let v = store.schema_version().await.expect("schema_version");
    assert_eq!(v.found, v.expected, "{v:?}");
    assert!(v.expected >= 1, "{v:?}");
}
