//! `/v1/dlq`: inspect dead-lettered tasks, replay them (which resumes their runs) one at a
//! time or in bulk, and discard them.
//!
//! Discarding takes a dead task out of the DLQ for good: the task becomes `cancelled`
//! (keeping its error and attempts) and its run stays `failed`. Only a failed run's dead
//! tasks can be discarded; while the run still runs other nodes the answer is 409.

use super::batch::{MAX_BATCH, check_batch_size, item_error};
use super::list_limit;
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::openapi::{BatchItemError, DeadTaskDoc, ErrorBody};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use weft_engine::Engine;
use weft_store::{DeadTask, DlqFilter};

/// Query of `GET /v1/dlq`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only this flow.
    flow: Option<String>,
    /// Only this node name.
    node: Option<String>,
    /// At most this many (default 50, at most 1000).
    limit: Option<u32>,
}

/// Dead tasks, most recently dead first.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeadList {
    #[schema(value_type = Vec<DeadTaskDoc>)]
    dead: Vec<DeadTask>,
}

/// `GET /v1/dlq?flow=&node=&limit=`.
#[utoipa::path(get, path = "/v1/dlq", tag = "dlq", params(ListQuery),
    responses((status = 200, body = DeadList), (status = 400, body = ErrorBody)))]
pub(crate) async fn list(
    State(engine): State<Engine>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<DeadList>, ApiError> {
    let filter = DlqFilter {
        flow: q.flow,
        node: q.node,
        limit: list_limit(q.limit)?,
    };
    Ok(Json(DeadList {
        dead: engine.dlq_list(&filter).await?,
    }))
}

/// `GET /v1/dlq/{run_id}/{node}`: one dead task with its attempts.
#[utoipa::path(get, path = "/v1/dlq/{run_id}/{node}", tag = "dlq",
    params(("run_id" = String, Path, description = "Run id"), ("node" = String, Path, description = "Node name")),
    responses((status = 200, body = DeadTaskDoc), (status = 404, body = ErrorBody)))]
pub(crate) async fn show(
    State(engine): State<Engine>,
    ApiPath((run_id, node)): ApiPath<(String, String)>,
) -> Result<Json<DeadTask>, ApiError> {
    Ok(Json(engine.dlq_get(&run_id, &node).await?))
}

/// Answer to a discard.
#[derive(Serialize, ToSchema)]
pub(crate) struct Discarded {
    run_id: String,
    node: String,
    discarded: bool,
}

/// `DELETE /v1/dlq/{run_id}/{node}`: the task becomes `cancelled`; its run stays `failed`.
#[utoipa::path(delete, path = "/v1/dlq/{run_id}/{node}", tag = "dlq",
    params(("run_id" = String, Path, description = "Run id"), ("node" = String, Path, description = "Node name")),
    responses((status = 200, body = Discarded), (status = 404, body = ErrorBody),
              (status = 409, description = "The run is still running", body = ErrorBody)))]
pub(crate) async fn discard(
    State(engine): State<Engine>,
    ApiPath((run_id, node)): ApiPath<(String, String)>,
) -> Result<Json<Discarded>, ApiError> {
    engine.dlq_discard(&run_id, &node).await?;
    Ok(Json(Discarded {
        run_id,
        node,
        discarded: true,
    }))
}

/// Answer to a replay: the task is ready again and its run is running.
#[derive(Serialize, ToSchema)]
pub(crate) struct Replayed {
    run_id: String,
    node: String,
    replayed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BatchItemError>)]
    error: Option<Value>,
}

/// `POST /v1/dlq/{run_id}/{node}/replay`.
#[utoipa::path(post, path = "/v1/dlq/{run_id}/{node}/replay", tag = "dlq",
    params(("run_id" = String, Path, description = "Run id"), ("node" = String, Path, description = "Node name")),
    responses((status = 200, body = Replayed), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub(crate) async fn replay(
    State(engine): State<Engine>,
    ApiPath((run_id, node)): ApiPath<(String, String)>,
) -> Result<Json<Replayed>, ApiError> {
    engine.dlq_replay(&run_id, &node).await?;
    Ok(Json(Replayed {
        run_id,
        node,
        replayed: true,
        error: None,
    }))
}

/// One dead task named for a bulk replay.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeadRef {
    run_id: String,
    node: String,
}

/// Body of `POST /v1/dlq/replay`: either `items`, or a `flow` and/or `node` filter (which
/// replays up to `limit`, default and at most 1000, of the matching dead tasks).
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ReplayMany {
    items: Option<Vec<DeadRef>>,
    flow: Option<String>,
    node: Option<String>,
    limit: Option<u32>,
}

/// Each replay's result, in order.
#[derive(Serialize, ToSchema)]
pub(crate) struct ReplayManyResult {
    replayed: Vec<Replayed>,
}

/// `POST /v1/dlq/replay`: replays many dead tasks, each with its own result.
#[utoipa::path(post, path = "/v1/dlq/replay", tag = "dlq", request_body = ReplayMany,
    responses((status = 200, body = ReplayManyResult), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn replay_many(
    State(engine): State<Engine>,
    ApiJson(body): ApiJson<ReplayMany>,
) -> Result<Json<ReplayManyResult>, ApiError> {
    let filtered = body.flow.is_some() || body.node.is_some();
    let items: Vec<(String, String)> = match body.items {
        Some(_) if filtered || body.limit.is_some() => {
            return Err(ApiError::bad_request(
                "send either items or a flow/node filter, not both",
            ));
        }
        Some(items) => {
            check_batch_size(items.len(), "items")?;
            items.into_iter().map(|i| (i.run_id, i.node)).collect()
        }
        None if filtered => {
            let limit = list_limit(Some(body.limit.unwrap_or(MAX_BATCH as u32)))?;
            engine.dlq_select(body.flow, body.node, limit).await?
        }
        None => {
            return Err(ApiError::bad_request(
                "send items ([{\"run_id\", \"node\"}]) or a flow and/or node filter",
            ));
        }
    };
    let results = engine.dlq_replay_many(&items).await;
    let replayed = items
        .into_iter()
        .zip(results)
        .map(|((run_id, node), r)| Replayed {
            run_id,
            node,
            replayed: r.is_ok(),
            error: r.err().map(item_error),
        })
        .collect();
    Ok(Json(ReplayManyResult { replayed }))
}
