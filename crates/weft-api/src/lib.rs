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
//! - `GET /v1/dlq?flow=&node=&limit=`, `POST /v1/dlq/{run_id}/{node}/replay`
//! - `GET /v1/queues`, `PUT /v1/queues/{name}`

mod error;
mod extract;
mod handlers;

pub use handlers::runs::IDEMPOTENCY_HEADER;
pub use handlers::{DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT};

use axum::extract::DefaultBodyLimit;
use axum::http::{Method, StatusCode, Uri};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use error::ApiError;
use handlers::{dlq, flows, queues, runs};
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
}

impl Default for ApiOptions {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

/// The API's routes over `engine`.
pub fn router(engine: Engine, opts: ApiOptions) -> Router {
    Router::new()
        .route("/health", get(health))
        .route("/v1/nodes", get(catalog))
        .route("/v1/flows", post(flows::apply).get(flows::list))
        .route("/v1/flows/{name}", get(flows::get))
        .route("/v1/runs", post(runs::start).get(runs::list))
        .route("/v1/runs/{id}", get(runs::get))
        .route("/v1/runs/{id}/cancel", post(runs::cancel))
        .route("/v1/dlq", get(dlq::list))
        .route("/v1/dlq/{run_id}/{node}/replay", post(dlq::replay))
        .route("/v1/queues", get(queues::list))
        .route("/v1/queues/{name}", put(queues::set))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(opts.max_body_bytes))
        .layer(TraceLayer::new_for_http())
        .with_state(engine)
}

async fn health() -> Json<Value> {
    Json(json!({ "status": "ok" }))
}

#[derive(serde::Serialize)]
struct Catalog {
    nodes: Vec<CatalogEntry>,
}

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
