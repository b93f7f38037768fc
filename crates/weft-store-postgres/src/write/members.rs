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
        "INSERT INTO members (node_id, hostname, pid, roles, queues, started_at, beat_at, load)
         VALUES ($1, $2, $3, $4, $5, $6, $7, $8)
         ON CONFLICT (node_id) DO UPDATE SET hostname = excluded.hostname,
             pid = excluded.pid, roles = excluded.roles, queues = excluded.queues,
             started_at = excluded.started_at, beat_at = excluded.beat_at, load = excluded.load",
        &[
            &m.node_id,
            &m.hostname,
            &i64::from(m.pid),
            &roles,
            &queues,
            &m.started_at,
            &m.beat_at,
            &i64::from(m.load),
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
        "SELECT node_id, hostname, pid, roles, queues, started_at, beat_at, load
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
            node_id,
        })
    })
    .collect()
}
