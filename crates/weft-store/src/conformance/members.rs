//! Cluster membership ([`MemberStore`](crate::MemberStore)): each process's last beat is
//! stored under its node id, a later beat replaces it, and a member that stopped beating
//! drops out of the list once its last beat is older than the staleness asked for.

use super::fixture::T0;
use crate::{DynStore, MemberQueue, MemberRecord};

fn member(node_id: &str, beat_at: i64, running: u32) -> MemberRecord {
    MemberRecord {
        node_id: node_id.into(),
        hostname: "host-a".into(),
        pid: 4242,
        roles: vec!["orchestrator".into(), "worker".into()],
        queues: vec![
            MemberQueue {
                name: "default".into(),
                concurrency: 64,
                running,
            },
            MemberQueue {
                name: "slow".into(),
                concurrency: 2,
                running: 0,
            },
        ],
        started_at: T0 - 1_000,
        beat_at,
        load: running,
        pool_size: 11,
        ready: true,
        all_queues: false,
        store_beat_at: None,
    }
}

async fn beat(store: &DynStore, m: &MemberRecord) {
    store.member_beat(m).await.expect("member_beat");
}

/// The listed members, with the store's beat time checked against the real clock and then
/// cleared (the fixtures' beat times are made up; the store's is its own clock's).
async fn list(store: &DynStore, now: i64, stale_after_ms: i64) -> Vec<MemberRecord> {
    let mut members = store
        .member_list(now, stale_after_ms)
        .await
        .expect("member_list");
    let real_now = weft_core::time::Clock::now_ms(&weft_core::time::SystemClock);
    for m in &mut members {
        if let Some(at) = m.store_beat_at.take() {
            assert!(
                (at - real_now).abs() < 60_000,
                "{}'s store beat time {at} is not the database's clock ({real_now})",
                m.node_id
            );
        }
    }
    members
}

/// Beats are listed back as they were written, by node id.
pub async fn beat_then_list_round_trips(store: DynStore) {
    assert!(list(&store, T0, 5_000).await.is_empty());
    let (b, a) = (member("node-b", T0, 1), member("node-a", T0 + 10, 0));
    let gateway = MemberRecord {
        roles: vec!["gateway".into()],
        queues: Vec::new(),
        ..member("node-c", T0 + 20, 0)
    };
    beat(&store, &b).await;
    beat(&store, &a).await;
    beat(&store, &gateway).await;
    assert_eq!(list(&store, T0 + 100, 5_000).await, vec![a, b, gateway]);
}

/// A second beat of the same node replaces its row instead of adding one.
pub async fn second_beat_updates_the_member(store: DynStore) {
    beat(&store, &member("node-a", T0, 0)).await;
    let later = MemberRecord {
        queues: vec![MemberQueue {
            name: "default".into(),
            concurrency: 8,
            running: 3,
        }],
        load: 3,
        ..member("node-a", T0 + 1_000, 3)
    };
    beat(&store, &later).await;
    assert_eq!(list(&store, T0 + 1_000, 5_000).await, vec![later]);
}

/// A member whose last beat is older than `stale_after_ms` is not listed; it is again once
/// it beats again.
pub async fn stale_member_is_not_listed(store: DynStore) {
    let (old, fresh) = (member("node-a", T0, 0), member("node-b", T0 + 4_000, 0));
    beat(&store, &old).await;
    beat(&store, &fresh).await;
    assert_eq!(
        list(&store, T0 + 4_500, 5_000).await,
        vec![old.clone(), fresh.clone()]
    );
    assert_eq!(list(&store, T0 + 6_000, 5_000).await, vec![fresh.clone()]);
    let back = member("node-a", T0 + 6_000, 0);
    beat(&store, &back).await;
    assert_eq!(list(&store, T0 + 6_000, 5_000).await, vec![back, fresh]);
}

/// A beat's pool size, readiness and serving every queue are listed back, and a store with its own clock stamps
/// each beat with it, whatever time the member claimed.
pub async fn beat_keeps_pool_readiness_and_the_store_clock(store: DynStore) {
    let draining = MemberRecord {
        pool_size: 3,
        ready: false,
        all_queues: true,
        ..member("node-a", T0, 0)
    };
    beat(&store, &draining).await;
    let raw = store.member_list(T0, 5_000).await.expect("member_list");
    assert_eq!(raw.len(), 1);
    assert_eq!(
        (raw[0].pool_size, raw[0].ready, raw[0].all_queues),
        (3, false, true)
    );
    let facts = store.store_facts().await.expect("store_facts");
    // Stores with a clock of their own stamp beats with it; the others leave it empty.
    assert_eq!(raw[0].store_beat_at.is_some(), facts.now.is_some());
    assert_eq!(list(&store, T0, 5_000).await, vec![draining]);
}

/// The store names its kind and its pool; a server reports its connection limit, with
/// fewer reserved connections than that, and its clock.
pub async fn store_facts_describe_the_database(store: DynStore) {
    let facts = store.store_facts().await.expect("store_facts");
    assert!(
        matches!(facts.kind.as_str(), "sqlite" | "postgres"),
        "{facts:?}"
    );
    assert!(facts.pool_size >= 1, "{facts:?}");
    assert_eq!(facts.max_connections.is_some(), facts.kind == "postgres");
    if let (Some(max), Some(reserved)) = (facts.max_connections, facts.reserved_connections) {
        assert!(reserved < max, "{facts:?}");
    }
    if let Some(now) = facts.now {
        let real_now = weft_core::time::Clock::now_ms(&weft_core::time::SystemClock);
        assert!((now - real_now).abs() < 60_000, "{facts:?} vs {real_now}");
    }
}
