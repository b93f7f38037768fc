//! Batch endpoints: many starts in one commit, many cancels, each item with its own result.

use super::*;
use serde_json::json;

#[tokio::test]
async fn batch_of_1000_starts_returns_1000_ids() {
    let h = harness().await;
    h.yaml(NOOP_FLOW).await;
    let runs: Vec<Value> = (0..1000)
        .map(|i| json!({"flow": "tick", "input": {"i": i}}))
        .collect();
    let r = h
        .json(Method::POST, "/v1/runs/batch", json!({ "runs": runs }))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["runs"].as_array().unwrap();
    assert_eq!(items.len(), 1000);
    let ids: std::collections::HashSet<&str> =
        items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(ids.len(), 1000, "every id is distinct");
    assert!(
        items
            .iter()
            .all(|i| i["created"] == true && i.get("error").is_none())
    );
    let page = h.get("/v1/runs?flow=tick&limit=1000").await;
    assert_eq!(page.body["runs"].as_array().unwrap().len(), 1000);
}

#[tokio::test]
async fn mixed_batch_reports_each_items_error_in_order() {
    let h = harness().await;
    h.yaml(NOOP_FLOW).await;
    let body = json!({"runs": [
        {"flow": "tick"},
        {"flow": "nope"},
        {"flow": "tick", "idempotency_key": "k1"},
        {"flow": "tick", "idempotency_key": ""},
        {"flow": "tick", "idempotency_key": "k1"},
    ]});
    let r = h.json(Method::POST, "/v1/runs/batch", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["runs"].as_array().unwrap();
    assert_eq!(items.len(), 5);
    assert_eq!(items[0]["created"], true);
    assert_eq!(items[1]["error"]["code"], "not_found", "{}", r.body);
    assert!(items[1].get("id").is_none());
    assert_eq!(items[2]["created"], true);
    assert_eq!(items[3]["error"]["code"], "bad_request");
    assert_eq!(
        items[4]["id"], items[2]["id"],
        "a repeated key returns the first run"
    );
    assert_eq!(items[4]["created"], false);
}

#[tokio::test]
async fn oversized_empty_and_malformed_batches_are_rejected_whole() {
    let h = harness().await;
    h.yaml(NOOP_FLOW).await;
    let runs: Vec<Value> = (0..1001).map(|_| json!({"flow": "tick"})).collect();
    let r = h
        .json(Method::POST, "/v1/runs/batch", json!({ "runs": runs }))
        .await;
    let e = assert_error(&r, StatusCode::PAYLOAD_TOO_LARGE, "batch_too_large");
    assert!(e["message"].as_str().unwrap().contains("1000"), "{e}");
    let r = h
        .json(Method::POST, "/v1/runs/batch", json!({"runs": []}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    let r = h
        .json(
            Method::POST,
            "/v1/runs/batch",
            json!({"runs": [{"flow": "tick", "colour": 1}]}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    let r = h
        .json(Method::POST, "/v1/runs/batch", json!({"run": []}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    let none = h.get("/v1/runs?flow=tick").await;
    assert!(
        none.body["runs"].as_array().unwrap().is_empty(),
        "nothing started"
    );
}

#[tokio::test]
async fn batch_cancel_reports_each_item() {
    let h = harness().await;
    h.yaml("name: slow\nnodes:\n  wait: {type: delay, params: {duration: 1h}}\n")
        .await;
    let a = h.start(json!({"flow": "slow"})).await;
    let b = h.start(json!({"flow": "slow"})).await;
    let body = json!({"ids": [a, "not-a-run", b, a]});
    let r = h.json(Method::POST, "/v1/runs/batch/cancel", body).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let items = r.body["runs"].as_array().unwrap();
    assert_eq!(items.len(), 4);
    assert_eq!(
        (items[0]["id"].as_str(), &items[0]["cancelled"]),
        (Some(a.as_str()), &json!(true))
    );
    assert_eq!(items[1]["error"]["code"], "not_found");
    assert_eq!(items[2]["cancelled"], true);
    assert_eq!(
        items[3]["error"]["code"], "conflict",
        "already cancelled: {}",
        r.body
    );
    h.wait_state(&b, "cancelled").await;
    let r = h
        .json(Method::POST, "/v1/runs/batch/cancel", json!({"ids": "x"}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
}
