//! Ticks prepared ahead (see `weft_store::schedules`): the prepare step creates a tick's run
//! held a few seconds early, the fire step releases it at the tick (one batched update of
//! held roots instead of a run creation), and pause, re-apply and delete drop it. The
//! prepare step locks the schedule rows it takes (`FOR UPDATE SKIP LOCKED`), as the fire
//! step does, so two processes never prepare the same tick at once, and the tick key stops
//! a duplicate even if they did.

use super::W;
use super::schedules::{CACHE, schedule_flow_memo};
use crate::PostgresStore;
use crate::conv::{col, exec, rows, run_ms};
use weft_core::time::Millis;
use weft_store::schedules::{FlowMemo, PlanMemo, Release, held_reason, new_run_id, prepared_run};
use weft_store::*;

pub(crate) async fn schedule_prepare(
    store: &PostgresStore,
    now: Millis,
    until: Millis,
    limit: u32,
) -> StoreResult<(u32, Effects)> {
    store.ensure_partitions([run_ms(&new_run_id())]).await?;
    let mut client = store.client().await?;
    let mut w = W::begin(&mut client, store).await?;
    let todo = rows(
        &w.tx,
        "SELECT name, spec, next_fire_at FROM schedules
         WHERE NOT paused AND next_fire_at IS NOT NULL AND prepared_run IS NULL
           AND next_fire_at > $1 AND next_fire_at <= $2
         ORDER BY next_fire_at LIMIT $3 FOR UPDATE SKIP LOCKED",
        &[&now, &until, &i64::from(limit)],
    )
    .await?;
    let mut flows = FlowMemo::default();
    let mut runs = Vec::new();
    let mut names = Vec::new();
    for r in &todo {
        let (name, text, tick): (String, String, Millis) = (col(r, 0)?, col(r, 1)?, col(r, 2)?);
        // A schedule that cannot be prepared (unreadable document, flow gone) is left to
        // the fire step, which reports why at the tick.
        let Ok(compiled) = CACHE.get(&name, &text) else {
            continue;
        };
        let flow = schedule_flow_memo(&w, &mut flows, &compiled.spec).await;
        let Ok((flow, version)) = flow else {
            continue;
        };
        runs.push(prepared_run(&compiled, flow, version, tick, now));
        names.push(name);
    }
    if runs.is_empty() {
        return Ok((0, w.commit().await?));
    }
    // A held run has no timer: the creation's wake-up for its start is not wanted.
    let next_due = w.fx.next_due;
    let created = w.create_runs(&runs).await?;
    w.fx.next_due = next_due;
    let mut hold: (Vec<&str>, Vec<i64>, Vec<String>) = Default::default();
    let mut ids = Vec::with_capacity(created.len());
    // The version only of a run created here: a run that already held the tick's key has
    // none, so the fire step decides about it from scratch (dropping it if it is held).
    let versions: Vec<Option<i32>> = runs
        .iter()
        .zip(&created)
        .map(|(r, c)| c.created.then_some(r.version as i32))
        .collect();
    for ((run, c), name) in runs.iter().zip(&created).zip(&names) {
        if c.created {
            hold.0.push(&run.id);
            hold.1.push(run_ms(&run.id));
            hold.2.push(held_reason(name, run.start_at.unwrap_or(now)));
        }
        ids.push(c.id.as_str());
    }
    exec(
        &w.tx,
        "UPDATE tasks t SET deferred_until = t.scheduled_at, scheduled_at = NULL, deferred_reason = u.reason
         FROM unnest($1::text[], $2::int8[], $3::text[]) AS u(run_id, ms, reason)
         WHERE t.run_id = u.run_id AND t.run_ms = u.ms AND t.state = 'pending'",
        &[&hold.0, &hold.1, &hold.2],
    )
    .await?;
    exec(
        &w.tx,
        "UPDATE schedules s SET prepared_run = u.run, prepared_version = u.version
         FROM unnest($1::text[], $2::text[], $3::int4[]) AS u(name, run, version)
         WHERE s.name = u.name",
        &[&names, &ids, &versions],
    )
    .await?;
    let prepared = hold.0.len() as u32;
    Ok((prepared, w.commit().await?))
}

pub(crate) async fn schedule_release_due(
    store: &PostgresStore,
    now: Millis,
) -> StoreResult<(Vec<FiredTick>, Effects)> {
    let mut client = store.client().await?;
    let mut w = W::begin(&mut client, store).await?;
    // No row locks on the schedules: releasing is conditional on the roots still being
    // held, so a concurrent fire step or a second leader releases each run once.
    let due = rows(
        &w.tx,
        "SELECT name, spec, next_fire_at, prepared_run, prepared_version FROM schedules
         WHERE NOT paused AND next_fire_at IS NOT NULL AND next_fire_at <= $1
           AND prepared_run IS NOT NULL",
        &[&now],
    )
    .await?;
    let mut plans = PlanMemo::default();
    let mut flows = FlowMemo::default();
    let mut batch = Vec::new();
    let mut names = Vec::new();
    for r in &due {
        let (name, text, at, run): (String, String, Millis, String) =
            (col(r, 0)?, col(r, 1)?, col(r, 2)?, col(r, 3)?);
        let prepared: Option<i32> = col(r, 4)?;
        let Ok(compiled) = CACHE.get(&name, &text) else {
            continue;
        };
        let flow = schedule_flow_memo(&w, &mut flows, &compiled.spec).await;
        let prepared = prepared.map(|v| v as u32);
        if let Some(r) = Release::of_due(&mut plans, &compiled, flow, run, prepared, at, now) {
            batch.push(r);
            names.push(name);
        }
    }
    let released = w.release_prepared(&batch).await?;
    let fired = batch
        .into_iter()
        .zip(names)
        .filter(|(r, _)| released.contains(&r.run))
        .map(|(r, schedule)| FiredTick {
            schedule,
            fire_time: r.tick,
            run_id: Some(r.run),
            created: true,
            error: None,
        })
        .collect();
    Ok((fired, w.commit().await?))
}

impl W<'_> {
    /// Starts held runs at their ticks: `delay` roots start their timer from the tick, the
    /// other roots become ready. Returns the runs that had something held (a run cancelled
    /// meanwhile has not).
    pub(super) async fn release_prepared(
        &mut self,
        batch: &[Release],
    ) -> StoreResult<std::collections::HashSet<String>> {
        if batch.is_empty() {
            return Ok(Default::default());
        }
        self.lock_runs(batch.iter().map(|r| (r.run.as_str(), run_ms(&r.run))))
            .await?;
        // Per held root: run id, its partition, node, and the timer of a `delay` root.
        let (mut run, mut ms, mut node_name) = (Vec::new(), Vec::new(), Vec::new());
        let mut at: Vec<Option<Millis>> = Vec::new();
        for r in batch {
            for &idx in &r.flow.roots {
                let node = &r.flow.nodes[idx];
                run.push(r.run.as_str());
                ms.push(run_ms(&r.run));
                node_name.push(node.name.as_str());
                at.push(r.root_due(node));
            }
        }
        let done = rows(
            &self.tx,
            "UPDATE tasks t SET state = CASE WHEN u.due IS NULL THEN 'ready' ELSE 'pending' END,
                 scheduled_at = u.due, deferred_reason = NULL, deferred_until = NULL
             FROM unnest($1::text[], $2::int8[], $3::text[], $4::int8[]) AS u(run_id, ms, node, due)
             WHERE t.run_id = u.run_id AND t.run_ms = u.ms AND t.node = u.node
               AND t.state = 'pending' AND t.scheduled_at IS NULL
             RETURNING u.run_id, u.node",
            &[&run, &ms, &node_name, &at],
        )
        .await?;
        let done: std::collections::HashSet<(String, String)> = done
            .iter()
            .map(|r| Ok((col(r, 0)?, col(r, 1)?)))
            .collect::<StoreResult<_>>()?;
        let mut released = std::collections::HashSet::new();
        for r in batch {
            for &idx in &r.flow.roots {
                let node = &r.flow.nodes[idx];
                if !done.contains(&(r.run.clone(), node.name.clone())) {
                    continue;
                }
                released.insert(r.run.clone());
                if let Some(at) = r.root_due(node) {
                    self.fx.due_at(at);
                } else {
                    self.fx
                        .ready
                        .push(ReadyTask::of(&r.run, &r.flow, r.version, node, 1));
                }
            }
        }
        Ok(released)
    }

    /// Deletes held runs (never started; their tick keys become free again). A run that is
    /// no longer held (cancelled by a user, or already released) is left alone.
    pub(super) async fn drop_prepared(&mut self, runs: &[String]) -> StoreResult<()> {
        if runs.is_empty() {
            return Ok(());
        }
        self.lock_runs(runs.iter().map(|r| (r.as_str(), run_ms(r))))
            .await?;
        let ms: Vec<i64> = runs.iter().map(|r| run_ms(r)).collect();
        let held = rows(
            &self.tx,
            "SELECT r.id, r.id_ms FROM runs r JOIN unnest($1::text[], $2::int8[]) AS u(id, ms)
               ON r.id = u.id AND r.id_ms = u.ms
             WHERE r.state = 'queued' AND EXISTS (SELECT 1 FROM tasks t WHERE t.run_id = r.id
               AND t.run_ms = r.id_ms AND t.state = 'pending' AND t.scheduled_at IS NULL)",
            &[&runs, &ms],
        )
        .await?;
        let ids: Vec<String> = held.iter().map(|r| col(r, 0)).collect::<StoreResult<_>>()?;
        let ms: Vec<i64> = held.iter().map(|r| col(r, 1)).collect::<StoreResult<_>>()?;
        for sql in [
            "DELETE FROM tasks t USING unnest($1::text[], $2::int8[]) AS u(id, ms)
             WHERE t.run_id = u.id AND t.run_ms = u.ms",
            "DELETE FROM run_idempotency i USING unnest($1::text[], $2::int8[]) AS u(id, ms)
             WHERE i.run_id = u.id AND i.run_ms = u.ms",
            "DELETE FROM runs r USING unnest($1::text[], $2::int8[]) AS u(id, ms)
             WHERE r.id = u.id AND r.id_ms = u.ms",
        ] {
            exec(&self.tx, sql, &[&ids, &ms]).await?;
        }
        Ok(())
    }

    /// Drops the held runs of flow `flow` (it is being deleted: a held run must not keep
    /// it alive, and the tick reports the missing flow when it comes due).
    pub(super) async fn drop_prepared_of_flow(&mut self, flow: &str) -> StoreResult<()> {
        let found = rows(
            &self.tx,
            "SELECT name, prepared_run FROM schedules
             WHERE prepared_run IS NOT NULL AND (spec::jsonb)->>'flow' = $1
             ORDER BY name FOR UPDATE",
            &[&flow],
        )
        .await?;
        if found.is_empty() {
            return Ok(());
        }
        let names: Vec<String> = found
            .iter()
            .map(|r| col(r, 0))
            .collect::<StoreResult<_>>()?;
        let runs: Vec<String> = found
            .iter()
            .map(|r| col(r, 1))
            .collect::<StoreResult<_>>()?;
        self.drop_prepared(&runs).await?;
        exec(
            &self.tx,
            "UPDATE schedules SET prepared_run = NULL WHERE name = ANY($1)",
            &[&names],
        )
        .await?;
        Ok(())
    }

    /// Drops schedule `name`'s held run, if it has one, and clears `prepared_run`. The
    /// caller holds the schedule's row lock.
    pub(super) async fn drop_prepared_of(&mut self, name: &str) -> StoreResult<()> {
        let run = rows(
            &self.tx,
            "SELECT prepared_run FROM schedules WHERE name = $1 AND prepared_run IS NOT NULL",
            &[&name],
        )
        .await?;
        let runs: Vec<String> = run.iter().map(|r| col(r, 0)).collect::<StoreResult<_>>()?;
        if !runs.is_empty() {
            self.drop_prepared(&runs).await?;
            exec(
                &self.tx,
                "UPDATE schedules SET prepared_run = NULL WHERE name = $1",
                &[&name],
            )
            .await?;
        }
        Ok(())
    }
}
