//! `/v1/dlq`: inspect dead-lettered tasks and replay them, which resumes their runs.

use super::list_limit;
use crate::error::ApiError;
use crate::extract::{ApiPath, ApiQuery};
use axum::Json;
use axum::extract::State;
use serde::{Deserialize, Serialize};
use weft_engine::Engine;
use weft_store::{DeadTask, DlqFilter};

/// Query of `GET /v1/dlq`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct ListQuery {
    flow: Option<String>,
    node: Option<String>,
    limit: Option<u32>,
}

/// Dead tasks, most recently dead first.
#[derive(Serialize)]
pub(crate) struct DeadList {
    dead: Vec<DeadTask>,
}

/// `GET /v1/dlq?flow=&node=&limit=`.
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

/// Answer to a replay: the task is ready again and its run is running.
#[derive(Serialize)]
pub(crate) struct Replayed {
    run_id: String,
    node: String,
    replayed: bool,
}

/// `POST /v1/dlq/{run_id}/{node}/replay`.
pub(crate) async fn replay(
    State(engine): State<Engine>,
    ApiPath((run_id, node)): ApiPath<(String, String)>,
) -> Result<Json<Replayed>, ApiError> {
    engine.dlq_replay(&run_id, &node).await?;
    Ok(Json(Replayed {
        run_id,
        node,
        replayed: true,
    }))
}
