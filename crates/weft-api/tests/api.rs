//! The API end to end: real router, real engine, real SQLite store in a temp dir per test.
//! Requests go through `oneshot`, so no socket is bound except for the `http` node's target.
//!
//! This file holds the harness; the tests live in `api/`, one module per resource.

#[path = "api/batch.rs"]
mod batch;
#[path = "api/breakers.rs"]
mod breakers;
#[path = "api/dlq.rs"]
mod dlq;
#[path = "api/flows.rs"]
mod flows;
#[path = "api/key_limits.rs"]
mod key_limits;
#[path = "api/manage.rs"]
mod manage;
#[path = "api/openapi.rs"]
mod openapi;
#[path = "api/queues.rs"]
mod queues;
#[path = "api/runs.rs"]
mod runs;
#[path = "api/schedules.rs"]
mod schedules;

use axum::Router;
use axum::body::Body;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::Value;
use std::time::Duration;
use tower::ServiceExt;
use weft_api::ApiOptions;

/// How long a test waits for a run to reach a state.
const DEADLINE: Duration = Duration::from_secs(10);

struct Harness {
    app: Router,
    _dir: tempfile::TempDir,
}

async fn harness_with(opts: ApiOptions) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store = weft_store_sqlite::SqliteStore::open(dir.path(), Default::default()).unwrap();
    let engine = weft_engine::Engine::start(store, weft_engine::EngineConfig::default())
        .await
        .unwrap();
    Harness {
        app: weft_api::router(engine, opts),
        _dir: dir,
    }
}

async fn harness() -> Harness {
    harness_with(ApiOptions::default()).await
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl Harness {
    async fn send(
        &self,
        method: Method,
        uri: &str,
        headers: &[(&str, &str)],
        body: impl Into<Body>,
    ) -> Resp {
        let mut req = Request::builder().method(method).uri(uri);
        for (k, v) in headers {
            req = req.header(*k, *v);
        }
        let resp = self
            .app
            .clone()
            .oneshot(req.body(body.into()).unwrap())
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let body = if bytes.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                panic!(
                    "{uri}: response is not JSON ({e}): {}",
                    String::from_utf8_lossy(&bytes)
                )
            })
        };
        Resp {
            status,
            headers,
            body,
        }
    }

    async fn get(&self, uri: &str) -> Resp {
        self.send(Method::GET, uri, &[], Body::empty()).await
    }

    async fn json(&self, method: Method, uri: &str, body: Value) -> Resp {
        let ct = [("content-type", "application/json")];
        self.send(method, uri, &ct, body.to_string()).await
    }

    async fn yaml(&self, text: &str) -> Resp {
        let ct = [("content-type", "application/yaml")];
        self.send(Method::POST, "/v1/flows", &ct, text.to_string())
            .await
    }

    async fn start(&self, body: Value) -> String {
        let r = self.json(Method::POST, "/v1/runs", body).await;
        assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        r.body["id"].as_str().unwrap().to_string()
    }

    /// Polls a run until `done` holds, failing after [`DEADLINE`].
    async fn wait_run(&self, id: &str, what: &str, done: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + DEADLINE;
        loop {
            let r = self.get(&format!("/v1/runs/{id}")).await;
            assert_eq!(r.status, StatusCode::OK, "{}", r.body);
            if done(&r.body) {
                return r.body;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "run {id} did not become {what} within {DEADLINE:?}: {}",
                r.body
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn wait_state(&self, id: &str, state: &str) -> Value {
        self.wait_run(id, state, |v| v["state"] == state).await
    }
}

/// Asserts the error shape and returns the error object.
fn assert_error(r: &Resp, status: StatusCode, code: &str) -> Value {
    assert_eq!(r.status, status, "{}", r.body);
    let err = &r.body["error"];
    assert_eq!(err["code"], code, "{}", r.body);
    assert!(
        err["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{}",
        r.body
    );
    assert!(err["details"].is_array(), "{}", r.body);
    err.clone()
}

fn node<'a>(run: &'a Value, name: &str) -> &'a Value {
    run["nodes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|n| n["node"] == name)
        .unwrap_or_else(|| panic!("no node {name} in {run}"))
}

const NOOP_FLOW: &str = "name: tick\nnodes:\n  a:\n    type: noop\n";
