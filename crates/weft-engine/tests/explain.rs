//! `Engine::run_explain`: each cause that holds a run up is named, with its node and, for
//! causes that end by themselves, the time they end. Real SQLite stores (and a real
//! PostgreSQL for the cluster-only cause); every wait polls with a deadline.

mod common;

use common::{start, until};
use serde_json::json;
use std::time::Duration;
use weft_core::RunState;
use weft_engine::{ClusterConfig, Engine, EngineConfig, Explanation, RunStart, StartRun};

async fn env() -> common::Sqlite {
    common::sqlite(EngineConfig::default()).await
}

async fn run(e: &Engine, flow: &str, start: Option<RunStart>) -> String {
    e.run_start(StartRun {
        flow: flow.into(),
        input: json!({}),
        start,
        ..Default::default()
    })
    .await
    .expect("run starts")
    .id
}

/// Waits until the explanation of `id` has a reason with `code`; returns it all.
async fn explained(e: &Engine, id: &str, code: &str) -> Explanation {
    until(
        &format!("reason {code}"),
        Duration::from_secs(20),
        async || {
            let x = e.run_explain(id).await.expect("explain");
            x.reasons.iter().any(|r| r.code == code).then_some(x)
        },
    )
    .await
}

/// Waits until run `id` is in `state`; returns its explanation then.
async fn reached(e: &Engine, id: &str, state: RunState) -> Explanation {
    until(
        &format!("run {id} to be {state:?}"),
        Duration::from_secs(20),
        async || {
            let x = e.run_explain(id).await.expect("explain");
            (x.state == state).then_some(x)
        },
    )
    .await
}

fn reason<'a>(x: &'a Explanation, node: &str) -> &'a weft_engine::Reason {
    x.reasons
        .iter()
        .find(|r| r.node == node)
        .unwrap_or_else(|| panic!("no reason for {node}: {x:#?}"))
}

#[tokio::test]
async fn a_delay_and_a_scheduled_start_say_until_when() {
    let env = env().await;
    let e = &env.engine;
    e.flow_apply("name: nap\nnodes:\n  wait: {type: delay, params: {duration: 1h}}\n  after: {type: noop, needs: [wait]}\n")
        .await
        .unwrap();
    let id = run(e, "nap", None).await;
    let x = e.run_explain(&id).await.unwrap();
    let r = reason(&x, "wait");
    assert_eq!(r.code, "delay", "{x:#?}");
    assert!(
        r.message.starts_with("waiting for a delay until "),
        "{}",
        r.message
    );
    let created = e.run_get(&id).await.unwrap().run.created_at;
    assert_eq!(r.until, Some(created + 3_600_000));
    assert!(
        !x.progressing,
        "a run on a one-hour timer cannot move by itself"
    );
    assert_eq!(x.reasons.len(), 1, "`after` only waits for `wait`: {x:#?}");
    assert!(x.summary.contains("node wait"), "{}", x.summary);

    e.flow_apply("name: tick\nnodes:\n  a: {type: noop}\n")
        .await
        .unwrap();
    let later = run(e, "tick", Some(RunStart::After(Duration::from_secs(600)))).await;
    let x = e.run_explain(&later).await.unwrap();
    let r = reason(&x, "a");
    assert_eq!(r.code, "scheduled_start", "{x:#?}");
    assert!(r.message.contains("scheduled start at"), "{}", r.message);
    assert_eq!(x.state, RunState::Queued);
}

#[tokio::test]
async fn a_paused_queue_is_named_and_resuming_lets_the_run_finish() {
    let env = env().await;
    let e = &env.engine;
    e.flow_apply("name: q\nnodes:\n  a: {type: noop, queue: mail}\n")
        .await
        .unwrap();
    e.queue_set("mail", None, Some(true)).await.unwrap();
    let id = start(e, "q").await;
    let x = explained(e, &id, "queue_paused").await;
    let r = reason(&x, "a");
    assert!(
        r.message.starts_with("queue mail is paused"),
        "{}",
        r.message
    );
    assert!(!x.progressing);

    e.queue_set("mail", None, Some(false)).await.unwrap();
    let done = reached(e, &id, RunState::Succeeded).await;
    assert!(done.reasons.is_empty(), "{done:#?}");
    assert!(
        done.summary.starts_with("succeeded at "),
        "{}",
        done.summary
    );
}

#[tokio::test]
async fn a_back_off_names_the_error_and_a_dead_node_explains_the_failure() {
    let env = env().await;
    let e = &env.engine;
    e.flow_apply(
        "name: flaky\nnodes:\n  a:\n    type: fail\n    params: {message: \"upstream said no\", times: 1}\n    retry: {max_attempts: 2, initial_delay: 1h, max_delay: 1h}\n",
    )
    .await
    .unwrap();
    let id = run(e, "flaky", None).await;
    let x = explained(e, &id, "backoff").await;
    let r = reason(&x, "a");
    assert!(r.message.starts_with("in back-off until "), "{}", r.message);
    assert!(r.message.contains("upstream said no"), "{}", r.message);
    assert!(r.until.is_some());
    assert!(!x.progressing);

    e.flow_apply("name: doomed\nnodes:\n  a: {type: fail, params: {message: \"card declined\"}}\n")
        .await
        .unwrap();
    let id = run(e, "doomed", None).await;
    let x = reached(e, &id, RunState::Failed).await;
    assert_eq!(reason(&x, "a").code, "dead");
    assert!(
        x.summary
            .starts_with("failed: node a dead-lettered after 1 attempt(s): card declined"),
        "{}",
        x.summary
    );
}

#[tokio::test]
async fn a_running_attempt_and_a_child_run_are_reported() {
    let env = env().await;
    let e = &env.engine;
    // A target that never answers keeps the attempt running.
    let addr = hanging_target().await;
    e.flow_apply(&format!(
        "name: slow\nnodes:\n  call: {{type: http, params: {{url: \"http://{addr}/\"}}, timeout: 1h}}\n"
    ))
    .await
    .unwrap();
    e.flow_apply("name: parent\nnodes:\n  child: {type: subflow, params: {flow: slow}}\n")
        .await
        .unwrap();
    let id = run(e, "parent", None).await;
    let x = explained(e, &id, "child_run").await;
    let child = e.run_get(&id).await.unwrap();
    let child_id = child.nodes[0].task.child_run.clone().expect("a child run");
    assert!(reason(&x, "child").message.contains(&child_id), "{x:#?}");

    let x = explained(e, &child_id, "running").await;
    assert!(x.progressing, "{x:#?}");
    assert!(
        reason(&x, "call")
            .message
            .starts_with("attempt 1 running since "),
        "{x:#?}"
    );
    e.run_cancel(&id).await.unwrap();
}

#[tokio::test]
async fn unknown_runs_are_not_found() {
    let env = env().await;
    let err = env.engine.run_explain("nope").await.unwrap_err();
    assert!(err.to_string().contains("run nope"), "{err}");
}

/// In a cluster a ready task whose queue no live worker serves says so.
#[tokio::test]
async fn no_worker_serving_the_queue_is_named() {
    use weft_store_postgres::testing::{self, SchemaGuard};
    let schema = testing::schema_name();
    let store = testing::connect(&schema).await;
    store.migrate().await.expect("migrate");
    let _guard = SchemaGuard {
        schema: schema.clone(),
    };
    let node = |name: &str, workers: bool, queues: Vec<String>| {
        let store = store.clone();
        let name = name.to_string();
        async move {
            let cluster = ClusterConfig {
                lease: Duration::from_millis(1500),
                poll: Duration::from_millis(50),
                worker_queues: queues,
                ..ClusterConfig::new(&name)
            };
            let config = EngineConfig {
                run_workers: workers,
                cluster: Some(cluster),
                ..EngineConfig::default()
            };
            Engine::start(store, config).await.expect("engine starts")
        }
    };
    let gateway = node("gw", false, vec![]).await;
    let _worker = node("w1", true, vec!["default".into()]).await;
    gateway
        .flow_apply("name: mail\nnodes:\n  send: {type: noop, queue: mail}\n")
        .await
        .unwrap();
    // The worker's membership lists `default` once it has beaten.
    until(
        "the worker to be listed",
        Duration::from_secs(20),
        async || {
            let w = gateway.workers().await.unwrap();
            w.iter()
                .any(|w| w.queues.iter().any(|q| q.name == "default"))
                .then_some(())
        },
    )
    .await;
    let id = run(&gateway, "mail", None).await;
    let x = explained(&gateway, &id, "no_worker").await;
    assert!(
        reason(&x, "send")
            .message
            .starts_with("no worker serves queue mail"),
        "{x:#?}"
    );
    assert!(!x.progressing);
}

/// A target that accepts connections and never answers, holding attempts running.
async fn hanging_target() -> std::net::SocketAddr {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((socket, _)) = listener.accept().await {
            held.push(socket);
        }
    });
    addr
}

#[tokio::test]
async fn a_saturated_concurrency_key_names_the_runs_holding_it() {
    let env = env().await;
    let e = &env.engine;
    let addr = hanging_target().await;
    e.flow_apply(&format!(
        "name: invoice\nnodes:\n  call:\n    type: http\n    params: {{url: \"http://{addr}/\"}}\n    timeout: 1h\n    concurrency: {{key: invoicing, limit: 1}}\n"
    ))
    .await
    .unwrap();
    let first = start(e, "invoice").await;
    explained(e, &first, "running").await;
    let second = start(e, "invoice").await;
    let x = explained(e, &second, "concurrency_key").await;
    let r = reason(&x, "call");
    assert!(
        r.message
            .starts_with("concurrency key invoicing is saturated (1 of 1) by run(s) "),
        "{}",
        r.message
    );
    assert!(r.message.contains(&first), "{}", r.message);
    assert!(!x.progressing, "{x:#?}");
    e.run_cancel(&first).await.unwrap();
    e.run_cancel(&second).await.unwrap();
}

#[tokio::test]
async fn a_rate_limit_says_until_when() {
    let env = env().await;
    let e = &env.engine;
    e.flow_apply(
        "name: paced\nnodes:\n  a:\n    type: noop\n    rate_limit: {limit: 1, per: 1h}\n",
    )
    .await
    .unwrap();
    let first = start(e, "paced").await;
    reached(e, &first, RunState::Succeeded).await;
    let second = start(e, "paced").await;
    let x = explained(e, &second, "rate_limit").await;
    let r = reason(&x, "a");
    assert!(
        r.message.contains("admits no start until "),
        "{}",
        r.message
    );
    let now = weft_core::time::Clock::now_ms(&weft_core::time::SystemClock);
    let until = r.until.expect("a time");
    assert!(
        until > now + 3_000_000,
        "about an hour away: {until} vs {now}"
    );
}

#[tokio::test]
async fn an_open_circuit_names_the_host_and_when_it_probes_again() {
    let env = env().await;
    let e = &env.engine;
    // A target that always answers 503.
    let app = axum::Router::new().route(
        "/",
        axum::routing::get(|| async { axum::http::StatusCode::SERVICE_UNAVAILABLE }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    e.flow_apply(&format!(
        "name: shaky\nnodes:\n  call:\n    type: http\n    params: {{url: \"http://{addr}/\"}}\n    circuit_breaker: {{failure_threshold: 1, window: 30s, reset_timeout: 1h, max_reset_timeout: 1h}}\n"
    ))
    .await
    .unwrap();
    let first = start(e, "shaky").await;
    reached(e, &first, RunState::Failed).await;
    let second = start(e, "shaky").await;
    let x = explained(e, &second, "deferred").await;
    let r = reason(&x, "call");
    assert!(r.message.contains("circuit open"), "{}", r.message);
    assert!(r.message.contains(&addr.to_string()), "{}", r.message);
    assert!(r.message.contains("no attempt used"), "{}", r.message);
    assert!(r.until.is_some());
    assert!(!x.progressing);
}
