//! Circuit breakers through the API: a deferred node in the run detail, `/v1/breakers`,
//! `/health` details, `/metrics`, and breaker settings rejected at apply time.

use super::*;
use serde_json::json;
use std::collections::BTreeSet;

/// A target that always answers 503; its `host:port`.
async fn failing_target() -> (String, String) {
    use axum::{Router, http::StatusCode as S, routing::any};
    let app = Router::new().route("/", any(|| async { S::SERVICE_UNAVAILABLE }));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    (format!("http://{addr}/"), addr.to_string())
}

fn keys(v: &Value) -> BTreeSet<String> {
    v.as_object().unwrap().keys().cloned().collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn open_breaker_shows_in_runs_breakers_health_and_metrics() {
    let h = harness().await;
    let (url, target) = failing_target().await;
    let flow = format!(
        "name: guarded\nnodes:\n  call:\n    type: http\n    params: {{url: \"{url}\"}}\n    \
         circuit_breaker: {{failure_threshold: 2, reset_timeout: 1h, max_reset_timeout: 2h}}\n"
    );
    let r = h.yaml(&flow).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    for _ in 0..2 {
        let id = h.start(json!({"flow": "guarded"})).await;
        h.wait_state(&id, "failed").await;
    }
    let id = h.start(json!({"flow": "guarded"})).await;
    let run = h
        .wait_run(&id, "deferred", |v| !node(v, "call")["deferred"].is_null())
        .await;
    assert_eq!(run["state"], "running");
    let call = node(&run, "call");
    assert_eq!(call["state"], "pending");
    assert_eq!(call["attempt"], 1);
    assert_eq!(
        call["deferred"]["reason"],
        format!("circuit open for host {target}")
    );
    assert_eq!(call["deferred"]["count"], 1);
    let tasks = h.get(&format!("/v1/runs/{id}/tasks")).await;
    assert!(
        tasks.body.to_string().contains("circuit open for host"),
        "{}",
        tasks.body
    );

    let r = h.get("/v1/breakers").await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let b = &r.body["breakers"][0];
    assert_eq!(b["target"], target.as_str());
    assert_eq!(b["state"], "open");
    assert_eq!(b["next_probe_at"], call["deferred"]["until"]);
    let spec = weft_api::openapi_spec();
    let documented: BTreeSet<String> = spec["components"]["schemas"]["BreakerDoc"]["properties"]
        .as_object()
        .unwrap()
        .keys()
        .cloned()
        .collect();
    let mut sent = keys(b);
    sent.insert("adaptive_timeout_ms".into()); // absent without an adaptive timeout
    assert_eq!(sent, documented);

    let health = h.get("/health").await.body;
    assert_eq!(health["status"], "ok");
    assert_eq!(health["details"]["breakers"]["open"], 1, "{health}");
    assert_eq!(
        health["details"]["breakers"]["not_closed"][0]["target"],
        target.as_str()
    );

    let resp = h
        .app
        .clone()
        .oneshot(Request::get("/metrics").body(Body::empty()).unwrap())
        .await
        .unwrap();
    let text = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let text = String::from_utf8_lossy(&text);
    let state = format!("weft_circuit_state{{target=\"{target}\"}} 2");
    assert!(text.contains(&state), "{state} missing from:\n{text}");
    assert!(
        text.lines()
            .any(|l| l.starts_with("weft_circuit_transitions_total")
                && l.contains(&target)
                && l.contains("to=\"open\"")),
        "{text}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn zero_and_negative_breaker_settings_are_rejected_naming_the_field() {
    let h = harness().await;
    let doc = "name: bad\nnodes:\n  call:\n    type: http\n    params: {url: \"http://x/\"}\n    \
               circuit_breaker: {failure_threshold: 0, window: 0s, half_open_probes: -1}\n    \
               adaptive_timeout: {factor: 0, min: 2s, max: 1s}\n  quiet:\n    type: noop\n    \
               circuit_breaker: {}\n";
    let r = h.yaml(doc).await;
    let err = assert_error(&r, StatusCode::UNPROCESSABLE_ENTITY, "flow_invalid");
    let paths: Vec<&str> = err["details"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["path"].as_str().unwrap())
        .collect();
    for p in [
        "nodes.call.circuit_breaker.failure_threshold",
        "nodes.call.circuit_breaker.window",
        "nodes.call.circuit_breaker.half_open_probes",
        "nodes.call.adaptive_timeout.factor",
        "nodes.quiet.circuit_breaker",
    ] {
        assert!(paths.contains(&p), "{p} not in {err}");
    }
    // min > max is reported once the other values are valid.
    let doc = "name: bad\nnodes:\n  call:\n    type: http\n    params: {url: \"http://x/\"}\n    \
               adaptive_timeout: {min: 2s, max: 1s}\n";
    let err = assert_error(
        &h.yaml(doc).await,
        StatusCode::UNPROCESSABLE_ENTITY,
        "flow_invalid",
    );
    assert_eq!(err["details"][0]["path"], "nodes.call.adaptive_timeout.min");
    assert!(
        err["details"][0]["message"]
            .as_str()
            .unwrap()
            .contains("at most max (1s)"),
        "{err}"
    );
}
