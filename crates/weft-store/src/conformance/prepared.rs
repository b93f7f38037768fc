//! Ticks prepared ahead: a prepared run is held (no timer starts it), the fire step
//! releases it at its tick exactly once, and pause, re-apply, delete, a late fire (misfire
//! policy), a new flow version and a user's cancel each keep a tick from firing a run it
//! should not.

use super::fixture::{T0, flow};
use super::schedules::{FLOW, MINUTE, TICK, minutely};
use crate::{DynStore, RunDetail};
use weft_core::schedule::ScheduleSpec;
use weft_core::time::Millis;
use weft_core::{RunState, TaskState};

/// When the cases prepare: a few seconds before the tick.
const EARLY: Millis = TICK - 3_000;

async fn put(store: &DynStore, spec: &ScheduleSpec, now: Millis) {
    store.schedule_put(spec, now).await.expect("schedule_put");
}

/// Prepares at `now` for the next 5 s; returns the held run of schedule `name`'s next tick.
async fn prepare(store: &DynStore, now: Millis, name: &str, tick: Millis) -> RunDetail {
    let (n, fx) = store
        .schedule_prepare(now, now + 5_000, 100)
        .await
        .expect("schedule_prepare");
    assert_eq!(n, 1, "one tick prepared");
    assert!(fx.ready.is_empty(), "a prepared run has nothing ready");
    held(store, name, tick).await.expect("the prepared run")
}

/// The run holding schedule `name`'s key for `tick`, if any.
async fn held(store: &DynStore, name: &str, tick: Millis) -> Option<RunDetail> {
    let key = crate::schedules::tick_key(name, tick);
    let runs = store
        .run_list(&crate::RunFilter {
            limit: 1000,
            ..Default::default()
        })
        .await
        .expect("run_list");
    let id = runs
        .into_iter()
        .find(|r| r.idempotency_key.as_deref() == Some(key.as_str()))?
        .id;
    store.run_get(&id).await.expect("run_get")
}

/// A prepared run is `queued`, its root `pending` with the tick as its deferral and no
/// timer: promoting timers past the tick does not start it. The fire step releases it
/// (same run, root ready) once; preparing again prepares nothing.
pub async fn a_prepared_tick_is_held_until_the_fire_step_releases_it(store: DynStore) {
    flow(&store, FLOW).await;
    put(&store, &minutely("s", serde_json::json!({"n": 1})), T0).await;
    let d = prepare(&store, EARLY, "s", TICK).await;
    assert_eq!(d.run.state, RunState::Queued);
    let root = &d.tasks[0];
    assert_eq!((root.state, root.scheduled_at), (TaskState::Pending, None));
    let deferral = root
        .deferred
        .as_ref()
        .expect("the held root says why it waits");
    assert_eq!(deferral.until, TICK);
    assert!(deferral.reason.contains("schedule s"), "{deferral:?}");
    let (n, _) = store
        .schedule_prepare(EARLY + 1, EARLY + 5_000, 100)
        .await
        .expect("prepare again");
    assert_eq!(n, 0, "a tick is prepared once");
    let fx = store
        .task_promote_due(TICK + MINUTE)
        .await
        .expect("promote");
    assert!(fx.ready.is_empty(), "no timer starts a held run: {fx:?}");

    let (fired, fx) = store.schedule_fire_due(TICK + 5, 100).await.expect("fire");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].run_id.as_deref(), Some(d.run.id.as_str()));
    assert!(fired[0].created, "the held run was released");
    assert_eq!(fx.ready.len(), 1, "its root is ready");
    assert_eq!(&*fx.ready[0].run_id, d.run.id);
    let after = store.run_get(&d.run.id).await.unwrap().unwrap();
    assert_eq!(after.tasks[0].state, TaskState::Ready);
    assert_eq!(after.tasks[0].deferred, None);
    let (again, fx) = store.schedule_fire_due(TICK + 6, 100).await.expect("fire");
    assert!(again.is_empty() && fx.ready.is_empty(), "released once");
}

/// A `delay` root of a prepared run starts its timer from the tick when released.
pub async fn a_released_delay_root_waits_from_the_tick(store: DynStore) {
    flow(
        &store,
        "name: tick\nnodes:\n  wait: {type: delay, params: {duration: 10s}}\n",
    )
    .await;
    put(&store, &minutely("s", serde_json::Value::Null), T0).await;
    let d = prepare(&store, EARLY, "s", TICK).await;
    assert_eq!(
        d.tasks[0].deferred.as_ref().map(|x| x.until),
        Some(TICK + 10_000)
    );
    let (_, fx) = store.schedule_fire_due(TICK + 5, 100).await.expect("fire");
    assert!(fx.ready.is_empty());
    assert_eq!(fx.next_due, Some(TICK + 10_000));
    let after = store.run_get(&d.run.id).await.unwrap().unwrap();
    assert_eq!(
        (after.tasks[0].state, after.tasks[0].scheduled_at),
        (TaskState::Pending, Some(TICK + 10_000))
    );
}

/// Pausing, re-applying (here with a new input) and deleting delete the held run; the
/// tick prepared again follows the new document.
pub async fn pause_reapply_and_delete_drop_the_prepared_run(store: DynStore) {
    flow(&store, FLOW).await;
    put(&store, &minutely("s", serde_json::json!({"n": 1})), T0).await;
    prepare(&store, EARLY, "s", TICK).await;
    store
        .schedule_set_paused("s", true, EARLY + 1)
        .await
        .expect("pause");
    assert!(held(&store, "s", TICK).await.is_none(), "pausing drops it");
    let (fired, _) = store.schedule_fire_due(TICK + 5, 100).await.expect("fire");
    assert!(fired.is_empty(), "a paused schedule fires nothing");
    assert!(held(&store, "s", TICK).await.is_none());

    store
        .schedule_set_paused("s", false, TICK + 6)
        .await
        .expect("resume");
    let next = TICK + MINUTE;
    prepare(&store, next - 3_000, "s", next).await;
    put(
        &store,
        &minutely("s", serde_json::json!({"n": 2})),
        next - 2_000,
    )
    .await;
    assert!(
        held(&store, "s", next).await.is_none(),
        "re-applying drops it"
    );
    let d = prepare(&store, next - 1_000, "s", next).await;
    assert_eq!(d.run.input, serde_json::json!({"n": 2}), "the new document");
    let (fired, _) = store.schedule_fire_due(next + 5, 100).await.expect("fire");
    assert_eq!(fired[0].run_id.as_deref(), Some(d.run.id.as_str()));

    let later = next + MINUTE;
    prepare(&store, later - 3_000, "s", later).await;
    store.schedule_delete("s").await.expect("delete");
    assert!(
        held(&store, "s", later).await.is_none(),
        "deleting drops it"
    );
}

/// A prepared tick that comes due only after an outage follows the misfire policy: `skip`
/// fires only the latest tick, and the held run of the stale tick is deleted, not started.
pub async fn a_late_prepared_tick_follows_the_misfire_policy(store: DynStore) {
    flow(&store, FLOW).await;
    put(&store, &minutely("s", serde_json::Value::Null), T0).await;
    let d = prepare(&store, EARLY, "s", TICK).await;
    let late = TICK + 60 * MINUTE + 5;
    let (fired, _) = store.schedule_fire_due(late, 100).await.expect("fire");
    let times: Vec<Millis> = fired.iter().map(|t| t.fire_time).collect();
    assert_eq!(times, [TICK + 60 * MINUTE]);
    assert_ne!(fired[0].run_id.as_deref(), Some(d.run.id.as_str()));
    assert!(
        store.run_get(&d.run.id).await.unwrap().is_none(),
        "the missed tick's held run is gone"
    );
}

/// A flow applied again between preparing and the tick: the tick runs the new version
/// (a fresh run), and the held run of the old version is deleted.
pub async fn a_new_flow_version_replaces_the_prepared_run(store: DynStore) {
    flow(&store, FLOW).await;
    put(&store, &minutely("s", serde_json::Value::Null), T0).await;
    let d = prepare(&store, EARLY, "s", TICK).await;
    let v2 = flow(&store, "name: tick\nnodes:\n  b: {type: noop}\n").await;
    let (fired, fx) = store.schedule_fire_due(TICK + 5, 100).await.expect("fire");
    let id = fired[0].run_id.clone().expect("a run");
    assert_ne!(id, d.run.id);
    assert!(fired[0].created);
    assert_eq!(
        store.run_get(&id).await.unwrap().unwrap().run.version,
        v2.version
    );
    assert_eq!(&*fx.ready[0].node, "b");
    assert!(store.run_get(&d.run.id).await.unwrap().is_none());
}

/// A prepared run cancelled by a user stays cancelled: its tick starts nothing, and a
/// pause (which drops held runs) leaves it alone.
pub async fn a_cancelled_prepared_run_does_not_fire(store: DynStore) {
    flow(&store, FLOW).await;
    put(&store, &minutely("s", serde_json::Value::Null), T0).await;
    let d = prepare(&store, EARLY, "s", TICK).await;
    store.run_cancel(&d.run.id).await.expect("cancel");
    let (fired, fx) = store.schedule_fire_due(TICK + 5, 100).await.expect("fire");
    assert_eq!(fired.len(), 1);
    assert!(!fired[0].created && fx.ready.is_empty(), "{fired:?}");
    let after = store.run_get(&d.run.id).await.unwrap().unwrap();
    assert_eq!(after.run.state, RunState::Cancelled);

    let next = TICK + MINUTE;
    let d = prepare(&store, next - 3_000, "s", next).await;
    store.run_cancel(&d.run.id).await.expect("cancel");
    store
        .schedule_set_paused("s", true, next - 2_000)
        .await
        .expect("pause");
    let kept = store.run_get(&d.run.id).await.unwrap();
    assert_eq!(kept.map(|k| k.run.state), Some(RunState::Cancelled), "kept");
}

/// Deleting the flow drops the held run (which would otherwise keep the flow alive); the
/// tick then reports the missing flow, as it did before ticks were prepared.
pub async fn deleting_the_flow_drops_the_prepared_run(store: DynStore) {
    flow(&store, FLOW).await;
    put(&store, &minutely("s", serde_json::Value::Null), T0).await;
    let d = prepare(&store, EARLY, "s", TICK).await;
    store.flow_delete("tick").await.expect("flow_delete");
    assert!(store.run_get(&d.run.id).await.unwrap().is_none());
    let (fired, _) = store.schedule_fire_due(TICK + 5, 100).await.expect("fire");
    assert!(
        fired[0].run_id.is_none() && fired[0].error.is_some(),
        "{fired:?}"
    );
}

/// The release call starts a due prepared tick without moving the schedule on; the fire
/// step after it reports the run as already started (`created: false`) and moves on. A
/// second release, or a release of a tick the misfire policy skips, starts nothing.
pub async fn release_due_starts_prepared_ticks_once(store: DynStore) {
    flow(&store, FLOW).await;
    put(&store, &minutely("s", serde_json::Value::Null), T0).await;
    put(&store, &minutely("late", serde_json::Value::Null), T0).await;
    let (n, _) = store
        .schedule_prepare(EARLY, EARLY + 5_000, 100)
        .await
        .expect("prepare");
    assert_eq!(n, 2);
    assert!(
        store
            .schedule_release_due(TICK - 1)
            .await
            .unwrap()
            .0
            .is_empty(),
        "not due"
    );
    store
        .schedule_set_paused("late", true, EARLY + 1)
        .await
        .expect("pause");
    let (fired, fx) = store.schedule_release_due(TICK + 5).await.expect("release");
    assert_eq!(
        fired.len(),
        1,
        "paused schedules release nothing: {fired:?}"
    );
    let run = fired[0].run_id.clone().expect("run");
    assert!((fired[0].created, fired[0].fire_time) == (true, TICK));
    assert_eq!(fx.ready.len(), 1);
    let (again, fx) = store.schedule_release_due(TICK + 6).await.expect("release");
    assert!(again.is_empty() && fx.ready.is_empty(), "released once");
    let (fired, fx) = store.schedule_fire_due(TICK + 7, 100).await.expect("fire");
    assert_eq!(fired.len(), 1);
    assert_eq!(fired[0].run_id.as_deref(), Some(run.as_str()));
    assert!(!fired[0].created && fx.ready.is_empty(), "{fired:?}");
    let next = TICK + MINUTE;
    let (n, _) = store
        .schedule_prepare(next - 3_000, next, 100)
        .await
        .unwrap();
    assert_eq!(n, 1);
    let (stale, _) = store
        .schedule_release_due(next + 60 * MINUTE)
        .await
        .expect("release late");
    assert!(stale.is_empty(), "a tick `skip` would skip is not released");
}
