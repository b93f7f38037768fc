//! The durability promise, tested on the real binary: `weft up` is SIGKILLed several times
//! while runs are in flight and restarted on the same data directory. Afterwards every run
//! whose start was acknowledged (201) has succeeded, every node ran at least once, and no
//! node that was recorded as succeeded before a kill ran again after it.
//!
//! Side effects are observed from outside: each node is an `http` node calling a counter
//! server inside this test, which counts hits per (run, node).

mod common;

use axum::extract::{Query, State};
use axum::routing::get;
use axum::{Json, Router};
use common::{Server, eventually};
use futures::StreamExt;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// Runs submitted in each kill/restart cycle. Even cycles snapshot completed nodes and kill
/// while runs are in flight; odd ones kill while starts are still being acknowledged.
const RUNS_PER_CYCLE: [usize; 4] = [300, 200, 100, 200];
/// Nodes of the flow, in order.
const NODES: [&str; 3] = ["a", "b", "c"];
/// Slots per queue: few, so that a cycle's runs are still in flight when it is killed.
const CONCURRENCY: &str = "2";
/// How long every accepted run may take to finish after the last restart.
const FINISH_DEADLINE: Duration = Duration::from_secs(180);

type Key = (String, String);

/// Hits per (run, node).
#[derive(Default)]
struct Counter(Mutex<HashMap<Key, u32>>);

impl Counter {
    fn get(&self, run: &str, node: &str) -> u32 {
        let hits = self.0.lock().unwrap();
        hits.get(&(run.to_string(), node.to_string()))
            .copied()
            .unwrap_or(0)
    }

    fn total(&self) -> u32 {
        self.0.lock().unwrap().values().sum()
    }
}

#[derive(Deserialize)]
struct Hit {
    run: String,
    node: String,
    delay_ms: Option<u64>,
}

async fn hit(State(counter): State<Arc<Counter>>, Query(h): Query<Hit>) -> Json<Value> {
    *counter
        .0
        .lock()
        .unwrap()
        .entry((h.run.clone(), h.node.clone()))
        .or_default() += 1;
    if let Some(ms) = h.delay_ms {
        // Simulated latency of the remote side, not a wait for anything.
        tokio::time::sleep(Duration::from_millis(ms)).await;
    }
    Json(json!({ "run": h.run, "node": h.node }))
}

/// Starts the counter server; returns its base URL.
async fn counter_server(counter: Arc<Counter>) -> String {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = Router::new().route("/hit", get(hit)).with_state(counter);
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
    format!("http://{addr}")
}

fn flow(counter_url: &str) -> String {
    let url = |node: &str, delay: &str| {
        format!("{counter_url}/hit?run={{{{ run.id }}}}&node={node}{delay}")
    };
    format!(
        r#"name: chain
defaults:
  retry: {{max_attempts: 20, initial_delay: 10ms, max_delay: 200ms}}
nodes:
  a:
    type: http
    params: {{url: "{}"}}
  b:
    type: http
    needs: [a]
    params: {{url: "{}"}}
  c:
    type: http
    needs: [b]
    params: {{url: "{}"}}
"#,
        url("a", ""),
        url("b", "&delay_ms=2"),
        url("c", "&delay_ms=2"),
    )
}

/// Submits up to `n` runs from 16 concurrent clients until the server stops answering,
/// adding the id of each run whose start was acknowledged with 201 to `accepted`.
async fn submit(
    http: reqwest::Client,
    url: String,
    n: usize,
    accepted: Arc<Mutex<Vec<String>>>,
    progress: Arc<Notify>,
) {
    let issued = Arc::new(AtomicUsize::new(0));
    let workers: Vec<_> = (0..16)
        .map(|_| {
            let (http, url, issued) = (http.clone(), url.clone(), issued.clone());
            let (accepted, progress) = (accepted.clone(), progress.clone());
            tokio::spawn(async move {
                while issued.fetch_add(1, Ordering::SeqCst) < n {
                    let resp = http
                        .post(format!("{url}/v1/runs"))
                        .json(&json!({ "flow": "chain", "input": {} }))
                        .send()
                        .await;
                    let Ok(resp) = resp else { return };
                    if resp.status() != reqwest::StatusCode::CREATED {
                        return;
                    }
                    let Ok(body) = resp.json::<Value>().await else {
                        return;
                    };
                    let id = body["id"].as_str().expect("201 carries an id");
                    accepted.lock().unwrap().push(id.to_string());
                    progress.notify_one();
                }
            })
        })
        .collect();
    for w in workers {
        w.await.unwrap();
    }
}

async fn get_run(http: &reqwest::Client, url: &str, id: &str) -> Value {
    let resp = http
        .get(format!("{url}/v1/runs/{id}"))
        .send()
        .await
        .unwrap();
    assert!(
        resp.status().is_success(),
        "GET run {id}: {}",
        resp.status()
    );
    resp.json().await.unwrap()
}

/// Nodes recorded as succeeded, with the counter's hits for each read after the record.
/// Also returns how many of the runs were not finished yet.
async fn snapshot(
    http: &reqwest::Client,
    url: &str,
    ids: &[String],
    counter: &Counter,
) -> (BTreeMap<Key, u32>, usize) {
    let runs: Vec<Value> = futures::stream::iter(ids)
        .map(|id| get_run(http, url, id))
        .buffer_unordered(32)
        .collect()
        .await;
    let mut done = BTreeMap::new();
    let mut unfinished = 0;
    for run in &runs {
        let id = run["id"].as_str().unwrap();
        if run["state"] != "succeeded" {
            unfinished += 1;
        }
        for node in run["nodes"].as_array().unwrap() {
            if node["state"] == "succeeded" {
                let name = node["node"].as_str().unwrap();
                let hits = counter.get(id, name);
                assert!(hits >= 1, "{id}/{name} succeeded without being called");
                done.insert((id.to_string(), name.to_string()), hits);
            }
        }
    }
    (done, unfinished)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_loses_no_accepted_run_and_reruns_no_completed_node() {
    let tmp = tempfile::tempdir().unwrap();
    let data = tmp.path().join("data");
    let counter = Arc::new(Counter::default());
    let counter_url = counter_server(counter.clone()).await;
    let http = reqwest::Client::new();
    let env = [("WEFT_DEFAULT_CONCURRENCY", CONCURRENCY)];

    let mut accepted: Vec<String> = Vec::new();
    let mut snapshots: BTreeMap<Key, u32> = BTreeMap::new();
    let mut killed_mid_flight = 0;
    for (cycle, n) in RUNS_PER_CYCLE.into_iter().enumerate() {
        let server = Server::start_with_env(&data, &[], &env).await;
        if cycle == 0 {
            let resp = http
                .post(format!("{}/v1/flows", server.url))
                .header("content-type", "application/yaml")
                .body(flow(&counter_url))
                .send()
                .await
                .unwrap();
            assert!(resp.status().is_success(), "{}", resp.text().await.unwrap());
        }
        let this_cycle = Arc::new(Mutex::new(Vec::new()));
        let progress = Arc::new(Notify::new());
        let submitter = tokio::spawn(submit(
            http.clone(),
            server.url.clone(),
            n,
            this_cycle.clone(),
            progress.clone(),
        ));

        if cycle % 2 == 1 {
            // Kill while starts are being acknowledged: a 201 must already be durable.
            let acked = || this_cycle.lock().unwrap().len();
            while acked() < n / 4 {
                tokio::time::timeout(Duration::from_secs(30), progress.notified())
                    .await
                    .expect("starts to be acknowledged");
            }
            server.kill();
            submitter.await.unwrap();
            eprintln!(
                "cycle {cycle}: killed with {} of {n} starts acknowledged",
                acked()
            );
        } else {
            // Let a share of this cycle's work happen, then record what is done and kill.
            let threshold = counter.total() + (n * NODES.len() / 5) as u32;
            eventually(Duration::from_secs(60), "nodes to run", || async {
                (counter.total() >= threshold).then_some(())
            })
            .await;
            let mut known = accepted.clone();
            known.extend(submitted_so_far(&http, &server.url).await);
            known.sort();
            known.dedup();
            let (done, unfinished) = snapshot(&http, &server.url, &known, &counter).await;
            server.kill();
            submitter.await.unwrap();
            if unfinished > 0 {
                killed_mid_flight += 1;
            }
            eprintln!(
                "cycle {cycle}: killed with {unfinished} of {} runs unfinished, {} nodes done",
                known.len(),
                done.len()
            );
            for (key, hits) in done {
                if let Some(before) = snapshots.insert(key.clone(), hits) {
                    assert_eq!(before, hits, "{key:?} ran again after it succeeded");
                }
            }
        }
        accepted.extend(this_cycle.lock().unwrap().drain(..));
    }
    assert!(
        killed_mid_flight > 0,
        "every kill came after all runs had finished; the test proved nothing"
    );

    // Restart once more and let everything finish.
    let mut server = Server::start_with_env(&data, &[], &env).await;
    let deadline = Instant::now() + FINISH_DEADLINE;
    let mut pending: Vec<String> = accepted.clone();
    while !pending.is_empty() {
        assert!(
            Instant::now() < deadline,
            "{} accepted runs not finished after {FINISH_DEADLINE:?}, e.g. {:#}",
            pending.len(),
            get_run(&http, &server.url, &pending[0]).await
        );
        let runs: Vec<Value> = futures::stream::iter(&pending)
            .map(|id| get_run(&http, &server.url, id))
            .buffer_unordered(32)
            .collect()
            .await;
        pending.clear();
        for run in runs {
            let state = run["state"].as_str().unwrap();
            assert!(
                state != "failed" && state != "cancelled",
                "accepted run ended {state}: {run:#}"
            );
            if state != "succeeded" {
                pending.push(run["id"].as_str().unwrap().to_string());
            }
        }
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    // No accepted run lost: each one ran every node at least once.
    for id in &accepted {
        for node in NODES {
            assert!(counter.get(id, node) >= 1, "{id}/{node} never ran");
        }
    }
    // No node recorded as succeeded before a kill ran again after it.
    let mut rerun = Vec::new();
    for ((run, node), hits) in &snapshots {
        let now = counter.get(run, node);
        if now != *hits {
            rerun.push(format!(
                "{run}/{node}: {hits} hits at the kill, {now} after"
            ));
        }
    }
    assert!(
        rerun.is_empty(),
        "completed nodes ran again:\n{}",
        rerun.join("\n")
    );
    let repeats = accepted
        .iter()
        .flat_map(|id| NODES.map(|n| counter.get(id, n)))
        .filter(|&h| h > 1)
        .count();
    eprintln!(
        "{} runs accepted, {} nodes checked across kills, {repeats} in-flight attempts re-run",
        accepted.len(),
        snapshots.len()
    );

    server.signal("TERM");
    let status = server.wait_exit(Duration::from_secs(30)).await;
    assert_eq!(status.code(), Some(0), "{}", server.log_text());
}

/// Ids of the runs the server has now, newest first (the submitter reports its own only
/// when it ends, after the kill).
async fn submitted_so_far(http: &reqwest::Client, url: &str) -> Vec<String> {
    let mut ids = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut page_url = format!("{url}/v1/runs?flow=chain&limit=1000");
        if let Some(b) = &before {
            page_url.push_str(&format!("&before={b}"));
        }
        let page: Value = http
            .get(page_url)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for r in page["runs"].as_array().unwrap() {
            ids.push(r["id"].as_str().unwrap().to_string());
        }
        match page["next"].as_str() {
            Some(next) => before = Some(next.to_string()),
            None => return ids,
        }
    }
}
