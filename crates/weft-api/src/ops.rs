//! Operations endpoints: `/ready` for load balancers, `/metrics` for Prometheus and
//! `/v1/cluster` for people asking which node they reached. `/ready` and `/metrics` need no
//! key, so they say nothing a stranger should not know: no paths, no errors' text, no keys.

use crate::gateway::Gateway;
use crate::metrics;
use crate::openapi::ErrorBody;
use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{Value, json};
use std::sync::Arc;

/// The operations routes, for merging into the API's router.
pub(crate) fn routes<S>(gw: Arc<Gateway>) -> Router<S> {
    Router::new()
        .route("/ready", get(ready))
        .route("/metrics", get(prometheus))
        .route("/v1/cluster", get(cluster))
        .with_state(gw)
}

/// `GET /ready`: 200 when the store answers, its schema is this build's and the engine is
/// not draining; otherwise 503 with every reason.
#[utoipa::path(get, path = "/ready", tag = "ops",
    responses((status = 200, body = serde_json::Value, description = "`{\"status\": \"ready\"}`"),
        (status = 503, body = ErrorBody, description = "not ready; also carries `status` and `reasons`")))]
pub(crate) async fn ready(State(gw): State<Arc<Gateway>>) -> Response {
    let mut reasons = Vec::new();
    if gw.engine.is_draining() {
        reasons.push("draining: the server is shutting down".to_string());
    }
    match gw.engine.schema_version().await {
        Ok(v) if v.found == v.expected => {}
        Ok(v) => reasons.push(format!(
            "schema: the database is at version {}, this build needs {}",
            v.found, v.expected
        )),
        Err(e) => {
            tracing::warn!(error = %e, "readiness: the store did not answer");
            reasons.push("store: not answering".to_string());
        }
    }
    if reasons.is_empty() {
        return Json(json!({"status": "ready"})).into_response();
    }
    let details: Vec<Value> = reasons
        .iter()
        .map(|r| json!({"path": "", "message": r}))
        .collect();
    let body = json!({
        "status": "not_ready",
        "reasons": reasons,
        "error": {"code": "not_ready", "message": "not ready to serve requests", "details": details},
    });
    (StatusCode::SERVICE_UNAVAILABLE, Json(body)).into_response()
}

/// `GET /metrics`: Prometheus text format.
#[utoipa::path(get, path = "/metrics", tag = "ops",
    responses((status = 200, body = String, content_type = "text/plain", description = "Prometheus text format")))]
pub(crate) async fn prometheus(State(gw): State<Arc<Gateway>>) -> Response {
    let text = metrics::render(&gw.engine, gw.http_inflight());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// `GET /v1/cluster`: this node, and the cluster's leader when processes share the database
/// (`leader` is null outside a cluster, or while nobody holds the lease). `weft up` is one
/// process holding every role; `weft serve` reports the roles it was given.
#[utoipa::path(get, path = "/v1/cluster", tag = "ops",
    responses((status = 200, body = serde_json::Value,
        description = "`{node_id, roles, is_leader, leader: {node_id, lease_until_ms} | null, version, uptime_s, load: {inflight, ready, http_inflight}}`"),
        (status = 401, body = ErrorBody)))]
pub(crate) async fn cluster(State(gw): State<Arc<Gateway>>) -> Json<Value> {
    let ready: usize = gw.engine.queue_list().iter().map(|q| q.ready).sum();
    let leader = match gw.engine.leader().await {
        Ok(Some((node_id, until))) => json!({"node_id": node_id, "lease_until_ms": until}),
        Ok(None) => Value::Null,
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the leader lease");
            Value::Null
        }
    };
    Json(json!({
        "node_id": gw.engine.node_id(),
        "roles": ["gateway", "orchestrator", "worker"],
        "is_leader": gw.engine.is_leader(),
        "leader": leader,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": gw.started.elapsed().as_secs(),
        "load": {
            "inflight": gw.engine.inflight(),
            "ready": ready,
            "http_inflight": gw.http_inflight(),
        },
    }))
}
