//! Per-key concurrency limits across the worker processes of a cluster on a real
//! PostgreSQL (decision 0009 section 6): engines with their own pools share one schema, and
//! a real HTTP target on loopback counts the concurrent requests of each key and holds each
//! one until the test lets it go. A process "dies" by having its store closed under it.
//! Every wait polls with a deadline.

mod common;

use common::{schema, succeeded, until};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::Semaphore;
use weft_engine::{ClusterConfig, Engine, EngineConfig, LimitWait, StartRun};
use weft_store::DynStore;
use weft_store_postgres::testing;

const WAIT: Duration = Duration::from_secs(30);

/// What the target saw of a key: requests open now, most open at once, answered.
type Counts = (u32, u32, u32);

#[derive(Clone, Default)]
struct Target {
    seen: Arc<Mutex<HashMap<String, Counts>>>,
    gates: Arc<Mutex<HashMap<String, Arc<Semaphore>>>>,
}

impl Target {
    fn gate(&self, key: &str) -> Arc<Semaphore> {
        let mut gates = self.gates.lock();
        gates
            .entry(key.to_string())
            .or_insert_with(|| Arc::new(Semaphore::new(0)))
            .clone()
    }
    /// Lets `n` held (or future) requests of `key` answer.
    fn open(&self, key: &str, n: usize) {
        self.gate(key).add_permits(n);
    }
    /// (open now, most open at once, answered) for `key`.
    fn of(&self, key: &str) -> Counts {
        self.seen.lock().get(key).copied().unwrap_or_default()
    }

    /// Serves `/hold/{key}`: counts the request, waits for the key's gate, answers.
    async fn serve(&self) -> String {
        use axum::{Router, extract::Path, routing::any};
        let t = self.clone();
        let held = move |Path(key): Path<String>| {
            let t = t.clone();
            async move {
                {
                    let mut seen = t.seen.lock();
                    let (now, max, _) = seen.entry(key.clone()).or_default();
                    *now += 1;
                    *max = (*max).max(*now);
                }
                t.gate(&key).acquire().await.unwrap().forget();
                let mut seen = t.seen.lock();
                let (now, _, done) = seen.get_mut(&key).unwrap();
                *now -= 1;
                *done += 1;
                axum::Json(json!({"ok": true}))
            }
        };
        let app = Router::new().route("/hold/{key}", any(held));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}")
    }
}

/// A worker (and orchestrator) process of the cluster on its own store.
async fn worker(store: DynStore, name: &str) -> Engine {
    let cluster = ClusterConfig {
        lease: Duration::from_millis(1500),
        leader_ttl: Duration::from_millis(1000),
        leader_retry: Duration::from_millis(200),
        poll: Duration::from_millis(50),
        ..ClusterConfig::new(name)
    };
    let config = EngineConfig {
        cluster: Some(cluster),
        ..EngineConfig::default()
    };
    Engine::start(store, config).await.expect("engine starts")
}

async fn apply(e: &Engine, base: &str, limit: u32) {
    e.flow_apply(&format!(
        "name: keyed\nnodes:\n  call:\n    type: http\n    params: {{url: '{base}/hold/{{{{ input.k }}}}'}}\n    timeout: 60s\n    concurrency: {{key: 'k:{{{{ input.k }}}}', limit: {limit}}}\n"
    ))
    .await
    .unwrap();
}

async fn start(e: &Engine, k: &str) -> String {
    e.run_start(StartRun {
        flow: "keyed".into(),
        input: json!({"k": k}),
        ..Default::default()
    })
    .await
    .expect("run starts")
    .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_keys_limit_holds_across_two_workers() {
    let guard = schema().await;
    let target = Target::default();
    let base = target.serve().await;
    let w1 = worker(testing::connect(&guard.schema).await, "w1").await;
    apply(&w1, &base, 2).await;
    let mut first = Vec::new();
    for _ in 0..10 {
        first.push(start(&w1, "A").await);
    }
    until("w1 to hold both of A's slots", WAIT, async || {
        (target.of("A").0 == 2).then_some(())
    })
    .await;

    // A second worker takes runs of the same key: its tasks wait on w1's slots, and say so.
    let w2 = worker(testing::connect(&guard.schema).await, "w2").await;
    let mut second = Vec::new();
    for _ in 0..10 {
        second.push(start(&w2, "A").await);
    }
    let wait = until("a task of w2 waiting on the key", WAIT, async || {
        for id in &second {
            if let Some(w) = w2.limit_wait(id, "call").await {
                return Some(w);
            }
        }
        None
    })
    .await;
    match wait {
        LimitWait::Concurrency {
            key,
            limit,
            holders,
        } => {
            assert_eq!((key.as_str(), limit), ("k:A", 2));
            assert_eq!(holders.len(), 2, "{holders:?}");
            assert!(
                holders.iter().all(|h| first.contains(&h.run_id)),
                "the holders are w1's runs, read from the store: {holders:?}"
            );
        }
        other => panic!("expected a concurrency wait, got {other:?}"),
    }

    // Let the requests answer one by one: never more than 2 open at once in the cluster.
    for answered in 1..=20 {
        target.open("A", 1);
        until("the next request of A to answer", WAIT, async || {
            (target.of("A").2 >= answered).then_some(())
        })
        .await;
        assert!(target.of("A").1 <= 2, "{:?}", target.of("A"));
    }
    let all: Vec<String> = first.iter().chain(&second).cloned().collect();
    until("every run to succeed", WAIT, async || {
        (succeeded(&w1, &all).await == 20).then_some(())
    })
    .await;
    let (_, max, done) = target.of("A");
    assert_eq!((max, done), (2, 20), "at most 2 at once, each run once");
    w1.shutdown(Duration::from_secs(5)).await;
    w2.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_workers_key_slot_frees_when_its_lease_ends() {
    let guard = schema().await;
    let target = Target::default();
    let base = target.serve().await;
    let lost_store: DynStore = testing::connect(&guard.schema).await;
    let lost = worker(lost_store.clone(), "lost").await;
    apply(&lost, &base, 1).await;
    let held = start(&lost, "D").await;
    until("the lost worker to hold D's slot", WAIT, async || {
        (target.of("D").0 == 1).then_some(())
    })
    .await;
    // The worker dies holding the slot (its attempt's request is still open).
    lost_store.close();
    let survivor = worker(testing::connect(&guard.schema).await, "survivor").await;
    survivor.run_cancel(&held).await.unwrap();
    let next = start(&survivor, "D").await;
    // Only the slot's lease ending lets it start: the dead attempt's request stays open.
    until("the next run of D to start", WAIT, async || {
        (target.of("D").0 == 2).then_some(())
    })
    .await;
    target.open("D", 2);
    until("the next run to succeed", WAIT, async || {
        (succeeded(&survivor, std::slice::from_ref(&next)).await == 1).then_some(())
    })
    .await;
    survivor.shutdown(Duration::from_secs(5)).await;
}
