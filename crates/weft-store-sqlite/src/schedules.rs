//! Schedules: writes on the writer thread (so the fire step's reads, run creations and
//! `next_fire_at` updates are one transaction with everything else in its batch), reads on
//! the read pool.

use crate::conv::classify;
use crate::ops::W;
use rusqlite::{Connection, OptionalExtension, params};
use std::sync::LazyLock;
use weft_core::schedule::ScheduleSpec;
use weft_core::time::Millis;
use weft_store::schedules::{
    FlowMemo, PlanMemo, Release, ScheduleCache, ScheduleFlow, keeps_prepared, stored_schedule,
    tick_key, tick_run, unreadable,
};
use weft_store::*;

/// Compiled schedules, shared by every store of the process (keyed by name and document).
pub(crate) static CACHE: LazyLock<ScheduleCache> = LazyLock::new(ScheduleCache::default);

const COLS: &str = "name, spec, paused, next_fire_at, last_fire_at, created_at, updated_at";

pub(crate) fn db<T>(r: rusqlite::Result<T>) -> StoreResult<T> {
    r.map_err(classify)
}

/// A due schedule: name, spec, next_fire_at, prepared_run and that run's flow version.
type Due = (String, String, Millis, Option<String>, Option<u32>);

/// name, spec, paused, next_fire_at, last_fire_at, created_at, updated_at.
type Row = (
    String,
    String,
    bool,
    Option<Millis>,
    Option<Millis>,
    Millis,
    Millis,
);

fn record(r: &rusqlite::Row<'_>) -> rusqlite::Result<Row> {
    Ok((
        r.get(0)?,
        r.get(1)?,
        r.get(2)?,
        r.get(3)?,
        r.get(4)?,
        r.get(5)?,
        r.get(6)?,
    ))
}

fn to_record(
    (name, text, paused, next, last, created, updated): Row,
) -> StoreResult<ScheduleRecord> {
    let mut spec = stored_schedule(&name, &text)?;
    spec.paused = paused;
    Ok(ScheduleRecord {
        spec,
        next_fire_at: next,
        last_fire_at: last,
        created_at: created,
        updated_at: updated,
    })
}

fn one(c: &Connection, name: &str) -> StoreResult<Option<ScheduleRecord>> {
    let row = db(c
        .prepare_cached(&format!("SELECT {COLS} FROM schedules WHERE name = ?1"))
        .and_then(|mut s| s.query_row([name], record).optional()))?;
    row.map(to_record).transpose()
}

/// One schedule.
pub(crate) fn get(c: &Connection, name: &str) -> StoreResult<Option<ScheduleRecord>> {
    one(c, name)
}

/// Every schedule, by name.
pub(crate) fn list(c: &Connection) -> StoreResult<Vec<ScheduleRecord>> {
    let rows: Vec<Row> = db(c
        .prepare_cached(&format!("SELECT {COLS} FROM schedules ORDER BY name"))
        .and_then(|mut s| s.query_map([], record)?.collect()))?;
    rows.into_iter().map(to_record).collect()
}

/// The earliest next tick of an unpaused schedule.
pub(crate) fn next_due(c: &Connection) -> StoreResult<Option<Millis>> {
    db(c.prepare_cached(
        "SELECT min(next_fire_at) FROM schedules WHERE paused = 0 AND next_fire_at IS NOT NULL",
    )
    .and_then(|mut s| s.query_row([], |r| r.get(0))))
}

impl W {
    pub(crate) fn schedule_put(
        &mut self,
        spec: &ScheduleSpec,
        now: Millis,
    ) -> StoreResult<(ScheduleRecord, bool)> {
        let text = serde_json::to_string(spec).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        let compiled = CACHE.get(&spec.name, &text)?;
        // Any change may matter to the tick prepared ahead (input, flow, version, cron):
        // it is dropped and prepared again from the new document.
        self.drop_prepared_of(&spec.name)?;
        let old = one(&self.conn, &spec.name)?;
        let next = match &old {
            Some(o)
                if o.spec.cron == spec.cron
                    && o.spec.timezone == spec.timezone
                    && !o.spec.paused =>
            {
                o.next_fire_at
            }
            _ => compiled.next_after(now),
        };
        db(self
            .conn
            .prepare_cached(
                "INSERT INTO schedules (name, spec, paused, next_fire_at, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?5)
                 ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, paused = excluded.paused,
                   next_fire_at = excluded.next_fire_at, updated_at = excluded.updated_at,
                   prepared_run = NULL",
            )
            .and_then(|mut s| s.execute(params![spec.name, text, spec.paused, next, now])))?;
        let rec = one(&self.conn, &spec.name)?
            .ok_or_else(|| StoreError::Corrupt(format!("schedule {} vanished", spec.name)))?;
        Ok((rec, old.is_none()))
    }

    pub(crate) fn schedule_delete(&mut self, name: &str) -> StoreResult<()> {
        self.drop_prepared_of(name)?;
        let n = db(self
            .conn
            .prepare_cached("DELETE FROM schedules WHERE name = ?1")
            .and_then(|mut s| s.execute([name])))?;
        if n == 0 {
            return Err(StoreError::NotFound(format!("schedule {name}")));
        }
        Ok(())
    }

    pub(crate) fn schedule_set_paused(
        &mut self,
        name: &str,
        paused: bool,
        now: Millis,
    ) -> StoreResult<ScheduleRecord> {
        let old = one(&self.conn, name)?
            .ok_or_else(|| StoreError::NotFound(format!("schedule {name}")))?;
        if paused {
            // A paused schedule fires nothing, not even a tick prepared before the pause.
            self.drop_prepared_of(name)?;
        }
        let next = match (paused, old.spec.paused) {
            (false, true) => old
                .spec
                .compile()
                .map_err(|e| StoreError::Corrupt(format!("schedule {name}: {e}")))?
                .next_after(now),
            _ => old.next_fire_at,
        };
        db(self
            .conn
            .prepare_cached(
                "UPDATE schedules SET paused = ?2, next_fire_at = ?3, updated_at = ?4 WHERE name = ?1",
            )
            .and_then(|mut s| s.execute(params![name, paused, next, now])))?;
        one(&self.conn, name)?.ok_or_else(|| StoreError::NotFound(format!("schedule {name}")))
    }

    /// The flow a schedule's runs use: its pinned version, or the latest one.
    pub(crate) fn schedule_flow(
        &mut self,
        spec: &ScheduleSpec,
    ) -> StoreResult<(std::sync::Arc<weft_core::CompiledFlow>, u32)> {
        let version = match spec.version {
            Some(v) => v,
            None => db(self
                .conn
                .prepare_cached("SELECT max(version) FROM flows WHERE name = ?1")
                .and_then(|mut s| s.query_row([&spec.flow], |r| r.get::<_, Option<u32>>(0))))?
            .ok_or_else(|| StoreError::NotFound(format!("flow {}", spec.flow)))?,
        };
        Ok((self.flow(&spec.flow, version)?, version))
    }

    /// [`Self::schedule_flow`], looked up once per pass for each flow and pinned version.
    pub(crate) fn schedule_flow_memo(
        &mut self,
        flows: &mut FlowMemo,
        spec: &ScheduleSpec,
    ) -> StoreResult<ScheduleFlow> {
        match flows.get(spec) {
            Some(found) => found,
            None => {
                let found = self.schedule_flow(spec);
                flows.keep(spec, found)
            }
        }
    }

    pub(crate) fn schedule_fire_due(
        &mut self,
        now: Millis,
        limit: u32,
        fx: &mut Effects,
    ) -> StoreResult<Vec<FiredTick>> {
        let due: Vec<Due> = db(self
            .conn
            .prepare_cached(
                "SELECT name, spec, next_fire_at, prepared_run, prepared_version FROM schedules
                 WHERE paused = 0 AND next_fire_at IS NOT NULL AND next_fire_at <= ?1
                 ORDER BY next_fire_at LIMIT ?2",
            )
            .and_then(|mut s| {
                s.query_map(params![now, limit], |r| {
                    Ok((r.get(0)?, r.get(1)?, r.get(2)?, r.get(3)?, r.get(4)?))
                })?
                .collect()
            }))?;
        let mut fired = Vec::new();
        let mut plans = PlanMemo::default();
        let mut flows = FlowMemo::default();
        for (name, text, at, prepared, prepared_version) in due {
            let compiled = match CACHE.get(&name, &text) {
                Ok(c) => c,
                Err(e) => {
                    if let Some(run) = &prepared {
                        self.drop_prepared(run)?;
                    }
                    fired.push(unreadable(&name, at, &e));
                    db(self
                        .conn
                        .prepare_cached("UPDATE schedules SET next_fire_at = NULL, prepared_run = NULL WHERE name = ?1")
                        .and_then(|mut s| s.execute([&name])))?;
                    continue;
                }
            };
            let plan = plans.plan(&compiled, at, now);
            let spec = &compiled.spec;
            let flow = self.schedule_flow_memo(&mut flows, spec);
            // The run prepared for `at` is released if this plan fires `at` with the same
            // flow version; otherwise it goes, before a fresh run takes its tick key.
            let release = match (&prepared, &flow) {
                (Some(run), Ok((_, v)))
                    if prepared_version.is_some_and(|p| keeps_prepared(plan, at, p, *v)) =>
                {
                    Some(run.clone())
                }
                (Some(run), _) => {
                    self.drop_prepared(run)?;
                    None
                }
                (None, _) => None,
            };
            for &tick in &plan.ticks {
                let mut out = FiredTick {
                    schedule: name.clone(),
                    fire_time: tick,
                    run_id: None,
                    created: false,
                    error: None,
                };
                match &flow {
                    Ok((flow, version)) if tick == at && release.is_some() => {
                        let run = release.clone().unwrap_or_default();
                        let held = Release {
                            run: run.clone(),
                            flow: flow.clone(),
                            version: *version,
                            tick,
                        };
                        out.created = self.release_prepared(&[held], fx)?[0];
                        out.run_id = Some(run);
                    }
                    Ok((flow, version)) => {
                        let run = tick_run(
                            &compiled,
                            flow.clone(),
                            *version,
                            tick,
                            tick_key(&name, tick),
                            false,
                            now,
                        );
                        let created = self.run_create(&run, fx)?;
                        out.run_id = Some(created.id);
                        out.created = created.created;
                    }
                    Err(e) => out.error = Some(e.to_string()),
                }
                fired.push(out);
            }
            let last = plan.ticks.last().copied();
            db(self
                .conn
                .prepare_cached(
                    "UPDATE schedules SET next_fire_at = ?2, last_fire_at = coalesce(?3, last_fire_at), prepared_run = NULL
                     WHERE name = ?1",
                )
                .and_then(|mut s| s.execute(params![name, plan.next, last])))?;
        }
        Ok(fired)
    }

    pub(crate) fn schedule_trigger(
        &mut self,
        name: &str,
        now: Millis,
        key: String,
        fx: &mut Effects,
    ) -> StoreResult<FiredTick> {
        let text: String = db(self
            .conn
            .prepare_cached("SELECT spec FROM schedules WHERE name = ?1")
            .and_then(|mut s| s.query_row([name], |r| r.get(0)).optional()))?
        .ok_or_else(|| StoreError::NotFound(format!("schedule {name}")))?;
        let compiled = CACHE.get(name, &text)?;
        let (flow, version) = self.schedule_flow(&compiled.spec)?;
        let created =
            self.run_create(&tick_run(&compiled, flow, version, now, key, true, now), fx)?;
        Ok(FiredTick {
            schedule: name.to_string(),
            fire_time: now,
            run_id: Some(created.id),
            created: created.created,
            error: None,
        })
    }
}
