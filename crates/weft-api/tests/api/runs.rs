//! Starting, reading, listing and cancelling runs.

use super::*;
use serde_json::json;
use std::collections::HashSet;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn run_succeeds_with_node_outputs() {
    let h = harness().await;
    let flow = "name: echo\nnodes:\n  t:\n    type: transform\n    params:\n      value: \"{{ input.x }}\"\n  u:\n    type: transform\n    needs: [t]\n    params:\n      value:\n        doubled: \"{{ nodes.t * 2 }}\"\n";
    assert_eq!(h.yaml(flow).await.status, StatusCode::CREATED);

    let id = h.start(json!({"flow": "echo", "input": {"x": 21}})).await;
    let run = h.wait_state(&id, "succeeded").await;
    assert_eq!(run["id"], id);
    assert_eq!(run["flow"], "echo");
    assert_eq!(run["version"], 1);
    assert_eq!(run["input"], json!({"x": 21}));
    assert_eq!(node(&run, "t")["state"], "succeeded");
    assert_eq!(node(&run, "t")["output"], 21);
    assert_eq!(node(&run, "u")["output"], json!({"doubled": 42}));

    assert_error(
        &h.get("/v1/runs/no-such-run").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idempotency_key_returns_the_first_run() {
    let h = harness().await;
    h.yaml(NOOP_FLOW).await;
    let r = h
        .send(
            Method::POST,
            "/v1/runs",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "order-7"),
            ],
            r#"{"flow": "tick"}"#,
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    assert_eq!(r.body["created"], true);
    let first = r.body["id"].as_str().unwrap().to_string();

    // The same key in the body is the same start.
    let r = h
        .json(
            Method::POST,
            "/v1/runs",
            json!({"flow": "tick", "idempotency_key": "order-7"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({"id": first, "created": false}));

    let r = h
        .send(
            Method::POST,
            "/v1/runs",
            &[
                ("content-type", "application/json"),
                ("idempotency-key", "order-7"),
            ],
            r#"{"flow": "tick", "idempotency_key": "order-8"}"#,
        )
        .await;
    assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");

    let second = h
        .start(json!({"flow": "tick", "idempotency_key": "order-8"}))
        .await;
    assert_ne!(second, first);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn list_pages_walk_every_run_exactly_once() {
    let h = harness().await;
    h.yaml(NOOP_FLOW).await;
    h.yaml("name: other\nnodes:\n  a:\n    type: noop\n").await;
    let mut started = HashSet::new();
    for _ in 0..5 {
        started.insert(h.start(json!({"flow": "tick"})).await);
    }
    h.start(json!({"flow": "other"})).await;

    let mut seen = Vec::new();
    let mut uri = "/v1/runs?flow=tick&limit=2".to_string();
    for _ in 0..10 {
        let r = h.get(&uri).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        let page = r.body["runs"].as_array().unwrap();
        assert!(page.len() <= 2);
        seen.extend(page.iter().map(|run| {
            assert_eq!(run["flow"], "tick");
            run["id"].as_str().unwrap().to_string()
        }));
        match r.body["next"].as_str() {
            Some(next) => {
                assert_eq!(page.last().unwrap()["id"], next);
                uri = format!("/v1/runs?flow=tick&limit=2&before={next}");
            }
            None => break,
        }
    }
    assert_eq!(seen.len(), 5, "{seen:?}");
    assert_eq!(seen.iter().cloned().collect::<HashSet<_>>(), started);
    let mut sorted = seen.clone();
    sorted.sort_by(|a, b| b.cmp(a));
    assert_eq!(seen, sorted, "newest first");

    let r = h.get("/v1/runs").await;
    assert_eq!(r.body["runs"].as_array().unwrap().len(), 6);
    assert_eq!(r.body["next"], Value::Null);

    for bad in [
        "/v1/runs?state=done",
        "/v1/runs?limit=0",
        "/v1/runs?limit=1001",
        "/v1/runs?limit=many",
        "/v1/runs?colour=red",
    ] {
        assert_error(&h.get(bad).await, StatusCode::BAD_REQUEST, "bad_request");
    }
    let r = h.get("/v1/runs?state=done").await;
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("succeeded"),
        "{}",
        r.body
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_a_run_waiting_on_a_delay() {
    let h = harness().await;
    let flow = "name: sleepy\nnodes:\n  nap:\n    type: delay\n    params: {duration: 1h}\n  after:\n    type: noop\n    needs: [nap]\n";
    assert_eq!(h.yaml(flow).await.status, StatusCode::CREATED);
    let id = h.start(json!({"flow": "sleepy"})).await;
    h.wait_run(&id, "waiting on its delay", |v| {
        node(v, "nap")["state"] == "pending"
    })
    .await;

    let r = h
        .send(
            Method::POST,
            &format!("/v1/runs/{id}/cancel"),
            &[],
            Body::empty(),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body, json!({"id": id, "state": "cancelled"}));

    let run = h.get(&format!("/v1/runs/{id}")).await.body;
    assert_eq!(run["state"], "cancelled");
    assert_eq!(node(&run, "nap")["state"], "cancelled");
    assert_eq!(node(&run, "after")["state"], "cancelled");

    let r = h
        .send(
            Method::POST,
            &format!("/v1/runs/{id}/cancel"),
            &[],
            Body::empty(),
        )
        .await;
    assert_error(&r, StatusCode::CONFLICT, "conflict");
    let r = h
        .send(Method::POST, "/v1/runs/nope/cancel", &[], Body::empty())
        .await;
    assert_error(&r, StatusCode::NOT_FOUND, "not_found");

    let r = h.get("/v1/runs?state=cancelled").await;
    assert_eq!(r.body["runs"][0]["id"], id);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_delayed_run_stays_queued_until_its_start() {
    let h = harness().await;
    h.yaml(NOOP_FLOW).await;
    let r = h
        .json(
            Method::POST,
            "/v1/runs",
            json!({"flow": "tick", "delay": "400ms"}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let id = r.body["id"].as_str().unwrap().to_string();
    let run = h.get(&format!("/v1/runs/{id}")).await.body;
    let start = node(&run, "a")["scheduled_at"]
        .as_i64()
        .expect("a start time");
    let created = run["created_at"].as_i64().unwrap();
    assert!(start >= created + 400, "start {start}, created {created}");
    // Nothing can have run before the start, so the run is still queued and its node pending.
    if weft_core::time::Clock::now_ms(&weft_core::time::SystemClock) < start {
        assert_eq!(run["state"], "queued", "{run}");
        assert_eq!(node(&run, "a")["state"], "pending", "{run}");
    }
    let done = h.wait_state(&id, "succeeded").await;
    let ran = node(&done, "a")["finished_at"].as_i64().unwrap();
    assert!(
        ran >= start,
        "the node ran at {ran}, before its start {start}"
    );

    // An RFC 3339 start time works the same way.
    let at = weft_core::time::rfc3339(created + 3_600_000);
    let r = h
        .json(
            Method::POST,
            "/v1/runs",
            json!({"flow": "tick", "start_at": at}),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
    let later = h
        .get(&format!("/v1/runs/{}", r.body["id"].as_str().unwrap()))
        .await
        .body;
    assert_eq!(later["state"], "queued");
    assert_eq!(
        node(&later, "a")["scheduled_at"],
        json!(created + 3_600_000)
    );

    for (body, field) in [
        (
            json!({"flow": "tick", "delay": "1s", "start_at": at}),
            "give start_at or delay",
        ),
        (json!({"flow": "tick", "delay": "soon"}), "delay"),
        (json!({"flow": "tick", "start_at": "tomorrow"}), "start_at"),
        (
            json!({"flow": "tick", "start_at": "2999-01-01T00:00:00Z"}),
            "start time",
        ),
    ] {
        let r = h.json(Method::POST, "/v1/runs", body.clone()).await;
        assert_error(&r, StatusCode::BAD_REQUEST, "bad_request");
        let message = r.body["error"]["message"].as_str().unwrap();
        assert!(message.starts_with(field), "{body}: {message}");
    }

    // In a batch, a bad start time fails only its own item.
    let batch = json!({"runs": [{"flow": "tick", "delay": "1h"}, {"flow": "tick", "delay": "x"}]});
    let r = h.json(Method::POST, "/v1/runs/batch", batch).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert!(r.body["runs"][0]["id"].is_string(), "{}", r.body);
    assert_eq!(
        r.body["runs"][1]["error"]["code"], "bad_request",
        "{}",
        r.body
    );
}

#[tokio::test]
async fn explain_says_why_a_run_waits() {
    let h = harness().await;
    h.yaml(NOOP_FLOW).await;
    let r = h
        .send(Method::POST, "/v1/queues/default/pause", &[], Body::empty())
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    let id = h.start(json!({"flow": "tick"})).await;
    let r = h.get(&format!("/v1/runs/{id}/explain")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.body);
    assert_eq!(r.body["run_id"], id);
    assert_eq!(r.body["progressing"], false, "{}", r.body);
    assert_eq!(r.body["reasons"][0]["node"], "a", "{}", r.body);
    assert_eq!(r.body["reasons"][0]["code"], "queue_paused", "{}", r.body);
    assert!(
        r.body["summary"]
            .as_str()
            .unwrap()
            .contains("queue default is paused"),
        "{}",
        r.body
    );
    assert_error(
        &h.get("/v1/runs/nope/explain").await,
        StatusCode::NOT_FOUND,
        "not_found",
    );
}
