//! Schedules. The fire step locks the due rows it takes (`FOR UPDATE SKIP LOCKED`), creates
//! their runs through the batch create path and advances `next_fire_at`, all in one
//! transaction: two processes firing at once take disjoint schedules, and the tick's
//! idempotency key stops a duplicate run even if they did not.

use super::W;
use crate::PostgresStore;
use crate::conv::{col, exec, row, rows, run_ms, to_text};
use std::sync::{Arc, LazyLock};
use tokio_postgres::Row;
use weft_core::CompiledFlow;
use weft_core::schedule::ScheduleSpec;
use weft_core::time::Millis;
use weft_store::schedules::{
    FlowMemo, PlanMemo, Release, ScheduleCache, ScheduleFlow, keeps_prepared, new_run_id,
    stored_schedule, tick_key, tick_run, unreadable,
};
use weft_store::*;

/// Compiled schedules, shared by every store of the process (keyed by name and document).
pub(super) static CACHE: LazyLock<ScheduleCache> = LazyLock::new(ScheduleCache::default);

const COLS: &str = "name, spec, paused, next_fire_at, last_fire_at, created_at, updated_at";

fn to_record(r: &Row) -> StoreResult<ScheduleRecord> {
    let name: String = col(r, 0)?;
    let mut spec = stored_schedule(&name, &col::<String>(r, 1)?)?;
    spec.paused = col(r, 2)?;
    Ok(ScheduleRecord {
        spec,
        next_fire_at: col(r, 3)?,
        last_fire_at: col(r, 4)?,
        created_at: col(r, 5)?,
        updated_at: col(r, 6)?,
    })
}

pub(crate) async fn schedule_get(
    c: &impl deadpool_postgres::GenericClient,
    name: &str,
) -> StoreResult<Option<ScheduleRecord>> {
    let sql = format!("SELECT {COLS} FROM schedules WHERE name = $1");
    row(c, &sql, &[&name])
        .await?
        .as_ref()
        .map(to_record)
        .transpose()
}

pub(crate) async fn schedule_list(
    c: &impl deadpool_postgres::GenericClient,
) -> StoreResult<Vec<ScheduleRecord>> {
    let sql = format!("SELECT {COLS} FROM schedules ORDER BY name");
    rows(c, &sql, &[]).await?.iter().map(to_record).collect()
}

pub(crate) async fn schedule_next_due(
    c: &impl deadpool_postgres::GenericClient,
) -> StoreResult<Option<Millis>> {
    let r = row(
        c,
        "SELECT min(next_fire_at) FROM schedules WHERE NOT paused AND next_fire_at IS NOT NULL",
        &[],
    )
    .await?;
    match r {
        Some(r) => col(&r, 0),
        None => Ok(None),
    }
}

pub(crate) async fn schedule_put(
    store: &PostgresStore,
    spec: &ScheduleSpec,
    now: Millis,
) -> StoreResult<(ScheduleRecord, bool)> {
    let text = to_text(spec)?;
    let compiled = CACHE.get(&spec.name, &text)?;
    let mut client = store.client().await?;
    let mut w = W::begin(&mut client, store).await?;
    let sql = format!("SELECT {COLS} FROM schedules WHERE name = $1 FOR UPDATE");
    let old = row(&w.tx, &sql, &[&spec.name])
        .await?
        .as_ref()
        .map(to_record)
        .transpose()?;
    // Any change may matter to the tick prepared ahead (input, flow, version, cron): it is
    // dropped and prepared again from the new document.
    w.drop_prepared_of(&spec.name).await?;
    let next = match &old {
        Some(o)
            if o.spec.cron == spec.cron && o.spec.timezone == spec.timezone && !o.spec.paused =>
        {
            o.next_fire_at
        }
        _ => compiled.next_after(now),
    };
    let sql = format!(
        "INSERT INTO schedules (name, spec, paused, next_fire_at, created_at, updated_at)
         VALUES ($1, $2, $3, $4, $5, $5)
         ON CONFLICT (name) DO UPDATE SET spec = excluded.spec, paused = excluded.paused,
           next_fire_at = excluded.next_fire_at, updated_at = excluded.updated_at,
           prepared_run = NULL
         RETURNING {COLS}"
    );
    let r = row(&w.tx, &sql, &[&spec.name, &text, &spec.paused, &next, &now])
        .await?
        .ok_or_else(|| StoreError::Corrupt("upsert returned no row".into()))?;
    let rec = to_record(&r)?;
    w.commit().await?;
    Ok((rec, old.is_none()))
}

pub(crate) async fn schedule_delete(store: &PostgresStore, name: &str) -> StoreResult<()> {
    let mut client = store.client().await?;
    let mut w = W::begin(&mut client, store).await?;
    if rows(
        &w.tx,
        "SELECT 1 FROM schedules WHERE name = $1 FOR UPDATE",
        &[&name],
    )
    .await?
    .is_empty()
    {
        return Err(StoreError::NotFound(format!("schedule {name}")));
    }
    w.drop_prepared_of(name).await?;
    exec(&w.tx, "DELETE FROM schedules WHERE name = $1", &[&name]).await?;
    w.commit().await?;
    Ok(())
}

pub(crate) async fn schedule_set_paused(
    store: &PostgresStore,
    name: &str,
    paused: bool,
    now: Millis,
) -> StoreResult<ScheduleRecord> {
    let mut client = store.client().await?;
    let mut w = W::begin(&mut client, store).await?;
    let sql = format!("SELECT {COLS} FROM schedules WHERE name = $1 FOR UPDATE");
    let old = row(&w.tx, &sql, &[&name])
        .await?
        .as_ref()
        .map(to_record)
        .transpose()?
        .ok_or_else(|| StoreError::NotFound(format!("schedule {name}")))?;
    if paused {
        // A paused schedule fires nothing, not even a tick prepared before the pause.
        w.drop_prepared_of(name).await?;
    }
    let next = match (paused, old.spec.paused) {
        (false, true) => old
            .spec
            .compile()
            .map_err(|e| StoreError::Corrupt(format!("schedule {name}: {e}")))?
            .next_after(now),
        _ => old.next_fire_at,
    };
    let sql = format!(
        "UPDATE schedules SET paused = $2, next_fire_at = $3, updated_at = $4 WHERE name = $1 RETURNING {COLS}"
    );
    let r = row(&w.tx, &sql, &[&name, &paused, &next, &now])
        .await?
        .ok_or_else(|| StoreError::NotFound(format!("schedule {name}")))?;
    let rec = to_record(&r)?;
    w.commit().await?;
    Ok(rec)
}

/// The flow a schedule's runs use: its pinned version, or the latest one.
pub(super) async fn schedule_flow(
    w: &W<'_>,
    spec: &ScheduleSpec,
) -> StoreResult<(Arc<CompiledFlow>, u32)> {
    let version = match spec.version {
        Some(v) => v,
        None => {
            let r = row(
                &w.tx,
                "SELECT max(version) FROM flows WHERE name = $1",
                &[&spec.flow],
            )
            .await?;
            let v: Option<i32> = match r {
                Some(r) => col(&r, 0)?,
                None => None,
            };
            v.ok_or_else(|| StoreError::NotFound(format!("flow {}", spec.flow)))? as u32
        }
    };
    Ok((w.store.flow(&w.tx, &spec.flow, version).await?, version))
}

/// [`schedule_flow`], looked up once per pass for each flow and pinned version.
pub(super) async fn schedule_flow_memo(
    w: &W<'_>,
    flows: &mut FlowMemo,
    spec: &ScheduleSpec,
) -> StoreResult<ScheduleFlow> {
    match flows.get(spec) {
        Some(found) => found,
        None => {
            let found = schedule_flow(w, spec).await;
            flows.keep(spec, found)
        }
    }
}

pub(crate) async fn schedule_fire_due(
    store: &PostgresStore,
    now: Millis,
    limit: u32,
) -> StoreResult<(Vec<FiredTick>, Effects)> {
    // Run ids carry the wall-clock time, which picks their partition.
    store.ensure_partitions([run_ms(&new_run_id())]).await?;
    let mut client = store.client().await?;
    let mut w = W::begin(&mut client, store).await?;
    let due = rows(
        &w.tx,
        "SELECT name, spec, next_fire_at, prepared_run, prepared_version FROM schedules
         WHERE NOT paused AND next_fire_at IS NOT NULL AND next_fire_at <= $1
         ORDER BY next_fire_at LIMIT $2 FOR UPDATE SKIP LOCKED",
        &[&now, &i64::from(limit)],
    )
    .await?;
    let mut release = Vec::new();
    let mut drop = Vec::new();
    let mut fired = Vec::new();
    let mut plans = PlanMemo::default();
    let mut flows = FlowMemo::default();
    let mut runs = Vec::new();
    let mut at_run = Vec::new();
    let mut update: (Vec<String>, Vec<Option<Millis>>, Vec<Option<Millis>>) = Default::default();
    for r in &due {
        let (name, text, at): (String, String, Millis) = (col(r, 0)?, col(r, 1)?, col(r, 2)?);
        let held: Option<String> = col(r, 3)?;
        let prepared: Option<i32> = col(r, 4)?;
        let compiled = match CACHE.get(&name, &text) {
            Ok(c) => c,
            Err(e) => {
                drop.extend(held);
                fired.push(unreadable(&name, at, &e));
                update.0.push(name);
                update.1.push(None);
                update.2.push(None);
                continue;
            }
        };
        let plan = plans.plan(&compiled, at, now);
        let flow = schedule_flow_memo(&w, &mut flows, &compiled.spec).await;
        // The run prepared for `at` is released if this plan fires `at` with the same flow
        // version; otherwise it goes, before a fresh run takes its tick key.
        let releasing = match (held, &flow) {
            (Some(run), Ok((flow, v)))
                if prepared.is_some_and(|p| keeps_prepared(plan, at, p as u32, *v)) =>
            {
                release.push((
                    fired.len(),
                    Release {
                        run,
                        flow: flow.clone(),
                        version: *v,
                        tick: at,
                    },
                ));
                true
            }
            (Some(run), _) => {
                drop.push(run);
                false
            }
            (None, _) => false,
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
                Ok(_) if tick == at && releasing => {}
                Ok((flow, version)) => {
                    at_run.push(fired.len());
                    runs.push(tick_run(
                        &compiled,
                        flow.clone(),
                        *version,
                        tick,
                        tick_key(&name, tick),
                        false,
                        now,
                    ));
                }
                Err(e) => out.error = Some(e.to_string()),
            }
            fired.push(out);
        }
        update.2.push(plan.ticks.last().copied());
        update.1.push(plan.next);
        update.0.push(name);
    }
    w.drop_prepared(&drop).await?;
    if !release.is_empty() {
        let batch: Vec<Release> = release.iter().map(|(_, r)| r.clone()).collect();
        let released = w.release_prepared(&batch).await?;
        for (i, r) in release {
            fired[i].created = released.contains(&r.run);
            fired[i].run_id = Some(r.run);
        }
    }
    if !runs.is_empty() {
        let created = w.create_runs(&runs).await?;
        for (i, c) in at_run.into_iter().zip(created) {
            fired[i].run_id = Some(c.id);
            fired[i].created = c.created;
        }
    }
    if !update.0.is_empty() {
        exec(
            &w.tx,
            "UPDATE schedules s SET next_fire_at = u.next, last_fire_at = coalesce(u.last, s.last_fire_at),
               prepared_run = NULL
             FROM unnest($1::text[], $2::int8[], $3::int8[]) AS u(name, next, last)
             WHERE s.name = u.name",
            &[&update.0, &update.1, &update.2],
        )
        .await?;
    }
    Ok((fired, w.commit().await?))
}

pub(crate) async fn schedule_trigger(
    store: &PostgresStore,
    name: &str,
    now: Millis,
    key: String,
) -> StoreResult<(FiredTick, Effects)> {
    store.ensure_partitions([run_ms(&new_run_id())]).await?;
    let mut client = store.client().await?;
    let mut w = W::begin(&mut client, store).await?;
    let text: String = match row(
        &w.tx,
        "SELECT spec FROM schedules WHERE name = $1",
        &[&name],
    )
    .await?
    {
        Some(r) => col(&r, 0)?,
        None => return Err(StoreError::NotFound(format!("schedule {name}"))),
    };
    let compiled = CACHE.get(name, &text)?;
    let (flow, version) = schedule_flow(&w, &compiled.spec).await?;
    let run = tick_run(&compiled, flow, version, now, key, true, now);
    let created = w.create_runs(std::slice::from_ref(&run)).await?;
    let c = created
        .into_iter()
        .next()
        .ok_or_else(|| StoreError::Corrupt("create returned no run".into()))?;
    let tick = FiredTick {
        schedule: name.to_string(),
        fire_time: now,
        run_id: Some(c.id),
        created: c.created,
        error: None,
    };
    Ok((tick, w.commit().await?))
}
