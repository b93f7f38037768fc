//! `/ready`, `/metrics` and `/v1/cluster`.

use super::*;

#[tokio::test]
async fn ready_until_the_engine_drains() {
    let h = harness_with(ApiOptions::default()).await;
    let r = h.send(req(Method::GET, "/ready")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body, json!({"status": "ready"}));
    h.engine.shutdown(Duration::from_secs(1)).await;
    let r = h.send(req(Method::GET, "/ready")).await;
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "not_ready");
    assert_eq!(r.body["status"], "not_ready");
    assert!(
        r.body["reasons"][0].as_str().unwrap().contains("draining"),
        "{}",
        r.text
    );
}

#[tokio::test]
async fn metrics_count_requests_by_route_and_runs_by_flow() {
    let h = harness_with(ApiOptions::default()).await;
    h.engine.flow_apply(FLOW).await.unwrap();
    let r = h
        .send(req(Method::POST, "/v1/runs").json(start_body()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let id = r.body["id"].as_str().unwrap().to_string();
    h.engine.wait_run(&id).await.unwrap();
    let r = h.send(req(Method::GET, &format!("/v1/runs/{id}"))).await;
    assert_eq!(r.status, StatusCode::OK);
    h.engine
        .flow_apply("name: doomed\nnodes:\n  boom:\n    type: fail\n")
        .await
        .unwrap();
    let doomed = h
        .engine
        .run_start(weft_engine::StartRun {
            flow: "doomed".into(),
            ..Default::default()
        })
        .await
        .unwrap();
    h.engine.wait_run(&doomed.id).await.unwrap();
    let r = h.send(req(Method::GET, "/metrics")).await;
    assert_eq!(r.status, StatusCode::OK);
    assert!(header(&r, "content-type").starts_with("text/plain"));
    let text = &r.text;
    for needle in [
        "weft_http_requests_total{",
        "route=\"/v1/runs/{id}\"",
        "weft_http_request_duration_seconds_bucket{",
        "weft_runs_started_total{flow=\"tick\"}",
        "weft_runs_finished_total{",
        "weft_task_attempts_total{",
        "weft_dead_letters_total{flow=\"doomed\"}",
        "weft_runs_finished_total{flow=\"doomed\",state=\"failed\"}",
        "weft_store_op_seconds_bucket{op=\"run_get\"",
        "weft_store_op_seconds_bucket{",
        "weft_queue_depth{queue=\"default\"}",
        "weft_queue_oldest_ready_age_seconds{",
    ] {
        assert!(text.contains(needle), "no {needle} in:\n{text}");
    }
}

#[tokio::test]
async fn cluster_describes_this_node() {
    let h = harness_with(ApiOptions::default()).await;
    let r = h.send(req(Method::GET, "/v1/cluster")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(r.body["node_id"], h.engine.node_id());
    assert_eq!(
        r.body["roles"],
        json!(["gateway", "orchestrator", "worker"])
    );
    assert!(r.body["uptime_s"].is_u64());
    assert!(r.body["load"]["inflight"].is_u64() && r.body["load"]["ready"].is_u64());
    // Alone on its database: one member (itself), its store's kind and pool, its clock.
    assert_eq!(r.body["mode"], "single");
    assert!(r.body["lease_ms"].is_null());
    assert_eq!(r.body["ready"], true);
    assert!(r.body["now_ms"].as_i64().unwrap() > 0);
    let store = &r.body["store"];
    assert!(
        store["kind"].is_string() && store["pool_size"].as_u64().unwrap() >= 1,
        "{store}"
    );
    let members = r.body["members"].as_array().unwrap();
    assert_eq!(members.len(), 1, "{members:?}");
    assert_eq!(members[0]["id"], h.engine.node_id());
    assert_eq!(members[0]["pool_size"], store["pool_size"]);
    assert_eq!(
        (
            members[0]["ready"].clone(),
            members[0]["all_queues"].clone()
        ),
        (json!(true), json!(true))
    );
}
