//! The gateway's protections end to end: API keys and roles, rate limits, load shedding,
//! request timeouts and the operations endpoints, over a real engine and a real SQLite store
//! in a temp dir per test. Requests go through `oneshot`; a client address is given the way
//! `into_make_service_with_connect_info` gives it, as a `ConnectInfo` extension.

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

#[tokio::test]
async fn without_keys_everything_is_open() {
    let h = harness_with(ApiOptions::default()).await;
    let r = h.send(req(Method::POST, "/v1/flows").yaml(FLOW)).await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .send(req(Method::POST, "/v1/runs").json(start_body()))
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    assert_eq!(
        h.send(req(Method::GET, "/v1/flows")).await.status,
        StatusCode::OK
    );
}

#[tokio::test]
async fn keys_turn_auth_on_and_roles_limit_what_each_may_do() {
    let h = harness_with(ApiOptions::default()).await;
    h.engine.flow_apply(FLOW).await.unwrap();
    let (viewer, _) = h.key(ApiRole::Viewer).await;
    let (operator, _) = h.key(ApiRole::Operator).await;
    let (admin, _) = h.key(ApiRole::Admin).await;
    h.wait_key(&admin).await;

    // No key, a wrong key, a malformed key: 401 with a Bearer challenge.
    let r = h.send(req(Method::GET, "/v1/flows")).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    assert_eq!(header(&r, "www-authenticate"), "Bearer");
    let forged = format!("{}0", &viewer[..viewer.len() - 1]);
    let r = h.send(req(Method::GET, "/v1/flows").key(&forged)).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    let r = h.send(req(Method::GET, "/v1/flows").key("garbage")).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
    // An unauthorized start starts nothing.
    let r = h
        .send(req(Method::POST, "/v1/runs").json(start_body()))
        .await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");

    // Probes need no key.
    for path in ["/health", "/ready", "/metrics"] {
        let r = h.send(req(Method::GET, path)).await;
        assert_eq!(r.status, StatusCode::OK, "{path}: {}", r.text);
    }

    // Viewer: reads only; its start is refused before the handler runs.
    let r = h.send(req(Method::GET, "/v1/flows").key(&viewer)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = h
        .send(
            req(Method::POST, "/v1/runs")
                .key(&viewer)
                .json(start_body()),
        )
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("operator"),
        "{}",
        r.text
    );
    assert_eq!(h.run_count().await, 0, "a refused start created a run");

    // Operator: starts runs, but may not apply flows.
    let r = h
        .send(
            req(Method::POST, "/v1/runs")
                .key(&operator)
                .json(start_body()),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .send(req(Method::POST, "/v1/flows").key(&operator).yaml(FLOW))
        .await;
    assert_error(&r, StatusCode::FORBIDDEN, "forbidden");
    assert!(
        r.body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("admin"),
        "{}",
        r.text
    );

    // Admin: everything.
    let r = h
        .send(
            req(Method::POST, "/v1/flows")
                .key(&admin)
                .yaml("name: other\nnodes:\n  b:\n    type: noop\n"),
        )
        .await;
    assert_eq!(r.status, StatusCode::CREATED, "{}", r.text);
    let r = h
        .send(
            req(Method::PUT, "/v1/queues/q")
                .key(&admin)
                .json(json!({"concurrency": 3})),
        )
        .await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = h.send(req(Method::GET, "/v1/cluster").key(&viewer)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    assert_eq!(h.run_count().await, 1);
}

#[tokio::test]
async fn a_revoked_key_stops_working() {
    let h = harness_with(ApiOptions::default()).await;
    let (admin, _) = h.key(ApiRole::Admin).await;
    let (viewer, viewer_id) = h.key(ApiRole::Viewer).await;
    h.wait_key(&viewer).await;
    let r = h.send(req(Method::GET, "/v1/flows").key(&viewer)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    h.store.apikey_revoke(&viewer_id, 2).await.unwrap();
    // The key cache refreshes within KEY_REFRESH.
    let end = tokio::time::Instant::now() + DEADLINE;
    loop {
        let r = h.send(req(Method::GET, "/v1/flows").key(&viewer)).await;
        if r.status == StatusCode::UNAUTHORIZED {
            break;
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(
            tokio::time::Instant::now() < end,
            "revoked key still accepted"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let r = h.send(req(Method::GET, "/v1/flows").key(&admin)).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
}

fn tight(per_ip: Option<Rate>, per_key: Option<Rate>) -> ApiOptions {
    ApiOptions {
        limits: Limits {
            per_ip,
            per_key,
            ..Limits::default()
        },
        ..ApiOptions::default()
    }
}

/// Sends until a 429 comes back; returns it and how many got through first.
async fn until_limited(h: &Harness, make: impl Fn() -> Req<'static>) -> (usize, Resp) {
    for ok in 0..100 {
        let r = h.send(make()).await;
        if r.status == StatusCode::TOO_MANY_REQUESTS {
            return (ok, r);
        }
        assert_eq!(r.status, StatusCode::OK, "{}", r.text);
        assert!(
            r.headers.contains_key("ratelimit-remaining"),
            "{:?}",
            r.headers
        );
    }
    panic!("never rate limited");
}

async fn wait_allowed(h: &Harness, make: impl Fn() -> Req<'static>) {
    let end = tokio::time::Instant::now() + DEADLINE;
    while h.send(make()).await.status != StatusCode::OK {
        assert!(tokio::time::Instant::now() < end, "limit never recovered");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

#[tokio::test]
async fn per_ip_limit_answers_429_and_recovers() {
    let h = harness_with(tight(Some("5/s".parse().unwrap()), None)).await;
    let a = || req(Method::GET, "/v1/flows").ip("10.0.0.1");
    let (passed, r) = until_limited(&h, a).await;
    assert_eq!(passed, 5, "the burst is 5");
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert_eq!(header(&r, "retry-after"), "1");
    assert_eq!(header(&r, "ratelimit-limit"), "5");
    assert_eq!(header(&r, "ratelimit-remaining"), "0");
    assert!(header(&r, "ratelimit-reset").parse::<u64>().unwrap() >= 1);
    // Another address has its own bucket; probes are never limited.
    let r = h.send(req(Method::GET, "/v1/flows").ip("10.0.0.2")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    let r = h.send(req(Method::GET, "/health").ip("10.0.0.1")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    wait_allowed(&h, a).await;
}

#[tokio::test]
async fn per_key_limit_answers_429_and_recovers() {
    let h = harness_with(tight(None, Some("3/s".parse().unwrap()))).await;
    let (k1, _) = h.key(ApiRole::Viewer).await;
    let (k2, _) = h.key(ApiRole::Viewer).await;
    h.wait_key(&k2).await;
    let k1: &'static str = Box::leak(k1.into_boxed_str());
    let k2: &'static str = Box::leak(k2.into_boxed_str());
    let with_k1 = || req(Method::GET, "/v1/flows").key(k1);
    let (passed, r) = until_limited(&h, with_k1).await;
    assert_eq!(passed, 3);
    assert_error(&r, StatusCode::TOO_MANY_REQUESTS, "rate_limited");
    assert!(r.headers.contains_key("retry-after"));
    assert_eq!(header(&r, "ratelimit-limit"), "3");
    let r = h.send(req(Method::GET, "/v1/flows").key(k2)).await;
    assert_eq!(
        r.status,
        StatusCode::OK,
        "the other key is not limited: {}",
        r.text
    );
    wait_allowed(&h, with_k1).await;
}

/// A body that never arrives: the handler waits for it, holding its request open.
fn stalled_body() -> Body {
    Body::from_stream(futures::stream::pending::<Result<Bytes, std::io::Error>>())
}

#[tokio::test]
async fn past_max_inflight_requests_are_shed_with_503() {
    let h = harness_with(ApiOptions {
        max_inflight_requests: 1,
        ..ApiOptions::default()
    })
    .await;
    let hold = || {
        let held = req(Method::POST, "/v1/flows")
            .yaml("")
            .build(stalled_body());
        tokio::spawn(h.app.clone().oneshot(held))
    };
    let mut holder = hold();
    let end = tokio::time::Instant::now() + DEADLINE;
    let r = loop {
        tokio::task::yield_now().await;
        if holder.is_finished() {
            // The probe held the only slot when the holder arrived: the holder was shed.
            holder = hold();
            continue;
        }
        let r = h.send(req(Method::GET, "/v1/nodes")).await;
        if r.status != StatusCode::OK {
            break r;
        }
        assert!(tokio::time::Instant::now() < end, "never shed");
    };
    assert_error(&r, StatusCode::SERVICE_UNAVAILABLE, "overloaded");
    assert_eq!(header(&r, "retry-after"), "1");
    // Liveness and metrics are not shed.
    assert_eq!(
        h.send(req(Method::GET, "/health")).await.status,
        StatusCode::OK
    );
    assert_eq!(
        h.send(req(Method::GET, "/metrics")).await.status,
        StatusCode::OK
    );
    holder.abort();
    let _ = holder.await;
    wait_allowed(&h, || req(Method::GET, "/v1/flows")).await;
}

#[tokio::test]
async fn slow_requests_time_out_with_503() {
    let h = harness_with(ApiOptions {
        request_timeout: Duration::from_millis(50),
        ..ApiOptions::default()
    })
    .await;
    let stalled = req(Method::POST, "/v1/flows")
        .yaml("")
        .build(stalled_body());
    let resp = h.app.clone().oneshot(stalled).await.unwrap();
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let bytes = axum::body::to_bytes(resp.into_body(), usize::MAX)
        .await
        .unwrap();
    let body: Value = serde_json::from_slice(&bytes).unwrap();
    assert_eq!(body["error"]["code"], "timeout", "{body}");
}

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
}

#[tokio::test]
async fn a_served_router_limits_by_the_socket_peer() {
    let h = harness_with(tight(Some("3/s".parse().unwrap()), None)).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let app = h
        .app
        .clone()
        .into_make_service_with_connect_info::<SocketAddr>();
    let server = tokio::spawn(async move { axum::serve(listener, app).await });
    let client = reqwest::Client::new();
    let url = format!("http://{addr}/v1/flows");
    let mut statuses = Vec::new();
    for _ in 0..4 {
        let r = client.get(&url).send().await.unwrap();
        statuses.push(r.status().as_u16());
        if r.status() == 429 {
            assert_eq!(r.headers()["retry-after"], "1");
            assert_eq!(r.headers()["ratelimit-limit"], "3");
        }
    }
    assert_eq!(statuses, [200, 200, 200, 429]);
    // The oneshot requests above came from no socket: a different bucket.
    let r = h.send(req(Method::GET, "/v1/flows")).await;
    assert_eq!(r.status, StatusCode::OK, "{}", r.text);
    server.abort();
}

#[tokio::test]
async fn the_first_key_turns_auth_on_even_without_traffic() {
    let h = harness_with(ApiOptions::default()).await;
    let r = h.send(req(Method::GET, "/v1/flows")).await;
    assert_eq!(r.status, StatusCode::OK, "open while no key exists");
    h.key(ApiRole::Admin).await;
    // No request in between: the key set must be refreshed by time alone, so that the very
    // next request is already refused. (This waits on purpose: time is what is tested.)
    tokio::time::sleep(weft_api::KEY_REFRESH * 2 + Duration::from_millis(200)).await;
    let r = h.send(req(Method::GET, "/v1/flows")).await;
    assert_error(&r, StatusCode::UNAUTHORIZED, "unauthorized");
}
