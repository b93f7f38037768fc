//! Queue settings changed live through the API.

use super::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queues_change_live_and_reject_bad_settings() {
    let h = harness().await;
    let r = h
        .json(Method::PUT, "/v1/queues/default", json!({"concurrency": 3}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["name"], "default");
    assert_eq!(r.body["concurrency"], 3);
    assert_eq!(r.body["paused"], false);

    let r = h
        .json(Method::PUT, "/v1/queues/bulk", json!({"paused": true}))
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["paused"], true);

    let r = h.get("/v1/queues").await;
    assert_eq!(r.status, StatusCode::OK);
    let queues = r.body["queues"].as_array().unwrap();
    let find = |name: &str| {
        queues
            .iter()
            .find(|q| q["name"] == name)
            .unwrap_or_else(|| panic!("no queue {name}: {}", r.body))
    };
    assert_eq!(find("default")["concurrency"], 3);
    assert_eq!(find("bulk")["paused"], true);

    let r = h
        .json(Method::PUT, "/v1/queues/default", json!({"concurrency": 0}))
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    let r = h
        .json(Method::PUT, "/v1/queues/default", json!({"concurency": 2}))
        .await;
    let err = assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert!(
        err["message"].as_str().unwrap().contains("`concurency`"),
        "{err}"
    );
    let r = h
        .json(Method::PUT, "/v1/queues/default", json!({"paused": "yes"}))
        .await;
    let err = assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert_eq!(err["details"][0]["path"], "paused", "{err}");
    let r = h
        .json(
            Method::PUT,
            "/v1/queues/bad%20name",
            json!({"paused": true}),
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");

    // The rejected changes left the queue as it was.
    let r = h.get("/v1/queues").await;
    let default = r.body["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "default")
        .cloned()
        .unwrap();
    assert_eq!(default["concurrency"], 3);
    assert_eq!(default["paused"], false);
}
