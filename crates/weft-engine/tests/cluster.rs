//! Cluster mode on a real PostgreSQL: several engines, each with its own connection pool,
//! share one schema the way separate gateway, orchestrator and worker processes do. A
//! process "dies" here by having its store closed under it (its heartbeats and leader
//! renewals fail, as when a process is killed or cut off); the tests with real processes
//! and SIGKILL are in weft-cli. Every wait polls with a deadline.

mod common;

use common::{schema, start, until};
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use weft_core::RunState;
use weft_engine::{ClusterConfig, Engine, EngineConfig, RunView};
use weft_store::DynStore;
use weft_store_postgres::testing::{self, SchemaGuard};

/// A store of its own (its own pool) on the schema, as another process would have.
async fn join(guard: &SchemaGuard) -> DynStore {
    testing::connect(&guard.schema).await
}

/// An engine of a cluster node: `workers` runs attempts, `orchestrator` may lead.
async fn node(store: DynStore, name: &str, orchestrator: bool, workers: bool) -> Engine {
    let cluster = ClusterConfig {
        orchestrator,
        lease: Duration::from_millis(1500),
        leader_ttl: Duration::from_millis(1000),
        leader_retry: Duration::from_millis(200),
        poll: Duration::from_millis(50),
        ..ClusterConfig::new(name)
    };
    let config = EngineConfig {
        run_workers: workers,
        cluster: Some(cluster),
        ..EngineConfig::default()
    };
    Engine::start(store, config).await.expect("engine starts")
}

async fn finished(e: &Engine, id: &str) -> RunView {
    until(
        &format!("run {id} to finish"),
        Duration::from_secs(30),
        async || {
            let v = e.run_get(id).await.expect("run_get");
            v.run.state.is_terminal().then_some(v)
        },
    )
    .await
}

/// A local endpoint: the first `hang` requests never get an answer (until the client
/// gives up); the rest answer 200 at once. Counts requests, and requests whose client
/// went away before an answer.
struct Target {
    url: String,
    hits: Arc<AtomicU32>,
    abandoned: Arc<AtomicU32>,
}

async fn target(hang: u32) -> Target {
    use axum::{Router, routing::any};
    struct Abandoned(Arc<AtomicU32>, bool);
    impl Drop for Abandoned {
        fn drop(&mut self) {
            if !self.1 {
                self.0.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
    let hits = Arc::new(AtomicU32::new(0));
    let abandoned = Arc::new(AtomicU32::new(0));
    let (h, a) = (hits.clone(), abandoned.clone());
    let app = Router::new().route(
        "/",
        any(move || {
            let (hits, abandoned) = (h.clone(), a.clone());
            async move {
                let n = hits.fetch_add(1, Ordering::SeqCst) + 1;
                let mut guard = Abandoned(abandoned, false);
                if n <= hang {
                    std::future::pending::<()>().await;
                }
                guard.1 = true;
                axum::Json(json!({"n": n}))
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    Target {
        url,
        hits,
        abandoned,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_starts_runs_and_two_workers_finish_them() {
    let guard = schema().await;
    let gateway = node(join(&guard).await, "gateway", false, false).await;
    let w1 = node(join(&guard).await, "w1", true, true).await;
    let w2 = node(join(&guard).await, "w2", true, true).await;
    gateway
        .flow_apply("name: pair\nnodes:\n  a: {type: noop}\n  b: {type: noop, needs: [a]}\n")
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..200 {
        ids.push(start(&gateway, "pair").await);
    }
    for id in &ids {
        let v = finished(&gateway, id).await;
        assert_eq!(v.run.state, RunState::Succeeded, "{v:?}");
    }
    assert_eq!(
        gateway.inflight(),
        0,
        "the gateway-only process ran no attempt"
    );
    for e in [&gateway, &w1, &w2] {
        e.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lost_workers_task_is_reaped_and_run_by_another() {
    let guard = schema().await;
    let t = target(1).await;
    let lost_store = join(&guard).await;
    let lost = node(lost_store.clone(), "lost", false, true).await;
    lost.flow_apply(&format!(
        "name: call\nnodes:\n  c: {{type: http, params: {{url: \"{}\"}}}}\n",
        t.url
    ))
    .await
    .unwrap();
    let id = start(&lost, "call").await;
    until(
        "the first worker to call the target",
        Duration::from_secs(10),
        async || (t.hits.load(Ordering::SeqCst) == 1).then_some(()),
    )
    .await;
    // The worker's process dies: its store goes away, its heartbeats stop.
    lost_store.close();
    let survivor = node(join(&guard).await, "survivor", true, true).await;
    let v = finished(&survivor, &id).await;
    assert_eq!(v.run.state, RunState::Succeeded, "{v:?}");
    assert_eq!(t.hits.load(Ordering::SeqCst), 2, "run again exactly once");
    let c = &v.nodes[0].task;
    assert_eq!(
        c.attempt, 1,
        "a lost worker does not use up an attempt: {c:?}"
    );
    survivor.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_leader_fails_over_when_it_dies() {
    let guard = schema().await;
    let first_store = join(&guard).await;
    let first = node(first_store.clone(), "o1", true, false).await;
    until("o1 to lead", Duration::from_secs(10), async || {
        first.is_leader().then_some(())
    })
    .await;
    let second = node(join(&guard).await, "o2", true, false).await;
    assert_eq!(
        second.leader().await.unwrap().map(|(holder, _)| holder),
        Some("o1".to_string())
    );
    assert!(!second.is_leader(), "one leader at a time");
    first_store.close();
    let took_over = std::time::Instant::now();
    until("o2 to take over", Duration::from_secs(10), async || {
        second.is_leader().then_some(())
    })
    .await;
    assert!(took_over.elapsed() < Duration::from_secs(10));
    assert_eq!(
        second.leader().await.unwrap().map(|(holder, _)| holder),
        Some("o2".to_string())
    );
    // A clean shutdown hands the lease over at once.
    let third = node(join(&guard).await, "o3", true, false).await;
    second.shutdown(Duration::from_secs(5)).await;
    until(
        "o3 to take over from a clean shutdown",
        Duration::from_secs(5),
        async || third.is_leader().then_some(()),
    )
    .await;
    third.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancel_through_the_gateway_stops_the_attempt_on_the_worker() {
    let guard = schema().await;
    let t = target(u32::MAX).await;
    let gateway = node(join(&guard).await, "gateway", false, false).await;
    let worker = node(join(&guard).await, "worker", true, true).await;
    gateway
        .flow_apply(&format!(
            "name: hang\nnodes:\n  c: {{type: http, params: {{url: \"{}\"}}}}\n",
            t.url
        ))
        .await
        .unwrap();
    let id = start(&gateway, "hang").await;
    until(
        "the worker to call the target",
        Duration::from_secs(10),
        async || (t.hits.load(Ordering::SeqCst) == 1).then_some(()),
    )
    .await;
    gateway.run_cancel(&id).await.unwrap();
    until(
        "the worker to drop the call",
        Duration::from_secs(10),
        async || (t.abandoned.load(Ordering::SeqCst) == 1).then_some(()),
    )
    .await;
    assert_eq!(finished(&gateway, &id).await.run.state, RunState::Cancelled);
    assert_eq!(worker.inflight(), 0);
    for e in [&gateway, &worker] {
        e.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delay_written_by_a_gateway_is_fired_by_the_leader() {
    let guard = schema().await;
    let gateway = node(join(&guard).await, "gateway", false, false).await;
    gateway
        .flow_apply(
            "name: later\nnodes:\n  wait: {type: delay, params: {duration: 300ms}}\n  then: {type: noop, needs: [wait]}\n",
        )
        .await
        .unwrap();
    let id = start(&gateway, "later").await;
    let orchestrator = node(join(&guard).await, "orchestrator", true, true).await;
    let v = finished(&gateway, &id).await;
    assert_eq!(v.run.state, RunState::Succeeded, "{v:?}");
    for e in [&gateway, &orchestrator] {
        e.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_worker_hears_of_runs_started_elsewhere_before_its_next_poll() {
    let guard = schema().await;
    // Polls far apart: only an announcement can bring the worker these runs in time.
    let slow = |name: &str, workers: bool| EngineConfig {
        run_workers: workers,
        cluster: Some(ClusterConfig {
            orchestrator: workers,
            worker_queues: if workers {
                vec!["default".into()]
            } else {
                vec![]
            },
            poll: Duration::from_secs(30),
            ..ClusterConfig::new(name)
        }),
        ..EngineConfig::default()
    };
    let gateway = Engine::start(join(&guard).await, slow("gateway", false))
        .await
        .expect("gateway starts");
    let worker = Engine::start(join(&guard).await, slow("worker", true))
        .await
        .expect("worker starts");
    gateway
        .flow_apply("name: pair\nnodes:\n  a: {type: noop}\n  b: {type: noop, needs: [a]}\n")
        .await
        .unwrap();
    gateway
        .flow_apply("name: aside\nnodes:\n  x: {type: noop, queue: elsewhere}\n")
        .await
        .unwrap();
    // Announced before the runs below: the worker must not take up a queue it was told
    // not to serve.
    start(&gateway, "aside").await;
    // One after the other, so each but (perhaps) the first starts while the worker waits
    // for its next poll.
    let began = std::time::Instant::now();
    for _ in 0..3 {
        let id = start(&gateway, "pair").await;
        let v = until(
            &format!("run {id} to finish"),
            Duration::from_secs(10),
            async || {
                let v = gateway.run_get(&id).await.expect("run_get");
                v.run.state.is_terminal().then_some(v)
            },
        )
        .await;
        assert_eq!(v.run.state, RunState::Succeeded, "{v:?}");
    }
    assert!(began.elapsed() < Duration::from_secs(10));
    let queues: Vec<String> = worker.queue_list().into_iter().map(|q| q.name).collect();
    assert_eq!(
        queues,
        ["default"],
        "only the served queue has a dispatcher"
    );
    for e in [&gateway, &worker] {
        e.shutdown(Duration::from_secs(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stopping_worker_gives_back_the_tasks_it_had_not_started() {
    let guard = schema().await;
    // The first two calls hang: the stopping worker's two slots stay busy while it holds
    // more claimed tasks than it runs.
    let t = target(2).await;
    let config = |name: &str, lease_s: u64| EngineConfig {
        default_concurrency: 2,
        cluster: Some(ClusterConfig {
            orchestrator: false,
            lease: Duration::from_secs(lease_s),
            poll: Duration::from_millis(50),
            ..ClusterConfig::new(name)
        }),
        ..EngineConfig::default()
    };
    let gateway = node(join(&guard).await, "gateway", true, false).await;
    gateway
        .flow_apply(&format!(
            "name: call\nnodes:\n  c: {{type: http, params: {{url: \"{}\"}}}}\n",
            t.url
        ))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(start(&gateway, "call").await);
    }
    // A lease far longer than the test: only a release brings its tasks back in time.
    let leaving = Engine::start(join(&guard).await, config("leaving", 600))
        .await
        .unwrap();
    until(
        "the leaving worker to hold more than it runs",
        Duration::from_secs(10),
        async || {
            let held = leaving.queue_list().iter().map(|q| q.ready).sum::<usize>();
            (t.hits.load(Ordering::SeqCst) == 2 && held >= 2).then_some(())
        },
    )
    .await;
    let held = leaving.queue_list().iter().map(|q| q.ready).sum::<usize>();
    leaving.shutdown(Duration::from_millis(200)).await;

    let staying = Engine::start(join(&guard).await, config("staying", 600))
        .await
        .unwrap();
    // Every run but the two hung ones: the released tasks and the never-claimed ones.
    until(
        "all but the hung runs to finish",
        Duration::from_secs(15),
        async || {
            let mut done = 0;
            for id in &ids {
                if gateway.run_get(id).await.unwrap().run.state == RunState::Succeeded {
                    done += 1;
                }
            }
            (done == ids.len() - 2).then_some(())
        },
    )
    .await;
    assert!(
        held >= 2,
        "the leaving worker had claimed unstarted tasks: {held}"
    );
    for e in [&gateway, &staying] {
        e.shutdown(Duration::from_secs(5)).await;
    }
}

/// The node ids and queue names of the workers `e` lists.
async fn workers_seen(e: &Engine) -> Vec<(String, Vec<String>)> {
    e.workers()
        .await
        .expect("workers")
        .into_iter()
        .map(|w| (w.id, w.queues.into_iter().map(|q| q.name).collect()))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_gateway_lists_every_worker_and_drops_one_that_is_gone() {
    let guard = schema().await;
    let worker = async |store: DynStore, name: &str, queues: &[&str]| {
        let config = EngineConfig {
            run_workers: true,
            cluster: Some(ClusterConfig {
                orchestrator: false,
                worker_queues: queues.iter().map(|q| q.to_string()).collect(),
                lease: Duration::from_millis(1500),
                poll: Duration::from_millis(50),
                ..ClusterConfig::new(name)
            }),
            ..EngineConfig::default()
        };
        Engine::start(store, config).await.expect("worker starts")
    };
    let gateway = node(join(&guard).await, "gw", false, false).await;
    let w1_store = join(&guard).await;
    let w1 = worker(w1_store.clone(), "w1", &["alpha"]).await;
    let w2 = worker(join(&guard).await, "w2", &["beta", "gamma"]).await;
    let both = vec![
        ("w1".to_string(), vec!["alpha".to_string()]),
        (
            "w2".to_string(),
            vec!["beta".to_string(), "gamma".to_string()],
        ),
    ];
    until(
        "the gateway to list both workers",
        Duration::from_secs(10),
        async || (workers_seen(&gateway).await == both).then_some(()),
    )
    .await;
    for w in gateway.workers().await.expect("workers") {
        assert!(
            w.heartbeat_age_ms < 1500,
            "beats every third of the lease: {w:?}"
        );
        assert_eq!((w.pid, w.load), (std::process::id(), 0), "{w:?}");
    }

    // w1's process dies: its beats stop, and after three leases it is no longer listed.
    w1_store.close();
    let only_w2 = vec![both[1].clone()];
    until(
        "the gateway to drop the gone worker",
        Duration::from_secs(15),
        async || (workers_seen(&gateway).await == only_w2).then_some(()),
    )
    .await;
    drop(w1);
    for e in [&gateway, &w2] {
        e.shutdown(Duration::from_secs(5)).await;
    }
}
