//! Ticks prepared ahead (see `weft_store::schedules`): the prepare step creates a tick's run
//! held a few seconds early, the fire step releases it at the tick (one small update per
//! root instead of a run creation), and pause, re-apply and delete drop it. All of it runs
//! on the writer thread, inside the writer's batch transaction.

use crate::ops::W;
use crate::schedules::{CACHE, db};
use rusqlite::{OptionalExtension, params};
use std::sync::Arc;
use weft_core::schedule::CompiledSchedule;
use weft_core::time::Millis;
use weft_store::schedules::{FlowMemo, PlanMemo, Release, held_reason, prepared_run};
use weft_store::*;

/// A due schedule with a held run: name, compiled document (none if it no longer compiles;
/// the fire step reports that), tick, held run and the flow version it was prepared with.
type Held = (
    String,
    Option<Arc<CompiledSchedule>>,
    Millis,
    String,
    Option<u32>,
);

impl W {
    /// Creates the held runs of up to `limit` unprepared ticks in `(now, until]`.
    pub(crate) fn schedule_prepare(
        &mut self,
        now: Millis,
        until: Millis,
        limit: u32,
        fx: &mut Effects,
    ) -> StoreResult<u32> {
        let todo: Vec<(String, String, Millis)> = db(self
            .conn
            .prepare_cached(
                "SELECT name, spec, next_fire_at FROM schedules
                 WHERE paused = 0 AND next_fire_at IS NOT NULL AND prepared_run IS NULL
                   AND next_fire_at > ?1 AND next_fire_at <= ?2
                 ORDER BY next_fire_at LIMIT ?3",
            )
            .and_then(|mut s| {
                s.query_map(params![now, until, limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?))
                })?
                .collect()
            }))?;
        // A held run has no timer: the creation's wake-up for its start is not wanted.
        let next_due = fx.next_due;
        let mut flows = FlowMemo::default();
        let mut prepared = 0;
        for (name, text, tick) in todo {
            // A schedule that cannot be prepared (unreadable document, flow gone) is left
            // to the fire step, which reports why at the tick.
            let Ok(compiled) = CACHE.get(&name, &text) else {
                continue;
            };
            let flow = self.schedule_flow_memo(&mut flows, &compiled.spec);
            let Ok((flow, version)) = flow else {
                continue;
            };
            let run = prepared_run(&compiled, flow, version, tick, now);
            let created = self.run_create(&run, fx)?;
            if created.created {
                db(self
                    .conn
                    .prepare_cached(
                        "UPDATE tasks SET deferred_until = scheduled_at, scheduled_at = NULL, deferred_reason = ?2
                         WHERE run_id = ?1 AND state = 'pending'",
                    )
                    .and_then(|mut s| s.execute(params![created.id, held_reason(&name, tick)])))?;
                prepared += 1;
            }
            db(self
                .conn
                .prepare_cached(
                    "UPDATE schedules SET prepared_run = ?2, prepared_version = ?3 WHERE name = ?1",
                )
                .and_then(|mut s| {
                    // The version only of a run created here (see the PostgreSQL driver).
                    s.execute(params![
                        name,
                        created.id,
                        created.created.then_some(version)
                    ])
                }))?;
        }
        fx.next_due = next_due;
        Ok(prepared)
    }

    /// Releases every due prepared tick the fire step would release (see
    /// `ScheduleStore::schedule_release_due`), leaving the schedules for the fire step.
    /// A burst of ten thousand ticks due at once is read from the schedules alone (the
    /// prepared run's version is kept beside it) and released in one transaction.
    pub(crate) fn schedule_release_due(
        &mut self,
        now: Millis,
        fx: &mut Effects,
    ) -> StoreResult<Vec<FiredTick>> {
        // The document is compared with the cached one where it lies, not copied out: a
        // burst reads ten thousand of them.
        let due: Vec<Held> = db(self
            .conn
            .prepare_cached(
                "SELECT name, spec, next_fire_at, prepared_run, prepared_version FROM schedules
                 WHERE paused = 0 AND next_fire_at IS NOT NULL AND next_fire_at <= ?1
                   AND prepared_run IS NOT NULL",
            )
            .and_then(|mut s| {
                s.query_map([now], |r| {
                    let name: String = r.get(0)?;
                    let compiled = CACHE.get(&name, r.get_ref(1)?.as_str()?);
                    Ok((name, compiled.ok(), r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect()
            }))?;
        let mut plans = PlanMemo::default();
        let mut flows = FlowMemo::default();
        let mut batch = Vec::with_capacity(due.len());
        let mut names = Vec::with_capacity(due.len());
        for (name, compiled, at, run, prepared) in due {
            let Some(compiled) = compiled else {
                continue;
            };
            let flow = self.schedule_flow_memo(&mut flows, &compiled.spec);
            if let Some(r) = Release::of_due(&mut plans, &compiled, flow, run, prepared, at, now) {
                batch.push(r);
                names.push(name);
            }
        }
        let released = self.release_prepared(&batch, fx)?;
        Ok(batch
            .into_iter()
            .zip(names)
            .zip(released)
            .filter(|(_, released)| *released)
            .map(|((r, schedule), _)| FiredTick {
                schedule,
                fire_time: r.tick,
                run_id: Some(r.run),
                created: true,
                error: None,
            })
            .collect())
    }

    /// Starts held runs at their ticks: `delay` roots start their timer from the tick, the
    /// other roots become ready. Says for each run whether it had something held (a run
    /// cancelled meanwhile has not). One small update per root: measured against one
    /// statement over all the runs' ids (`json_each`, `RETURNING` the rows changed), it is
    /// faster for a burst of 10,000 (19 ms against 25-28 ms).
    pub(crate) fn release_prepared(
        &mut self,
        batch: &[Release],
        fx: &mut Effects,
    ) -> StoreResult<Vec<bool>> {
        let mut released = vec![false; batch.len()];
        let mut update = db(self.conn.prepare_cached(
            "UPDATE tasks SET state = iif(?3 IS NULL, 'ready', 'pending'), scheduled_at = ?3,
                 deferred_reason = NULL, deferred_until = NULL
             WHERE run_id = ?1 AND node = ?2 AND state = 'pending' AND scheduled_at IS NULL",
        ))?;
        for (r, released) in batch.iter().zip(&mut released) {
            for &idx in &r.flow.roots {
                let node = &r.flow.nodes[idx];
                let due = r.root_due(node);
                if db(update.execute(params![r.run, node.name, due]))? == 0 {
                    continue;
                }
                *released = true;
                match due {
                    Some(due) => fx.due_at(due),
                    None => fx
                        .ready
                        .push(ReadyTask::of(&r.run, &r.flow, r.version, node, 1)),
                }
            }
        }
        Ok(released)
    }

    /// Deletes a held run (never started; its tick key becomes free again). A run that is
    /// no longer held (cancelled by a user, or already released) is left alone.
    pub(crate) fn drop_prepared(&mut self, run: &str) -> StoreResult<()> {
        let held: Option<i64> = db(self
            .conn
            .prepare_cached(
                "SELECT 1 FROM runs r WHERE r.id = ?1 AND r.state = 'queued' AND EXISTS
                   (SELECT 1 FROM tasks t WHERE t.run_id = r.id AND t.state = 'pending' AND t.scheduled_at IS NULL)",
            )
            .and_then(|mut s| s.query_row([run], |r| r.get(0)).optional()))?;
        if held.is_some() {
            for sql in [
                "DELETE FROM tasks WHERE run_id = ?1",
                "DELETE FROM runs WHERE id = ?1",
            ] {
                db(self
                    .conn
                    .prepare_cached(sql)
                    .and_then(|mut s| s.execute([run])))?;
            }
        }
        Ok(())
    }

    /// Drops the held runs of flow `flow` (it is being deleted: a held run must not keep
    /// it alive, and the tick reports the missing flow when it comes due).
    pub(crate) fn drop_prepared_of_flow(&mut self, flow: &str) -> StoreResult<()> {
        let names: Vec<String> = db(self
            .conn
            .prepare_cached(
                "SELECT name FROM schedules
                 WHERE prepared_run IS NOT NULL AND json_extract(spec, '$.flow') = ?1",
            )
            .and_then(|mut s| s.query_map([flow], |r| r.get(0))?.collect()))?;
        for name in names {
            self.drop_prepared_of(&name)?;
        }
        Ok(())
    }

    /// Drops schedule `name`'s held run, if it has one, and clears `prepared_run`.
    pub(crate) fn drop_prepared_of(&mut self, name: &str) -> StoreResult<()> {
        let run: Option<Option<String>> = db(self
            .conn
            .prepare_cached("SELECT prepared_run FROM schedules WHERE name = ?1")
            .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional()))?;
        if let Some(Some(run)) = run {
            self.drop_prepared(&run)?;
            db(self
                .conn
                .prepare_cached("UPDATE schedules SET prepared_run = NULL WHERE name = ?1")
                .and_then(|mut s| s.execute([name])))?;
        }
        Ok(())
    }
}
