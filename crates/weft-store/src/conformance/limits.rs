//! Run-time key limits: stored by key, replaced by a later put, removed by delete. Key
//! slots: at most `limit` unexpired holds per key, released or expired holds free theirs.
//! Rate buckets: starts spaced one interval apart, atomically across callers. Pruning drops
//! only buckets and holds that no longer limit anything.

use crate::{DynStore, KeyLimitRecord, KeySlotHold};

fn hold(key: &str, run: &str, holder: &str, lease_until: i64) -> KeySlotHold {
    KeySlotHold {
        key: key.into(),
        run_id: run.into(),
        node: "charge".into(),
        holder: holder.into(),
        lease_until,
    }
}

/// `rate_take` of `bucket` at `now` (µs), every start `interval` µs apart.
async fn take(store: &DynStore, bucket: &str, interval: u64, now: i64) -> Option<i64> {
    store
        .rate_take(bucket, interval, now)
        .await
        .expect("rate_take")
}

async fn runs_holding(store: &DynStore, key: &str, now: i64) -> Vec<String> {
    let holds = store.key_holders(key, now).await.expect("key_holders");
    holds.into_iter().map(|h| h.run_id).collect()
}

/// A key's slots: `limit` tasks get one, the next does not (another key is unaffected); a
/// holder asking again keeps its slot; a release or an expired lease frees one; a renewal
/// keeps a lease alive past its old end.
pub async fn key_slots_acquire_release_expire(store: DynStore) {
    let acquire = |h: KeySlotHold, limit: u32, now: i64| {
        let store = store.clone();
        async move {
            store
                .key_acquire(&h, limit, now)
                .await
                .expect("key_acquire")
        }
    };
    assert!(acquire(hold("k", "r1", "w1", 100), 2, 0).await);
    assert!(acquire(hold("k", "r2", "w2", 100), 2, 0).await);
    assert!(
        !acquire(hold("k", "r3", "w1", 100), 2, 0).await,
        "limit 2 is full"
    );
    assert!(
        acquire(hold("other", "r3", "w1", 100), 1, 0).await,
        "keys are apart"
    );
    assert!(
        acquire(hold("k", "r1", "w2", 100), 2, 0).await,
        "a holder asking again keeps its slot"
    );
    assert_eq!(runs_holding(&store, "k", 0).await, vec!["r1", "r2"]);
    assert!(
        acquire(hold("k", "r3", "w1", 100), 3, 0).await,
        "a higher limit admits more"
    );
    store
        .key_release("k", "r3", "charge")
        .await
        .expect("release");
    store
        .key_release("k", "r1", "charge")
        .await
        .expect("release");
    store
        .key_release("k", "r1", "charge")
        .await
        .expect("release twice is a no-op");
    assert_eq!(runs_holding(&store, "k", 0).await, vec!["r2"]);
    assert!(acquire(hold("k", "r4", "w1", 50), 2, 10).await);
    assert!(!acquire(hold("k", "r5", "w1", 200), 2, 10).await);
    // w1 renews its slots (r4's lease 50 -> 150); w2's r2 expires at 100.
    assert_eq!(store.key_renew("w1", 150).await.expect("renew"), 2);
    assert_eq!(runs_holding(&store, "k", 120).await, vec!["r4"]);
    assert!(
        acquire(hold("k", "r5", "w1", 300), 2, 120).await,
        "the expired hold no longer counts"
    );
    assert!(!acquire(hold("k", "r6", "w1", 300), 2, 120).await);
    assert_eq!(runs_holding(&store, "k", 120).await, vec!["r4", "r5"]);
    assert_eq!(runs_holding(&store, "k", 160).await, vec!["r5"]);
}

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

/// A rate bucket (GCRA, no burst): the first take of a new bucket is allowed; a take before
/// the bucket's time is refused with that time and changes nothing; a take at or after it
/// is allowed and moves it one interval past `now`. Buckets are apart. Of takes racing at
/// one instant, exactly one is allowed.
pub async fn rate_buckets_space_starts(store: DynStore) {
    let take = |bucket: &'static str, now: i64| {
        let store = store.clone();
        async move { take(&store, bucket, 200_000, now).await }
    };
    assert_eq!(take("b", 1_000_000).await, None, "a new bucket admits");
    assert_eq!(take("b", 1_000_000).await, Some(1_200_000));
    assert_eq!(
        take("b", 1_150_000).await,
        Some(1_200_000),
        "a refusal moves nothing"
    );
    assert_eq!(take("other", 1_150_000).await, None, "buckets are apart");
    assert_eq!(take("b", 1_200_000).await, None, "its time has come");
    assert_eq!(take("b", 1_300_000).await, Some(1_400_000));
    // Idle for long: the next start is one interval after `now`, not after the old time
    // (no burst is saved up).
    assert_eq!(take("b", 5_000_000).await, None);
    assert_eq!(take("b", 5_000_001).await, Some(5_200_000));

    let mut racing = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let store = store.clone();
        racing.spawn(async move { store.rate_take("race", 100_000, 7_000_000).await });
    }
    let mut allowed = 0;
    while let Some(done) = racing.join_next().await {
        match done.expect("join").expect("rate_take") {
            None => allowed += 1,
            Some(at) => assert_eq!(at, 7_100_000, "refused with the bucket's time"),
        }
    }
    assert_eq!(allowed, 1, "one of the racing takes is allowed");
}

/// `limits_prune(before)` deletes the rate buckets whose next start was allowed before
/// `before` and the key slot holds that expired before it, and nothing else.
pub async fn limits_prune_drops_only_spent_rows(store: DynStore) {
    let take = |bucket: &'static str, now: i64| {
        let store = store.clone();
        async move { take(&store, bucket, 100_000, now).await }
    };
    assert_eq!(take("spent", 1_000_000).await, None);
    assert_eq!(take("live", 9_000_000).await, None);
    for (key, run, lease_until) in [("k", "r1", 2_000), ("k2", "r2", 20_000)] {
        let taken = store
            .key_acquire(&hold(key, run, "w1", lease_until), 1, 0)
            .await
            .expect("key_acquire");
        assert!(taken);
    }
    // Before pruning, the spent rows are still there to be seen (as of an earlier `now`).
    assert_eq!(take("spent", 1_050_000).await, Some(1_100_000));
    assert_eq!(runs_holding(&store, "k", 0).await, vec!["r1"]);

    let pruned = store.limits_prune(5_000).await.expect("limits_prune");
    assert_eq!(pruned, 2, "one bucket and one hold were spent by 5 s");
    assert_eq!(take("spent", 1_050_000).await, None, "the bucket is gone");
    assert!(
        runs_holding(&store, "k", 0).await.is_empty(),
        "the hold is gone"
    );
    assert_eq!(take("live", 9_050_000).await, Some(9_100_000), "kept");
    assert_eq!(runs_holding(&store, "k2", 0).await, vec!["r2"], "kept");
    // (the take of "spent" above made a new bucket, due at 1.15 s)
    assert_eq!(store.limits_prune(5_000).await.expect("prune"), 1);
    assert_eq!(store.limits_prune(5_000).await.expect("prune"), 0);
}
