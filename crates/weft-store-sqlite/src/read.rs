//! Queries, answered from a small pool of read connections (WAL lets them read while the
//! writer commits).

use crate::conv::{classify, json};
use parking_lot::Mutex;
use rusqlite::{Connection, OpenFlags, OptionalExtension, Row, params};
use serde_json::Value;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use weft_core::{RunState, TaskState};
use weft_store::*;

/// Most read connections open at once; further reads wait for one to be free.
pub const MAX_READERS: usize = 8;
/// Page cache per read connection, in KiB (the writer has its own, larger one).
const READER_CACHE_KIB: i64 = 8 * 1024;

/// Read connections, opened on demand (up to [`MAX_READERS`]) and reused.
pub struct Readers {
    path: PathBuf,
    idle: Mutex<Vec<Connection>>,
    permits: tokio::sync::Semaphore,
    closed: Arc<AtomicBool>,
}

impl Readers {
    pub fn new(path: PathBuf, closed: Arc<AtomicBool>) -> Self {
        Self {
            closed,
            path,
            idle: Mutex::new(Vec::new()),
            permits: tokio::sync::Semaphore::new(MAX_READERS),
        }
    }

    /// Runs a point lookup (`f` reads a handful of rows by key) on a read connection on the
    /// calling thread when one is free at once, else as [`Readers::with`] does.
    ///
    /// Such a read costs tens of microseconds on a warm cache, less than the two thread
    /// hand-offs of `spawn_blocking` it avoids (profiled: under `GET /v1/runs/{id}` load the
    /// hand-offs' futex waits and wake-ups were a third of the server's CPU). Scans and
    /// lists go through [`Readers::with`] so they never hold up an async worker thread.
    pub async fn point<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let Ok(_permit) = self.permits.try_acquire() else {
            return self.with(f).await;
        };
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let conn = match self.idle.lock().pop() {
            Some(c) => c,
            None => open_reader(&self.path)?,
        };
        let result = snapshot(&conn, f);
        self.idle.lock().push(conn);
        result
    }

    /// Runs `f` on a read connection, on a blocking thread.
    pub async fn with<T: Send + 'static>(
        self: &std::sync::Arc<Self>,
        f: impl FnOnce(&Connection) -> StoreResult<T> + Send + 'static,
    ) -> StoreResult<T> {
        let _permit = self
            .permits
            .acquire()
            .await
            .map_err(|_| StoreError::Closed)?;
        if self.closed.load(Ordering::Acquire) {
            return Err(StoreError::Closed);
        }
        let me = self.clone();
        tokio::task::spawn_blocking(move || {
            let conn = match me.idle.lock().pop() {
                Some(c) => c,
                None => open_reader(&me.path)?,
            };
            let result = snapshot(&conn, f);
            me.idle.lock().push(conn);
            result
        })
        .await
        .map_err(|e| StoreError::Unavailable(format!("read task failed: {e}")))?
    }
}

/// Runs `f` in one read transaction: every statement of a multi-statement read (a run and
/// its tasks) sees the same commit, and the file locks a transaction takes are taken once
/// instead of once per statement.
fn snapshot<T>(conn: &Connection, f: impl FnOnce(&Connection) -> StoreResult<T>) -> StoreResult<T> {
    db(conn.prepare_cached("BEGIN").and_then(|mut s| s.execute([])))?;
    let result = f(conn);
    let end = if result.is_ok() { "COMMIT" } else { "ROLLBACK" };
    let ended = db(conn.prepare_cached(end).and_then(|mut s| s.execute([])));
    let value = result?;
    ended.map(|_| value)
}

fn open_reader(path: &PathBuf) -> StoreResult<Connection> {
    let conn = Connection::open_with_flags(
        path,
        OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
    )
    .map_err(classify)?;
    conn.busy_timeout(std::time::Duration::from_secs(5))
        .map_err(classify)?;
    conn.set_prepared_statement_cache_capacity(64);
    conn.pragma_update(None, "cache_size", -READER_CACHE_KIB)
        .map_err(classify)?;
    Ok(conn)
}

fn db<T>(r: rusqlite::Result<T>) -> StoreResult<T> {
    r.map_err(classify)
}

fn flow_row(r: &Row) -> rusqlite::Result<(String, u32, String, i64)> {
    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?))
}

fn to_flow(
    (name, version, spec, created_at): (String, u32, String, i64),
) -> StoreResult<FlowRecord> {
    let spec = stored_spec(&name, &spec)?;
    Ok(FlowRecord {
        name,
        version,
        spec,
        created_at,
    })
}

pub fn flow_get(
    c: &Connection,
    name: &str,
    version: Option<u32>,
) -> StoreResult<Option<FlowRecord>> {
    let row = match version {
        Some(v) => db(c
            .prepare_cached("SELECT name, version, spec, created_at FROM flows WHERE name = ?1 AND version = ?2")
            .and_then(|mut s| s.query_row(params![name, v], flow_row).optional()))?,
        None => db(c
            .prepare_cached("SELECT name, version, spec, created_at FROM flows WHERE name = ?1 ORDER BY version DESC LIMIT 1")
            .and_then(|mut s| s.query_row([name], flow_row).optional()))?,
    };
    row.map(to_flow).transpose()
}

pub fn flow_list(c: &Connection) -> StoreResult<Vec<FlowRecord>> {
    let rows: Vec<_> = db(c
        .prepare_cached(
            "SELECT f.name, f.version, f.spec, f.created_at FROM flows f
             WHERE f.version = (SELECT max(version) FROM flows g WHERE g.name = f.name) ORDER BY f.name",
        )
        .and_then(|mut s| s.query_map([], flow_row)?.collect::<Result<Vec<_>, _>>()))?;
    rows.into_iter().map(to_flow).collect()
}

pub fn flow_versions(c: &Connection, name: &str) -> StoreResult<Vec<FlowRecord>> {
    let rows: Vec<_> = db(c
        .prepare_cached(
            "SELECT name, version, spec, created_at FROM flows WHERE name = ?1 ORDER BY version",
        )
        .and_then(|mut s| {
            s.query_map([name], flow_row)?
                .collect::<Result<Vec<_>, _>>()
        }))?;
    rows.into_iter().map(to_flow).collect()
}

const RUN_COLS: &str = "id, flow, version, state, input, error, idem, parent_run, parent_node, created_at, finished_at";

fn run_row(r: &Row) -> rusqlite::Result<(RunRecord, String)> {
    let state: String = r.get(3)?;
    let input: String = r.get(4)?;
    Ok((
        RunRecord {
            id: r.get(0)?,
            flow: r.get(1)?,
            version: r.get(2)?,
            state: RunState::parse(&state).unwrap_or(RunState::Failed),
            input: Value::Null,
            error: r.get(5)?,
            idempotency_key: r.get(6)?,
            parent_run: r.get(7)?,
            parent_node: r.get(8)?,
            created_at: r.get(9)?,
            finished_at: r.get(10)?,
        },
        input,
    ))
}

fn finish_run((mut run, input): (RunRecord, String)) -> StoreResult<RunRecord> {
    run.input = json(Some(input))?.unwrap_or(Value::Null);
    Ok(run)
}

pub fn run_get(c: &Connection, id: &str) -> StoreResult<Option<RunDetail>> {
    let row = db(c
        .prepare_cached(&format!("SELECT {RUN_COLS} FROM runs WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id], run_row).optional()))?;
    let Some(row) = row else { return Ok(None) };
    let run = finish_run(row)?;
    let rows: Vec<_> = db(c
        .prepare_cached(
            "SELECT node, state, attempt, queue, scheduled_at, output, error, attempts, child_run, finished_at,
                    deferred_reason, deferred_until, deferrals, lease_owner
             FROM tasks WHERE run_id = ?1 ORDER BY idx",
        )
        .and_then(|mut s| {
            s.query_map([id], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, u32>(2)?,
                    r.get::<_, String>(3)?,
                    r.get::<_, Option<i64>>(4)?,
                    r.get::<_, Option<String>>(5)?,
                    r.get::<_, Option<String>>(6)?,
                    r.get::<_, Option<String>>(7)?,
                    r.get::<_, Option<String>>(8)?,
                    r.get::<_, Option<i64>>(9)?,
                    deferral(r.get(10)?, r.get(11)?, r.get(12)?),
                    r.get::<_, Option<String>>(13)?,
                ))
            })?
            .collect::<Result<Vec<_>, _>>()
        }))?;
    let mut tasks = Vec::with_capacity(rows.len());
    for (
        node,
        state,
        attempt,
        queue,
        scheduled_at,
        output,
        error,
        attempts,
        child_run,
        finished_at,
        deferred,
        claimed_by,
    ) in rows
    {
        let state = TaskState::parse(&state)
            .ok_or_else(|| StoreError::Corrupt(format!("task state {state}")))?;
        let attempts = match attempts {
            Some(a) => serde_json::from_str(&a)
                .map_err(|e| StoreError::Corrupt(format!("attempts: {e}")))?,
            None => Vec::new(),
        };
        tasks.push(TaskRecord {
            node,
            state,
            attempt,
            queue,
            scheduled_at: if state == TaskState::Pending {
                scheduled_at
            } else {
                None
            },
            output: json(output)?,
            error,
            attempts,
            child_run,
            finished_at,
            deferred: deferred.filter(|_| !state.is_terminal()),
            claimed_by: claimed_by.filter(|_| state == TaskState::Ready),
        });
    }
    Ok(Some(RunDetail { run, tasks }))
}

/// A task's deferral columns as read: reason, until, count.
fn deferral(reason: Option<String>, until: Option<i64>, count: u32) -> Option<Deferral> {
    Some(Deferral {
        reason: reason?,
        until: until?,
        count,
    })
}

pub fn run_list(c: &Connection, f: &RunFilter) -> StoreResult<Vec<RunRecord>> {
    let mut sql = format!("SELECT {RUN_COLS} FROM runs WHERE 1 = 1");
    let mut args: Vec<Box<dyn rusqlite::ToSql>> = Vec::new();
    if let Some(flow) = &f.flow {
        args.push(Box::new(flow.clone()));
        sql.push_str(&format!(" AND flow = ?{}", args.len()));
    }
    if let Some(state) = f.state {
        args.push(Box::new(state.as_str()));
        sql.push_str(&format!(" AND state = ?{}", args.len()));
    }
    if let Some(before) = &f.before {
        args.push(Box::new(before.clone()));
        sql.push_str(&format!(" AND id < ?{}", args.len()));
    }
    if let Some(after) = f.created_after {
        args.push(Box::new(after));
        sql.push_str(&format!(" AND created_at >= ?{}", args.len()));
    }
    if let Some(before) = f.created_before {
        args.push(Box::new(before));
        sql.push_str(&format!(" AND created_at < ?{}", args.len()));
    }
    args.push(Box::new(limit(f.limit)));
    sql.push_str(&format!(" ORDER BY id DESC LIMIT ?{}", args.len()));
    let rows: Vec<_> = db(c.prepare_cached(&sql).and_then(|mut s| {
        s.query_map(
            rusqlite::params_from_iter(args.iter().map(|a| a.as_ref())),
            run_row,
        )?
        .collect::<Result<Vec<_>, _>>()
    }))?;
    rows.into_iter().map(finish_run).collect()
}

fn limit(l: u32) -> i64 {
    if l == 0 { 50 } else { l.min(1000) as i64 }
}

pub fn task_inputs(
    c: &Connection,
    run: &str,
    nodes: &[String],
) -> StoreResult<(Value, serde_json::Map<String, Value>)> {
    let input: Option<String> = db(c
        .prepare_cached("SELECT input FROM runs WHERE id = ?1")
        .and_then(|mut s| s.query_row([run], |r| r.get(0)).optional()))?;
    let input = json(Some(
        input.ok_or_else(|| StoreError::NotFound(format!("run {run}")))?,
    ))?
    .unwrap_or(Value::Null);
    let mut outputs = serde_json::Map::new();
    let mut stmt =
        db(c.prepare_cached("SELECT output FROM tasks WHERE run_id = ?1 AND node = ?2"))?;
    for node in nodes {
        let out: Option<Option<String>> =
            db(stmt.query_row(params![run, node], |r| r.get(0)).optional())?;
        outputs.insert(node.clone(), json(out.flatten())?.unwrap_or(Value::Null));
    }
    Ok((input, outputs))
}

/// run_id, flow, node, error, attempts JSON, dead_at.
type DeadRow = (String, String, String, Option<String>, Option<String>, i64);

/// The dead-letter filter as SQL over `tasks t JOIN runs r`, parameters ?1-?8 (see
/// [`DlqParams`]).
const DLQ_WHERE: &str =
    "t.state = 'dead' AND (?1 IS NULL OR r.flow = ?1) AND (?2 IS NULL OR t.node = ?2)
     AND (?3 IS NULL OR instr(lower(coalesce(t.error, '')), lower(?3)) > 0)
     AND (?4 IS NULL OR t.finished_at >= ?4) AND (?5 IS NULL OR t.finished_at < ?5)
     AND (?6 IS NULL OR (t.finished_at, t.run_id, t.node) < (?6, ?7, ?8))";

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

    fn refs(&self) -> Vec<&dyn rusqlite::ToSql> {
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

pub fn dlq_count(c: &Connection, f: &DlqFilter) -> StoreResult<u64> {
    let f = DlqFilter {
        after: None,
        ..f.clone()
    };
    let sql =
        format!("SELECT count(*) FROM tasks t JOIN runs r ON r.id = t.run_id WHERE {DLQ_WHERE}");
    db(c.prepare_cached(&sql).and_then(|mut s| {
        s.query_row(DlqParams::new(&f).refs().as_slice(), |r| r.get::<_, i64>(0))
    }))
    .map(|n| n.max(0) as u64)
}

pub fn dlq_list(c: &Connection, f: &DlqFilter) -> StoreResult<Vec<DeadTask>> {
    let sql = format!(
        "SELECT t.run_id, r.flow, t.node, t.error, t.attempts, t.finished_at FROM tasks t JOIN runs r ON r.id = t.run_id
         WHERE {DLQ_WHERE} ORDER BY t.finished_at DESC, t.run_id DESC, t.node DESC LIMIT ?9"
    );
    let limit = limit(f.limit);
    let values = DlqParams::new(f);
    let mut params = values.refs();
    params.push(&limit);
    let rows: Vec<DeadRow> = db(c.prepare_cached(&sql).and_then(|mut s| {
        s.query_map(params.as_slice(), |r| {
            Ok((
                r.get(0)?,
                r.get(1)?,
                r.get(2)?,
                r.get(3)?,
                r.get(4)?,
                r.get(5)?,
            ))
        })?
        .collect()
    }))?;
    rows.into_iter()
        .map(|(run_id, flow, node, error, attempts, dead_at)| {
            let attempts = match attempts {
                Some(a) => serde_json::from_str(&a)
                    .map_err(|e| StoreError::Corrupt(format!("attempts: {e}")))?,
                None => Vec::new(),
            };
            Ok(DeadTask {
                run_id,
                flow,
                node,
                error,
                attempts,
                dead_at,
            })
        })
        .collect()
}

/// A stored queue rate: both columns set, or none.
fn queue_rate(limit: Option<u32>, per_ms: Option<i64>) -> Option<weft_store::QueueRate> {
    Some(weft_store::QueueRate {
        limit: limit?,
        per_ms: u64::try_from(per_ms?).ok()?,
    })
}

pub fn queue_list(c: &Connection) -> StoreResult<Vec<QueueSettings>> {
    db(c.prepare_cached(
        "SELECT name, concurrency, paused, rate_limit, rate_per_ms FROM queues ORDER BY name",
    )
    .and_then(|mut s| {
        s.query_map([], |r| {
            Ok(QueueSettings {
                name: r.get(0)?,
                concurrency: r.get(1)?,
                paused: r.get(2)?,
                rate: queue_rate(r.get(3)?, r.get(4)?),
            })
        })?
        .collect()
    }))
}

/// Who holds `duty` and until when, if the lease has not ended at `now`.
pub fn leader_get(c: &Connection, duty: &str, now: i64) -> StoreResult<Option<(String, i64)>> {
    db(
        c.prepare_cached("SELECT holder, until FROM leader_leases WHERE duty = ?1 AND until >= ?2")
            .and_then(|mut s| {
                s.query_row(params![duty, now], |r| Ok((r.get(0)?, r.get(1)?)))
                    .optional()
            }),
    )
}

/// Members whose last beat is newer than `now - stale_after_ms`, by node id.
pub fn member_list(
    c: &Connection,
    now: i64,
    stale_after_ms: i64,
) -> StoreResult<Vec<MemberRecord>> {
    type MemberRow = (
        (String, String, u32, String, String),
        (i64, i64, u32, u32, bool, bool),
    );
    let rows: Vec<MemberRow> = db(c
        .prepare_cached(
            "SELECT node_id, hostname, pid, roles, queues, started_at, beat_at, load,
                 pool_size, ready, all_queues
             FROM members WHERE beat_at > ?1 ORDER BY node_id",
        )
        .and_then(|mut s| {
            s.query_map([now - stale_after_ms], |r| {
                Ok((
                    (r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?),
                    (
                        r.get(5)?,
                        r.get(6)?,
                        r.get(7)?,
                        r.get(8)?,
                        r.get(9)?,
                        r.get(10)?,
                    ),
                ))
            })?
            .collect()
        }))?;
    rows.into_iter()
        .map(
            |(
                (node_id, hostname, pid, roles, queues),
                (started_at, beat_at, load, pool_size, ready, all_queues),
            )| {
                let corrupt =
                    |e: serde_json::Error| StoreError::Corrupt(format!("member {node_id}: {e}"));
                Ok(MemberRecord {
                    roles: serde_json::from_str(&roles).map_err(corrupt)?,
                    queues: serde_json::from_str(&queues).map_err(corrupt)?,
                    node_id: node_id.clone(),
                    hostname,
                    pid,
                    started_at,
                    beat_at,
                    load,
                    pool_size,
                    ready,
                    all_queues,
                    store_beat_at: None,
                })
            },
        )
        .collect()
}

/// A page of live runs with what the sweeper compares: (id, active, dead, live tasks,
/// dead tasks, parent run, parent's state).
type SweepRow = (String, i64, i64, i64, i64, Option<String>, Option<String>);
/// A suspended task whose child is gone or finished: (run, node, attempt, child, its state).
type LostRow = (String, String, u32, Option<String>, Option<String>);

pub fn run_inconsistencies(
    c: &Connection,
    after: Option<&str>,
    limit: u32,
) -> StoreResult<(Vec<Inconsistency>, Option<String>)> {
    let page: Vec<SweepRow> = db(c
        .prepare_cached(
            "SELECT r.id, r.active, r.dead,
                (SELECT count(*) FROM tasks t WHERE t.run_id = r.id
                   AND t.state IN ('pending', 'ready', 'running', 'suspended')),
                (SELECT count(*) FROM tasks t WHERE t.run_id = r.id AND t.state = 'dead'),
                r.parent_run, p.state
             FROM runs r LEFT JOIN runs p ON p.id = r.parent_run
             WHERE r.state IN ('queued', 'running') AND (?1 IS NULL OR r.id > ?1)
             ORDER BY r.id LIMIT ?2",
        )
        .and_then(|mut s| {
            s.query_map(params![after, limit.max(1)], |r| {
                Ok((
                    r.get(0)?,
                    r.get(1)?,
                    r.get(2)?,
                    r.get(3)?,
                    r.get(4)?,
                    r.get(5)?,
                    r.get(6)?,
                ))
            })?
            .collect()
        }))?;
    let mut found = Vec::new();
    for (id, active, dead, live, dead_tasks, parent, parent_state) in &page {
        if active != live || dead != dead_tasks {
            found.push(Inconsistency::Counters { run_id: id.clone() });
        }
        if let Some(parent) = parent
            && Inconsistency::orphaned_by(parent_state.as_deref().and_then(RunState::parse))
        {
            found.push(Inconsistency::Orphan {
                run_id: id.clone(),
                parent_run: parent.clone(),
            });
        }
    }
    let (Some(first), Some(last)) = (page.first(), page.last()) else {
        return Ok((found, None));
    };
    let lost: Vec<LostRow> = db(c
        .prepare_cached(
            "SELECT t.run_id, t.node, t.attempt, t.child_run, c.state
             FROM tasks t JOIN runs r ON r.id = t.run_id LEFT JOIN runs c ON c.id = t.child_run
             WHERE t.state = 'suspended' AND t.run_id BETWEEN ?1 AND ?2
               AND r.state IN ('queued', 'running')
               AND (c.id IS NULL OR c.state NOT IN ('queued', 'running'))
             ORDER BY t.run_id, t.node",
        )
        .and_then(|mut s| {
            s.query_map(params![first.0, last.0], |r| {
                Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
            })?
            .collect()
        }))?;
    for (run_id, node, attempt, child_run, child_state) in lost {
        found.push(Inconsistency::LostChild {
            run_id,
            node,
            attempt,
            child_run,
            child_state: child_state.as_deref().and_then(RunState::parse),
        });
    }
    let next = (page.len() as u32 >= limit.max(1)).then(|| last.0.clone());
    Ok((found, next))
}
