//! Engine behaviour on a real SQLite store: retries, dead letters and replay, timeouts,
//! cancellation, branches, subflows and versioning. Every wait polls with a deadline.

use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;
use weft_core::{RunState, TaskState};
use weft_engine::{Engine, EngineConfig, RunView, StartRun};
use weft_store_sqlite::SqliteStore;

struct Env {
    engine: Engine,
    _dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store = SqliteStore::open(dir.path(), Default::default()).unwrap();
    let engine = Engine::start(store, EngineConfig::default()).await.unwrap();
    Env { engine, _dir: dir }
}

async fn start(e: &Engine, flow: &str, input: Value) -> String {
    e.run_start(StartRun {
        flow: flow.into(),
        input,
        ..Default::default()
    })
    .await
    .unwrap()
    .id
}

async fn finish(e: &Engine, id: &str) -> RunView {
    tokio::time::timeout(Duration::from_secs(20), e.wait_run(id))
        .await
        .expect("run finishes in time")
        .unwrap()
}

async fn until(e: &Engine, id: &str, what: &str, f: impl Fn(&RunView) -> bool) -> RunView {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    loop {
        let v = e.run_get(id).await.unwrap();
        if f(&v) {
            return v;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}: {v:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn node<'a>(v: &'a RunView, name: &str) -> &'a weft_engine::TaskView {
    v.nodes
        .iter()
        .find(|n| n.task.node == name)
        .unwrap_or_else(|| panic!("no node {name}"))
}

/// A local HTTP endpoint whose status can be flipped, counting hits.
async fn flaky_server(status: Arc<AtomicU32>, hits: Arc<AtomicU32>, delay: Duration) -> String {
    use axum::{Router, http::StatusCode, routing::any};
    let app = Router::new().route(
        "/",
        any(move || {
            let (status, hits) = (status.clone(), hits.clone());
            async move {
                hits.fetch_add(1, Ordering::SeqCst);
                tokio::time::sleep(delay).await;
                (
                    StatusCode::from_u16(status.load(Ordering::SeqCst) as u16).unwrap(),
                    axum::Json(json!({"ok": true})),
                )
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    format!("http://{addr}/")
}

#[tokio::test]
async fn templates_flow_outputs_downstream() {
    let e = env().await;
    e.engine
        .flow_apply("name: t\nnodes:\n  a: {type: transform, params: {value: {total: '{{ input.price * input.qty }}'}}}\n  b: {type: transform, needs: [a], params: {value: 'total={{ nodes.a.total }}'}}\n")
        .await
        .unwrap();
    let id = start(&e.engine, "t", json!({"price": 3, "qty": 4})).await;
    let v = finish(&e.engine, &id).await;
    assert_eq!(v.run.state, RunState::Succeeded);
    assert_eq!(node(&v, "a").task.output, Some(json!({"total": 12})));
    assert_eq!(node(&v, "b").task.output, Some(json!("total=12")));
}

#[tokio::test]
async fn retries_then_dead_letter_with_history_then_replay_continues() {
    let e = env().await;
    let status = Arc::new(AtomicU32::new(503));
    let hits = Arc::new(AtomicU32::new(0));
    let url = flaky_server(status.clone(), hits.clone(), Duration::ZERO).await;
    e.engine
        .flow_apply(&format!(
            "name: r\nnodes:\n  call: {{type: http, params: {{url: '{url}'}}, retry: {{max_attempts: 3, initial_delay: 20ms, multiplier: 2, jitter: 0}}}}\n  after: {{type: noop, needs: [call]}}\n"
        ))
        .await
        .unwrap();
    let id = start(&e.engine, "r", json!({})).await;
    let v = finish(&e.engine, &id).await;
    assert_eq!(v.run.state, RunState::Failed);
    assert_eq!(hits.load(Ordering::SeqCst), 3, "three attempts");
    let call = node(&v, "call");
    assert_eq!(call.task.state, TaskState::Dead);
    assert_eq!(call.task.attempts.len(), 3);
    assert!(
        call.task
            .attempts
            .iter()
            .all(|a| a.error.as_deref().unwrap_or("").contains("HTTP 503"))
    );
    // back-off of at least 20 ms then 40 ms between attempts
    let a = &call.task.attempts;
    assert!(a[1].started_at - a[0].finished_at >= 20, "{a:?}");
    assert!(a[2].started_at - a[1].finished_at >= 40, "{a:?}");
    assert_eq!(node(&v, "after").task.state, TaskState::Waiting);
    assert!(v.run.error.as_deref().unwrap().contains("node call"));

    let dead = e.engine.dlq_list(&Default::default()).await.unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].run_id.as_str(), dead[0].node.as_str()),
        (id.as_str(), "call")
    );

    status.store(200, Ordering::SeqCst);
    e.engine.dlq_replay(&id, "call").await.unwrap();
    let v = finish(&e.engine, &id).await;
    assert_eq!(v.run.state, RunState::Succeeded, "{v:?}");
    assert_eq!(node(&v, "after").task.state, TaskState::Succeeded);
    assert!(
        e.engine
            .dlq_list(&Default::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        e.engine.dlq_replay(&id, "call").await.is_err(),
        "not dead any more"
    );
}

#[tokio::test]
async fn timeout_stops_the_attempt() {
    let e = env().await;
    let hits = Arc::new(AtomicU32::new(0));
    let url = flaky_server(
        Arc::new(AtomicU32::new(200)),
        hits.clone(),
        Duration::from_secs(30),
    )
    .await;
    e.engine
        .flow_apply(&format!(
            "name: slow\nnodes:\n  call: {{type: http, timeout: 100ms, params: {{url: '{url}'}}}}\n"
        ))
        .await
        .unwrap();
    let id = start(&e.engine, "slow", json!({})).await;
    let v = finish(&e.engine, &id).await;
    assert_eq!(v.run.state, RunState::Failed);
    let call = node(&v, "call");
    assert!(
        call.task
            .error
            .as_deref()
            .unwrap()
            .contains("timed out after 100ms"),
        "{call:?}"
    );
    assert!(call.task.attempts[0].finished_at - call.task.attempts[0].started_at < 5000);
    assert_eq!(e.engine.inflight(), 0, "the attempt no longer holds a slot");
}

#[tokio::test]
async fn cancel_stops_running_attempts_and_parked_runs() {
    let e = env().await;
    let hits = Arc::new(AtomicU32::new(0));
    let url = flaky_server(
        Arc::new(AtomicU32::new(200)),
        hits.clone(),
        Duration::from_secs(30),
    )
    .await;
    e.engine.flow_apply(&format!("name: c\nnodes:\n  call: {{type: http, params: {{url: '{url}'}}}}\n  next: {{type: noop, needs: [call]}}\n")).await.unwrap();
    let id = start(&e.engine, "c", json!({})).await;
    until(&e.engine, &id, "call running", |v| {
        node(v, "call").task.state == TaskState::Running
    })
    .await;
    e.engine.run_cancel(&id).await.unwrap();
    let v = finish(&e.engine, &id).await;
    assert_eq!(v.run.state, RunState::Cancelled);
    assert_eq!(node(&v, "call").task.state, TaskState::Cancelled);
    assert_eq!(node(&v, "next").task.state, TaskState::Cancelled);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while e.engine.inflight() > 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "attempt was not stopped"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(
        e.engine.run_cancel(&id).await.is_err(),
        "cancelling twice is a conflict"
    );

    e.engine
        .flow_apply("name: park\nnodes:\n  wait: {type: delay, params: {duration: 1h}}\n")
        .await
        .unwrap();
    let id = start(&e.engine, "park", json!({})).await;
    let v = e.engine.run_get(&id).await.unwrap();
    let wait = node(&v, "wait");
    assert_eq!(wait.task.state, TaskState::Pending);
    assert_eq!(
        v.run.state,
        RunState::Running,
        "a started timer is progress"
    );
    let due = wait.task.scheduled_at.unwrap() - v.run.created_at;
    assert!((3_599_000..=3_601_000).contains(&due), "{due}");
    assert_eq!(e.engine.inflight(), 0, "a delay holds no worker slot");
    e.engine.run_cancel(&id).await.unwrap();
    assert_eq!(
        e.engine.run_get(&id).await.unwrap().run.state,
        RunState::Cancelled
    );
}

#[tokio::test]
async fn short_delay_fires_and_continues() {
    let e = env().await;
    e.engine.flow_apply("name: d\nnodes:\n  wait: {type: delay, params: {duration: 50ms}}\n  after: {type: noop, needs: [wait]}\n").await.unwrap();
    let id = start(&e.engine, "d", json!({})).await;
    let v = finish(&e.engine, &id).await;
    assert_eq!(v.run.state, RunState::Succeeded);
    assert!(v.run.finished_at.unwrap() - v.run.created_at >= 50);
}

#[tokio::test]
async fn branch_skips_the_path_not_taken_and_merges() {
    let e = env().await;
    e.engine
        .flow_apply(
            "name: b\nnodes:\n  check: {type: branch, params: {condition: '{{ input.amount > 100 }}', then: [big], else: [small]}}\n  big: {type: noop, needs: [check]}\n  big_more: {type: noop, needs: [big]}\n  small: {type: noop, needs: [check]}\n  merge: {type: noop, needs: [big_more, small]}\n",
        )
        .await
        .unwrap();
    let id = start(&e.engine, "b", json!({"amount": 500})).await;
    let v = finish(&e.engine, &id).await;
    assert_eq!(v.run.state, RunState::Succeeded);
    assert_eq!(
        node(&v, "check").task.output,
        Some(json!({"taken": "then"}))
    );
    assert_eq!(node(&v, "big_more").task.state, TaskState::Succeeded);
    assert_eq!(node(&v, "small").task.state, TaskState::Skipped);
    assert_eq!(node(&v, "merge").task.state, TaskState::Succeeded);

    let id = start(&e.engine, "b", json!({"amount": 5})).await;
    let v = finish(&e.engine, &id).await;
    assert_eq!(node(&v, "big").task.state, TaskState::Skipped);
    assert_eq!(
        node(&v, "big_more").task.state,
        TaskState::Skipped,
        "skips propagate"
    );
    assert_eq!(node(&v, "small").task.state, TaskState::Succeeded);
    assert_eq!(node(&v, "merge").task.state, TaskState::Succeeded);
}

#[tokio::test]
async fn subflow_waits_for_its_child_and_takes_its_outputs() {
    let e = env().await;
    e.engine.flow_apply("name: child\nnodes:\n  hello: {type: transform, params: {value: 'hi {{ input.who }}'}}\n").await.unwrap();
    e.engine
        .flow_apply("name: parent\nnodes:\n  sub: {type: subflow, params: {flow: child, input: {who: '{{ input.name }}'}}}\n  after: {type: transform, needs: [sub], params: {value: '{{ nodes.sub.hello }}'}}\n")
        .await
        .unwrap();
    let id = start(&e.engine, "parent", json!({"name": "Ada"})).await;
    let v = finish(&e.engine, &id).await;
    assert_eq!(v.run.state, RunState::Succeeded, "{v:?}");
    let sub = node(&v, "sub");
    assert!(sub.task.child_run.is_some());
    assert_eq!(node(&v, "after").task.output, Some(json!("hi Ada")));
    let child = e
        .engine
        .run_get(sub.task.child_run.as_deref().unwrap())
        .await
        .unwrap();
    assert_eq!(child.run.parent_run.as_deref(), Some(id.as_str()));
    assert_eq!(child.run.state, RunState::Succeeded);
}

#[tokio::test]
async fn runs_keep_the_version_they_started_with() {
    let e = env().await;
    let v1 = e
        .engine
        .flow_apply("name: v\nnodes:\n  a: {type: transform, params: {value: one}}\n")
        .await
        .unwrap();
    let again = e
        .engine
        .flow_apply("name: v\nnodes:\n  a: {type: transform, params: {value: one}}\n")
        .await
        .unwrap();
    assert_eq!((v1.version, again.version, again.created), (1, 1, false));
    let id1 = start(&e.engine, "v", json!({})).await;
    let v2 = e
        .engine
        .flow_apply("name: v\nnodes:\n  a: {type: transform, params: {value: two}}\n")
        .await
        .unwrap();
    assert_eq!((v2.version, v2.created), (2, true));
    let r1 = finish(&e.engine, &id1).await;
    assert_eq!(r1.run.version, 1);
    assert_eq!(node(&r1, "a").task.output, Some(json!("one")));
    let id2 = start(&e.engine, "v", json!({})).await;
    assert_eq!(
        node(&finish(&e.engine, &id2).await, "a").task.output,
        Some(json!("two"))
    );
}

#[tokio::test]
async fn idempotency_key_returns_the_existing_run() {
    let e = env().await;
    e.engine
        .flow_apply("name: i\nnodes:\n  a: {type: noop}\n")
        .await
        .unwrap();
    let req = StartRun {
        flow: "i".into(),
        idempotency_key: Some("order-42".into()),
        ..Default::default()
    };
    let a = e.engine.run_start(req.clone()).await.unwrap();
    let b = e.engine.run_start(req).await.unwrap();
    assert!(a.created && !b.created);
    assert_eq!(a.id, b.id);
}

#[tokio::test]
async fn queue_concurrency_limits_parallel_attempts() {
    let e = env().await;
    let hits = Arc::new(AtomicU32::new(0));
    let url = flaky_server(
        Arc::new(AtomicU32::new(200)),
        hits.clone(),
        Duration::from_millis(300),
    )
    .await;
    e.engine.queue_set("narrow", Some(2), None).await.unwrap();
    e.engine
        .flow_apply(&format!(
            "name: q\nnodes:\n  call: {{type: http, queue: narrow, params: {{url: '{url}'}}}}\n"
        ))
        .await
        .unwrap();
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(start(&e.engine, "q", json!({})).await);
    }
    let deadline = tokio::time::Instant::now() + Duration::from_secs(20);
    let mut max_running = 0;
    loop {
        let q = e
            .engine
            .queue_list()
            .into_iter()
            .find(|q| q.name == "narrow")
            .unwrap();
        max_running = max_running.max(q.running);
        assert!(q.running <= 2, "{q:?}");
        if hits.load(Ordering::SeqCst) == 6 && q.running == 0 {
            break;
        }
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(max_running, 2);
    for id in ids {
        assert_eq!(finish(&e.engine, &id).await.run.state, RunState::Succeeded);
    }
}

#[tokio::test]
async fn restart_recovers_ready_work_and_timers() {
    let dir = tempfile::tempdir().unwrap();
    let id;
    {
        let store = SqliteStore::open(dir.path(), Default::default()).unwrap();
        let engine = Engine::start(store, EngineConfig::default()).await.unwrap();
        engine.flow_apply("name: p\nnodes:\n  a: {type: noop}\n  wait: {type: delay, needs: [a], params: {duration: 300ms}}\n  b: {type: noop, needs: [wait]}\n").await.unwrap();
        engine.queue_set("default", None, Some(true)).await.unwrap();
        id = start(&engine, "p", json!({})).await;
        engine.shutdown(Duration::from_secs(1)).await;
    }
    let store = SqliteStore::open(dir.path(), Default::default()).unwrap();
    let engine = Engine::start(store, EngineConfig::default()).await.unwrap();
    assert_eq!(
        engine.run_get(&id).await.unwrap().run.state,
        RunState::Queued,
        "still paused after restart"
    );
    engine
        .queue_set("default", None, Some(false))
        .await
        .unwrap();
    let v = finish(&engine, &id).await;
    assert_eq!(v.run.state, RunState::Succeeded);
}
