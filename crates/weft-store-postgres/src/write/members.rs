//! Cluster membership (`weft_store::MemberStore`): one row per process, replaced by each
//! of its beats. A beat also forgets members gone for longer than
//! `MEMBER_FORGET_AFTER_MS`, so the table holds only recent processes.

use crate::PostgresStore;
use crate::conv::{col, exec, rows, to_text};
use weft_core::time::Millis;
use weft_store::*;

/// Creates or replaces `m`'s row, and deletes rows whose last beat is long past.
pub(crate) async fn member_beat(store: &PostgresStore, m: &MemberRecord) -> StoreResult<()> {
    let client = store.client().await?;
    let (roles, queues) = (to_text(&m.roles)?, to_text(&m.queues)?);
    exec(
        &client,
        // The database's clock is read inside the statement (`clock_timestamp()`, not the
        // transaction's start) so that it is as close as possible to the beat's arrival.
        "INSERT INTO members (node_id, hostname, pid, roles, queues, started_at, beat_at, load,
             pool_size, ready, all_queues, store_beat_at)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,
             (extract(epoch FROM clock_timestamp()) * 1000)::bigint)
         ON CONFLICT (node_id) DO UPDATE SET hostname = excluded.hostname,
             pid = excluded.pid, roles = excluded.roles, queues = excluded.queues,
             started_at = excluded.started_at, beat_at = excluded.beat_at, load = excluded.load,
             pool_size = excluded.pool_size, ready = excluded.ready,
             all_queues = excluded.all_queues, store_beat_at = excluded.store_beat_at",
        &[
            &m.node_id,
            &m.hostname,
            &i64::from(m.pid),
            &roles,
            &queues,
            &m.started_at,
            &m.beat_at,
            &i64::from(m.load),
            &i64::from(m.pool_size),
            &m.ready,
            &m.all_queues,
        ],
    )
    .await?;
    exec(
        &client,
        "DELETE FROM members WHERE beat_at < $1",
        &[&(m.beat_at - MEMBER_FORGET_AFTER_MS)],
    )
    .await?;
    Ok(())
}

/// Members whose last beat is newer than `now - stale_after_ms`, by node id.
pub(crate) async fn member_list(
    store: &PostgresStore,
    now: Millis,
    stale_after_ms: i64,
) -> StoreResult<Vec<MemberRecord>> {
    let client = store.client().await?;
    rows(
        &client,
        "SELECT node_id, hostname, pid, roles, queues, started_at, beat_at, load,
             pool_size, ready, store_beat_at, all_queues
         FROM members WHERE beat_at > $1 ORDER BY node_id",
        &[&(now - stale_after_ms)],
    )
    .await?
    .iter()
    .map(|r| {
        let node_id: String = col(r, 0)?;
        let corrupt = |e: serde_json::Error| StoreError::Corrupt(format!("member {node_id}: {e}"));
        Ok(MemberRecord {
            hostname: col(r, 1)?,
            pid: col::<i64>(r, 2)? as u32,
            roles: serde_json::from_str(&col::<String>(r, 3)?).map_err(corrupt)?,
            queues: serde_json::from_str(&col::<String>(r, 4)?).map_err(corrupt)?,
            started_at: col(r, 5)?,
            beat_at: col(r, 6)?,
            load: col::<i64>(r, 7)? as u32,
            pool_size: col::<i64>(r, 8)? as u32,
            ready: col(r, 9)?,
            store_beat_at: col(r, 10)?,
            all_queues: col(r, 11)?,
            node_id,
        })
    })
    .collect()
}

/// The server's connection limits and clock, and this store's share of its connections.
pub(crate) async fn store_facts(store: &PostgresStore) -> StoreResult<StoreFacts> {
    let client = store.client().await?;
    // `reserved_connections` exists from PostgreSQL 16 on; `current_setting(.., true)` is
    // NULL where it does not.
    let r = crate::conv::row(
        &client,
        "SELECT current_setting('max_connections')::bigint,
             current_setting('superuser_reserved_connections')::bigint
                 + coalesce(current_setting('reserved_connections', true)::bigint, 0),
             (extract(epoch FROM clock_timestamp()) * 1000)::bigint",
        &[],
    )
    .await?
    .ok_or_else(|| StoreError::Corrupt("SHOW max_connections returned no row".into()))?;
    Ok(StoreFacts {
        kind: "postgres".into(),
        pool_size: store.connections(),
        max_connections: Some(col::<i64>(&r, 0)? as u32),
        reserved_connections: Some(col::<i64>(&r, 1)? as u32),
        now: Some(col(&r, 2)?),
    })
}
