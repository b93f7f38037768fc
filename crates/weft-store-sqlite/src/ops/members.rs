//! Cluster membership (`weft_store::MemberStore`): one row per process, replaced by each
//! of its beats. A beat also forgets members gone for longer than
//! `MEMBER_FORGET_AFTER_MS`, so the table holds only recent processes.

use super::*;

impl W {
    /// Creates or replaces `m`'s row, and deletes rows whose last beat is long past.
    pub(crate) fn member_beat(&mut self, m: &MemberRecord) -> R<()> {
        let roles = to_json(&m.roles)?;
        let queues = to_json(&m.queues)?;
        db(self
            .conn
            .prepare_cached(
                "INSERT INTO members (node_id, hostname, pid, roles, queues, started_at, beat_at, load,
                     pool_size, ready, all_queues)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11)
                 ON CONFLICT (node_id) DO UPDATE SET hostname = excluded.hostname,
                     pid = excluded.pid, roles = excluded.roles, queues = excluded.queues,
                     started_at = excluded.started_at, beat_at = excluded.beat_at,
                     load = excluded.load, pool_size = excluded.pool_size,
                     ready = excluded.ready, all_queues = excluded.all_queues",
            )
            .and_then(|mut s| {
                s.execute(params![
                    m.node_id,
                    m.hostname,
                    m.pid,
                    roles,
                    queues,
                    m.started_at,
                    m.beat_at,
                    m.load,
                    m.pool_size,
                    m.ready,
                    m.all_queues
                ])
            }))?;
        db(self
            .conn
            .prepare_cached("DELETE FROM members WHERE beat_at < ?1")
            .and_then(|mut s| s.execute([m.beat_at - MEMBER_FORGET_AFTER_MS])))?;
        Ok(())
    }
}

fn to_json<T: serde::Serialize>(v: &T) -> R<String> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}
