//! Claims from several processes at once: each store below has its own connection pool on
//! the same schema, as separate weft processes would.

mod common;

use std::collections::HashSet;
use weft_store::{ClaimStore, RunStore};

/// Tasks of each run: ten roots, with priorities 0 to 4, all in queue `work`.
const NODES: usize = 10;
const RUNS: usize = 200;
const CLAIMERS: usize = 4;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_claimers_take_every_task_exactly_once() {
    let (store, guard) = common::fresh().await;
    let mut yaml = String::from("name: wide\ndefaults: {queue: work}\nnodes:\n");
    for i in 0..NODES {
        yaml.push_str(&format!("  n{i}: {{type: noop, priority: {}}}\n", i % 5));
    }
    let f = common::flow(&store, &yaml).await;
    let runs = common::runs(&f, RUNS);
    let (_, fx) = store.run_create(runs).await.expect("run_create");
    assert_eq!(fx.ready.len(), RUNS * NODES);

    let mut claimers = Vec::new();
    for _ in 0..CLAIMERS {
        claimers.push(common::connect(&guard.schema).await);
    }
    let handles: Vec<_> = claimers
        .into_iter()
        .enumerate()
        .map(|(c, s)| {
            tokio::spawn(async move {
                let worker = format!("w{c}");
                let mut got = Vec::new();
                // Batches of different sizes, so the claimers' statements overlap unevenly.
                let limit = 7 + 6 * c as u32;
                loop {
                    let batch = s
                        .task_claim(&worker, "work", limit, i64::MAX)
                        .await
                        .expect("task_claim");
                    assert!(batch.len() <= limit as usize, "more than asked for");
                    if batch.is_empty() {
                        break;
                    }
                    got.extend(
                        batch
                            .into_iter()
                            .map(|t| (t.run_id.to_string(), t.node.to_string())),
                    );
                }
                (worker, got)
            })
        })
        .collect();
    let mut seen = HashSet::new();
    let mut per_worker = Vec::new();
    for h in handles {
        let (worker, got) = h.await.expect("join");
        per_worker.push((worker, got.len()));
        for key in got {
            assert!(seen.insert(key.clone()), "{key:?} was claimed twice");
        }
    }
    assert_eq!(
        seen.len(),
        RUNS * NODES,
        "every task claimed exactly once ({per_worker:?})"
    );
    let expected: HashSet<(String, String)> = fx
        .ready
        .iter()
        .map(|t| (t.run_id.to_string(), t.node.to_string()))
        .collect();
    assert_eq!(seen, expected);

    let raw = common::raw(&guard.schema).await;
    let row = raw
        .query_one(
            "SELECT count(*) FILTER (WHERE lease_owner IS NOT NULL), count(DISTINCT lease_owner) FROM tasks",
            &[],
        )
        .await
        .expect("count leases");
    let (leased, owners): (i64, i64) = (row.get(0), row.get(1));
    assert_eq!(leased, (RUNS * NODES) as i64);
    let active = per_worker.iter().filter(|(_, n)| *n > 0).count() as i64;
    assert_eq!(
        owners, active,
        "each task's owner is the worker it was handed to"
    );
    for (worker, n) in &per_worker {
        let held = store
            .task_heartbeat(worker, i64::MAX)
            .await
            .expect("task_heartbeat");
        assert_eq!(held.len(), *n, "{worker} holds what it claimed");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_leader_acquires_elect_one_holder() {
    let (store, guard) = common::fresh().await;
    for round in 0..5i64 {
        // Each round starts after the previous lease ended, so every round elects anew.
        let now = 1_000_000 + round * 10_000;
        let mut handles = Vec::new();
        for p in 0..8 {
            let s = if p % 2 == 0 {
                store.clone()
            } else {
                common::connect(&guard.schema).await
            };
            handles.push(tokio::spawn(async move {
                let holder = format!("p{p}");
                let won = s
                    .leader_acquire("timers", &holder, now, 5_000)
                    .await
                    .expect("leader_acquire");
                (holder, won)
            }));
        }
        let mut winners = Vec::new();
        for h in handles {
            let (holder, won) = h.await.expect("join");
            if won {
                winners.push(holder);
            }
        }
        assert_eq!(winners.len(), 1, "round {round}: {winners:?}");
        let held = store.leader_get("timers", now).await.expect("leader_get");
        assert_eq!(held, Some((winners[0].clone(), now + 5_000)));
    }
}
