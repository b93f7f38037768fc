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
    }
}

async fn beat(store: &DynStore, m: &MemberRecord) {
    store.member_beat(m).await.expect("member_beat");
}

async fn list(store: &DynStore, now: i64, stale_after_ms: i64) -> Vec<MemberRecord> {
    store
        .member_list(now, stale_after_ms)
        .await
        .expect("member_list")
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
