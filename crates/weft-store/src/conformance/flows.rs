//! Flow versions: a put stores a new version only when the document changed.

use super::fixture::spec;
use crate::DynStore;

const V1: &str = "name: orders\nnodes:\n  a: {type: noop}\n";
const V2: &str = "name: orders\nnodes:\n  a: {type: noop}\n  b: {type: noop, needs: [a]}\n";
const OTHER: &str = "name: billing\nnodes:\n  x: {type: noop}\n";

/// The first put of a name creates version 1 and returns the document.
pub async fn put_creates_version_one(store: DynStore) {
    let (rec, created) = store.flow_put(&spec(V1)).await.expect("flow_put");
    assert!(created, "first put must report created");
    assert_eq!(rec.name, "orders");
    assert_eq!(rec.version, 1);
    assert_eq!(rec.spec, spec(V1));
}

/// Putting the latest document again returns that version, not a new one.
pub async fn put_identical_returns_existing_version(store: DynStore) {
    let (first, _) = store.flow_put(&spec(V1)).await.expect("flow_put");
    let (again, created) = store.flow_put(&spec(V1)).await.expect("flow_put again");
    assert!(!created, "an identical put must not create a version");
    assert_eq!(again.version, 1);
    assert_eq!(
        again.created_at, first.created_at,
        "the existing version is returned as stored"
    );
    let latest = store.flow_get("orders", None).await.expect("flow_get");
    assert_eq!(latest.map(|r| r.version), Some(1));
}

/// A changed document becomes the next version.
pub async fn put_changed_creates_next_version(store: DynStore) {
    store.flow_put(&spec(V1)).await.expect("flow_put v1");
    let (rec, created) = store.flow_put(&spec(V2)).await.expect("flow_put v2");
    assert!(created, "a changed put must create a version");
    assert_eq!(rec.version, 2);
    assert_eq!(rec.spec, spec(V2));
}

/// Only the latest version is compared: going back to an older document is a new version.
pub async fn put_reverted_spec_creates_new_version(store: DynStore) {
    store.flow_put(&spec(V1)).await.expect("flow_put v1");
    store.flow_put(&spec(V2)).await.expect("flow_put v2");
    let (rec, created) = store.flow_put(&spec(V1)).await.expect("flow_put v1 again");
    assert!(created, "reverting to v1's document creates a version");
    assert_eq!(rec.version, 3);
}

/// Get returns the latest, a named version, or nothing.
pub async fn get_latest_specific_and_missing(store: DynStore) {
    store.flow_put(&spec(V1)).await.expect("flow_put v1");
    store.flow_put(&spec(V2)).await.expect("flow_put v2");

    let latest = store.flow_get("orders", None).await.expect("get latest");
    let latest = latest.expect("latest exists");
    assert_eq!((latest.version, latest.spec), (2, spec(V2)));

    let v1 = store.flow_get("orders", Some(1)).await.expect("get v1");
    let v1 = v1.expect("v1 exists");
    assert_eq!((v1.name.as_str(), v1.version), ("orders", 1));
    assert_eq!(v1.spec, spec(V1));

    let none = store.flow_get("orders", Some(3)).await.expect("get v3");
    assert!(none.is_none(), "version 3 does not exist");
    let none = store.flow_get("nope", None).await.expect("get missing");
    assert!(none.is_none(), "flow nope does not exist");
}

/// List holds one record per flow name: its latest version.
pub async fn list_returns_latest_per_name(store: DynStore) {
    assert!(store.flow_list().await.expect("flow_list").is_empty());
    store.flow_put(&spec(V1)).await.expect("flow_put v1");
    store.flow_put(&spec(V2)).await.expect("flow_put v2");
    store.flow_put(&spec(OTHER)).await.expect("flow_put other");

    let mut list: Vec<(String, u32)> = store
        .flow_list()
        .await
        .expect("flow_list")
        .into_iter()
        .map(|r| (r.name, r.version))
        .collect();
    list.sort();
    assert_eq!(
        list,
        vec![("billing".to_string(), 1), ("orders".to_string(), 2)]
    );
}
