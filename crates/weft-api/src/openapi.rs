//! The OpenAPI 3.1 description of the API, generated from the handlers' `#[utoipa::path]`
//! annotations and served at `GET /v1/openapi.json`.
//!
//! **Adding a route:** annotate its handler with `#[utoipa::path(method, path = "...",
//! responses(...))]` (errors with `body = ErrorBody`) and list the handler in [`ApiDoc`]'s
//! `paths(...)`. The test `openapi_covers_every_route` (crates/weft-api/tests/api/openapi.rs)
//! reads every `.route(...)` the router declares and fails while a (method, path) is missing
//! from the spec, or the spec lists one the router does not serve.
//!
//! Store and engine records are described here by schema-only mirrors (`*Doc`), so the
//! records crates need not depend on utoipa; the API tests check that real responses carry
//! exactly the documented fields.

#![allow(dead_code)] // The `*Doc` mirrors exist only for their schemas.

use crate::handlers::{batch, diff, dlq, flows, queues, runs, schedules, workers};
use axum::Json;
use serde_json::Value;
use utoipa::{OpenApi, ToSchema};

/// The whole API's description.
#[derive(OpenApi)]
#[openapi(
    info(title = "weft", description = "weft's HTTP API: flows, runs, queues, the dead-letter queue and workers."),
    paths(
        crate::health, crate::catalog, spec,
        flows::apply, flows::list, flows::get, flows::versions, flows::version, flows::diff, flows::delete,
        runs::start, runs::list, runs::get, runs::cancel, runs::retry, runs::tasks, runs::explain,
        batch::start, batch::cancel,
        dlq::list, dlq::show, dlq::discard, dlq::replay, dlq::replay_many, dlq::discard_many,
        queues::list, queues::set, queues::pause, queues::resume,
        crate::handlers::key_limits::list, crate::handlers::key_limits::set, crate::handlers::key_limits::clear,
        workers::list, crate::handlers::breakers::list,
        schedules::apply, schedules::list, schedules::get, schedules::delete,
        schedules::pause, schedules::resume, schedules::trigger,
        crate::events::sse, crate::events::ws,
        crate::ops::ready, crate::ops::prometheus, crate::ops::cluster,
        crate::apikeys::list, crate::apikeys::create, crate::apikeys::revoke,
    ),
    components(schemas(SseEventDoc, ErrorBody, ErrorObject, BatchItemError, IssueDoc, diff::FieldChange, diff::NodeChange)),
    modifiers(&CommonErrors),
    tags((name = "flows"), (name = "runs"), (name = "dlq"), (name = "queues"), (name = "schedules"), (name = "workers"), (name = "ops"), (name = "events"))
)]
pub(crate) struct ApiDoc;

/// The spec as JSON (OpenAPI 3.1), built once.
pub fn spec_json() -> Value {
    static SPEC: std::sync::OnceLock<Value> = std::sync::OnceLock::new();
    SPEC.get_or_init(|| serde_json::to_value(ApiDoc::openapi()).unwrap_or(Value::Null))
        .clone()
}

/// Adds the error responses that come from the shared layers rather than from a handler,
/// so each handler's annotation lists only its own: rate limits (429), overload, readiness
/// and timeouts (503) and internal errors (500) everywhere; auth (401, 403) on `/v1`; body
/// problems (400, 413, 415) where a body is read; bad parameters (400); and unknown ids
/// (404) where the path has parameters. All in the error shape.
struct CommonErrors;

impl utoipa::Modify for CommonErrors {
    fn modify(&self, api: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::{Content, Ref, ResponseBuilder};
        let error = |description: &str| {
            ResponseBuilder::new()
                .description(description)
                .content(
                    "application/json",
                    Content::new(Some(Ref::from_schema_name("ErrorBody"))),
                )
                .build()
        };
        for (path, item) in api.paths.paths.iter_mut() {
            let ops = [
                &mut item.get,
                &mut item.put,
                &mut item.post,
                &mut item.delete,
                &mut item.patch,
            ];
            for op in ops.into_iter().flatten() {
                let mut add = vec![
                    ("429", "Rate limited; `Retry-After` says when to retry"),
                    ("500", "Internal error; the body carries a request id"),
                    (
                        "503",
                        "Not ready, overloaded, timed out or shutting down; retry later",
                    ),
                ];
                if path.starts_with("/v1/") {
                    add.push(("401", "Missing or unknown API key"));
                    add.push(("403", "The API key's role may not do this"));
                }
                if op.request_body.is_some() {
                    add.push(("400", "Malformed body, wrong types or unknown fields"));
                    add.push(("413", "Body larger than the limit"));
                    add.push(("415", "Unsupported Content-Type"));
                }
                if op.parameters.as_ref().is_some_and(|p| !p.is_empty()) {
                    add.push(("400", "Invalid parameter"));
                }
                if path.contains('{') {
                    add.push(("404", "Not found"));
                }
                for (code, description) in add {
                    op.responses
                        .responses
                        .entry(code.to_string())
                        .or_insert_with(|| error(description).into());
                }
            }
        }
    }
}

/// `GET /v1/openapi.json`.
#[utoipa::path(get, path = "/v1/openapi.json", tag = "ops",
    responses((status = 200, description = "This document", body = Object)))]
pub(crate) async fn spec() -> Json<Value> {
    Json(spec_json())
}

/// One server-sent event as it is framed on the wire (`event:`, `id:`, `data:` lines);
/// `data` is the event's JSON text.
#[derive(ToSchema)]
pub(crate) struct SseEventDoc {
    /// `run`, `node`, `gap` or `error`.
    event: Option<String>,
    /// The event's `seq` (absent on `gap` and `error`).
    id: Option<String>,
    /// The event as JSON text.
    data: String,
    /// Reconnection delay hint, in ms (not sent today).
    retry: Option<i64>,
}

/// Every error: `{"error": {...}}`.
#[derive(ToSchema)]
pub(crate) struct ErrorBody {
    error: ErrorObject,
}

/// An error's body.
#[derive(ToSchema)]
pub(crate) struct ErrorObject {
    /// Stable machine-readable code (`bad_request`, `not_found`, `conflict`, `flow_invalid`...).
    code: String,
    /// For people.
    message: String,
    /// Itemised problems, each with the path of the offending value.
    details: Vec<IssueDoc>,
    /// Present on 500s: quote it when reporting.
    request_id: Option<String>,
}

/// One item's error inside a successful batch response.
#[derive(ToSchema)]
pub(crate) struct BatchItemError {
    code: String,
    message: String,
    details: Vec<IssueDoc>,
}

/// One problem.
#[derive(ToSchema)]
pub(crate) struct IssueDoc {
    path: String,
    message: String,
}

/// Result of applying a flow.
#[derive(ToSchema)]
pub(crate) struct FlowApplyDoc {
    name: String,
    version: u32,
    /// False when the document equals the latest version.
    created: bool,
}

/// One stored flow version.
#[derive(ToSchema)]
pub(crate) struct FlowDoc {
    name: String,
    version: u32,
    /// The flow document (see docs/flows.md).
    #[schema(value_type = Object)]
    spec: Value,
    /// Epoch milliseconds.
    created_at: i64,
}

/// Why a run is where it is (`weft run explain`).
#[derive(ToSchema)]
pub(crate) struct ExplanationDoc {
    run_id: String,
    flow: String,
    #[schema(example = "running")]
    state: String,
    /// False when the run cannot move on by itself right now (a timer, an operator or a
    /// limit holds it); true while an attempt runs or a task is ready with a free slot.
    progressing: bool,
    /// One sentence over the whole run.
    summary: String,
    /// One entry per node that holds the run up, in flow order.
    reasons: Vec<ReasonDoc>,
}

/// Why one node holds its run up.
#[derive(ToSchema)]
pub(crate) struct ReasonDoc {
    node: String,
    #[schema(example = "pending")]
    task_state: String,
    /// `scheduled_start`, `delay`, `backoff`, `deferred`, `queue_paused`, `no_worker`,
    /// `concurrency_key`, `rate_limit`, `waiting_for_slot`, `claimed`, `running`,
    /// `child_run` or `dead`.
    #[schema(example = "queue_paused")]
    code: String,
    /// The reason in plain words.
    message: String,
    /// Until when (ms since the epoch), for a reason that ends by itself.
    until: Option<i64>,
}

/// A started run.
#[derive(ToSchema)]
pub(crate) struct RunCreatedDoc {
    id: String,
    /// False when an idempotency key matched an existing run.
    created: bool,
}

/// A run as stored.
#[derive(ToSchema)]
pub(crate) struct RunDoc {
    id: String,
    flow: String,
    version: u32,
    #[schema(example = "running")]
    state: String,
    #[schema(value_type = Object)]
    input: Value,
    error: Option<String>,
    idempotency_key: Option<String>,
    parent_run: Option<String>,
    parent_node: Option<String>,
    created_at: i64,
    finished_at: Option<i64>,
}

/// A run with every node.
#[derive(ToSchema)]
pub(crate) struct RunViewDoc {
    id: String,
    flow: String,
    version: u32,
    state: String,
    #[schema(value_type = Object)]
    input: Value,
    error: Option<String>,
    idempotency_key: Option<String>,
    parent_run: Option<String>,
    parent_node: Option<String>,
    created_at: i64,
    finished_at: Option<i64>,
    nodes: Vec<TaskDoc>,
}

/// One node of a run.
#[derive(ToSchema)]
pub(crate) struct TaskDoc {
    node: String,
    #[schema(example = "succeeded")]
    state: String,
    /// Attempts started so far.
    attempt: u32,
    queue: String,
    scheduled_at: Option<i64>,
    #[schema(value_type = Option<Object>)]
    output: Option<Value>,
    error: Option<String>,
    /// Every finished attempt, oldest first.
    attempts: Vec<AttemptDoc>,
    child_run: Option<String>,
    finished_at: Option<i64>,
    /// For a running attempt: when it started.
    started_at: Option<i64>,
    /// Present when the task waits without using an attempt (its target's circuit breaker
    /// was open); cleared by its next attempt result.
    deferred: Option<DeferralDoc>,
    /// In a cluster, for a ready task: the worker (node id) that has claimed it and starts
    /// it when it has a free slot and its limits allow. Absent otherwise.
    #[schema(example = "worker-1")]
    claimed_by: Option<String>,
}

/// Why and until when a task was deferred.
#[derive(ToSchema)]
pub(crate) struct DeferralDoc {
    /// e.g. `circuit open for host api.example.com:443`.
    reason: String,
    /// When the task becomes ready again (ms since the epoch).
    until: i64,
    /// Deferrals over the task's life.
    count: u32,
}

/// One finished attempt.
#[derive(ToSchema)]
pub(crate) struct AttemptDoc {
    attempt: u32,
    started_at: i64,
    finished_at: i64,
    error: Option<String>,
}

/// A dead-lettered task.
#[derive(ToSchema)]
pub(crate) struct DeadTaskDoc {
    run_id: String,
    flow: String,
    node: String,
    error: Option<String>,
    attempts: Vec<AttemptDoc>,
    dead_at: i64,
}

/// A queue's live figures.
#[derive(ToSchema)]
pub(crate) struct QueueStatsDoc {
    name: String,
    concurrency: u32,
    paused: bool,
    /// Tasks waiting for a slot.
    ready: u64,
    /// Attempts running now.
    running: u32,
    /// Age of the oldest waiting task, in milliseconds (0 when none waits).
    oldest_ready_age_ms: u64,
    /// The queue's rate limit, or null without one.
    rate: Option<RateDoc>,
}

/// A rate limit: at most `limit` starts per `per`, spaced evenly (`per / limit` apart).
#[derive(ToSchema)]
pub(crate) struct RateDoc {
    /// Starts per interval (at least 1).
    limit: i64,
    /// The interval, e.g. `1s`, `500ms`, `1m` (at least 1ms).
    per: String,
}

/// A worker process.
#[derive(ToSchema)]
pub(crate) struct WorkerDoc {
    id: String,
    hostname: String,
    pid: u32,
    queues: Vec<QueueServedDoc>,
    started_at: i64,
    heartbeat_age_ms: u64,
    /// Attempts running now.
    load: u32,
    /// True when it serves every queue, including ones not listed in `queues` yet.
    all_queues: bool,
    /// Database connections its store may open at once (pool plus listener).
    pool_size: u32,
    /// False while it drains.
    ready: bool,
    /// Its clock minus the database's when its last beat was written (ms); null outside
    /// a cluster or on SQLite.
    clock_skew_ms: Option<i64>,
}

/// A queue a worker serves.
#[derive(ToSchema)]
pub(crate) struct QueueServedDoc {
    name: String,
    concurrency: u32,
    running: u32,
}

/// The node catalog.
#[derive(ToSchema)]
pub(crate) struct CatalogDoc {
    nodes: Vec<CatalogEntryDoc>,
}

/// One node type.
#[derive(ToSchema)]
pub(crate) struct CatalogEntryDoc {
    #[schema(rename = "type")]
    kind: String,
    description: String,
    /// JSON Schema of its `params`.
    #[schema(value_type = Object)]
    params: Value,
}

/// Liveness.
#[derive(ToSchema)]
pub(crate) struct HealthDoc {
    #[schema(example = "ok")]
    status: String,
    /// Once this process has circuit breakers: `{"breakers": {closed, half_open, open,
    /// not_closed: [{target, state, next_probe_at}]}}`.
    #[schema(value_type = Option<Object>)]
    details: Option<Value>,
}
