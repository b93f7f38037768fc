//! Circuit breakers and adaptive timeouts against a real HTTP server on loopback, with the
//! engine on a real SQLite store. Every wait polls with a deadline.

mod common;

use common::{start, until};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};
use std::time::Duration;
use weft_core::{RunState, TaskState};
use weft_engine::nodes::breaker::CircuitState;
use weft_engine::{Engine, EngineConfig, RunView};
use weft_store_sqlite::SqliteStore;

const WAIT: Duration = Duration::from_secs(20);

/// A server whose status and answer delay can be changed, counting the requests it got.
struct Server {
    url: String,
    target: String,
    status: Arc<AtomicU32>,
    delay_ms: Arc<AtomicU64>,
    hits: Arc<AtomicU32>,
}

async fn server(status: u16) -> Server {
    use axum::{Router, http::StatusCode, routing::any};
    let s = Arc::new(AtomicU32::new(status as u32));
    let delay_ms = Arc::new(AtomicU64::new(0));
    let hits = Arc::new(AtomicU32::new(0));
    let (st, d, h) = (s.clone(), delay_ms.clone(), hits.clone());
    let app = Router::new().route(
        "/",
        any(move || {
            let (st, d, h) = (st.clone(), d.clone(), h.clone());
            async move {
                h.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(Duration::from_millis(d.load(Ordering::SeqCst))).await;
                StatusCode::from_u16(st.load(Ordering::SeqCst) as u16).unwrap()
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    Server {
        url: format!("http://{addr}/"),
        target: addr.to_string(),
        status: s,
        delay_ms,
        hits,
    }
}

async fn engine() -> (Engine, tempfile::TempDir) {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Default::default()).unwrap();
    let engine = Engine::start(store, EngineConfig::default()).await.unwrap();
    (engine, dir)
}

async fn finish(e: &Engine, id: &str) -> RunView {
    tokio::time::timeout(WAIT, e.wait_run(id))
        .await
        .expect("run finishes in time")
        .unwrap()
}

fn breaker_flow(url: &str, fail_fast: bool) -> String {
    format!(
        "name: guarded\nnodes:\n  call:\n    type: http\n    params: {{url: \"{url}\"}}\n    \
         circuit_breaker: {{failure_threshold: 3, window: 1m, reset_timeout: 1s, fail_fast: {fail_fast}}}\n"
    )
}

fn state_of(e: &Engine, target: &str) -> Option<CircuitState> {
    e.breakers()
        .into_iter()
        .find(|b| b.target == target)
        .map(|b| b.state)
}

/// Three failing runs open the breaker.
async fn open_breaker(e: &Engine, srv: &Server) {
    for _ in 0..3 {
        let id = start(e, "guarded").await;
        assert_eq!(finish(e, &id).await.run.state, RunState::Failed);
    }
    assert_eq!(srv.hits.load(Ordering::SeqCst), 3);
    assert_eq!(state_of(e, &srv.target), Some(CircuitState::Open));
}

#[tokio::test]
async fn open_breaker_defers_tasks_until_the_target_recovers() {
    let (e, _dir) = engine().await;
    let srv = server(503).await;
    e.flow_apply(&breaker_flow(&srv.url, false)).await.unwrap();
    open_breaker(&e, &srv).await;

    let runs = [start(&e, "guarded").await, start(&e, "guarded").await];
    let reason = format!("circuit open for host {}", srv.target);
    for id in &runs {
        let v = until("a deferred task", WAIT, async || {
            let v = e.run_get(id).await.unwrap();
            v.nodes[0].task.deferred.is_some().then_some(v)
        })
        .await;
        let call = &v.nodes[0].task;
        assert_eq!(v.run.state, RunState::Running);
        assert_eq!(call.state, TaskState::Pending, "{call:?}");
        assert_eq!(call.attempt, 1, "a deferral uses no attempt");
        assert!(call.attempts.is_empty(), "{call:?}");
        let deferred = call.deferred.as_ref().unwrap();
        assert_eq!(deferred.reason, reason);
        let info = e.breakers().into_iter().find(|b| b.target == srv.target);
        let next_probe = info.and_then(|b| b.next_probe_at);
        assert!(
            next_probe.is_none_or(|t| deferred.until >= t),
            "deferred until {} before the breaker half-opens at {next_probe:?}",
            deferred.until
        );
    }
    assert_eq!(
        srv.hits.load(Ordering::SeqCst),
        3,
        "no request reaches the target while the breaker is open"
    );

    srv.status.store(200, Ordering::SeqCst);
    for id in &runs {
        let v = finish(&e, id).await;
        assert_eq!(v.run.state, RunState::Succeeded, "{v:?}");
        let call = &v.nodes[0].task;
        assert_eq!(call.attempt, 1);
        assert_eq!(call.deferred, None, "success clears the deferral");
    }
    assert_eq!(
        srv.hits.load(Ordering::SeqCst),
        5,
        "the probe, then the other"
    );
    assert_eq!(state_of(&e, &srv.target), Some(CircuitState::Closed));
}

#[tokio::test]
async fn fail_fast_breaker_fails_attempts_instead() {
    let (e, _dir) = engine().await;
    let srv = server(500).await;
    e.flow_apply(&breaker_flow(&srv.url, true)).await.unwrap();
    open_breaker(&e, &srv).await;

    let id = start(&e, "guarded").await;
    let v = finish(&e, &id).await;
    assert_eq!(v.run.state, RunState::Failed);
    let call = &v.nodes[0].task;
    assert_eq!(call.state, TaskState::Dead);
    assert_eq!(call.deferred, None);
    let error = call.error.as_deref().unwrap_or_default();
    assert!(
        error.contains(&format!("circuit open for host {}", srv.target))
            && error.contains("fail_fast"),
        "{error}"
    );
    assert_eq!(
        srv.hits.load(Ordering::SeqCst),
        3,
        "the attempt was not made"
    );
}

#[tokio::test]
async fn client_errors_do_not_open_the_breaker() {
    let (e, _dir) = engine().await;
    let srv = server(404).await;
    e.flow_apply(&breaker_flow(&srv.url, false)).await.unwrap();
    for _ in 0..5 {
        let id = start(&e, "guarded").await;
        assert_eq!(finish(&e, &id).await.run.state, RunState::Failed);
    }
    assert_eq!(srv.hits.load(Ordering::SeqCst), 5);
    let info = e
        .breakers()
        .into_iter()
        .find(|b| b.target == srv.target)
        .unwrap();
    assert_eq!(
        (info.state, info.failures_in_window),
        (CircuitState::Closed, 0)
    );
}

#[tokio::test]
async fn adaptive_timeout_follows_observed_latency() {
    let (e, _dir) = engine().await;
    let srv = server(200).await;
    srv.delay_ms.store(5, Ordering::SeqCst);
    let flow = format!(
        "name: adaptive\nnodes:\n  call:\n    type: http\n    params: {{url: \"{}\"}}\n    timeout: 1m\n    \
         adaptive_timeout: {{factor: 3, percentile: 99, min: 20ms, max: 20s, min_samples: 5}}\n",
        srv.url
    );
    e.flow_apply(&flow).await.unwrap();
    for _ in 0..6 {
        let id = start(&e, "adaptive").await;
        assert_eq!(finish(&e, &id).await.run.state, RunState::Succeeded);
    }
    let info = e
        .breakers()
        .into_iter()
        .find(|b| b.target == srv.target)
        .unwrap();
    assert_eq!(info.latency_samples, 6);
    let adaptive = info
        .adaptive_timeout_ms
        .expect("an adaptive timeout is reported");
    assert!(
        (20..20_000).contains(&adaptive),
        "clamp(p99 x 3, 20ms, 20s), got {adaptive}ms"
    );

    srv.delay_ms.store(120_000, Ordering::SeqCst);
    let id = start(&e, "adaptive").await;
    let v = finish(&e, &id).await;
    assert_eq!(v.run.state, RunState::Failed);
    let error = v.nodes[0].task.error.clone().unwrap_or_default();
    assert!(
        error.starts_with(&format!(
            "timed out after {} (adaptive timeout: p99 of 6 calls",
            weft_core::duration::format(Duration::from_millis(adaptive))
        )),
        "{error}"
    );
}
