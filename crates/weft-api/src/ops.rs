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

/// `GET /v1/cluster`: this node, the cluster's leader when processes share the database
/// (`leader` is null outside a cluster, or while nobody holds the lease), every member with
/// its pool size, readiness and clock skew against the database, and the store's connection
/// limit, so an operator (or `weft validate`) can check the deployment from one address.
/// A member whose `heartbeat_age_ms` exceeds `lease_ms` has missed three beats.
/// `now_ms` is this node's clock, to compare with the caller's. `store` is null when the
/// store does not answer. `weft up` is one process holding every role.
#[utoipa::path(get, path = "/v1/cluster", tag = "ops",
    responses((status = 200, body = serde_json::Value,
        description = "`{node_id, mode: single | cluster, roles, ready, is_leader, leader: {node_id, lease_until_ms} | null, version, uptime_s, now_ms, lease_ms (null outside a cluster; members beat every third of it), load: {inflight, ready, http_inflight}, store: {kind, pool_size, max_connections, reserved_connections, usable_connections, now_ms} | null, members: [{roles, id, hostname, pid, queues, started_at, heartbeat_age_ms, load, all_queues, pool_size, ready, clock_skew_ms}]}`"),
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
    let store = match gw.engine.store_facts().await {
        Ok(f) => {
            let usable = f
                .max_connections
                .map(|max| max.saturating_sub(f.reserved_connections.unwrap_or(0)));
            json!({
                "kind": f.kind,
                "pool_size": f.pool_size,
                "max_connections": f.max_connections,
                "reserved_connections": f.reserved_connections,
                "usable_connections": usable,
                "now_ms": f.now,
            })
        }
        Err(e) => {
            tracing::warn!(error = %e, "cannot read the store's facts");
            Value::Null
        }
    };
    let members = match gw.engine.members().await {
        Ok(m) => json!(m),
        Err(e) => {
            tracing::warn!(error = %e, "cannot list the cluster's members");
            Value::Null
        }
    };
    Json(json!({
        "node_id": gw.engine.node_id(),
        "mode": if gw.engine.in_cluster() { "cluster" } else { "single" },
        "roles": gw.engine.roles(),
        "ready": !gw.engine.is_draining(),
        "is_leader": gw.engine.is_leader(),
        "leader": leader,
        "version": env!("CARGO_PKG_VERSION"),
        "uptime_s": gw.started.elapsed().as_secs(),
        "now_ms": gw.engine.now_ms(),
        "lease_ms": gw.engine.lease().map(|l| l.as_millis() as u64),
        "load": {
            "inflight": gw.engine.inflight(),
            "ready": ready,
            "http_inflight": gw.http_inflight(),
        },
        "store": store,
        "members": members,
    }))
}
