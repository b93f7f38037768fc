//! Batch endpoints: start up to [`MAX_BATCH`] runs in one request and one store commit,
//! cancel many runs. The request succeeds as a whole (200) and each item carries its own
//! result or its own error object, in request order; a malformed request body is still a
//! single 400.

use super::runs::StartBody;
use crate::error::ApiError;
use crate::extract::ApiJson;
use crate::openapi::{BatchItemError, ErrorBody};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;
use weft_engine::{Engine, EngineError};

/// Most items one batch request may carry.
pub const MAX_BATCH: usize = 1000;

/// 413 for an oversized batch, 400 for an empty one.
pub(crate) fn check_batch_size(n: usize, what: &str) -> Result<(), ApiError> {
    if n > MAX_BATCH {
        return Err(ApiError::new(
            StatusCode::PAYLOAD_TOO_LARGE,
            "batch_too_large",
            format!("the batch has {n} {what}; at most {MAX_BATCH} are allowed per request"),
        ));
    }
    if n == 0 {
        return Err(ApiError::bad_request(format!(
            "the batch has no {what}; send 1 to {MAX_BATCH}"
        )));
    }
    Ok(())
}

/// An item's error object.
pub(crate) fn item_error(e: EngineError) -> Value {
    ApiError::from(e).item_body()
}

/// Body of `POST /v1/runs/batch`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct StartBatch {
    /// Up to 1000 starts, each like the body of `POST /v1/runs`.
    runs: Vec<StartBody>,
}

/// One item's result: `id` and `created`, or `error`.
#[derive(Serialize, ToSchema)]
pub(crate) struct StartItem {
    #[serde(skip_serializing_if = "Option::is_none")]
    id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    created: Option<bool>,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BatchItemError>)]
    error: Option<Value>,
}

/// Results of a batch start, in request order.
#[derive(Serialize, ToSchema)]
pub(crate) struct StartBatchResult {
    runs: Vec<StartItem>,
}

/// `POST /v1/runs/batch`: starts every run in one store commit.
#[utoipa::path(post, path = "/v1/runs/batch", tag = "runs", request_body = StartBatch,
    responses((status = 200, description = "Each item's id or error, in order", body = StartBatchResult),
              (status = 400, body = ErrorBody), (status = 413, body = ErrorBody), (status = 503, body = ErrorBody)))]
pub(crate) async fn start(
    State(engine): State<Engine>,
    ApiJson(body): ApiJson<StartBatch>,
) -> Result<Json<StartBatchResult>, ApiError> {
    check_batch_size(body.runs.len(), "runs")?;
    let failed = |error: Value| StartItem {
        id: None,
        created: None,
        error: Some(error),
    };
    // An item whose start time does not parse gets its own error; the rest start.
    let mut runs = Vec::with_capacity(body.runs.len());
    let (mut reqs, mut positions) = (Vec::new(), Vec::new());
    for item in body.runs {
        match item.into_start() {
            Ok(req) => {
                positions.push(runs.len());
                reqs.push(req);
                runs.push(None);
            }
            Err(e) => runs.push(Some(failed(e.item_body()))),
        }
    }
    let results = engine.run_start_many(reqs).await?;
    for (i, r) in positions.into_iter().zip(results) {
        runs[i] = Some(match r {
            Ok(c) => StartItem {
                id: Some(c.id),
                created: Some(c.created),
                error: None,
            },
            Err(e) => failed(item_error(e)),
        });
    }
    let runs = runs.into_iter().flatten().collect();
    Ok(Json(StartBatchResult { runs }))
}

/// Body of `POST /v1/runs/batch/cancel`.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct CancelBatch {
    /// Up to 1000 run ids.
    ids: Vec<String>,
}

/// One cancel's result: `cancelled: true`, or `error`.
#[derive(Serialize, ToSchema)]
pub(crate) struct CancelItem {
    id: String,
    cancelled: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BatchItemError>)]
    error: Option<Value>,
}

/// Results of a batch cancel, in request order.
#[derive(Serialize, ToSchema)]
pub(crate) struct CancelBatchResult {
    runs: Vec<CancelItem>,
}

/// `POST /v1/runs/batch/cancel`.
#[utoipa::path(post, path = "/v1/runs/batch/cancel", tag = "runs", request_body = CancelBatch,
    responses((status = 200, description = "Each item's result, in order", body = CancelBatchResult),
              (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn cancel(
    State(engine): State<Engine>,
    ApiJson(body): ApiJson<CancelBatch>,
) -> Result<Json<CancelBatchResult>, ApiError> {
    check_batch_size(body.ids.len(), "ids")?;
    let results = engine.run_cancel_many(&body.ids).await;
    let runs = body
        .ids
        .into_iter()
        .zip(results)
        .map(|(id, r)| CancelItem {
            id,
            cancelled: r.is_ok(),
            error: r.err().map(item_error),
        })
        .collect();
    Ok(Json(CancelBatchResult { runs }))
}
