//! Per-key concurrency limits changed live through the API.

use super::*;
use serde_json::json;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn key_limits_are_set_listed_and_cleared_and_bad_ones_name_the_field() {
    let h = harness().await;
    let r = h
        .json(
            Method::PUT,
            "/v1/limits/customer:42",
            json!({"concurrency": 3}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["key"], "customer:42");
    assert_eq!(r.body["limit"], 3);
    assert_eq!(r.body["override_limit"], 3);
    assert_eq!(r.body["running"], json!([]));

    let r = h.get("/v1/limits").await;
    assert_eq!(r.status, StatusCode::OK);
    assert_eq!(r.body["limits"][0]["key"], "customer:42", "{}", r.body);

    for bad in [json!({"concurrency": 0}), json!({"concurrency": -2})] {
        let r = h.json(Method::PUT, "/v1/limits/customer:42", bad).await;
        let err = assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
        let msg = err["message"].as_str().unwrap();
        assert!(
            msg.starts_with("concurrency: must be between 1 and"),
            "{msg}"
        );
    }
    let r = h
        .json(Method::PUT, "/v1/limits/customer:42", json!({"limit": 2}))
        .await;
    let err = assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
    assert!(
        err["message"].as_str().unwrap().contains("`limit`"),
        "{err}"
    );

    let r = h
        .send(Method::DELETE, "/v1/limits/customer:42", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::NO_CONTENT, "{}", r.body);
    let r = h
        .send(Method::DELETE, "/v1/limits/customer:42", &[], Body::empty())
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");
    assert_eq!(h.get("/v1/limits").await.body["limits"], json!([]));
}
