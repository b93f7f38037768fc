//! Claims of ready tasks by workers sharing the database, and leader leases
//! (`weft_store::ClaimStore`).
//!
//! Every operation runs on the writer thread, so claims are serialised: two claims never
//! see the same unclaimed task. A claimed task stays `ready` with `lease_owner` and
//! `lease_until` set; every transition into or out of `ready` clears both (see `tasks`,
//! `timers`, `dlq`, `runs`), so only claimed ready tasks ever carry a lease.

use super::*;

impl W {
    /// Claims up to `limit` unclaimed ready tasks of `queue`: highest priority first, then
    /// the oldest run (ids are UUID v7, so they sort by creation), then flow order.
    pub(crate) fn task_claim(
        &mut self,
        worker: &str,
        queue: &str,
        limit: u32,
        lease_until: Millis,
    ) -> R<Vec<ReadyTask>> {
        if limit == 0 {
            return Ok(Vec::new());
        }
        let rows: Vec<TaskRow> = db(self
            .conn
            .prepare_cached(
                "SELECT t.run_id, t.node, t.attempt, r.flow, r.version, t.queue, t.priority
                 FROM tasks t JOIN runs r ON r.id = t.run_id
                 WHERE t.queue = ?1 AND t.state = 'ready' AND t.lease_owner IS NULL
                 ORDER BY t.priority DESC, t.run_id, t.idx LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![queue, limit as i64], task_row)?
                    .collect()
            }))?;
        for (run, node, ..) in &rows {
            db(self
                .conn
                .prepare_cached(
                    "UPDATE tasks SET lease_owner = ?3, lease_until = ?4 WHERE run_id = ?1 AND node = ?2",
                )
                .and_then(|mut s| s.execute(params![run, node, worker, lease_until])))?;
        }
        Ok(rows.into_iter().map(ready_task).collect())
    }

    /// Extends `worker`'s leases; returns the tasks it holds, by run and flow order.
    pub(crate) fn task_heartbeat(
        &mut self,
        worker: &str,
        lease_until: Millis,
    ) -> R<Vec<(String, String)>> {
        db(self
            .conn
            .prepare_cached(
                "UPDATE tasks SET lease_until = ?2 WHERE lease_owner = ?1 AND state = 'ready'",
            )
            .and_then(|mut s| s.execute(params![worker, lease_until])))?;
        db(self
            .conn
            .prepare_cached(
                "SELECT run_id, node FROM tasks WHERE lease_owner = ?1 AND state = 'ready'
                 ORDER BY run_id, idx",
            )
            .and_then(|mut s| {
                s.query_map([worker], |r| Ok((r.get(0)?, r.get(1)?)))?
                    .collect()
            }))
    }

    /// Unclaims `worker`'s unstarted tasks among `tasks`; returns how many.
    pub(crate) fn task_release(&mut self, worker: &str, tasks: &[ReadyTask]) -> R<u64> {
        let mut stmt = db(self.conn.prepare_cached(
            "UPDATE tasks SET lease_owner = NULL, lease_until = NULL
             WHERE run_id = ?1 AND node = ?2 AND lease_owner = ?3 AND state = 'ready'",
        ))?;
        let mut n = 0;
        for t in tasks {
            n += db(stmt.execute(params![&*t.run_id, &*t.node, worker]))? as u64;
        }
        Ok(n)
    }

    /// Hands back every claimed task whose lease ended before `now`, as the same attempt,
    /// with a note of the lost attempt in its `error`.
    pub(crate) fn task_reap(&mut self, now: Millis, fx: &mut Effects) -> R<()> {
        let rows: Vec<TaskRow> = db(self
            .conn
            .prepare_cached(
                "SELECT t.run_id, t.node, t.attempt, r.flow, r.version, t.queue, t.priority
                 FROM tasks t JOIN runs r ON r.id = t.run_id
                 WHERE t.lease_owner IS NOT NULL AND t.lease_until < ?1 AND t.state = 'ready'
                 ORDER BY t.priority DESC, t.run_id, t.idx",
            )
            .and_then(|mut s| s.query_map([now], task_row)?.collect()))?;
        for (run, node, ..) in &rows {
            db(self
                .conn
                .prepare_cached(
                    "UPDATE tasks SET
                         error = 'attempt ' || attempt || ' lost: lease of worker ' || lease_owner
                                 || ' expired at ' || lease_until,
                         lease_owner = NULL, lease_until = NULL
                     WHERE run_id = ?1 AND node = ?2",
                )
                .and_then(|mut s| s.execute(params![run, node])))?;
        }
        fx.ready.extend(rows.into_iter().map(ready_task));
        Ok(())
    }

    /// Takes or renews `duty` for `holder` until `now + ttl_ms`, unless another holder's
    /// lease is still running; true if `holder` holds it afterwards.
    pub(crate) fn leader_acquire(
        &mut self,
        duty: &str,
        holder: &str,
        now: Millis,
        ttl_ms: i64,
    ) -> R<bool> {
        let changed = db(self
            .conn
            .prepare_cached(
                "INSERT INTO leader_leases (duty, holder, until) VALUES (?1, ?2, ?3 + ?4)
                 ON CONFLICT (duty) DO UPDATE SET holder = excluded.holder, until = excluded.until
                 WHERE leader_leases.until < ?3 OR leader_leases.holder = excluded.holder",
            )
            .and_then(|mut s| s.execute(params![duty, holder, now, ttl_ms])))?;
        Ok(changed > 0)
    }

    /// Deletes `duty`'s lease if `holder` holds it.
    pub(crate) fn leader_release(&mut self, duty: &str, holder: &str) -> R<()> {
        db(self
            .conn
            .prepare_cached("DELETE FROM leader_leases WHERE duty = ?1 AND holder = ?2")
            .and_then(|mut s| s.execute(params![duty, holder])))?;
        Ok(())
    }
}
