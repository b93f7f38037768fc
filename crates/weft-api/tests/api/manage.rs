//! The rest of the v1 API: flow versions, diff and delete; run retry and tasks; time
//! filters; DLQ show, discard and bulk replay; queue pause/resume; workers.

use super::*;
use serde_json::json;
use std::sync::atomic::Ordering;

const V1: &str = "name: greet\nnodes:\n  hello:\n    type: log\n    params: {message: hi}\n";
const V2: &str = "name: greet\nnodes:\n  hello:\n    type: log\n    params: {message: hello}\n  bye:\n    type: noop\n    needs: [hello]\n";

#[tokio::test]
async fn flow_versions_list_get_and_diff() {
    let h = harness().await;
    assert_eq!(h.yaml(V1).await.status, StatusCode::CREATED);
    assert_eq!(h.yaml(V2).await.status, StatusCode::CREATED);

    let r = h.get("/v1/flows/greet/versions").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let versions: Vec<u64> = r.body["flows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| f["version"].as_u64().unwrap())
        .collect();
    assert_eq!(versions, vec![1, 2]);

    let r = h.get("/v1/flows/greet/versions/1").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["spec"]["nodes"]["hello"]["params"]["message"], "hi");

    let r = h.get("/v1/flows/greet/diff?from=1&to=2").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["added"], json!(["bye"]));
    assert_eq!(r.body["removed"], json!([]));
    assert_eq!(r.body["changed"][0]["node"], "hello");
    assert_eq!(
        r.body["changed"][0]["fields"],
        json!([{"path": "params.message", "before": "hi", "after": "hello"}])
    );
    let latest = h.get("/v1/flows/greet/diff?from=1").await;
    assert_eq!(latest.body["to"], 2, "to defaults to the latest version");

    assert_error(
        &h.get("/v1/flows/nope/versions").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &h.get("/v1/flows/greet/versions/9").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert_error(
        &h.get("/v1/flows/greet/versions/x").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &h.get("/v1/flows/greet/diff").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &h.get("/v1/flows/greet/diff?from=1&colour=2").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert_error(
        &h.get("/v1/flows/greet/diff?from=7").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test]
async fn flow_delete_conflicts_while_a_run_is_active() {
    let h = harness().await;
    h.yaml(NOOP_FLOW).await;
    let r = h
        .json(Method::POST, "/v1/queues/default/pause", json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let id = h.start(json!({"flow": "tick"})).await;
    let r = h
        .send(Method::DELETE, "/v1/flows/tick", &[], Body::empty())
        .await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");

    h.json(Method::POST, &format!("/v1/runs/{id}/cancel"), json!({}))
        .await;
    let r = h
        .send(Method::DELETE, "/v1/flows/tick", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["versions_deleted"], 1);

    assert_error(
        &h.get("/v1/flows/tick").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    let r = h
        .json(Method::POST, "/v1/runs", json!({"flow": "tick"}))
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(
        h.get(&format!("/v1/runs/{id}")).await.body["state"],
        "cancelled",
        "old runs stay readable"
    );
    let r = h
        .send(Method::DELETE, "/v1/flows/tick", &[], Body::empty())
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
}

#[tokio::test]
async fn run_list_filters_by_creation_time() {
    let h = harness().await;
    h.yaml(NOOP_FLOW).await;
    let id = h.start(json!({"flow": "tick"})).await;
    let all = h.get("/v1/runs?created_after=2000-01-01T00:00:00Z&created_before=2999-01-01T00:00:00%2B02:00").await;
    assert_eq!(all.status, StatusCode::OK, "{}", all.body);
    assert_eq!(all.body["runs"][0]["id"], id);
    let none = h.get("/v1/runs?created_after=2999-01-01T00:00:00Z").await;
    assert!(none.body["runs"].as_array().unwrap().is_empty());
    let none = h
        .get("/v1/runs?flow=tick&created_before=2000-01-01T00:00:00Z")
        .await;
    assert!(none.body["runs"].as_array().unwrap().is_empty());
    let e = assert_error(
        &h.get("/v1/runs?created_after=yesterday").await,
        StatusCode::BAD_REQUEST,
        "bad_request",
    );
    assert!(
        e["message"].as_str().unwrap().contains("created_after"),
        "{e}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn retry_of_a_failed_run_continues_it() {
    let h = harness().await;
    let (url, healthy, hits) = super::dlq::flaky_target().await;
    let flow = format!(
        "name: flaky\nnodes:\n  call:\n    type: http\n    params: {{url: \"{url}\"}}\n  done:\n    type: noop\n    needs: [call]\n"
    );
    h.yaml(&flow).await;
    let id = h.start(json!({"flow": "flaky"})).await;
    assert_error(
        &h.json(Method::POST, "/v1/runs/not-a-run/retry", json!({}))
            .await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    h.wait_state(&id, "failed").await;
    assert_eq!(hits.load(Ordering::SeqCst), 1);

    let r = h.get(&format!("/v1/runs/{id}/tasks")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let call = &r.body["tasks"][0];
    assert_eq!(
        (call["node"].as_str(), call["state"].as_str()),
        (Some("call"), Some("dead"))
    );
    assert_eq!(call["attempts"].as_array().unwrap().len(), 1);
    assert!(call["attempts"][0]["error"].is_string(), "{call}");

    healthy.store(true, Ordering::SeqCst);
    let r = h
        .json(Method::POST, &format!("/v1/runs/{id}/retry"), json!({}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["replayed"], json!(["call"]));
    let run = h.wait_state(&id, "succeeded").await;
    assert_eq!(node(&run, "done")["state"], "succeeded");
    let r = h
        .json(Method::POST, &format!("/v1/runs/{id}/retry"), json!({}))
        .await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    assert_error(
        &h.get("/v1/runs/nope/tasks").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

const ALWAYS_FAILS: &str =
    "name: broken\nnodes:\n  charge: {type: fail}\n  after: {type: noop, needs: [charge]}\n";

#[tokio::test]
async fn dlq_show_and_discard() {
    let h = harness().await;
    h.yaml(ALWAYS_FAILS).await;
    let id = h.start(json!({"flow": "broken"})).await;
    h.wait_state(&id, "failed").await;

    let r = h.get(&format!("/v1/dlq/{id}/charge")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(
        (r.body["run_id"].as_str(), r.body["flow"].as_str()),
        (Some(id.as_str()), Some("broken"))
    );
    assert_eq!(r.body["attempts"].as_array().unwrap().len(), 1);
    assert_error(
        &h.get(&format!("/v1/dlq/{id}/after")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );

    let r = h
        .send(
            Method::DELETE,
            &format!("/v1/dlq/{id}/charge"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["discarded"], true);
    assert_error(
        &h.get(&format!("/v1/dlq/{id}/charge")).await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
    assert!(
        h.get("/v1/dlq").await.body["dead"]
            .as_array()
            .unwrap()
            .is_empty()
    );
    let run = h.get(&format!("/v1/runs/{id}")).await.body;
    assert_eq!(
        run["state"], "failed",
        "a discarded task leaves its run failed"
    );
    assert_eq!(node(&run, "charge")["state"], "cancelled");
    let r = h
        .send(
            Method::DELETE,
            &format!("/v1/dlq/{id}/charge"),
            &[],
            Body::empty(),
        )
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    let r = h
        .json(Method::POST, &format!("/v1/runs/{id}/retry"), json!({}))
        .await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
}

#[tokio::test]
async fn dlq_bulk_replay_by_items_and_by_filter() {
    let h = harness().await;
    h.yaml(ALWAYS_FAILS).await;
    let a = h.start(json!({"flow": "broken"})).await;
    let b = h.start(json!({"flow": "broken"})).await;
    h.wait_state(&a, "failed").await;
    h.wait_state(&b, "failed").await;

    let body = json!({"items": [{"run_id": a, "node": "charge"}, {"run_id": a, "node": "after"}]});
    let r = h.json(Method::POST, "/v1/dlq/replay", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["replayed"].as_array().unwrap();
    assert_eq!(items[0]["replayed"], true);
    assert_eq!(items[1]["replayed"], false);
    assert_eq!(items[1]["error"]["code"], "not_found");
    // The replayed `fail` node fails again; wait for it to be dead again.
    h.wait_run(&a, "failed again", |v| {
        v["state"] == "failed" && node(v, "charge")["attempt"] == 1
    })
    .await;

    let r = h
        .json(
            Method::POST,
            "/v1/dlq/replay",
            json!({"flow": "broken", "node": "charge"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let mut runs: Vec<&str> = r.body["replayed"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| i["run_id"].as_str().unwrap())
        .collect();
    runs.sort();
    let mut want = vec![a.as_str(), b.as_str()];
    want.sort();
    assert_eq!(runs, want, "{}", r.body);

    for bad in [
        json!({}),
        json!({"items": [], "flow": "broken"}),
        json!({"items": []}),
        json!({"flow": 1}),
    ] {
        let r = h.json(Method::POST, "/v1/dlq/replay", bad.clone()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    }
}

#[tokio::test]
async fn queues_pause_resume_and_report_oldest_ready_age() {
    let h = harness().await;
    h.yaml(NOOP_FLOW).await;
    let r = h
        .send(Method::POST, "/v1/queues/default/pause", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["paused"], true);
    let id = h.start(json!({"flow": "tick"})).await;
    let q = h.get("/v1/queues").await.body;
    let default = &q["queues"][0];
    assert_eq!(
        (default["name"].as_str(), default["ready"].as_u64()),
        (Some("default"), Some(1))
    );
    assert!(default["oldest_ready_age_ms"].is_u64(), "{default}");
    let r = h
        .send(
            Method::POST,
            "/v1/queues/default/resume",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.body["paused"], false);
    h.wait_state(&id, "succeeded").await;
    assert_eq!(
        h.get("/v1/queues").await.body["queues"][0]["oldest_ready_age_ms"],
        0
    );
    let r = h
        .send(
            Method::POST,
            "/v1/queues/bad%20name/pause",
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::BAD_REQUEST);
}

#[tokio::test]
async fn workers_lists_this_process() {
    let h = harness().await;
    h.yaml(NOOP_FLOW).await;
    let id = h.start(json!({"flow": "tick"})).await;
    h.wait_state(&id, "succeeded").await;
    let r = h.get("/v1/workers").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let workers = r.body["workers"].as_array().unwrap();
    assert_eq!(workers.len(), 1);
    let w = &workers[0];
    assert_eq!(w["pid"], std::process::id());
    assert_eq!(w["heartbeat_age_ms"], 0);
    assert!(w["hostname"].is_string() && w["id"].is_string() && w["started_at"].is_i64());
    assert_eq!(w["queues"][0]["name"], "default");
    assert_eq!(w["load"], 0);
}

/// Every new route answers malformed input in the error shape: unknown fields, wrong types,
/// bodies that are not JSON, unknown ids.
#[tokio::test]
async fn bad_input_on_every_new_route_gets_the_error_shape() {
    let h = harness().await;
    h.yaml(NOOP_FLOW).await;
    let bad_bodies = ["/v1/runs/batch", "/v1/runs/batch/cancel", "/v1/dlq/replay"];
    for uri in bad_bodies {
        let r = h.json(Method::POST, uri, json!({"unknown": 1})).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
        let ct = [("content-type", "application/json")];
        let r = h.send(Method::POST, uri, &ct, "{not json").await;
        assert_error(&r, StatusCode::BAD_REQUEST, "malformed_json");
        let r = h.send(Method::POST, uri, &[], "{}").await;
        assert!(
            r.status.is_client_error(),
            "{uri} without a content type: {}",
            r.status
        );
        assert!(r.body["error"]["code"].is_string(), "{uri}: {}", r.body);
    }
    let unknown = [
        (Method::POST, "/v1/runs/nope/retry"),
        (Method::GET, "/v1/runs/nope/tasks"),
        (Method::GET, "/v1/dlq/nope/a"),
        (Method::DELETE, "/v1/dlq/nope/a"),
        (Method::GET, "/v1/flows/nope/versions"),
        (Method::GET, "/v1/flows/nope/versions/1"),
        (Method::GET, "/v1/flows/nope/diff?from=1"),
        (Method::DELETE, "/v1/flows/nope"),
    ];
    for (method, uri) in unknown {
        let r = h.send(method.clone(), uri, &[], Body::empty()).await;
        assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    }
    let bad_queries = [
        "/v1/runs?created_before=2026-13-01T00:00:00Z",
        "/v1/runs?created_after=1700000000",
        "/v1/flows/tick/diff?from=one",
        "/v1/flows/tick/versions/0x1",
        "/v1/dlq?colour=red",
    ];
    for uri in bad_queries {
        assert_error(&h.get(uri).await, StatusCode::BAD_REQUEST, "bad_request");
    }
    let r = h
        .send(Method::PATCH, "/v1/workers", &[], Body::empty())
        .await;
    assert_error(&r, StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed");
}
