//! The gateway's protections end to end: API keys and roles, rate limits, load shedding,
//! request timeouts and the operations endpoints, over a real engine and a real SQLite store
//! in a temp dir per test. Requests go through `oneshot`; a client address is given the way
//! `into_make_service_with_connect_info` gives it, as a `ConnectInfo` extension.
//!
//! This file holds the harness; the tests live in `gateway/`, one module per concern.

#[path = "gateway/auth.rs"]
mod auth;
#[path = "gateway/limits.rs"]
mod limits;
#[path = "gateway/ops.rs"]
mod ops;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::ConnectInfo;
use axum::http::{HeaderMap, Method, Request, StatusCode};
use serde_json::{Value, json};
use std::net::SocketAddr;
use std::time::Duration;
use tower::ServiceExt;
use weft_api::ApiOptions;
use weft_api::limits::{Limits, Rate};
use weft_store::{ApiRole, DynStore};

/// How long a test waits for something that must happen.
const DEADLINE: Duration = Duration::from_secs(10);
const FLOW: &str = "name: tick\nnodes:\n  a:\n    type: noop\n";

struct Harness {
    app: Router,
    engine: weft_engine::Engine,
    store: DynStore,
    _dir: tempfile::TempDir,
}

async fn harness_with(opts: ApiOptions) -> Harness {
    let dir = tempfile::tempdir().unwrap();
    let store: DynStore =
        weft_store_sqlite::SqliteStore::open(dir.path(), Default::default()).unwrap();
    let engine = weft_engine::Engine::start(store.clone(), Default::default())
        .await
        .unwrap();
    Harness {
        app: weft_api::router(engine.clone(), opts),
        engine,
        store,
        _dir: dir,
    }
}

struct Resp {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
    text: String,
}

struct Req<'a> {
    method: Method,
    uri: &'a str,
    key: Option<&'a str>,
    ip: Option<&'a str>,
    body: Option<(&'static str, String)>,
}

fn req(method: Method, uri: &str) -> Req<'_> {
    Req {
        method,
        uri,
        key: None,
        ip: None,
        body: None,
    }
}

impl<'a> Req<'a> {
    fn key(mut self, key: &'a str) -> Self {
        self.key = Some(key);
        self
    }
    fn ip(mut self, ip: &'a str) -> Self {
        self.ip = Some(ip);
        self
    }
    fn json(mut self, v: Value) -> Self {
        self.body = Some(("application/json", v.to_string()));
        self
    }
    fn yaml(mut self, text: &str) -> Self {
        self.body = Some(("application/yaml", text.to_string()));
        self
    }
    fn build(self, body: Body) -> Request<Body> {
        let mut r = Request::builder().method(self.method).uri(self.uri);
        if let Some(k) = self.key {
            r = r.header("authorization", format!("Bearer {k}"));
        }
        if let Some((ct, _)) = &self.body {
            r = r.header("content-type", *ct);
        }
        let mut r = r.body(body).unwrap();
        if let Some(ip) = self.ip {
            let addr: SocketAddr = format!("{ip}:40000").parse().unwrap();
            r.extensions_mut().insert(ConnectInfo(addr));
        }
        r
    }
}

impl Harness {
    async fn send(&self, r: Req<'_>) -> Resp {
        let body = r.body.as_ref().map(|(_, b)| b.clone()).unwrap_or_default();
        let resp = self
            .app
            .clone()
            .oneshot(r.build(body.into()))
            .await
            .unwrap();
        let status = resp.status();
        let headers = resp.headers().clone();
        let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
            .await
            .unwrap();
        let text = String::from_utf8_lossy(&bytes).into_owned();
        let body = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        Resp {
            status,
            headers,
            body,
            text,
        }
    }

    /// Stores a new key and returns its token.
    async fn key(&self, role: ApiRole) -> (String, String) {
        let k = weft_api::issue_key(role, Some(format!("{role} key")), 1);
        self.store.apikey_create(&k.record).await.unwrap();
        (k.token, k.record.id)
    }

    /// Waits until the router has seen `key` and every key created before it (it re-reads
    /// them every `KEY_REFRESH`).
    async fn wait_key(&self, key: &str) {
        let end = tokio::time::Instant::now() + DEADLINE;
        loop {
            // With no key loaded, auth is off and any header is ignored: check both.
            let without = self.send(req(Method::GET, "/v1/nodes")).await.status;
            let with = self
                .send(req(Method::GET, "/v1/nodes").key(key))
                .await
                .status;
            if without == StatusCode::UNAUTHORIZED && with == StatusCode::OK {
                return;
            }
            assert!(
                tokio::time::Instant::now() < end,
                "the key never took effect"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    async fn run_count(&self) -> usize {
        self.engine
            .run_list(&weft_store::RunFilter {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap()
            .len()
    }
}

fn assert_error(r: &Resp, status: StatusCode, code: &str) {
    assert_eq!(r.status, status, "{}", r.text);
    assert_eq!(r.body["error"]["code"], code, "{}", r.text);
    assert!(r.body["error"]["details"].is_array(), "{}", r.text);
}

fn header<'a>(r: &'a Resp, name: &str) -> &'a str {
    r.headers
        .get(name)
        .unwrap_or_else(|| panic!("no {name} header: {:?}", r.headers))
        .to_str()
        .unwrap()
}

fn start_body() -> Value {
    json!({"flow": "tick", "input": {}})
}
