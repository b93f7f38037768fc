//! Schedules: stored documents, and the fire step that turns due ticks into runs exactly
//! once per tick, per the misfire policy.

use super::fixture::{T0, flow};
use crate::{DynStore, ScheduleRecord, StoreError};
use weft_core::schedule::{Misfire, ScheduleSpec};
use weft_core::time::Millis;

/// The flow the schedules of these cases (and of `prepared`) run.
pub(super) const FLOW: &str = "name: tick\nnodes:\n  a: {type: noop}\n";
/// T0 is 20 s past a minute: a per-minute schedule's first tick after T0.
pub(super) const TICK: Millis = T0 + 40_000;
pub(super) const MINUTE: Millis = 60_000;

/// A per-minute schedule of [`FLOW`] with `input`.
pub(super) fn minutely(name: &str, input: serde_json::Value) -> ScheduleSpec {
    ScheduleSpec {
        name: name.into(),
        description: None,
        flow: "tick".into(),
        version: None,
        cron: "0 * * * * *".into(),
        timezone: "UTC".into(),
        input,
        misfire: Misfire::Skip,
        paused: false,
    }
}

fn every_minute(name: &str) -> ScheduleSpec {
    minutely(
        name,
        serde_json::json!({"at": "{{ schedule.fire_time_ms }}"}),
    )
}

async fn put(store: &DynStore, spec: &ScheduleSpec, now: Millis) -> ScheduleRecord {
    store.schedule_put(spec, now).await.expect("schedule_put").0
}

async fn get(store: &DynStore, name: &str) -> ScheduleRecord {
    store
        .schedule_get(name)
        .await
        .expect("schedule_get")
        .unwrap_or_else(|| panic!("schedule {name} should exist"))
}

/// Fires at `now`; returns the (fire time, run id, created) of each tick.
async fn fire(store: &DynStore, now: Millis) -> Vec<(Millis, String, bool)> {
    let (fired, _) = store
        .schedule_fire_due(now, 100)
        .await
        .expect("schedule_fire_due");
    fired
        .into_iter()
        .map(|t| {
            assert_eq!(t.error, None, "tick {t:?} should have started a run");
            (t.fire_time, t.run_id.expect("run id"), t.created)
        })
        .collect()
}

/// A put stores the document and its first tick after `now`; a replacement with the same
/// cron keeps that tick, a new cron takes a new one.
pub async fn put_get_list_round_trip(store: DynStore) {
    let (rec, created) = store
        .schedule_put(&every_minute("a"), T0)
        .await
        .expect("put");
    assert!(created);
    assert_eq!(rec.next_fire_at, Some(TICK));
    assert_eq!(rec.spec, every_minute("a"));
    put(&store, &every_minute("b"), T0).await;
    let names: Vec<String> = store
        .schedule_list()
        .await
        .expect("list")
        .into_iter()
        .map(|r| r.spec.name)
        .collect();
    assert_eq!(names, ["a", "b"]);
    let (rec, created) = store
        .schedule_put(&every_minute("a"), T0 + 30_000)
        .await
        .expect("put again");
    assert!(!created);
    assert_eq!(rec.next_fire_at, Some(TICK), "same cron keeps its tick");
    let hourly = ScheduleSpec {
        cron: "0 0 * * * *".into(),
        ..every_minute("a")
    };
    let rec = put(&store, &hourly, T0).await;
    assert_eq!(rec.next_fire_at, Some(1_700_002_800_000), "next full hour");
    assert!(store.schedule_get("nope").await.expect("get").is_none());
}

/// A due tick starts one run (input rendered for the tick, idempotency key naming it) and
/// the schedule moves on; firing again at the same time starts nothing.
pub async fn fire_due_creates_one_run_per_tick_and_advances(store: DynStore) {
    flow(&store, FLOW).await;
    put(&store, &every_minute("s"), T0).await;
    assert!(fire(&store, TICK - 1).await.is_empty(), "not due yet");
    let (fired, fx) = store.schedule_fire_due(TICK + 5, 100).await.expect("fire");
    assert_eq!(fired.len(), 1);
    let run_id = fired[0].run_id.clone().expect("run");
    assert!((fired[0].created, fired[0].fire_time) == (true, TICK));
    assert_eq!(fx.ready.len(), 1, "the run's root is ready");
    let run = store
        .run_get(&run_id)
        .await
        .expect("run_get")
        .expect("run")
        .run;
    assert_eq!(run.input, serde_json::json!({"at": TICK}));
    assert_eq!(
        run.idempotency_key.as_deref(),
        Some(format!("schedule:s:{TICK}").as_str())
    );
    let rec = get(&store, "s").await;
    assert_eq!(
        (rec.next_fire_at, rec.last_fire_at),
        (Some(TICK + MINUTE), Some(TICK))
    );
    assert!(
        fire(&store, TICK + 5).await.is_empty(),
        "the tick fired already"
    );
    assert_eq!(
        store.schedule_next_due().await.expect("next_due"),
        Some(TICK + MINUTE)
    );
}

/// A tick fired a second time (two leaders overlapping) finds its run: no duplicate.
pub async fn a_tick_never_creates_two_runs(store: DynStore) {
    flow(&store, FLOW).await;
    put(&store, &every_minute("s"), T0).await;
    let first = fire(&store, TICK + 5).await;
    // Rewind the schedule to the same tick, as a stale second leader would see it.
    let rewound = ScheduleSpec {
        cron: "0 */1 * * * *".into(),
        ..every_minute("s")
    };
    put(&store, &rewound, T0).await;
    let second = fire(&store, TICK + 5).await;
    assert_eq!(second.len(), 1);
    assert_eq!(
        (second[0].0, &second[0].1, second[0].2),
        (TICK, &first[0].1, false)
    );
}

/// Paused schedules do not fire; resumed ones wait for their first tick after the resume.
pub async fn paused_schedules_do_not_fire(store: DynStore) {
    flow(&store, FLOW).await;
    put(&store, &every_minute("s"), T0).await;
    let rec = store
        .schedule_set_paused("s", true, T0 + 1)
        .await
        .expect("pause");
    assert!(rec.spec.paused);
    assert!(fire(&store, TICK + 5 * MINUTE).await.is_empty());
    assert_eq!(store.schedule_next_due().await.expect("next_due"), None);
    let rec = store
        .schedule_set_paused("s", false, TICK + 5 * MINUTE + 1)
        .await
        .expect("resume");
    assert_eq!(
        rec.next_fire_at,
        Some(TICK + 6 * MINUTE),
        "ticks missed while paused never fire"
    );
    assert_eq!(fire(&store, TICK + 6 * MINUTE).await.len(), 1);
    let applied_paused = ScheduleSpec {
        paused: true,
        ..every_minute("p")
    };
    put(&store, &applied_paused, T0).await;
    assert!(
        fire(&store, TICK).await.iter().all(|t| t.0 != TICK || t.2),
        "p stays paused"
    );
    assert!(get(&store, "p").await.spec.paused);
    assert!(matches!(
        store.schedule_set_paused("nope", true, T0).await,
        Err(StoreError::NotFound(_))
    ));
}

/// `skip` after a long outage fires only the latest tick and goes on from there.
pub async fn misfire_skip_fires_only_the_latest_tick(store: DynStore) {
    flow(&store, FLOW).await;
    put(&store, &every_minute("s"), T0).await;
    let late = TICK + 60 * MINUTE + 5;
    let fired = fire(&store, late).await;
    assert_eq!(
        fired.iter().map(|t| t.0).collect::<Vec<_>>(),
        [TICK + 60 * MINUTE]
    );
    assert_eq!(
        get(&store, "s").await.next_fire_at,
        Some(TICK + 61 * MINUTE)
    );
}

/// `catch_up: N` fires at most the N latest missed ticks, oldest first, each once.
pub async fn misfire_catch_up_fires_at_most_n(store: DynStore) {
    flow(&store, FLOW).await;
    let spec = ScheduleSpec {
        misfire: Misfire::CatchUp(3),
        ..every_minute("s")
    };
    put(&store, &spec, T0).await;
    let fired = fire(&store, TICK + 10 * MINUTE + 5).await;
    let times: Vec<Millis> = fired.iter().map(|t| t.0).collect();
    assert_eq!(
        times,
        [TICK + 8 * MINUTE, TICK + 9 * MINUTE, TICK + 10 * MINUTE]
    );
    assert!(fired.iter().all(|t| t.2), "three distinct runs");
    assert_eq!(
        get(&store, "s").await.next_fire_at,
        Some(TICK + 11 * MINUTE)
    );
}

/// A manual trigger starts a run at once, paused or not, each with its own key.
pub async fn trigger_starts_a_run_now(store: DynStore) {
    flow(&store, FLOW).await;
    put(&store, &every_minute("s"), T0).await;
    store
        .schedule_set_paused("s", true, T0)
        .await
        .expect("pause");
    let (t, fx) = store
        .schedule_trigger("s", T0 + 7, "schedule:s:manual:1".into())
        .await
        .expect("trigger");
    assert!(t.created && t.fire_time == T0 + 7);
    assert_eq!(fx.ready.len(), 1);
    let (again, _) = store
        .schedule_trigger("s", T0 + 8, "schedule:s:manual:1".into())
        .await
        .expect("trigger again");
    assert_eq!(
        (again.run_id, again.created),
        (t.run_id, false),
        "same key, same run"
    );
    assert_eq!(
        get(&store, "s").await.next_fire_at,
        Some(TICK),
        "ticks are unchanged"
    );
    assert!(matches!(
        store.schedule_trigger("nope", T0, "k".into()).await,
        Err(StoreError::NotFound(_))
    ));
}

/// A tick whose flow is gone reports why and the schedule still moves on.
pub async fn tick_of_a_missing_flow_reports_and_advances(store: DynStore) {
    put(&store, &every_minute("s"), T0).await;
    let (fired, _) = store.schedule_fire_due(TICK, 100).await.expect("fire");
    assert_eq!(fired.len(), 1);
    assert!(fired[0].run_id.is_none());
    assert!(
        fired[0].error.as_deref().unwrap_or("").contains("tick"),
        "{fired:?}"
    );
    assert_eq!(get(&store, "s").await.next_fire_at, Some(TICK + MINUTE));
}

/// Delete removes a schedule; deleting it again is not found.
pub async fn delete_removes_the_schedule(store: DynStore) {
    put(&store, &every_minute("s"), T0).await;
    store.schedule_delete("s").await.expect("delete");
    assert!(store.schedule_get("s").await.expect("get").is_none());
    assert!(matches!(
        store.schedule_delete("s").await,
        Err(StoreError::NotFound(_))
    ));
}
