//! The schedule duty: a per-second schedule fires each tick once, pausing stops it,
//! resuming restarts it, a trigger fires at once; in a cluster of two orchestrators each
//! tick fires exactly once across a leader fail-over. Every wait polls with a deadline.

mod common;

use common::{start, until};
use std::collections::HashSet;
use std::time::Duration;
use weft_core::TaskState;
use weft_core::schedule::parse_schedule;
use weft_core::time::{Clock, SystemClock};
use weft_engine::{ClusterConfig, Engine, EngineConfig};
use weft_store::{DynStore, RunFilter, RunRecord};
use weft_store_postgres::testing::{self, SchemaGuard};
use weft_store_sqlite::SqliteStore;

const FLOW: &str = "name: tick\nnodes:\n  a: {type: noop}\n";
const EVERY_SECOND: &str = "name: each-second\nflow: tick\ncron: '* * * * * *'\ninput: {at: '{{ schedule.fire_time_ms }}'}\n";

async fn runs(store: &DynStore) -> Vec<RunRecord> {
    let filter = RunFilter {
        flow: Some("tick".into()),
        limit: 1000,
        ..Default::default()
    };
    store.run_list(&filter).await.expect("run_list")
}

/// The ticks that fired, of those [`ticks`] lists: a tick's run is prepared a few seconds
/// ahead, held (its root `pending` with no timer) until the tick releases it.
async fn fired(store: &DynStore) -> usize {
    let mut n = 0;
    for r in runs(store).await {
        if ticks(std::slice::from_ref(&r)).is_empty() {
            continue;
        }
        let d = store.run_get(&r.id).await.unwrap().expect("listed run");
        let held = d
            .tasks
            .iter()
            .any(|t| t.state == TaskState::Pending && t.scheduled_at.is_none());
        n += usize::from(!held);
    }
    n
}

/// The tick times of the runs the schedule's ticks started or prepared (manual triggers
/// left out).
fn ticks(runs: &[RunRecord]) -> Vec<i64> {
    runs.iter()
        .filter_map(|r| r.idempotency_key.as_deref())
        .filter(|k| !k.contains(":manual:"))
        .map(|k| k.rsplit(':').next().unwrap().parse().expect("tick time"))
        .collect()
}

fn assert_once_per_tick(runs: &[RunRecord]) {
    let t = ticks(runs);
    let distinct: HashSet<i64> = t.iter().copied().collect();
    assert_eq!(distinct.len(), t.len(), "a tick fired twice: {t:?}");
    for r in runs {
        if let Some(key) = &r.idempotency_key
            && !key.contains(":manual:")
        {
            assert_eq!(
                key,
                &format!("schedule:each-second:{}", r.input["at"]),
                "input templated"
            );
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sole_engine_fires_pauses_resumes_and_triggers() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = SqliteStore::open(dir.path(), Default::default()).unwrap();
    let engine = Engine::start(store.clone(), EngineConfig::default())
        .await
        .unwrap();
    engine.flow_apply(FLOW).await.unwrap();
    engine.schedule_apply(EVERY_SECOND).await.unwrap();
    // A run started by hand carries no tick key and is not counted as a tick.
    start(&engine, "tick").await;

    let n = until("two ticks to fire", Duration::from_secs(10), async || {
        let n = fired(&store).await;
        (n >= 2).then_some(n)
    })
    .await;
    assert_once_per_tick(&runs(&store).await);

    let paused = engine
        .schedule_set_paused("each-second", true)
        .await
        .unwrap();
    assert!(paused.record.spec.paused);
    let paused_at = SystemClock.now_ms();
    let left = ticks(&runs(&store).await);
    assert!(
        left.iter().all(|&t| t <= paused_at),
        "the run prepared for a tick after the pause is gone: {left:?} (paused at {paused_at})"
    );
    let before = left.len();
    assert!(before >= n);
    // A trigger fires at once, paused or not.
    let tick = engine.schedule_trigger("each-second").await.unwrap();
    let id = tick.run_id.expect("triggered run");
    assert!(store.run_get(&id).await.unwrap().is_some());
    // Past the next tick boundary nothing more has fired.
    tokio::time::sleep(Duration::from_millis(1_500)).await;
    assert_eq!(
        ticks(&runs(&store).await).len(),
        before,
        "paused schedules do not fire"
    );

    engine
        .schedule_set_paused("each-second", false)
        .await
        .unwrap();
    until(
        "a tick after resuming",
        Duration::from_secs(10),
        async || (ticks(&runs(&store).await).len() > before).then_some(()),
    )
    .await;
    assert_once_per_tick(&runs(&store).await);
    let view = engine.schedule_get("each-second", 3).await.unwrap();
    assert_eq!(view.upcoming.len(), 3);
    assert!(view.upcoming.windows(2).all(|w| w[1] - w[0] == 1000));
    engine.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn applying_a_schedule_of_a_missing_flow_names_the_flow() {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore = SqliteStore::open(dir.path(), Default::default()).unwrap();
    let engine = Engine::start(store, EngineConfig::default()).await.unwrap();
    let err = engine
        .schedule_apply_spec(parse_schedule(EVERY_SECOND).unwrap())
        .await
        .unwrap_err();
    let weft_engine::EngineError::ScheduleInvalid(e) = err else {
        panic!("expected an invalid-document error, got {err:?}");
    };
    assert_eq!(e.issues[0].path, "flow");
    engine.shutdown(Duration::from_secs(5)).await;
}

async fn orchestrator(guard: &SchemaGuard, name: &str) -> Engine {
    let cluster = ClusterConfig {
        leader_ttl: Duration::from_millis(1000),
        leader_retry: Duration::from_millis(200),
        poll: Duration::from_millis(50),
        ..ClusterConfig::new(name)
    };
    let config = EngineConfig {
        run_workers: false,
        cluster: Some(cluster),
        ..EngineConfig::default()
    };
    Engine::start(testing::connect(&guard.schema).await, config)
        .await
        .expect("engine starts")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_orchestrators_fire_each_tick_once_across_a_fail_over() {
    let (pg, guard) = testing::fresh().await;
    let store: DynStore = pg;
    let o1 = orchestrator(&guard, "o1").await;
    let o2 = orchestrator(&guard, "o2").await;
    o1.flow_apply(FLOW).await.unwrap();
    o1.schedule_apply(EVERY_SECOND).await.unwrap();
    until("three ticks", Duration::from_secs(15), async || {
        (ticks(&runs(&store).await).len() >= 3).then_some(())
    })
    .await;
    let (leader, other) = until("a leader", Duration::from_secs(10), async || {
        if o1.is_leader() {
            Some((o1.clone(), o2.clone()))
        } else if o2.is_leader() {
            Some((o2.clone(), o1.clone()))
        } else {
            None
        }
    })
    .await;
    leader.shutdown(Duration::from_secs(5)).await;
    let before = ticks(&runs(&store).await).len();
    until(
        "the other orchestrator to lead",
        Duration::from_secs(10),
        async || other.is_leader().then_some(()),
    )
    .await;
    until(
        "three ticks under the new leader",
        Duration::from_secs(15),
        async || (ticks(&runs(&store).await).len() >= before + 3).then_some(()),
    )
    .await;
    let all = runs(&store).await;
    assert_once_per_tick(&all);
    other.shutdown(Duration::from_secs(5)).await;
}
