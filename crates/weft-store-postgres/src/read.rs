//! Queries. Each runs on a pooled connection outside any explicit transaction; a lookup by
//! run id also passes the id's partition key, so it reads one partition.

use crate::conv::{col, db, json, limit, row, rows, run_ms};
use deadpool_postgres::Client;
use serde_json::Value;
use std::sync::Arc;
use tokio_postgres::Row;
use tokio_postgres::types::ToSql;
use weft_core::{RunState, TaskState};
use weft_store::*;

fn to_flow(r: &Row) -> StoreResult<FlowRecord> {
    let name: String = col(r, 0)?;
    let spec: String = col(r, 2)?;
    let spec = stored_spec(&name, &spec)?;
    Ok(FlowRecord {
        version: col::<i32>(r, 1)? as u32,
        created_at: col(r, 3)?,
        name,
        spec,
    })
}

pub(crate) async fn flow_get(
    c: &Client,
    name: &str,
    version: Option<u32>,
) -> StoreResult<Option<FlowRecord>> {
    let found = match version {
        Some(v) => {
            row(
                c,
                "SELECT name, version, spec, created_at FROM flows WHERE name = $1 AND version = $2",
                &[&name, &(v as i32)],
            )
            .await?
        }
        None => {
            row(
                c,
                "SELECT name, version, spec, created_at FROM flows WHERE name = $1 ORDER BY version DESC LIMIT 1",
                &[&name],
            )
            .await?
        }
    };
    found.as_ref().map(to_flow).transpose()
}

pub(crate) async fn flow_list(c: &Client) -> StoreResult<Vec<FlowRecord>> {
    rows(
        c,
        "SELECT DISTINCT ON (name) name, version, spec, created_at FROM flows ORDER BY name, version DESC",
        &[],
    )
    .await?
    .iter()
    .map(to_flow)
    .collect()
}

pub(crate) async fn flow_versions(c: &Client, name: &str) -> StoreResult<Vec<FlowRecord>> {
    rows(
        c,
        "SELECT name, version, spec, created_at FROM flows WHERE name = $1 ORDER BY version",
        &[&name],
    )
    .await?
    .iter()
    .map(to_flow)
    .collect()
}

const RUN_COLS: &str = "id, flow, version, state, input, error, idem, parent_run, parent_node, created_at, finished_at";

fn to_run(r: &Row) -> StoreResult<RunRecord> {
    let state: String = col(r, 3)?;
    Ok(RunRecord {
        id: col(r, 0)?,
        flow: col(r, 1)?,
        version: col::<i32>(r, 2)? as u32,
        state: RunState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("run state {state}")))?,
        input: json(Some(col(r, 4)?))?.unwrap_or(Value::Null),
        error: col(r, 5)?,
        idempotency_key: col(r, 6)?,
        parent_run: col(r, 7)?,
        parent_node: col(r, 8)?,
        created_at: col(r, 9)?,
        finished_at: col(r, 10)?,
    })
}

fn attempts(text: Option<String>) -> StoreResult<Vec<AttemptRecord>> {
    match text {
        Some(a) => {
            serde_json::from_str(&a).map_err(|e| StoreError::Corrupt(format!("attempts: {e}")))
        }
        None => Ok(Vec::new()),
    }
}

fn to_task(r: &Row) -> StoreResult<TaskRecord> {
    let state: String = col(r, 1)?;
    let state = TaskState::parse(&state)
        .ok_or_else(|| StoreError::Corrupt(format!("task state {state}")))?;
    let scheduled_at: Option<i64> = col(r, 4)?;
    Ok(TaskRecord {
        node: col(r, 0)?,
        state,
        attempt: col::<i32>(r, 2)? as u32,
        queue: col(r, 3)?,
        scheduled_at: scheduled_at.filter(|_| state == TaskState::Pending),
        output: json(col(r, 5)?)?,
        error: col(r, 6)?,
        attempts: attempts(col(r, 7)?)?,
        child_run: col(r, 8)?,
        finished_at: col(r, 9)?,
        deferred: match (col::<Option<String>>(r, 10)?, col::<Option<i64>>(r, 11)?) {
            (Some(reason), Some(until)) if !state.is_terminal() => Some(Deferral {
                reason,
                until,
                count: col::<i32>(r, 12)? as u32,
            }),
            _ => None,
        },
        claimed_by: col::<Option<String>>(r, 13)?.filter(|_| state == TaskState::Ready),
    })
}

pub(crate) async fn run_get(c: &Client, id: &str) -> StoreResult<Option<RunDetail>> {
    let ms = run_ms(id);
    // Both statements go out together (tokio-postgres pipelines them): one round trip.
    let run_sql = format!("SELECT {RUN_COLS} FROM runs WHERE id = $1 AND id_ms = $2");
    let task_sql = "SELECT node, state, attempt, queue, scheduled_at, output, error, attempts::text, child_run, finished_at,
                           deferred_reason, deferred_until, deferrals, lease_owner
                    FROM tasks WHERE run_id = $1 AND run_ms = $2 ORDER BY idx";
    let (run_stmt, task_stmt) =
        tokio::try_join!(c.prepare_cached(&run_sql), c.prepare_cached(task_sql)).map_err(db)?;
    let params: [&(dyn ToSql + Sync); 2] = [&id, &ms];
    let (run, tasks) = tokio::try_join!(
        c.query_opt(&run_stmt, &params),
        c.query(&task_stmt, &params)
    )
    .map_err(db)?;
    let Some(run) = run else { return Ok(None) };
    Ok(Some(RunDetail {
        run: to_run(&run)?,
        tasks: tasks.iter().map(to_task).collect::<StoreResult<_>>()?,
    }))
}

pub(crate) async fn run_list(c: &Client, f: &RunFilter) -> StoreResult<Vec<RunRecord>> {
    let mut sql = format!("SELECT {RUN_COLS} FROM runs WHERE true");
    let state = f.state.map(|s| s.as_str());
    let lim = limit(f.limit);
    let mut args: Vec<&(dyn ToSql + Sync)> = Vec::new();
    if let Some(flow) = &f.flow {
        args.push(flow);
        sql.push_str(&format!(" AND flow = ${}", args.len()));
    }
    if let Some(state) = &state {
        args.push(state);
        sql.push_str(&format!(" AND state = ${}", args.len()));
    }
    if let Some(before) = &f.before {
        args.push(before);
        sql.push_str(&format!(" AND id < ${}", args.len()));
    }
    if let Some(after) = &f.created_after {
        args.push(after);
        sql.push_str(&format!(" AND created_at >= ${}", args.len()));
    }
    if let Some(before) = &f.created_before {
        args.push(before);
        sql.push_str(&format!(" AND created_at < ${}", args.len()));
    }
    args.push(&lim);
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ${}", args.len()));
    rows(c, &sql, &args).await?.iter().map(to_run).collect()
}

pub(crate) async fn task_inputs(
    c: &Client,
    run: &str,
    nodes: &[String],
) -> StoreResult<(Value, serde_json::Map<String, Value>)> {
    let ms = run_ms(run);
    let input = row(
        c,
        "SELECT input FROM runs WHERE id = $1 AND id_ms = $2",
        &[&run, &ms],
    )
    .await?
    .ok_or_else(|| StoreError::NotFound(format!("run {run}")))?;
    let input = json(Some(col(&input, 0)?))?.unwrap_or(Value::Null);
    let mut outputs = serde_json::Map::new();
    if nodes.is_empty() {
        return Ok((input, outputs));
    }
    let found = rows(
        c,
        "SELECT node, output FROM tasks WHERE run_id = $1 AND run_ms = $2 AND node = ANY($3)",
        &[&run, &ms, &nodes],
    )
    .await?;
    let mut by_node = std::collections::HashMap::new();
    for r in &found {
        by_node.insert(col::<String>(r, 0)?, json(col(r, 1)?)?);
    }
    for node in nodes {
        let out = by_node.remove(node).flatten().unwrap_or(Value::Null);
        outputs.insert(node.clone(), out);
    }
    Ok((input, outputs))
}

/// The dead-letter filter as SQL over `tasks t JOIN runs r`, parameters $1-$8 (see
/// [`DlqParams`]).
const DLQ_WHERE: &str =
    "t.state = 'dead' AND ($1::text IS NULL OR r.flow = $1) AND ($2::text IS NULL OR t.node = $2)
     AND ($3::text IS NULL OR strpos(lower(coalesce(t.error, '')), lower($3)) > 0)
     AND ($4::bigint IS NULL OR t.finished_at >= $4) AND ($5::bigint IS NULL OR t.finished_at < $5)
     AND ($6::bigint IS NULL OR (t.finished_at, t.run_id, t.node) < ($6, $7::text, $8::text))";

/// The values of the dead-letter filter's parameters, in order.
struct DlqParams<'a> {
    f: &'a DlqFilter,
    at: Option<i64>,
    run: Option<&'a str>,
    node: Option<&'a str>,
}

impl<'a> DlqParams<'a> {
    fn new(f: &'a DlqFilter) -> Self {
        let after = f.after.as_ref();
        Self {
            f,
            at: after.map(|a| a.dead_at),
            run: after.map(|a| a.run_id.as_str()),
            node: after.map(|a| a.node.as_str()),
        }
    }

    fn refs(&self) -> Vec<&(dyn ToSql + Sync)> {
        vec![
            &self.f.flow,
            &self.f.node,
            &self.f.error_contains,
            &self.f.dead_after,
            &self.f.dead_before,
            &self.at,
            &self.run,
            &self.node,
        ]
    }
}

pub(crate) async fn dlq_count(c: &Client, f: &DlqFilter) -> StoreResult<u64> {
    let f = DlqFilter {
        after: None,
        ..f.clone()
    };
    let sql = format!(
        "SELECT count(*) FROM tasks t JOIN runs r ON r.id = t.run_id AND r.id_ms = t.run_ms WHERE {DLQ_WHERE}"
    );
    let found = row(c, &sql, &DlqParams::new(&f).refs()).await?;
    let n: i64 = match found {
        Some(r) => col(&r, 0)?,
        None => 0,
    };
    Ok(n.max(0) as u64)
}

pub(crate) async fn dlq_list(c: &Client, f: &DlqFilter) -> StoreResult<Vec<DeadTask>> {
    let sql = format!(
        "SELECT t.run_id, r.flow, t.node, t.error, t.attempts::text, t.finished_at
         FROM tasks t JOIN runs r ON r.id = t.run_id AND r.id_ms = t.run_ms
         WHERE {DLQ_WHERE} ORDER BY t.finished_at DESC, t.run_id DESC, t.node DESC LIMIT $9"
    );
    let limit = limit(f.limit);
    let values = DlqParams::new(f);
    let mut params = values.refs();
    params.push(&limit);
    let found = rows(c, &sql, &params).await?;
    found
        .iter()
        .map(|r| {
            Ok(DeadTask {
                run_id: col(r, 0)?,
                flow: col(r, 1)?,
                node: col(r, 2)?,
                error: col(r, 3)?,
                attempts: attempts(col(r, 4)?)?,
                dead_at: col::<Option<i64>>(r, 5)?.unwrap_or_default(),
            })
        })
        .collect()
}

pub(crate) async fn queue_list(c: &Client) -> StoreResult<Vec<QueueSettings>> {
    rows(
        c,
        "SELECT name, concurrency, paused, rate_limit, rate_per_ms FROM queues ORDER BY name",
        &[],
    )
    .await?
    .iter()
    .map(|r| {
        let rate = match (col::<Option<i32>>(r, 3)?, col::<Option<i64>>(r, 4)?) {
            (Some(limit), Some(per_ms)) => Some(weft_store::QueueRate {
                limit: limit as u32,
                per_ms: per_ms as u64,
            }),
            _ => None,
        };
        Ok(QueueSettings {
            name: col(r, 0)?,
            concurrency: col::<i32>(r, 1)? as u32,
            paused: col(r, 2)?,
            rate,
        })
    })
    .collect()
}

pub(crate) const KEY_COLS: &str = "id, name, role, hash, created_at, revoked_at";

pub(crate) fn to_key(r: &Row) -> StoreResult<ApiKeyRecord> {
    let role: String = col(r, 2)?;
    Ok(ApiKeyRecord {
        id: col(r, 0)?,
        name: col(r, 1)?,
        role: ApiRole::parse(&role)
            .ok_or_else(|| StoreError::Corrupt(format!("unknown role {role:?}")))?,
        hash: col(r, 3)?,
        created_at: col(r, 4)?,
        revoked_at: col(r, 5)?,
    })
}

pub(crate) async fn apikey_list(c: &Client) -> StoreResult<Vec<ApiKeyRecord>> {
    rows(
        c,
        &format!("SELECT {KEY_COLS} FROM api_keys ORDER BY created_at, id"),
        &[],
    )
    .await?
    .iter()
    .map(to_key)
    .collect()
}

/// Start-up: every ready task of a live run, and the earliest pending timer.
pub(crate) async fn recover(c: &Client) -> StoreResult<Effects> {
    let found = rows(
        c,
        "SELECT t.run_id, t.node, t.attempt, r.flow, r.version, t.queue, t.priority
         FROM tasks t JOIN runs r ON r.id = t.run_id AND r.id_ms = t.run_ms
         WHERE t.state = 'ready' AND r.state IN ('queued', 'running') ORDER BY t.run_id, t.idx",
        &[],
    )
    .await?;
    let mut fx = Effects::default();
    for r in &found {
        fx.ready.push(ReadyTask {
            run_id: Arc::from(col::<&str>(r, 0)?),
            node: Arc::from(col::<&str>(r, 1)?),
            attempt: col::<i32>(r, 2)? as u32,
            flow: Arc::from(col::<&str>(r, 3)?),
            version: col::<i32>(r, 4)? as u32,
            queue: Arc::from(col::<&str>(r, 5)?),
            priority: col(r, 6)?,
        });
    }
    fx.next_due = next_due(c).await?;
    Ok(fx)
}

/// The earliest pending timer.
pub(crate) async fn next_due(
    c: &impl deadpool_postgres::GenericClient,
) -> StoreResult<Option<i64>> {
    let r = row(
        c,
        "SELECT min(scheduled_at) FROM tasks WHERE state = 'pending'",
        &[],
    )
    .await?;
    match r {
        Some(r) => col(&r, 0),
        None => Ok(None),
    }
}

pub(crate) async fn run_inconsistencies(
    c: &Client,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<(Vec<Inconsistency>, Option<String>)> {
    let limit = i64::from(limit.max(1));
    let page = rows(
        c,
        "SELECT r.id, r.active::int8, r.dead::int8,
            (SELECT count(*) FROM tasks t WHERE t.run_id = r.id AND t.run_ms = r.id_ms
               AND t.state IN ('pending', 'ready', 'running', 'suspended')),
            (SELECT count(*) FROM tasks t WHERE t.run_id = r.id AND t.run_ms = r.id_ms AND t.state = 'dead'),
            r.parent_run, p.state
         FROM runs r LEFT JOIN runs p ON p.id = r.parent_run
         WHERE r.state IN ('queued', 'running') AND ($1::text IS NULL OR r.id > $1)
         ORDER BY r.id LIMIT $2",
        &[&after, &limit],
    )
    .await?;
    let mut found = Vec::new();
    let mut ids = Vec::with_capacity(page.len());
    for r in &page {
        let id: String = col(r, 0)?;
        let (active, dead, live, dead_tasks): (i64, i64, i64, i64) =
            (col(r, 1)?, col(r, 2)?, col(r, 3)?, col(r, 4)?);
        if (active, dead) != (live, dead_tasks) {
            found.push(Inconsistency::Counters { run_id: id.clone() });
        }
        let parent: Option<String> = col(r, 5)?;
        let parent_state: Option<String> = col(r, 6)?;
        if let Some(parent) = parent
            && Inconsistency::orphaned_by(parent_state.as_deref().and_then(RunState::parse))
        {
            found.push(Inconsistency::Orphan {
                run_id: id.clone(),
                parent_run: parent,
            });
        }
        ids.push(id);
    }
    let lost = rows(
        c,
        "SELECT t.run_id, t.node, t.attempt, t.child_run, ch.state
         FROM tasks t JOIN runs r ON r.id = t.run_id AND r.id_ms = t.run_ms
         LEFT JOIN runs ch ON ch.id = t.child_run
         WHERE t.state = 'suspended' AND t.run_id = ANY($1) AND r.state IN ('queued', 'running')
           AND (ch.id IS NULL OR ch.state NOT IN ('queued', 'running'))
         ORDER BY t.run_id, t.node",
        &[&ids],
    )
    .await?;
    for r in &lost {
        let child_state: Option<String> = col(r, 4)?;
        found.push(Inconsistency::LostChild {
            run_id: col(r, 0)?,
            node: col(r, 1)?,
            attempt: col::<i32>(r, 2)? as u32,
            child_run: col(r, 3)?,
            child_state: child_state.as_deref().and_then(RunState::parse),
        });
    }
    let next = (ids.len() as i64 >= limit)
        .then(|| ids.last().cloned())
        .flatten();
    Ok((found, next))
}
