//! `weft serve` as separate processes on one PostgreSQL schema, with processes SIGKILLed:
//! a worker in the middle of its tasks, the leader, a gateway. Every process is the real
//! binary; every wait polls with a deadline. The database is `WEFT_TEST_DATABASE_URL`
//! (default postgres://postgres@127.0.0.1:5432/postgres); each test has a fresh schema.

mod common;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use common::cluster::{
    Cluster, RUN_DEADLINE, all_logs, apply_flow, cluster_info, run_state, start_run, wait_finished,
    workers_listed,
};
use common::{eventually, ok, weft};
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::HashMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::watch;

/// Short leases so a lost worker's tasks come back within seconds.
const FAST: &[&str] = &["--lease", "2s", "--leader-ttl", "2s", "--poll", "50ms"];

/// A remote service whose answers are held until the test opens the gate, then take
/// 300 ms; it counts requests per run and those being answered now.
struct Slow {
    hits: Mutex<HashMap<String, u32>>,
    in_progress: AtomicUsize,
    gate: watch::Receiver<bool>,
}

#[derive(Deserialize)]
struct Hit {
    run: String,
}

/// Counts a request as in progress until it is answered or its client goes away.
struct InProgress<'a>(&'a AtomicUsize);

impl Drop for InProgress<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

async fn slow(State(s): State<Arc<Slow>>, Query(h): Query<Hit>) -> Json<Value> {
    *s.hits.lock().unwrap().entry(h.run.clone()).or_default() += 1;
    s.in_progress.fetch_add(1, Ordering::SeqCst);
    let _counted = InProgress(&s.in_progress);
    let mut gate = s.gate.clone();
    let _ = gate.wait_for(|open| *open).await;
    // The remote side's latency.
    tokio::time::sleep(Duration::from_millis(300)).await;
    Json(json!({"run": h.run}))
}

async fn slow_server(s: Arc<Slow>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/slow", get(slow)).with_state(s);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn inflight(info: &Option<Value>) -> u64 {
    info.as_ref()
        .and_then(|v| v["load"]["inflight"].as_u64())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_worker_killed_mid_task_loses_no_run() {
    const RUNS: usize = 40;
    const SLOTS: usize = 4;
    let (open, gate) = watch::channel(false);
    let service = Arc::new(Slow {
        hits: Mutex::default(),
        in_progress: AtomicUsize::new(0),
        gate,
    });
    let service_url = slow_server(service.clone()).await;

    let mut cluster = Cluster::new();
    cluster
        .env
        .push(("WEFT_DEFAULT_CONCURRENCY".into(), SLOTS.to_string()));
    let gateway = cluster.start("gw", "gateway", FAST).await;
    let orchestrator = cluster.start("orch", "orchestrator", FAST).await;
    let mut doomed = cluster.start("worker-a", "worker", FAST).await;
    let survivor = cluster.start("worker-b", "worker", FAST).await;
    let logs = |extra: &[&common::Server]| {
        let mut all = vec![&gateway, &orchestrator, &survivor];
        all.extend_from_slice(extra);
        all_logs(&all)
    };

    apply_flow(
        &gateway,
        &format!(
            "name: call\nnodes:\n  remote:\n    type: http\n    params: {{url: \"{service_url}/slow?run={{{{ run.id }}}}\"}}\n"
        ),
    )
    .await;
    let mut ids = Vec::new();
    for i in 0..RUNS {
        ids.push(start_run(&gateway, "call", json!({"i": i})).await);
    }

    // Both workers fill their slots and every claimed task's request is being answered:
    // the doomed worker is in the middle of SLOTS tasks when it dies.
    eventually(
        Duration::from_secs(30),
        "both workers to be busy with every slot",
        || async {
            let a = inflight(&cluster_info(&doomed).await);
            let b = inflight(&cluster_info(&survivor).await);
            let answering = service.in_progress.load(Ordering::SeqCst);
            (a == SLOTS as u64 && b == SLOTS as u64 && answering == 2 * SLOTS).then_some(())
        },
    )
    .await;
    // The gateway runs no worker itself, yet lists both worker processes (and only them).
    let both = vec![
        ("worker-a".to_string(), u64::from(doomed.pid())),
        ("worker-b".to_string(), u64::from(survivor.pid())),
    ];
    eventually(
        Duration::from_secs(10),
        "the gateway to list both worker processes",
        || async { (workers_listed(&gateway).await? == both).then_some(()) },
    )
    .await;
    doomed.kill_now();
    let killed_at = Instant::now();
    open.send(true).unwrap();

    let states = wait_finished(&gateway, &ids, RUN_DEADLINE).await;
    let failed: Vec<_> = ids
        .iter()
        .zip(&states)
        .filter(|(_, s)| *s != "succeeded")
        .collect();
    assert!(
        failed.is_empty(),
        "runs did not succeed: {failed:?}\n{}",
        logs(&[&doomed])
    );
    // The dead worker's tasks were handed to the other worker after their lease ran out
    // and ran again there: exactly its SLOTS runs called the service twice.
    let hits = service.hits.lock().unwrap().clone();
    assert_eq!(hits.len(), RUNS, "every run called the service");
    let twice = hits.values().filter(|&&n| n >= 2).count();
    assert_eq!(twice, SLOTS, "runs called twice: {hits:?}");
    assert!(
        hits.values().all(|&n| n <= 2),
        "no run called more than twice: {hits:?}"
    );
    eprintln!(
        "all {RUNS} runs succeeded {:?} after the kill",
        killed_at.elapsed()
    );
    // The killed worker stops beating and drops out of the list after three leases.
    eventually(
        Duration::from_secs(30),
        "the gateway to stop listing the killed worker",
        || async { (workers_listed(&gateway).await? == both[1..]).then_some(()) },
    )
    .await;
}

const TICK: &str = "name: tick\nnodes:\n  wait: {type: delay, params: {duration: 1s}}\n  then: {type: noop, needs: [wait]}\n";

/// The leader as two orchestrators see it: `(leader's node id, who says it is leader)`.
async fn leader_of(nodes: &[&common::Server]) -> Option<String> {
    let mut leaders = Vec::new();
    for n in nodes {
        let info = cluster_info(n).await?;
        if info["is_leader"] == json!(true) {
            leaders.push(info["node_id"].as_str()?.to_string());
        }
    }
    // Exactly one claims it, and the store agrees.
    let stored = cluster_info(nodes[0]).await?["leader"]["node_id"]
        .as_str()?
        .to_string();
    (leaders.len() == 1 && leaders[0] == stored).then_some(stored)
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_leader_is_replaced_and_timers_keep_firing() {
    let cluster = Cluster::new();
    // Timers fire on time in the process whose write created them, and otherwise only on
    // the leader. `doomed-gw` starts a run whose delay is due after it and the leader are
    // both dead: only the new leader can fire it.
    let mut doomed_gw = cluster.start("doomed-gw", "gateway", FAST).await;
    let gateway = cluster.start("gw", "gateway", FAST).await;
    let worker = cluster.start("worker", "worker", FAST).await;
    let mut one = cluster.start("orch-1", "orchestrator", FAST).await;
    let mut two = cluster.start("orch-2", "orchestrator", FAST).await;
    apply_flow(&gateway, TICK).await;
    apply_flow(
        &gateway,
        "name: later\nnodes:\n  wait: {type: delay, params: {duration: 3s}}\n  then: {type: noop, needs: [wait]}\n",
    )
    .await;

    let both = [&one, &two];
    let leader = eventually(Duration::from_secs(15), "one leader", || leader_of(&both)).await;
    let (dead, heir) = if leader == "orch-1" {
        (&mut one, &two)
    } else {
        (&mut two, &one)
    };
    let before = start_run(&doomed_gw, "later", json!({})).await;
    doomed_gw.kill_now();
    dead.kill_now();
    let killed_at = Instant::now();

    let heir_name = eventually(
        Duration::from_secs(10),
        "the other orchestrator to lead",
        || async {
            let info = cluster_info(heir).await?;
            (info["is_leader"] == json!(true) && info["leader"]["node_id"] == info["node_id"])
                .then(|| info["node_id"].as_str().unwrap().to_string())
        },
    )
    .await;
    assert_ne!(heir_name, leader);
    let took = killed_at.elapsed();
    assert!(took < Duration::from_secs(10), "took over after {took:?}");
    // The gateway sees the new leader too.
    let seen = cluster_info(&gateway).await.expect("gateway answers");
    assert_eq!(seen["leader"]["node_id"], json!(heir_name));
    assert_eq!(seen["is_leader"], json!(false));

    let after = start_run(&gateway, "tick", json!({})).await;
    let states = wait_finished(&gateway, &[before, after], RUN_DEADLINE).await;
    assert_eq!(
        states,
        ["succeeded", "succeeded"],
        "{}",
        all_logs(&[&gateway, &worker, heir, dead])
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn a_killed_gateway_leaves_the_other_serving() {
    let cluster = Cluster::new();
    let mut first = cluster.start("gw-1", "gateway", FAST).await;
    let second = cluster.start("gw-2", "gateway", FAST).await;
    let worker = cluster.start("worker", "orchestrator,worker", FAST).await;
    apply_flow(&first, TICK).await;
    let started_on_first = start_run(&first, "tick", json!({})).await;
    first.kill_now();

    // The other gateway serves reads of what the dead one started, and new runs through
    // the real client.
    let flow = cluster.flow_file(
        "hello",
        "name: hello\nnodes:\n  greet:\n    type: transform\n    params:\n      value: {msg: \"hi {{ input.who }}\"}\n",
    );
    ok(&weft(&[
        "flow",
        "apply",
        flow.to_str().unwrap(),
        "--url",
        &second.url,
    ])
    .await);
    for who in ["a", "b", "c"] {
        let out = ok(&weft(&[
            "run",
            "start",
            "hello",
            "--input",
            &json!({"who": who}).to_string(),
            "--wait",
            "-o",
            "json",
            "--url",
            &second.url,
        ])
        .await);
        let run: Value = serde_json::from_str(&out).expect("run JSON");
        assert_eq!(run["state"], "succeeded", "{out}");
        assert_eq!(
            run["nodes"][0]["output"]["msg"],
            format!("hi {who}"),
            "{out}"
        );
    }
    let states = wait_finished(
        &second,
        std::slice::from_ref(&started_on_first),
        RUN_DEADLINE,
    )
    .await;
    assert_eq!(states, ["succeeded"], "{}", all_logs(&[&second, &worker]));
    // The dead gateway answers nothing.
    assert_eq!(run_state(&first, &started_on_first).await, None);
}

#[tokio::test(flavor = "multi_thread")]
async fn processes_without_the_gateway_role_serve_only_operations() {
    let cluster = Cluster::new();
    // A leader lease far longer than the test: only giving it up lets another lead soon.
    let long = ["--leader-ttl", "60s"];
    let worker = cluster.start("w", "worker,orchestrator", &long).await;
    let client = reqwest::Client::new();
    for path in ["/health", "/ready", "/metrics", "/v1/cluster"] {
        let r = client
            .get(format!("{}{path}", worker.url))
            .send()
            .await
            .unwrap();
        assert!(r.status().is_success(), "{path}: {}", r.status());
    }
    let info = cluster_info(&worker).await.unwrap();
    assert_eq!(info["node_id"], "w");
    assert_eq!(info["roles"], json!(["orchestrator", "worker"]));
    let r = client
        .get(format!("{}/v1/runs", worker.url))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "not_a_gateway", "{body}");

    // SIGTERM drains and gives the leader lease up: a new orchestrator leads at once
    // instead of after the 60 s lease.
    let mut worker = worker;
    worker.signal("TERM");
    let status = worker.wait_exit(Duration::from_secs(30)).await;
    assert!(status.success(), "{status}\n{}", worker.log_text());
    assert!(info["is_leader"] == json!(true), "{info}");
    let next = cluster.start("next", "orchestrator", &long).await;
    eventually(
        Duration::from_secs(10),
        "the next orchestrator to lead",
        || async { (cluster_info(&next).await?["is_leader"] == json!(true)).then_some(()) },
    )
    .await;
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_needs_postgres_and_valid_cluster_settings() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().to_str().unwrap();
    let out = weft(&["serve", "--role", "worker", "--data-dir", data]).await;
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("weft serve runs processes that share a PostgreSQL database; for one process on the embedded store use `weft up`"),
        "{err}"
    );
    let url = weft_store_postgres::testing::url();
    for (flag, value, says) in [
        (
            "--lease",
            "0s",
            "cluster.lease = 0s: must be longer than zero",
        ),
        (
            "--lease",
            "6m",
            "cluster.lease = 6m: must be longer than zero and at most 5m",
        ),
        ("--leader-ttl", "0s", "cluster.leader_ttl"),
        ("--queues", "bad queue", "cluster.worker_queues"),
    ] {
        let out = weft(&[
            "serve",
            "--role",
            "worker",
            "--database-url",
            &url,
            flag,
            value,
        ])
        .await;
        assert!(!out.status.success(), "{flag} {value}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(err.contains(says), "{flag} {value}: {err}");
    }
    let out = weft(&["serve", "--database-url", &url]).await;
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--role"));
}
