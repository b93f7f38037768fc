//! weft's JSON HTTP API over [`weft_engine::Engine`].
//!
//! [`router`] builds the routes and nothing else: it binds no socket, so the binary serves
//! it and tests call it with `tower::ServiceExt::oneshot`. Every failure — from the engine,
//! an extractor, an unknown route or method — answers in one shape:
//! `{"error": {"code": "...", "message": "...", "details": [...]}}` (see `error.rs`).
//!
//! Routes:
//! - `GET /health`
//! - `GET /v1/nodes` — the node catalog
//! - `POST /v1/flows` (JSON or YAML document), `GET /v1/flows`, `GET /v1/flows/{name}?version=`
//! - `POST /v1/runs`, `GET /v1/runs?flow=&state=&limit=&before=`, `GET /v1/runs/{id}`,
//!   `POST /v1/runs/{id}/cancel`
//! - `GET /v1/dlq?flow=&node=&error=&dead_after=&dead_before=&limit=&before=`,
//!   `POST /v1/dlq/{run_id}/{node}/replay`, `POST /v1/dlq/replay`, `POST /v1/dlq/discard`
//! - `GET /v1/queues`, `PUT /v1/queues/{name}`
//! - `GET /v1/limits`, `PUT /v1/limits/{key}`, `DELETE /v1/limits/{key}`
//! - `POST /v1/schedules` (JSON or YAML document), `GET /v1/schedules`,
//!   `GET /v1/schedules/{name}?next=`, `DELETE /v1/schedules/{name}`,
//!   `POST /v1/schedules/{name}/pause|resume|trigger`
//! - `GET /ready`, `GET /metrics`, `GET /v1/cluster` (see `ops.rs`)
//! - `GET /v1/keys`, `POST /v1/keys`, `DELETE /v1/keys/{id}` (admins; see `apikeys.rs`)
//!
//! - `GET /v1/events?run=&flow=&types=&since=` (SSE), `GET /v1/events/ws` (WebSocket)
//!
//! and the rest of the v1 API listed in the README; `GET /v1/openapi.json` describes every
//! route (see `openapi.rs` for how to annotate a new one).
//!
//! Every route is wrapped in the gateway's protections — API keys and roles, rate limits,
//! load shedding and a request timeout — described in `gateway.rs`.

mod apikeys;
mod auth;
mod error;
mod events;
mod extract;
mod gateway;
mod handlers;
pub mod limits;
mod metrics;
mod openapi;
mod ops;

pub use auth::{IssuedKey, KEY_REFRESH, issue_key};
pub use handlers::batch::MAX_BATCH;
pub use handlers::runs::IDEMPOTENCY_HEADER;
pub use handlers::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};
pub use openapi::spec_json as openapi_spec;

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use error::ApiError;
use handlers::{batch, breakers, dlq, flows, key_limits, queues, runs, schedules, workers};
use serde_json::{Value, json};
use tower_http::trace::TraceLayer;
use weft_engine::{CatalogEntry, Engine};

/// Largest request body accepted by default: 2 MiB. The largest flow document and the
/// largest run input are 1 MiB each (checked with their own messages); the headroom lets a
/// maximal document or input arrive wrapped in its JSON envelope.
pub const DEFAULT_MAX_BODY_BYTES: usize = 2 * weft_core::MAX_FLOW_BYTES;

/// How the API behaves.
#[derive(Debug, Clone)]
pub struct ApiOptions {
    /// Largest request body, in bytes; larger bodies get 413 `body_too_large`.
    /// Default [`DEFAULT_MAX_BODY_BYTES`] (2 MiB).
    pub max_body_bytes: usize,
    /// Rate limits per client IP, per API key and per endpoint class (429 `rate_limited`).
    /// Default [`limits::Limits::default`].
    pub limits: limits::Limits,
    /// Longest a request may take before it gets 503 `timeout`.
    /// Default [`DEFAULT_REQUEST_TIMEOUT`] (30 s).
    pub request_timeout: std::time::Duration,
    /// Requests answered at once; more get 503 `overloaded` at once.
    /// Default [`DEFAULT_MAX_INFLIGHT_REQUESTS`].
    pub max_inflight_requests: usize,
    /// Take the client IP from `X-Forwarded-For` (the last entry) instead of the socket peer.
    /// Only for a server behind a proxy that sets it. Default false.
    pub trust_proxy: bool,
}

/// Default request timeout: 30 s.
pub const DEFAULT_REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);
/// Default bound on requests answered at once.
pub const DEFAULT_MAX_INFLIGHT_REQUESTS: usize = 1024;

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
            limits: limits::Limits::default(),
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
            max_inflight_requests: DEFAULT_MAX_INFLIGHT_REQUESTS,
            trust_proxy: false,
        }
    }
}

/// The API's routes over `engine`.
///
/// Serve it with `into_make_service_with_connect_info::<SocketAddr>()` so that per-IP
/// rate limits see the client's address; without it every client shares one bucket.
pub fn router(engine: Engine, opts: ApiOptions) -> Router {
    let gw = gateway::Gateway::new(engine.clone(), &opts);
    let routes = Router::new()
        .route("/health", get(health))
        .route("/v1/nodes", get(catalog))
        .route("/v1/flows", post(flows::apply).get(flows::list))
        .route("/v1/flows/{name}", get(flows::get).delete(flows::delete))
        .route("/v1/flows/{name}/versions", get(flows::versions))
        .route("/v1/flows/{name}/versions/{version}", get(flows::version))
        .route("/v1/flows/{name}/diff", get(flows::diff))
        .route("/v1/runs", post(runs::start).get(runs::list))
        .route("/v1/runs/batch", post(batch::start))
        .route("/v1/runs/batch/cancel", post(batch::cancel))
        .route("/v1/runs/{id}", get(runs::get))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/runs/{id}/retry", post(runs::retry))
        .route("/v1/runs/{id}/tasks", get(runs::tasks))
        .route("/v1/runs/{id}/explain", get(runs::explain))
        .route("/v1/dlq", get(dlq::list))
        .route("/v1/dlq/replay", post(dlq::replay_many))
        .route("/v1/dlq/discard", post(dlq::discard_many))
        .route(
            "/v1/dlq/{run_id}/{node}",
            get(dlq::show).delete(dlq::discard),
        )
        .route("/v1/dlq/{run_id}/{node}/replay", post(dlq::replay))
        .route("/v1/queues", get(queues::list))
        .route("/v1/queues/{name}", put(queues::set))
        .route("/v1/queues/{name}/pause", post(queues::pause))
        .route("/v1/queues/{name}/resume", post(queues::resume))
        .route("/v1/limits", get(key_limits::list))
        .route(
            "/v1/limits/{key}",
            put(key_limits::set).delete(key_limits::clear),
        )
        .route("/v1/workers", get(workers::list))
        .route("/v1/schedules", post(schedules::apply).get(schedules::list))
        .route(
            "/v1/schedules/{name}",
            get(schedules::get).delete(schedules::delete),
        )
        .route("/v1/schedules/{name}/pause", post(schedules::pause))
        .route("/v1/schedules/{name}/resume", post(schedules::resume))
        .route("/v1/schedules/{name}/trigger", post(schedules::trigger))
        .route("/v1/breakers", get(breakers::list))
        .route("/v1/openapi.json", get(openapi::spec))
        .route("/v1/events", get(events::sse))
        .route("/v1/events/ws", get(events::ws))
        .merge(ops::routes(gw.clone()))
        .merge(apikeys::routes(gw.clone()))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(opts.max_body_bytes));
    gateway::protect(routes, gw)
        .layer(TraceLayer::new_for_http())
        .with_state(engine)
}

/// `GET /health`: the process is alive. Once its workers have circuit breakers, `details`
/// counts them by state and names the targets whose breaker is not closed (this process's
/// breakers only; `GET /v1/breakers` has the full list).
#[utoipa::path(get, path = "/health", tag = "ops",
    responses((status = 200, body = openapi::HealthDoc)))]
async fn health(axum::extract::State(engine): axum::extract::State<Engine>) -> Json<Value> {
    use weft_engine::nodes::breaker::CircuitState;
    let breakers: Vec<_> = engine
        .breakers()
        .into_iter()
        .filter(|b| b.failure_threshold > 0)
        .collect();
    if breakers.is_empty() {
        return Json(json!({ "status": "ok" }));
    }
    let count = |s: CircuitState| breakers.iter().filter(|b| b.state == s).count();
    let not_closed: Vec<Value> = breakers
        .iter()
        .filter(|b| b.state != CircuitState::Closed)
        .map(|b| json!({"target": b.target, "state": b.state, "next_probe_at": b.next_probe_at}))
        .collect();
    Json(json!({
        "status": "ok",
        "details": {"breakers": {
            "closed": count(CircuitState::Closed),
            "half_open": count(CircuitState::HalfOpen),
            "open": count(CircuitState::Open),
            "not_closed": not_closed,
        }},
    }))
}

#[derive(serde::Serialize)]
struct Catalog {
    nodes: Vec<CatalogEntry>,
}

/// `GET /v1/nodes`: the node catalog with each type's params JSON Schema.
#[utoipa::path(get, path = "/v1/nodes", tag = "flows",
    responses((status = 200, body = openapi::CatalogDoc)))]
async fn catalog() -> Json<Catalog> {
    Json(Catalog {
        nodes: Engine::catalog(),
    })
}

async fn not_found(uri: Uri) -> ApiError {
    ApiError::not_found(format!("no route for {}", uri.path()))
}

async fn method_not_allowed(method: Method, uri: Uri) -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "method_not_allowed",
        format!("{method} is not allowed on {}", uri.path()),
    )
}
