//! `/v1/runs`: start, read, list and cancel runs.
//!
//! Starting a run is idempotent when the client gives a key, in the body or in the
//! `Idempotency-Key` header: a repeat returns the first run with `created: false`, so a
//! client may retry a start whose answer it never received.

use super::list_limit;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use axum::Json;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use weft_core::RunState;
use weft_engine::{Engine, RunView, StartRun};
use weft_store::{RunCreated, RunFilter, RunRecord};

/// Header that may carry a start's idempotency key.
pub const IDEMPOTENCY_HEADER: &str = "idempotency-key";

/// Body of `POST /v1/runs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartBody {
    /// Flow name.
    flow: String,
    /// Run input; an empty object when absent.
    #[serde(default = "empty_object")]
    input: Value,
    /// Flow version; the latest when absent.
    version: Option<u32>,
    /// Deduplicates starts.
    idempotency_key: Option<String>,
}

fn empty_object() -> Value {
    Value::Object(Default::default())
}

/// `POST /v1/runs`: 201 for a new run, 200 for a repeated idempotency key.
pub(crate) async fn start(
    State(engine): State<Engine>,
    headers: HeaderMap,
    ApiJson(body): ApiJson<StartBody>,
) -> Result<(StatusCode, Json<RunCreated>), ApiError> {
    let key = idempotency_key(&headers, body.idempotency_key)?;
    let created = engine
        .run_start(StartRun {
            flow: body.flow,
            version: body.version,
            input: body.input,
            idempotency_key: key,
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
pub(crate) async fn get(
    State(engine): State<Engine>,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<RunView>, ApiError> {
    Ok(Json(engine.run_get(&id).await?))
}

/// Query of `GET /v1/runs`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    flow: Option<String>,
    state: Option<String>,
    limit: Option<u32>,
    /// Cursor: the `next` of the previous page.
    before: Option<String>,
}

/// One page of runs, newest first.
#[derive(Serialize)]
pub(crate) struct RunPage {
    runs: Vec<RunRecord>,
    /// Pass as `before` to get the next page; null on the last page.
    next: Option<String>,
}

/// `GET /v1/runs?flow=&state=&limit=&before=`.
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
#[derive(Serialize)]
pub(crate) struct Cancelled {
    id: String,
    state: RunState,
}

/// `POST /v1/runs/{id}/cancel`.
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
    fn unknown_states_list_the_valid_ones() {
        assert_eq!(parse_state("failed").unwrap(), RunState::Failed);
        let e = parse_state("done").unwrap_err();
        assert_eq!(e.code(), "bad_request");
    }
}
