//! `/v1/dlq`: inspect dead-lettered tasks (filtered by flow, node, error text and time, a
//! page at a time), replay them (which resumes their runs) and discard them, one at a time
//! or in bulk: by a list of tasks, or by a selection a page at a time, which the caller
//! walks with the returned cursor (the gateway keeps no state between pages).
//!
//! Discarding takes a dead task out of the DLQ for good: the task becomes `cancelled`
//! (keeping its error and attempts) and its run stays `failed`. Only a failed run's dead
//! tasks can be discarded; while the run still runs other nodes the answer is 409.

use super::batch::{MAX_BATCH, check_batch_size, item_error};
use super::{list_limit, parse_time};
use crate::error::ApiError;
use crate::extract::{ApiJson, ApiPath, ApiQuery};
use crate::openapi::{BatchItemError, DeadTaskDoc, ErrorBody};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::{IntoParams, ToSchema};
use weft_engine::Engine;
use weft_store::{DeadTask, DlqCursor, DlqFilter};

/// Query of `GET /v1/dlq`.
#[derive(Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    /// Only this flow.
    flow: Option<String>,
    /// Only this node name.
    node: Option<String>,
    /// Only tasks whose last error contains this text (case-insensitive).
    error: Option<String>,
    /// Only tasks dead-lettered at or after this RFC 3339 time.
    dead_after: Option<String>,
    /// Only tasks dead-lettered before this RFC 3339 time.
    dead_before: Option<String>,
    /// At most this many (default 50, at most 1000).
    limit: Option<u32>,
    /// Cursor: the `next` of the previous page.
    before: Option<String>,
}

/// Dead tasks, most recently dead first.
#[derive(Serialize, ToSchema)]
pub(crate) struct DeadList {
    #[schema(value_type = Vec<DeadTaskDoc>)]
    dead: Vec<DeadTask>,
    /// Pass as `before` to get the next page; null on the last page.
    next: Option<String>,
}

/// The selection fields shared by the list query and the bulk bodies, checked into a
/// store filter (times must be RFC 3339, the cursor one this API returned).
struct Selection<'a> {
    flow: &'a Option<String>,
    node: &'a Option<String>,
    error: &'a Option<String>,
    dead_after: &'a Option<String>,
    dead_before: &'a Option<String>,
    before: &'a Option<String>,
}

impl Selection<'_> {
    fn filter(&self, limit: u32) -> Result<DlqFilter, ApiError> {
        let time = |field: &str, t: &Option<String>| {
            t.as_deref().map(|t| parse_time(field, t)).transpose()
        };
        let after = match self.before.as_deref() {
            None => None,
            Some(token) => Some(DlqCursor::decode(token).ok_or_else(|| {
                ApiError::bad_request(format!(
                    "before is {token:?}, which is not a cursor; pass the `next` of a previous answer"
                ))
            })?),
        };
        if self.error.as_deref() == Some("") {
            return Err(ApiError::bad_request(
                "error is empty; give the text the error must contain, or leave it out",
            ));
        }
        Ok(DlqFilter {
            flow: self.flow.clone(),
            node: self.node.clone(),
            error_contains: self.error.clone(),
            dead_after: time("dead_after", self.dead_after)?,
            dead_before: time("dead_before", self.dead_before)?,
            after,
            limit,
        })
    }

    fn is_empty(&self) -> bool {
        self.flow.is_none()
            && self.node.is_none()
            && self.error.is_none()
            && self.dead_after.is_none()
            && self.dead_before.is_none()
            && self.before.is_none()
    }
}

/// `GET /v1/dlq?flow=&node=&error=&dead_after=&dead_before=&limit=&before=`.
#[utoipa::path(get, path = "/v1/dlq", tag = "dlq", params(ListQuery),
    responses((status = 200, body = DeadList), (status = 400, body = ErrorBody)))]
pub(crate) async fn list(
    State(engine): State<Engine>,
    ApiQuery(q): ApiQuery<ListQuery>,
) -> Result<Json<DeadList>, ApiError> {
    let filter = Selection {
        flow: &q.flow,
        node: &q.node,
        error: &q.error,
        dead_after: &q.dead_after,
        dead_before: &q.dead_before,
        before: &q.before,
    }
    .filter(list_limit(q.limit)?)?;
    let (dead, next) = engine.dlq_page(&filter).await?;
    Ok(Json(DeadList {
        dead,
        next: next.map(|c| c.encode()),
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

/// One dead task named for a bulk replay or discard.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct DeadRef {
    run_id: String,
    node: String,
}

/// Body of `POST /v1/dlq/replay` and `POST /v1/dlq/discard`: either `items`, or a
/// selection (`flow`, `node`, `error`, `dead_after`, `dead_before`, as in `GET /v1/dlq`)
/// that acts on one page of up to `limit` (default and at most 1000) matching dead tasks,
/// newest first. To act on a larger selection, send the answer's `next` as `before` until
/// it is null; `matched` says how many matched when the page was taken.
#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct BulkBody {
    items: Option<Vec<DeadRef>>,
    flow: Option<String>,
    node: Option<String>,
    error: Option<String>,
    dead_after: Option<String>,
    dead_before: Option<String>,
    limit: Option<u32>,
    before: Option<String>,
}

/// The dead tasks a bulk body names, the cursor after them and how many matched.
struct Picked {
    items: Vec<(String, String)>,
    next: Option<String>,
    matched: Option<u64>,
}

async fn pick(engine: &Engine, body: BulkBody) -> Result<Picked, ApiError> {
    let selection = Selection {
        flow: &body.flow,
        node: &body.node,
        error: &body.error,
        dead_after: &body.dead_after,
        dead_before: &body.dead_before,
        before: &body.before,
    };
    match body.items {
        Some(_) if !selection.is_empty() || body.limit.is_some() => Err(ApiError::bad_request(
            "send either items or a selection (flow, node, error, dead_after, dead_before), not both",
        )),
        Some(items) => {
            check_batch_size(items.len(), "items")?;
            Ok(Picked {
                items: items.into_iter().map(|i| (i.run_id, i.node)).collect(),
                next: None,
                matched: None,
            })
        }
        None if !selection.is_empty() => {
            let limit = list_limit(Some(body.limit.unwrap_or(MAX_BATCH as u32)))?;
            let filter = selection.filter(limit)?;
            let matched = engine.dlq_count(&filter).await?;
            let (dead, next) = engine.dlq_page(&filter).await?;
            Ok(Picked {
                items: dead.into_iter().map(|d| (d.run_id, d.node)).collect(),
                next: next.map(|c| c.encode()),
                matched: Some(matched),
            })
        }
        None => Err(ApiError::bad_request(
            "send items ([{\"run_id\", \"node\"}]) or a selection: flow, node, error, dead_after and/or dead_before",
        )),
    }
}

/// Each replay's result, in order, and where to continue.
#[derive(Serialize, ToSchema)]
pub(crate) struct ReplayManyResult {
    replayed: Vec<Replayed>,
    /// With a selection: pass as `before` to act on the next page; null when done.
    next: Option<String>,
    /// With a selection: how many dead tasks matched it (this page included).
    matched: Option<u64>,
}

/// `POST /v1/dlq/replay`: replays many dead tasks, each with its own result.
#[utoipa::path(post, path = "/v1/dlq/replay", tag = "dlq", request_body = BulkBody,
    responses((status = 200, body = ReplayManyResult), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn replay_many(
    State(engine): State<Engine>,
    ApiJson(body): ApiJson<BulkBody>,
) -> Result<Json<ReplayManyResult>, ApiError> {
    let picked = pick(&engine, body).await?;
    let results = engine.dlq_replay_many(&picked.items).await;
    let replayed = picked
        .items
        .into_iter()
        .zip(results)
        .map(|((run_id, node), r)| Replayed {
            run_id,
            node,
            replayed: r.is_ok(),
            error: r.err().map(item_error),
        })
        .collect();
    Ok(Json(ReplayManyResult {
        replayed,
        next: picked.next,
        matched: picked.matched,
    }))
}

/// One discard's result.
#[derive(Serialize, ToSchema)]
pub(crate) struct DiscardedItem {
    run_id: String,
    node: String,
    discarded: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<BatchItemError>)]
    error: Option<Value>,
}

/// Each discard's result, in order, and where to continue.
#[derive(Serialize, ToSchema)]
pub(crate) struct DiscardManyResult {
    discarded: Vec<DiscardedItem>,
    /// With a selection: pass as `before` to act on the next page; null when done.
    next: Option<String>,
    /// With a selection: how many dead tasks matched it (this page included).
    matched: Option<u64>,
}

/// `POST /v1/dlq/discard`: discards many dead tasks (each becomes `cancelled`, its run
/// stays `failed`), each with its own result.
#[utoipa::path(post, path = "/v1/dlq/discard", tag = "dlq", request_body = BulkBody,
    responses((status = 200, body = DiscardManyResult), (status = 400, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub(crate) async fn discard_many(
    State(engine): State<Engine>,
    ApiJson(body): ApiJson<BulkBody>,
) -> Result<Json<DiscardManyResult>, ApiError> {
    let picked = pick(&engine, body).await?;
    let results = engine.dlq_discard_many(&picked.items).await;
    let discarded = picked
        .items
        .into_iter()
        .zip(results)
        .map(|((run_id, node), r)| DiscardedItem {
            run_id,
            node,
            discarded: r.is_ok(),
            error: r.err().map(item_error),
        })
        .collect();
    Ok(Json(DiscardManyResult {
        discarded,
        next: picked.next,
        matched: picked.matched,
    }))
}
