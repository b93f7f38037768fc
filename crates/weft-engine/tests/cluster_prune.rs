//! The leader's sweeper deletes the shared rate buckets and key slot holds that no longer
//! limit anything (a real PostgreSQL schema), so per-key limits do not leave a row for
//! every key ever seen. Every wait polls with a deadline.

mod common;

use common::{schema, until};
use std::time::Duration;
use weft_engine::{ClusterConfig, Engine, EngineConfig};
use weft_store::{KeySlotHold, LimitStore};
use weft_store_postgres::testing;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test(flavor = "multi_thread")]
async fn the_leader_prunes_spent_rate_buckets_and_key_slots() {
    let guard = schema().await;
    let store = testing::connect(&guard.schema).await;
    // Left by workers long gone (times in 1970): a bucket whose next start was allowed at
    // 1.001 s, and a hold whose lease ran out at 1 s.
    assert_eq!(
        store.rate_take("node:old", 1_000, 1_000_000).await.unwrap(),
        None
    );
    let hold = KeySlotHold {
        key: "customer:1".into(),
        run_id: "r".into(),
        node: "n".into(),
        holder: "gone".into(),
        lease_until: 1_000,
    };
    assert!(store.key_acquire(&hold, 1, 0).await.unwrap());
    assert_eq!(store.key_holders("customer:1", 0).await.unwrap().len(), 1);

    let cluster = ClusterConfig {
        leader_ttl: Duration::from_millis(1000),
        leader_retry: Duration::from_millis(200),
        poll: Duration::from_millis(50),
        ..ClusterConfig::new("o1")
    };
    let config = EngineConfig {
        cluster: Some(cluster),
        run_workers: false,
        sweep_every: Duration::from_millis(100),
        ..EngineConfig::default()
    };
    let engine = Engine::start(testing::connect(&guard.schema).await, config)
        .await
        .expect("engine starts");
    until("the sweeper to delete the spent hold", WAIT, async || {
        let holds = store.key_holders("customer:1", 0).await.unwrap();
        holds.is_empty().then_some(())
    })
    .await;
    // The bucket went in the same call, before the holds: a take as of 1.0005 s, which
    // the old bucket refused, is now allowed.
    assert_eq!(
        store.rate_take("node:old", 1_000, 1_000_500).await.unwrap(),
        None
    );
    engine.shutdown(Duration::from_secs(5)).await;
}
