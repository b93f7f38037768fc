//! Rate limits across the worker processes of a cluster on a real PostgreSQL (decision
//! 0009 section 6): two engines with their own pools share one schema, and a real HTTP
//! target on loopback records when each request starts and holds it until the test lets
//! it go (so that both workers end up with attempts running). Every wait polls with a
//! deadline.

mod common;

use common::{assert_spaced, schema, succeeded, until};
use parking_lot::Mutex;
use serde_json::json;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::Semaphore;
use weft_core::limits::RateLimitSpec;
use weft_engine::{ClusterConfig, Engine, EngineConfig, LimitWait, QueueChange};
use weft_store_postgres::testing::{self, SchemaGuard};

const WAIT: Duration = Duration::from_secs(40);

/// Records each request's start, holds it until the gate opens, answers.
#[derive(Clone)]
struct Target {
    starts: Arc<Mutex<Vec<Instant>>>,
    gate: Arc<Semaphore>,
}

impl Target {
    async fn serve() -> (Self, String) {
        let t = Self {
            starts: Arc::default(),
            gate: Arc::new(Semaphore::new(0)),
        };
        let me = t.clone();
        let held = move || {
            let t = me.clone();
            async move {
                t.starts.lock().push(Instant::now());
                t.gate.acquire().await.unwrap().forget();
                axum::Json(json!({"ok": true}))
            }
        };
        let app = axum::Router::new().route("/hold", axum::routing::any(held));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        (t, format!("http://{addr}/hold"))
    }

    fn sorted(&self) -> Vec<Instant> {
        let mut s = self.starts.lock().clone();
        s.sort();
        s
    }
}

/// A worker process of the cluster on its own store. Its queues run one attempt at a time
/// and so claim at most two tasks while a request is held: the other worker claims the
/// rest, and both run attempts.
async fn worker(guard: &SchemaGuard, name: &str) -> Engine {
    let cluster = ClusterConfig {
        lease: Duration::from_millis(3000),
        leader_ttl: Duration::from_millis(1000),
        leader_retry: Duration::from_millis(200),
        poll: Duration::from_millis(50),
        ..ClusterConfig::new(name)
    };
    let queues = BTreeMap::from([("default".to_string(), 1), ("invoicing".to_string(), 1)]);
    let config = EngineConfig {
        cluster: Some(cluster),
        queues,
        ..EngineConfig::default()
    };
    let store = testing::connect(&guard.schema).await;
    Engine::start(store, config).await.expect("engine starts")
}

/// Starts `runs` runs of `flow` through `w1`, waits until both workers run attempts at once
/// (held by the target), lets every request answer, sees a task wait on `bucket` and waits
/// for every run; the starts the target saw, sorted.
async fn drive(
    w1: &Engine,
    w2: &Engine,
    target: &Target,
    flow: &str,
    runs: usize,
    bucket: &str,
) -> Vec<Instant> {
    let mut ids = Vec::new();
    for _ in 0..runs {
        ids.push(common::start(w1, flow).await);
    }
    until("both workers to run attempts", WAIT, async || {
        (w1.inflight() > 0 && w2.inflight() > 0).then_some(())
    })
    .await;
    target.gate.add_permits(10_000);
    let wait = until("a task waiting on the rate limit", WAIT, async || {
        for id in &ids {
            for w in [w1, w2] {
                if let Some(wait) = w.limit_wait(id, "call").await {
                    return Some(wait);
                }
            }
        }
        None
    })
    .await;
    assert!(
        matches!(&wait, LimitWait::RateLimit { bucket: b, .. } if b == bucket),
        "{wait:?}"
    );
    until("every run to succeed", WAIT, async || {
        (succeeded(w1, &ids).await == runs).then_some(())
    })
    .await;
    let starts = target.sorted();
    assert_eq!(starts.len(), runs, "one request per run");
    starts
}

/// No `limit + 1` starts within `per - SLACK`, across both workers. Both share one host and
/// so one clock; the slack covers the time between a start being taken from the store's
/// bucket and its request reaching the target (a task spawn and an HTTP request on
/// loopback: a few ms, tens on a loaded 2-core machine). Without the shared bucket the
/// workers admit twice the rate, i.e. `limit + 1` starts within about `per / 2`.
const SLACK: Duration = Duration::from_millis(100);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_nodes_rate_limit_holds_across_two_workers() {
    let guard = schema().await;
    let (target, url) = Target::serve().await;
    let w1 = worker(&guard, "w1").await;
    let w2 = worker(&guard, "w2").await;
    w1.flow_apply(&format!(
        "name: rated\nnodes:\n  call:\n    type: http\n    params: {{url: '{url}'}}\n    timeout: 60s\n    rate_limit: {{limit: 5, per: 1s}}\n"
    ))
    .await
    .unwrap();
    let starts = drive(&w1, &w2, &target, "rated", 16, "rated/call").await;
    assert_spaced(&starts, 5, Duration::from_secs(1), SLACK);
    w1.shutdown(Duration::from_secs(5)).await;
    w2.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queues_rate_limit_set_on_one_worker_holds_across_two() {
    let guard = schema().await;
    let (target, url) = Target::serve().await;
    let w1 = worker(&guard, "w1").await;
    let w2 = worker(&guard, "w2").await;
    w1.flow_apply(&format!(
        "name: billed\nnodes:\n  call:\n    type: http\n    queue: invoicing\n    params: {{url: '{url}'}}\n    timeout: 60s\n"
    ))
    .await
    .unwrap();
    let change = QueueChange {
        rate: Some(Some(RateLimitSpec {
            limit: 5,
            per: "1s".into(),
            key: None,
        })),
        ..Default::default()
    };
    w1.queue_change("invoicing", change).await.unwrap();
    // The other worker picks the stored rate up within a poll interval.
    until("w2 to apply the queue's rate", WAIT, async || {
        w2.queue_list()
            .into_iter()
            .any(|q| q.name == "invoicing" && q.rate.is_some())
            .then_some(())
    })
    .await;
    let starts = drive(&w1, &w2, &target, "billed", 16, "queue:invoicing").await;
    assert_spaced(&starts, 5, Duration::from_secs(1), SLACK);
    w1.shutdown(Duration::from_secs(5)).await;
    w2.shutdown(Duration::from_secs(5)).await;
}
