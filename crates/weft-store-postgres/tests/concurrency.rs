//! Concurrent writers over the same runs: batches that touch overlapping runs in different
//! orders must queue on the run locks, not deadlock.

mod common;

use serde_json::json;
use weft_store::{Outcome, RunStore, TaskResult, TaskStore};

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn overlapping_batches_do_not_deadlock() {
    let (store, _guard) = common::fresh().await;
    let mut yaml = String::from("name: fan\nnodes:\n");
    for i in 0..8 {
        yaml.push_str(&format!("  p{i}: {{type: noop}}\n"));
    }
    yaml.push_str("  j: {type: noop, needs: [p0, p1, p2, p3, p4, p5, p6, p7]}\n");
    let f = common::flow(&store, &yaml).await;
    let runs = common::runs(&f, 300);
    let (_, fx) = store.run_create(runs).await.expect("run_create");

    // Batch k completes node p{k} of every run (odd batches in reverse order), so all eight
    // batches update the same run rows and the same join rows at once.
    let mut batches: Vec<Vec<TaskResult>> = (0..8).map(|_| Vec::new()).collect();
    for task in fx.ready {
        let k: usize = task.node[1..].parse().expect("node p<k>");
        batches[k].push(TaskResult {
            task,
            started_at: 0,
            finished_at: 1,
            outcome: Outcome::Succeeded(json!(1)),
        });
    }
    for (k, b) in batches.iter_mut().enumerate() {
        if k % 2 == 1 {
            b.reverse();
        }
    }
    let handles: Vec<_> = batches
        .into_iter()
        .map(|b| {
            let s = store.clone();
            tokio::spawn(async move { s.task_complete(b).await })
        })
        .collect();
    let mut joins = 0;
    for h in handles {
        let fx = h
            .await
            .expect("join")
            .expect("no batch fails (no deadlock)");
        joins += fx.ready.len();
    }
    assert_eq!(joins, 300, "every run's join became ready exactly once");
}
