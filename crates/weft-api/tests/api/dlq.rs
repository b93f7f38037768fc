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
