//! `weft serve --role ...`: one process of a weft cluster. Gateways, orchestrators and
//! workers are separate processes sharing one PostgreSQL database; the store holds every
//! claim and the leader lease (see `docs/scale-out.md` and decision 0007). Start-up, HTTP
//! and draining are `weft up`'s (see `up::run_server`); this module adds what differs: the
//! PostgreSQL requirement, the engine's cluster settings and, for a process without the
//! gateway role, an HTTP server that answers only the operations endpoints.

use crate::args::ServeArgs;
use crate::config::{Config, Roles};
use anyhow::bail;
use axum::Router;
use axum::extract::Request;
use axum::http::StatusCode;
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::json;
use weft_engine::Engine;

/// What a process without the gateway role answers over HTTP.
pub const OPS_PATHS: &[&str] = &["/health", "/ready", "/metrics", "/v1/cluster"];

/// Runs one cluster process until SIGTERM or SIGINT.
pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    let roles = args.roles();
    crate::up::run_server(args.config.config.as_deref(), args.overrides(), Some(roles)).await
}

/// Refuses a configuration `weft serve` cannot run with.
pub fn check(config: &Config) -> anyhow::Result<()> {
    if config.database_url.is_none() {
        bail!(
            "weft serve runs processes that share a PostgreSQL database; for one process on \
             the embedded store use `weft up` (or give --database-url / WEFT_DATABASE_URL / \
             database_url)"
        );
    }
    Ok(())
}

/// Says what this process is.
pub fn log_start(engine: &Engine, config: &Config, roles: Roles) {
    let c = &config.cluster;
    let queues = if c.worker_queues.is_empty() {
        "all".to_string()
    } else {
        c.worker_queues.join(",")
    };
    tracing::info!(
        node_id = %engine.node_id(),
        roles = %roles.names().join(","),
        lease = %humantime::format_duration(c.lease),
        leader_ttl = %humantime::format_duration(c.leader_ttl),
        poll = %humantime::format_duration(c.poll),
        queues = %if roles.worker { queues.as_str() } else { "-" },
        "cluster node started"
    );
}

/// The API's router for a cluster process. Without the gateway role it is cut down to
/// [`OPS_PATHS`] (every other path gets 404 `not_a_gateway`); the router itself is the
/// API's, so the operations endpoints behave exactly as on a gateway (`/v1/cluster` names
/// this process's roles: the engine's cluster configuration carries them).
pub fn cluster_router(app: Router, roles: Roles) -> Router {
    let names = roles.names().join(",");
    app.layer(middleware::from_fn(move |req: Request, next: Next| {
        let names = names.clone();
        async move {
            let path = req.uri().path().to_string();
            if !roles.gateway && !OPS_PATHS.contains(&path.as_str()) {
                return not_a_gateway(&path, &names);
            }
            next.run(req).await
        }
    }))
}

fn not_a_gateway(path: &str, roles: &str) -> Response {
    let body = json!({"error": {
        "code": "not_a_gateway",
        "message": format!(
            "this process serves only {} (its roles: {roles}); send {path} to a gateway",
            OPS_PATHS.join(", ")
        ),
        "details": [],
    }});
    (StatusCode::NOT_FOUND, axum::Json(body)).into_response()
}
