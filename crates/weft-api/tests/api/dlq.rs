//! The dead-letter queue: a task that ran out of attempts, and a replay that resumes its run.

use super::*;
use serde_json::json;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

/// A tiny HTTP target whose answer the test flips from 500 to 200.
pub(crate) async fn flaky_target() -> (String, Arc<AtomicBool>, Arc<AtomicUsize>) {
    use axum::extract::State;
    let healthy = Arc::new(AtomicBool::new(false));
    let hits = Arc::new(AtomicUsize::new(0));
    let app = Router::new()
        .route(
            "/",
            axum::routing::get(
                |State((ok, hits)): State<(Arc<AtomicBool>, Arc<AtomicUsize>)>| async move {
                    hits.fetch_add(1, Ordering::SeqCst);
                    if ok.load(Ordering::SeqCst) {
                        (StatusCode::OK, axum::Json(json!({"ok": true})))
                    } else {
                        (
                            StatusCode::INTERNAL_SERVER_ERROR,
                            axum::Json(json!({"ok": false})),
                        )
                    }
                },
            ),
        )
        .with_state((healthy.clone(), hits.clone()));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/"), healthy, hits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn dead_task_is_listed_and_replay_resumes_the_run() {
    let h = harness().await;
    let (url, healthy, hits) = flaky_target().await;
    let flow = format!(
        "name: flaky\nnodes:\n  call:\n    type: http\n    params: {{url: \"{url}\"}}\n    retry: {{max_attempts: 2, initial_delay: 10ms}}\n  done:\n    type: transform\n    needs: [call]\n    params:\n      value: \"{{{{ nodes.call.body.ok }}}}\"\n"
    );
    let r = h.yaml(&flow).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);

    let id = h.start(json!({"flow": "flaky"})).await;
    let run = h.wait_state(&id, "failed").await;
    assert_eq!(node(&run, "call")["state"], "dead");
    assert_eq!(hits.load(Ordering::SeqCst), 2);

    let r = h.get("/v1/dlq?flow=flaky").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let dead = r.body["dead"].as_array().unwrap();
    assert_eq!(dead.len(), 1, "{}", r.body);
    assert_eq!(dead[0]["run_id"], id);
    assert_eq!(dead[0]["node"], "call");
    assert_eq!(
        dead[0]["attempts"].as_array().unwrap().len(),
        2,
        "{}",
        r.body
    );
    assert!(
        dead[0]["error"].as_str().unwrap().contains("HTTP 500"),
        "{}",
        r.body
    );
    assert_eq!(
        h.get("/v1/dlq?node=other").await.body["dead"],
        json!([]),
        "node filter"
    );

    healthy.store(true, Ordering::SeqCst);
    let r = h
        .send(
            Method::POST,
            &format!("/v1/dlq/{id}/call/replay"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["replayed"], true);

    let run = h.wait_state(&id, "succeeded").await;
    assert_eq!(node(&run, "call")["state"], "succeeded");
    assert_eq!(node(&run, "done")["output"], true);
    assert_eq!(hits.load(Ordering::SeqCst), 3);
    assert_eq!(h.get("/v1/dlq").await.body["dead"], json!([]));

    // Nothing dead is left to replay.
    let r = h
        .send(
            Method::POST,
            &format!("/v1/dlq/{id}/call/replay"),
            &[],
            Body::empty(),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    assert_error(
        &h.get("/v1/dlq?limit=0").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
}

/// Two flows whose only node always fails, each with its own error text.
const TIMEOUTS: &str = "name: slow\nnodes:\n  call: {type: fail, params: {message: \"upstream Timed Out after 30s\"}}\n";
const DECLINED: &str =
    "name: card\nnodes:\n  charge: {type: fail, params: {message: \"card declined\"}}\n";

/// Starts `n` runs of `flow` and waits until each has failed; returns their ids.
async fn failed_runs(h: &Harness, flow: &str, n: usize) -> Vec<String> {
    let mut ids = Vec::new();
    for _ in 0..n {
        ids.push(h.start(json!({"flow": flow})).await);
    }
    for id in &ids {
        h.wait_state(id, "failed").await;
    }
    ids
}

fn runs_of(items: &Value) -> Vec<String> {
    let mut v: Vec<String> = items
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["run_id"].as_str().unwrap().to_string())
        .collect();
    v.sort();
    v
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn selections_filter_by_error_and_time_and_page_with_a_cursor() {
    let h = harness().await;
    h.yaml(TIMEOUTS).await;
    h.yaml(DECLINED).await;
    let mut slow = failed_runs(&h, "slow", 5).await;
    slow.sort();
    failed_runs(&h, "card", 3).await;

    let r = h.get("/v1/dlq?error=timed%20out").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(runs_of(&r.body["dead"]), slow, "{}", r.body);
    assert_eq!(r.body["next"], Value::Null, "one page holds them all");

    // Two at a time: three pages, each run once, the last without a next cursor.
    let mut seen = Vec::new();
    let mut uri = "/v1/dlq?error=TIMED&limit=2".to_string();
    for page in 0.. {
        let r = h.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        seen.extend(runs_of(&r.body["dead"]));
        match r.body["next"].as_str() {
            Some(next) => uri = format!("/v1/dlq?error=TIMED&limit=2&before={next}"),
            None => {
                assert_eq!(page, 2, "5 tasks in pages of 2");
                break;
            }
        }
    }
    seen.sort();
    assert_eq!(seen, slow);

    let all = h.get("/v1/dlq?dead_before=2999-01-01T00:00:00Z").await;
    assert_eq!(
        all.body["dead"].as_array().unwrap().len(),
        8,
        "{}",
        all.body
    );
    let none = h.get("/v1/dlq?dead_after=2999-01-01T00:00:00Z").await;
    assert_eq!(none.body["dead"], json!([]), "{}", none.body);

    for (uri, field) in [
        ("/v1/dlq?before=nonsense", "before"),
        ("/v1/dlq?dead_after=yesterday", "dead_after"),
        ("/v1/dlq?dead_before=1", "dead_before"),
        ("/v1/dlq?error=", "error"),
    ] {
        let r = h.get(uri).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{uri}: {message}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_selection_is_replayed_or_discarded_page_by_page() {
    let h = harness().await;
    h.yaml(TIMEOUTS).await;
    h.yaml(DECLINED).await;
    let mut slow = failed_runs(&h, "slow", 5).await;
    slow.sort();
    let mut card = failed_runs(&h, "card", 3).await;
    card.sort();

    // Replay the declined cards two at a time, following the cursor.
    let r = h
        .json(
            Method::POST,
            "/v1/dlq/replay",
            json!({"error": "declined", "limit": 2}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["matched"], 3, "{}", r.body);
    let mut replayed = runs_of(&r.body["replayed"]);
    let next = r.body["next"].as_str().expect("a second page").to_string();
    let body = json!({"error": "declined", "limit": 2, "before": next});
    let r = h.json(Method::POST, "/v1/dlq/replay", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["next"], Value::Null, "{}", r.body);
    replayed.extend(runs_of(&r.body["replayed"]));
    replayed.sort();
    assert_eq!(replayed, card, "every declined task replayed once");
    for i in r.body["replayed"].as_array().unwrap() {
        assert_eq!(i["replayed"], true, "{i}");
    }
    // Each replayed run ran its node again (a fail node: it dies again).
    for id in &card {
        h.wait_run(id, "a second attempt", |v| {
            v["state"] == "failed" && node(v, "charge")["attempts"].as_array().unwrap().len() == 2
        })
        .await;
    }

    // Discard every timeout at once; the declined ones stay.
    let r = h
        .json(
            Method::POST,
            "/v1/dlq/discard",
            json!({"error": "timed out"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["matched"], 5, "{}", r.body);
    assert_eq!(runs_of(&r.body["discarded"]), slow, "{}", r.body);
    assert_eq!(r.body["next"], Value::Null);
    assert_eq!(h.get("/v1/dlq?flow=slow").await.body["dead"], json!([]));
    assert_eq!(runs_of(&h.get("/v1/dlq").await.body["dead"]), card);
    let run = h.get(&format!("/v1/runs/{}", slow[0])).await.body;
    assert_eq!(run["state"], "failed", "{run}");
    assert_eq!(node(&run, "call")["state"], "cancelled", "{run}");

    // Items and a selection together, or nothing at all, are refused.
    for bad in [
        json!({}),
        json!({"items": [], "error": "x"}),
        json!({"error": "x", "dead_after": "soon"}),
    ] {
        let r = h.json(Method::POST, "/v1/dlq/discard", bad.clone()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    }
}
