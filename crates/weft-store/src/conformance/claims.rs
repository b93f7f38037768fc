//! Claims and leader leases ([`ClaimStore`](crate::ClaimStore)): workers sharing one database
//! claim ready tasks (highest priority, then oldest run, each task once), keep them with
//! heartbeats, lose them when their lease runs out, and singleton duties go to one holder at
//! a time. Every transition into `ready` leaves a task unclaimed, and a lost worker's late
//! result is applied only if it comes first.

use super::fixture::{
    T0, assert_quiet, detail, fail, flow, names, ready, snapshot, start, succeed, task,
};
use crate::{DynStore, Effects, QueueSettings, ReadyTask};
use serde_json::json;
use weft_core::{RunState, TaskState};

const PRIORITIES: &str = "
name: priorities
defaults: {queue: work}
nodes:
  low: {type: noop, priority: 1}
  high: {type: noop, priority: 5}
  mid: {type: noop, priority: 3}
  elsewhere: {type: noop, queue: other, priority: 9}
";

const CHAIN: &str = "
name: chain
defaults: {queue: work}
nodes:
  a: {type: noop}
  b: {type: noop, needs: [a]}
";

const RETRYING: &str = "
name: retrying
defaults: {queue: work}
nodes:
  a:
    type: fail
    retry: {max_attempts: 3, initial_delay: 1s, jitter: 0.0}
";

const ONCE: &str = "
name: once
defaults: {queue: work}
nodes:
  a: {type: fail}
";

/// A lease long enough never to end during a case.
const LONG: i64 = T0 + 3_600_000;

/// Claims for `worker` from the `work` queue until `lease_until`.
async fn claim(store: &DynStore, worker: &str, limit: u32, lease_until: i64) -> Vec<ReadyTask> {
    store
        .task_claim(worker, "work", limit, lease_until)
        .await
        .expect("task_claim")
}

/// `(run, node, attempt)` of tasks, sorted.
fn keys(tasks: &[ReadyTask]) -> Vec<(String, String, u32)> {
    names(&Effects {
        ready: tasks.to_vec(),
        ..Effects::default()
    })
}

/// `(run, node, attempt)` of the given tasks, sorted.
fn expect(tasks: &[(&str, &str, u32)]) -> Vec<(String, String, u32)> {
    let mut v: Vec<_> = tasks
        .iter()
        .map(|(r, n, a)| (r.to_string(), n.to_string(), *a))
        .collect();
    v.sort();
    v
}

/// The `(run, node)` pairs a heartbeat returned, sorted.
async fn heartbeat(store: &DynStore, worker: &str, lease_until: i64) -> Vec<(String, String)> {
    let mut held = store
        .task_heartbeat(worker, lease_until)
        .await
        .expect("task_heartbeat");
    held.sort();
    held
}

/// `(run, node)` pairs, sorted.
fn pairs(v: &[(&str, &str)]) -> Vec<(String, String)> {
    let mut v: Vec<_> = v
        .iter()
        .map(|(r, n)| (r.to_string(), n.to_string()))
        .collect();
    v.sort();
    v
}

/// Claims go by priority, then oldest run; each task is handed out once, so two workers
/// split a queue without overlap, and a claim after everything is taken gets nothing. The
/// claimed tasks carry what the run's ready tasks carried, and stay `ready`.
pub async fn claim_takes_each_task_once_by_priority(store: DynStore) {
    let f = flow(&store, PRIORITIES).await;
    let (r1, fx1) = start(&store, f.run(json!(null), T0)).await;
    let (r2, fx2) = start(&store, f.run(json!(null), T0 + 1)).await;

    let first = claim(&store, "w1", 3, LONG).await;
    assert_eq!(
        keys(&first),
        expect(&[(&r1, "high", 1), (&r2, "high", 1), (&r1, "mid", 1)]),
        "priority 5 of both runs, then priority 3 of the older run"
    );
    for t in &first {
        let fx = if *t.run_id == *r1 { &fx1 } else { &fx2 };
        assert_eq!(
            t,
            &ready(fx, &t.run_id, &t.node),
            "a claim reports the ready task"
        );
    }
    let second = claim(&store, "w2", 10, LONG).await;
    assert_eq!(
        keys(&second),
        expect(&[(&r2, "mid", 1), (&r1, "low", 1), (&r2, "low", 1)]),
        "the second worker gets the rest of the queue, nothing the first one holds"
    );
    assert!(
        claim(&store, "w1", 10, LONG).await.is_empty(),
        "all claimed"
    );
    assert!(
        claim(&store, "w2", 10, LONG).await.is_empty(),
        "all claimed"
    );

    let d = detail(&store, &r1).await;
    for node in ["low", "high", "mid", "elsewhere"] {
        let t = task(&d, node);
        assert_eq!(
            (t.state, t.attempt),
            (TaskState::Ready, 1),
            "a claimed task stays ready: {node}"
        );
    }
}

/// A claim takes only its queue's tasks and at most `limit` of them; `limit = 0` takes none.
/// A paused queue still hands out tasks (pausing is the worker's decision).
pub async fn claim_respects_queue_and_limit(store: DynStore) {
    let f = flow(&store, PRIORITIES).await;
    let (id, _) = start(&store, f.run(json!(null), T0)).await;
    assert!(
        claim(&store, "w1", 0, LONG).await.is_empty(),
        "limit 0 claims nothing"
    );
    let none = store
        .task_claim("w1", "nowhere", 10, LONG)
        .await
        .expect("task_claim");
    assert!(none.is_empty(), "an empty queue: {none:?}");

    let one = claim(&store, "w1", 1, LONG).await;
    assert_eq!(keys(&one), expect(&[(&id, "high", 1)]));
    store
        .queue_put(&QueueSettings {
            name: "other".into(),
            concurrency: 1,
            paused: true,
            rate: None,
        })
        .await
        .expect("queue_put");
    let other = store
        .task_claim("w2", "other", 10, LONG)
        .await
        .expect("task_claim");
    assert_eq!(
        keys(&other),
        expect(&[(&id, "elsewhere", 1)]),
        "only the other queue's task, though the queue is paused"
    );
    let rest = claim(&store, "w2", 10, LONG).await;
    assert_eq!(keys(&rest), expect(&[(&id, "mid", 1), (&id, "low", 1)]));
}

/// A heartbeat extends the worker's leases and lists the tasks it holds (only its own);
/// a cancelled run's tasks drop out of the answer and cannot be claimed.
pub async fn heartbeat_extends_and_lists_held_tasks(store: DynStore) {
    let f = flow(&store, CHAIN).await;
    let (r1, _) = start(&store, f.run(json!(null), T0)).await;
    let (r2, _) = start(&store, f.run(json!(null), T0)).await;
    let (r3, _) = start(&store, f.run(json!(null), T0)).await;
    let w1 = claim(&store, "w1", 2, T0 + 1_000).await;
    assert_eq!(keys(&w1), expect(&[(&r1, "a", 1), (&r2, "a", 1)]));
    let w2 = claim(&store, "w2", 1, T0 + 1_000).await;
    assert_eq!(keys(&w2), expect(&[(&r3, "a", 1)]));

    assert_eq!(
        heartbeat(&store, "w1", T0 + 5_000).await,
        pairs(&[(&r1, "a"), (&r2, "a")])
    );
    assert!(
        heartbeat(&store, "w9", T0 + 5_000).await.is_empty(),
        "w9 holds nothing"
    );
    let fx = store.task_reap(T0 + 2_000).await.expect("task_reap");
    assert_eq!(
        names(&fx),
        vec![(r3.clone(), "a".into(), 1)],
        "only w2's lease ended; w1's were extended"
    );

    store.run_cancel(&r1).await.expect("run_cancel");
    assert_eq!(
        heartbeat(&store, "w1", T0 + 9_000).await,
        pairs(&[(&r2, "a")]),
        "the cancelled run's task is no longer held"
    );
    let fx = store.task_reap(T0 + 6_000).await.expect("task_reap");
    assert!(fx.ready.is_empty(), "nothing to reap: {:?}", names(&fx));
    let again = claim(&store, "w3", 10, LONG).await;
    assert_eq!(
        keys(&again),
        expect(&[(&r3, "a", 1)]),
        "the cancelled task is not claimable, the reaped one is"
    );
}

/// A worker gives back what it claimed and has not started: the tasks are claimable at
/// once, by anyone, as the same attempt; tasks it does not hold are left alone.
pub async fn release_hands_back_unstarted_claims_at_once(store: DynStore) {
    let f = flow(&store, CHAIN).await;
    let (r1, _) = start(&store, f.run(json!(null), T0)).await;
    let (r2, _) = start(&store, f.run(json!(null), T0)).await;
    let (r3, _) = start(&store, f.run(json!(null), T0)).await;
    let w1 = claim(&store, "w1", 2, LONG).await;
    let w2 = claim(&store, "w2", 1, LONG).await;
    assert_eq!(keys(&w2), expect(&[(&r3, "a", 1)]));

    let mut asked = w1.clone();
    asked.extend(w2.iter().cloned());
    let n = store
        .task_release("w1", &asked)
        .await
        .expect("task_release");
    assert_eq!(n, 2, "only w1's two tasks are given back");
    assert!(
        heartbeat(&store, "w1", LONG).await.is_empty(),
        "w1 holds nothing"
    );
    assert_eq!(
        heartbeat(&store, "w2", LONG).await,
        pairs(&[(&r3, "a")]),
        "w2 keeps its claim"
    );
    let again = claim(&store, "w3", 10, LONG).await;
    assert_eq!(
        keys(&again),
        expect(&[(&r1, "a", 1), (&r2, "a", 1)]),
        "claimable at once, before any lease ended, as the same attempt"
    );
    assert_eq!(
        store.task_release("w1", &w1).await.expect("again"),
        0,
        "a second release changes nothing"
    );
}

/// Reaping hands back only leases that ended before `now`, as the same attempt with a note
/// in the task's error; the worker no longer holds it, and another worker can claim it.
pub async fn reap_hands_back_expired_leases_as_the_same_attempt(store: DynStore) {
    let f = flow(&store, CHAIN).await;
    let (r1, _) = start(&store, f.run(json!(null), T0)).await;
    let (r2, _) = start(&store, f.run(json!(null), T0)).await;
    let lost = claim(&store, "w1", 1, T0 + 1_000).await;
    assert_eq!(keys(&lost), expect(&[(&r1, "a", 1)]));
    assert_eq!(
        keys(&claim(&store, "w2", 1, T0 + 5_000).await),
        expect(&[(&r2, "a", 1)])
    );

    let fx = store.task_reap(T0 + 1_000).await.expect("task_reap");
    assert!(
        fx.ready.is_empty(),
        "a lease ending at `now` has not ended yet: {fx:?}"
    );
    let fx = store.task_reap(T0 + 1_001).await.expect("task_reap");
    assert_eq!(names(&fx), vec![(r1.clone(), "a".into(), 1)]);
    assert_eq!(fx.ready, lost, "reported as the same ready task, attempt 1");
    assert!(fx.finished.is_empty() && fx.cancelled.is_empty(), "{fx:?}");

    let d = detail(&store, &r1).await;
    let a = task(&d, "a");
    assert_eq!(
        (a.state, a.attempt),
        (TaskState::Ready, 1),
        "the same attempt"
    );
    let error = a.error.clone().unwrap_or_default();
    assert!(
        error.contains("lease") && error.contains("w1"),
        "the error notes the lost lease and its worker: {error:?}"
    );
    assert!(
        heartbeat(&store, "w1", T0 + 9_000).await.is_empty(),
        "w1 lost it"
    );

    let taken = claim(&store, "w3", 10, T0 + 10_000).await;
    assert_eq!(
        keys(&taken),
        expect(&[(&r1, "a", 1)]),
        "claimable again, attempt 1"
    );
    let fx = store.task_reap(T0 + 5_001).await.expect("task_reap");
    assert_eq!(
        names(&fx),
        vec![(r2.clone(), "a".into(), 1)],
        "w2's lease ended, w3's has not"
    );
    assert_eq!(
        heartbeat(&store, "w3", T0 + 20_000).await,
        pairs(&[(&r1, "a")])
    );
}

/// A claimed task's success readies its successor unclaimed: any worker can claim it, and
/// the finished task drops out of its worker's heartbeat.
pub async fn completed_claimed_task_readies_claimable_successor(store: DynStore) {
    let f = flow(&store, CHAIN).await;
    let (id, _) = start(&store, f.run(json!(null), T0)).await;
    let a = claim(&store, "w1", 10, LONG).await;
    assert_eq!(keys(&a), expect(&[(&id, "a", 1)]));
    let fx = succeed(&store, &a[0], T0 + 100, json!(1)).await;
    assert_eq!(names(&fx), vec![(id.clone(), "b".into(), 1)]);
    assert!(
        heartbeat(&store, "w1", LONG).await.is_empty(),
        "a is finished"
    );

    let b = claim(&store, "w2", 10, LONG).await;
    assert_eq!(b, vec![ready(&fx, &id, "b")], "b is claimable, as reported");
    let fx = succeed(&store, &b[0], T0 + 200, json!(2)).await;
    assert_eq!(fx.finished.len(), 1, "the run finishes");
    assert!(heartbeat(&store, "w2", LONG).await.is_empty());
}

/// A claimed task that fails is released: not claimable while its back-off runs, claimable
/// (unclaimed, the next attempt) once the timer fired.
pub async fn retried_task_is_claimable_after_backoff(store: DynStore) {
    let f = flow(&store, RETRYING).await;
    let (id, _) = start(&store, f.run(json!(null), T0)).await;
    let first = claim(&store, "w1", 10, LONG).await;
    assert_eq!(keys(&first), expect(&[(&id, "a", 1)]));
    let fx = fail(&store, &first[0], T0 + 100, "boom", true).await;
    assert_eq!(fx.next_due, Some(T0 + 1_100));
    assert!(
        heartbeat(&store, "w1", LONG).await.is_empty(),
        "no longer held"
    );
    assert!(
        claim(&store, "w2", 10, LONG).await.is_empty(),
        "pending, not ready"
    );

    let fx = store.task_promote_due(T0 + 1_100).await.expect("promote");
    assert_eq!(names(&fx), vec![(id.clone(), "a".into(), 2)]);
    let second = claim(&store, "w1", 10, LONG).await;
    assert_eq!(second, vec![ready(&fx, &id, "a")], "attempt 2, unclaimed");
    let fx = store.task_reap(LONG + 1).await.expect("task_reap");
    assert_eq!(
        names(&fx),
        vec![(id.clone(), "a".into(), 2)],
        "a lost attempt 2 stays attempt 2"
    );
}

/// A dead task replayed from the DLQ is ready and unclaimed.
pub async fn replayed_task_is_claimable(store: DynStore) {
    let f = flow(&store, ONCE).await;
    let (id, _) = start(&store, f.run(json!(null), T0)).await;
    let first = claim(&store, "w1", 10, LONG).await;
    let fx = fail(&store, &first[0], T0 + 100, "boom", false).await;
    assert_eq!(fx.finished.len(), 1, "the run failed");
    assert!(
        heartbeat(&store, "w1", LONG).await.is_empty(),
        "dead, not held"
    );
    assert!(
        claim(&store, "w2", 10, LONG).await.is_empty(),
        "dead, not claimable"
    );

    let fx = store.dlq_replay(&id, "a").await.expect("dlq_replay");
    let again = claim(&store, "w2", 10, LONG).await;
    assert_eq!(again, vec![ready(&fx, &id, "a")]);
}

/// After a lost worker's task was reaped and claimed again, the first result recorded
/// wins and the other is ignored, whichever worker reports first.
pub async fn late_result_of_lost_worker_is_applied_once(store: DynStore) {
    let f = flow(&store, CHAIN).await;
    let (r1, _) = start(&store, f.run(json!(null), T0)).await;
    let (r2, _) = start(&store, f.run(json!(null), T0)).await;
    let lost = claim(&store, "w1", 2, T0 + 1_000).await;
    assert_eq!(keys(&lost), expect(&[(&r1, "a", 1), (&r2, "a", 1)]));
    let fx = store.task_reap(T0 + 2_000).await.expect("task_reap");
    assert_eq!(fx.ready.len(), 2, "{:?}", names(&fx));
    let again = claim(&store, "w2", 2, LONG).await;
    assert_eq!(keys(&again), keys(&lost), "the same attempts");
    let of = |tasks: &[ReadyTask], run: &str| -> ReadyTask {
        tasks
            .iter()
            .find(|t| &*t.run_id == run)
            .cloned()
            .expect("task of run")
    };

    // r1: the new worker reports first; the lost worker's late result is ignored.
    let fx = succeed(&store, &of(&again, &r1), T0 + 3_000, json!("w2")).await;
    assert_eq!(names(&fx), vec![(r1.clone(), "b".into(), 1)]);
    let before = snapshot(&store, &r1).await;
    assert_quiet(
        &succeed(&store, &of(&lost, &r1), T0 + 3_100, json!("w1")).await,
        "late result of the lost worker",
    );
    assert_eq!(snapshot(&store, &r1).await, before);
    assert_eq!(
        task(&detail(&store, &r1).await, "a").output,
        Some(json!("w2"))
    );

    // r2: the lost worker reports first and wins; the new worker loses the task.
    let fx = succeed(&store, &of(&lost, &r2), T0 + 3_000, json!("w1")).await;
    assert_eq!(names(&fx), vec![(r2.clone(), "b".into(), 1)]);
    assert!(
        heartbeat(&store, "w2", LONG).await.is_empty(),
        "w2 holds nothing now"
    );
    let before = snapshot(&store, &r2).await;
    assert_quiet(
        &fail(&store, &of(&again, &r2), T0 + 3_100, "too late", true).await,
        "second result",
    );
    assert_eq!(snapshot(&store, &r2).await, before);
    let d = detail(&store, &r2).await;
    assert_eq!(task(&d, "a").output, Some(json!("w1")));
    assert_eq!(d.run.state, RunState::Running);
    let b = claim(&store, "w3", 10, LONG).await;
    assert_eq!(
        keys(&b),
        expect(&[(&r1, "b", 1), (&r2, "b", 1)]),
        "each successor once"
    );
}

/// The first holder gets a duty; another is refused until the lease ends (a lease ending at
/// `now` still holds), the holder renews it, and after it ended the other takes it.
pub async fn leader_lease_goes_to_one_holder_at_a_time(store: DynStore) {
    let acquire = |holder: &'static str, now: i64| {
        let store = store.clone();
        async move {
            store
                .leader_acquire("timers", holder, now, 1_000)
                .await
                .expect("leader_acquire")
        }
    };
    let get = |now: i64| {
        let store = store.clone();
        async move { store.leader_get("timers", now).await.expect("leader_get") }
    };
    assert_eq!(get(T0).await, None, "nobody holds a new duty");
    assert!(acquire("p1", T0).await, "first holder");
    assert_eq!(get(T0).await, Some(("p1".into(), T0 + 1_000)));
    assert!(!acquire("p2", T0 + 500).await, "held by p1");
    assert_eq!(get(T0 + 500).await, Some(("p1".into(), T0 + 1_000)));
    assert!(acquire("p1", T0 + 900).await, "renewed by its holder");
    assert_eq!(get(T0 + 900).await, Some(("p1".into(), T0 + 1_900)));
    assert!(
        !acquire("p2", T0 + 1_900).await,
        "the lease ends after T0 + 1900"
    );
    assert_eq!(get(T0 + 1_901).await, None, "ended");
    assert!(acquire("p2", T0 + 1_901).await, "taken over once ended");
    assert_eq!(get(T0 + 1_901).await, Some(("p2".into(), T0 + 2_901)));
    assert!(!acquire("p1", T0 + 2_000).await, "p1 lost it");

    assert!(
        store
            .leader_acquire("retention", "p1", T0 + 2_000, 1_000)
            .await
            .expect("leader_acquire"),
        "duties are independent"
    );
}

/// Releasing a lease lets another holder take it at once; only the holder can release it.
pub async fn leader_release_hands_over_at_once(store: DynStore) {
    assert!(
        store
            .leader_acquire("reaper", "p1", T0, 60_000)
            .await
            .expect("acquire")
    );
    store
        .leader_release("reaper", "p2")
        .await
        .expect("release by another");
    assert_eq!(
        store
            .leader_get("reaper", T0 + 1)
            .await
            .expect("leader_get"),
        Some(("p1".into(), T0 + 60_000)),
        "only the holder releases"
    );
    assert!(
        !store
            .leader_acquire("reaper", "p2", T0 + 1, 60_000)
            .await
            .expect("acquire")
    );
    store.leader_release("reaper", "p1").await.expect("release");
    assert_eq!(
        store
            .leader_get("reaper", T0 + 2)
            .await
            .expect("leader_get"),
        None
    );
    assert!(
        store
            .leader_acquire("reaper", "p2", T0 + 2, 60_000)
            .await
            .expect("acquire"),
        "taken at once after a release"
    );
    assert_eq!(
        store
            .leader_get("reaper", T0 + 3)
            .await
            .expect("leader_get"),
        Some(("p2".into(), T0 + 60_002))
    );
    store
        .leader_release("nothing", "p1")
        .await
        .expect("releasing a free duty is a no-op");
}
