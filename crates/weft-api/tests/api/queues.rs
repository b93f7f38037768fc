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

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_queue_rate_is_set_shown_refused_when_bad_and_cleared() {
    let h = harness().await;
    let rate = |body| h.json(Method::PUT, "/v1/queues/invoicing", body);
    let r = rate(json!({"rate": {"limit": 10, "per": "1s"}})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["rate"], json!({"limit": 10, "per": "1s"}));
    // A change of another field keeps the rate.
    let r = rate(json!({"concurrency": 4})).await;
    assert_eq!(
        r.body["rate"],
        json!({"limit": 10, "per": "1s"}),
        "{}",
        r.body
    );
    let listed = h.get("/v1/queues").await.body;
    let shown = listed["queues"]
        .as_array()
        .unwrap()
        .iter()
        .find(|q| q["name"] == "invoicing")
        .cloned()
        .unwrap();
    assert_eq!(shown["rate"], json!({"limit": 10, "per": "1s"}));

    for (body, field, what) in [
        (
            json!({"rate": {"limit": 0, "per": "1s"}}),
            "rate.limit",
            "must be at least 1, got 0",
        ),
        (
            json!({"rate": {"limit": -2, "per": "1s"}}),
            "rate.limit",
            "must be at least 1, got -2",
        ),
        (
            json!({"rate": {"limit": 5, "per": "0s"}}),
            "rate.per",
            "longer than zero",
        ),
        (
            json!({"rate": {"limit": 5, "per": "-1s"}}),
            "rate.per",
            "invalid duration",
        ),
    ] {
        let r = rate(body).await;
        let err = assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
        let message = err["message"].as_str().unwrap();
        assert!(message.contains(field) && message.contains(what), "{err}");
    }
    let r = rate(json!({"rate": {"limit": 5, "per": "1s", "burst": 2}})).await;
    let err = assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert!(err["message"].as_str().unwrap().contains("burst"), "{err}");
    let r = rate(json!({"rate": {"limit": 5}})).await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");

    // The refused changes left the rate as it was; null clears it.
    let r = rate(json!({})).await;
    assert_eq!(
        r.body["rate"],
        json!({"limit": 10, "per": "1s"}),
        "{}",
        r.body
    );
    let r = rate(json!({"rate": null})).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["rate"], json!(null));
}
