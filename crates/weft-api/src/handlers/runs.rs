//! `/v1/runs`: start, read, list and cancel runs.
//!
//! Starting a run is idempotent when the client gives a key, in the body or in the
//! `Idempotency-Key` header: a repeat returns the first run with `created: false`, so a
//! client may retry a start whose answer it never received.

use super::{list_limit, parse_time};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::openapi::{ErrorBody, ExplanationDoc, RunCreatedDoc, RunDoc, RunViewDoc, TaskDoc};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use weft_core::RunState;
use weft_engine::{Engine, Explanation, RunStart, RunView, StartRun};
use weft_store::{RunCreated, RunFilter, RunRecord};

/// Header that may carry a start's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Body of `POST /v1/runs` (and one item of `POST /v1/runs/batch`).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartBody {
    /// Flow name.
    pub(crate) flow: String,
    /// Run input; an empty object when absent.
    #[serde(default = "empty_object")]
    #[schema(value_type = Object)]
    pub(crate) input: Value,
    /// Flow version; the latest when absent.
    pub(crate) version: Option<u32>,
    /// Deduplicates starts.
    pub(crate) idempotency_key: Option<String>,
    /// Start no earlier than this RFC 3339 time (at most 366 days ahead); the run is
    /// `queued` until then. Not with `delay`.
    pub(crate) start_at: Option<String>,
    /// Start after this long, e.g. `90s`, `10m`, `2h`. Not with `start_at`.
    pub(crate) delay: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

impl StartBody {
    /// The engine's request; fails on a bad `start_at` or `delay`.
    pub(crate) fn into_start(self) -> Result<StartRun, ApiError> {
        let start = match (self.start_at.as_deref(), self.delay.as_deref()) {
            (Some(_), Some(_)) => {
                return Err(ApiError::bad_request("give start_at or delay, not both"));
            }
            (Some(at), None) => Some(RunStart::At(parse_time("start_at", at)?)),
            (None, Some(d)) => Some(RunStart::After(
                weft_core::duration::parse(d)
                    .map_err(|e| ApiError::bad_request(format!("delay is {d:?}: {e}")))?,
            )),
            (None, None) => None,
        };
        Ok(StartRun {
            flow: self.flow,
            version: self.version,
            input: self.input,
            idempotency_key: self.idempotency_key,
            start,
        })
    }
}

/// `POST /v1/runs`: 201 for a new run, 200 for a repeated idempotency key.
#[utoipa::path(post, path = "/v1/runs", tag = "runs", request_body = StartBody,
    params(("Idempotency-Key" = Option<String>, Header, description = "Deduplicates starts; a repeat returns the first run")),
    responses((status = 201, body = RunCreatedDoc), (status = 200, description = "Repeated idempotency key", body = RunCreatedDoc),
              (status = 400, body = ErrorBody), (status = 404, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn start(
    State(engine): State<Engine>,
    headers: HeaderMap,
    ApiJson(mut body): ApiJson<StartBody>,
) -> Result<(StatusCode, Json<RunCreated>), ApiError> {
    let key = idempotency_key(&headers, body.idempotency_key.take())?;
    let created = engine
        .run_start(StartRun {
            idempotency_key: key,
            ..body.into_start()?
        })
        .await?;
    let status = if created.created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((status, Json(created)))
}

/// The key from the header or the body; both may be given only if they agree.
fn idempotency_key(headers: &HeaderMap, body: Option<String>) -> Result<Option<String>, ApiError> {
    let Some(raw) = headers.get(IDEMPOTENCY_HEADER) else {
        return Ok(body);
    };
    let header = raw
        .to_str()
        .map_err(|_| ApiError::bad_request("the Idempotency-Key header must be visible ASCII"))?;
    match body {
        Some(b) if b != header => Err(ApiError::bad_request(
            "the Idempotency-Key header and the body's idempotency_key differ; send one, or the same in both",
        )),
        _ => Ok(Some(header.to_string())),
    }
}

/// `GET /v1/runs/{id}`.
#[utoipa::path(get, path = "/v1/runs/{id}", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, body = RunViewDoc), (status = 404, body = ErrorBody)))]
pub(crate) async fn get(
    State(engine): State<Engine>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(engine.run_get(&id).await?))
}

/// Query of `GET /v1/runs`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only runs of this flow.
    flow: Option<String>,
    /// Only runs in this state (`queued`, `running`, `succeeded`, `failed`, `cancelled`).
    state: Option<String>,
    /// Page size (default 50, at most 1000).
    limit: Option<u32>,
    /// Cursor: the `next` of the previous page.
    before: Option<String>,
    /// Only runs created at or after this RFC 3339 time.
    created_after: Option<String>,
    /// Only runs created before this RFC 3339 time.
    created_before: Option<String>,
}

/// One page of runs, newest first.
#[derive(Serialize, ToSchema)]
pub(crate) struct RunPage {
    #[schema(value_type = Vec<RunDoc>)]
    runs: Vec<RunRecord>,
    /// Pass as `before` to get the next page; null on the last page.
    next: Option<String>,
}

/// `GET /v1/runs?flow=&state=&created_after=&created_before=&limit=&before=`.
#[utoipa::path(get, path = "/v1/runs", tag = "runs", params(ListQuery),
    responses((status = 200, body = RunPage), (status = 400, body = ErrorBody)))]
pub(crate) async fn list(
    State(engine): State<Engine>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<RunPage>, ApiError> {
    let state = q.state.as_deref().map(parse_state).transpose()?;
    let limit = list_limit(q.limit)?;
    let filter = RunFilter {
        flow: q.flow,
        state,
        before: q.before,
        created_after: q
            .created_after
            .as_deref()
            .map(|t| parse_time("created_after", t))
            .transpose()?,
        created_before: q
            .created_before
            .as_deref()
            .map(|t| parse_time("created_before", t))
            .transpose()?,
        limit,
    };
    let runs = engine.run_list(&filter).await?;
    let next = if runs.len() >= limit as usize {
        runs.last().map(|r| r.id.clone())
    } else {
        None
    };
    Ok(Json(RunPage { runs, next }))
}

fn parse_state(s: &str) -> Result<RunState, ApiError> {
    RunState::parse(s).ok_or_else(|| {
        let valid: Vec<&str> = RunState::ALL.iter().map(|s| s.as_str()).collect();
        ApiError::bad_request(format!(
            "unknown run state {s:?}; expected one of {}",
            valid.join(", ")
        ))
    })
}

/// Answer to a cancel.
#[derive(Serialize, ToSchema)]
pub(crate) struct Cancelled {
    id: String,
    #[schema(value_type = String, example = "cancelled")]
    state: RunState,
}

/// `POST /v1/runs/{id}/cancel`.
#[utoipa::path(post, path = "/v1/runs/{id}/cancel", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, body = Cancelled), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn cancel(
    State(engine): State<Engine>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Cancelled>, ApiError> {
    engine.run_cancel(&id).await?;
    Ok(Json(Cancelled {
        id,
        state: RunState::Cancelled,
    }))
}

/// Answer to a retry: the run is running again from its dead nodes.
#[derive(Serialize, ToSchema)]
pub(crate) struct Retried {
    id: String,
    /// The dead nodes given fresh attempts.
    replayed: Vec<String>,
}

/// `POST /v1/runs/{id}/retry`: replays every dead task of a failed run; 409 if not failed.
#[utoipa::path(post, path = "/v1/runs/{id}/retry", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, body = Retried), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn retry(
    State(engine): State<Engine>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Retried>, ApiError> {
    let replayed = engine.run_retry(&id).await?;
    Ok(Json(Retried { id, replayed }))
}

/// Every node of a run with its attempt history.
#[derive(Serialize, ToSchema)]
pub(crate) struct TaskList {
    id: String,
    #[schema(value_type = Vec<TaskDoc>)]
    tasks: Vec<weft_engine::TaskView>,
}

/// `GET /v1/runs/{id}/tasks`: each node's state and attempts, in flow order.
#[utoipa::path(get, path = "/v1/runs/{id}/tasks", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, body = TaskList), (status = 404, body = ErrorBody)))]
pub(crate) async fn tasks(
    State(engine): State<Engine>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<TaskList>, ApiError> {
    let view = engine.run_get(&id).await?;
    Ok(Json(TaskList {
        id,
        tasks: view.nodes,
    }))
}

/// `GET /v1/runs/{id}/explain`: why the run is not progressing, in plain words, node by
/// node (or that it is, or how it ended).
#[utoipa::path(get, path = "/v1/runs/{id}/explain", tag = "runs",
    params(("id" = String, Path, description = "Run id")),
    responses((status = 200, body = ExplanationDoc), (status = 404, body = ErrorBody)))]
pub(crate) async fn explain(
    State(engine): State<Engine>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Explanation>, ApiError> {
    Ok(Json(engine.run_explain(&id).await?))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with_header(key: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(IDEMPOTENCY_HEADER, key.parse().unwrap());
        h
    }

    #[test]
    fn idempotency_key_comes_from_header_or_body_but_they_must_agree() {
        let none = HeaderMap::new();
        assert_eq!(idempotency_key(&none, None).unwrap(), None);
        assert_eq!(
            idempotency_key(&none, Some("b".into())).unwrap().as_deref(),
            Some("b")
        );
        let h = with_header("k");
        assert_eq!(idempotency_key(&h, None).unwrap().as_deref(), Some("k"));
        assert_eq!(
            idempotency_key(&h, Some("k".into())).unwrap().as_deref(),
            Some("k")
        );
        assert_eq!(
            idempotency_key(&h, Some("other".into()))
                .unwrap_err()
                .code(),
            "bad_request"
        );
    }

    #[test]
    fn times_are_rfc3339() {
        assert_eq!(parse_time("t", "1970-01-01T00:00:01Z").unwrap(), 1000);
        assert_eq!(
            parse_time("t", "yesterday").unwrap_err().code(),
            "bad_request"
        );
    }

    #[test]
    fn unknown_states_list_the_valid_ones() {
        assert_eq!(parse_state("failed").unwrap(), RunState::Failed);
        let e = parse_state("done").unwrap_err();
        assert_eq!(e.code(), "bad_request");
    }
}
