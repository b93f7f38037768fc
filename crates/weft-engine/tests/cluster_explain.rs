//! `run explain` on a gateway of a cluster (a real PostgreSQL schema shared by a gateway and
//! a worker): a ready task that a worker has claimed (running it, or holding it until it
//! has a free slot) is said to be claimed by that worker, not to be waiting for a slot in
//! general: the gateway cannot see the worker's slots. Every wait polls with a deadline.

mod common;

use common::{cluster_process, schema, start, until};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use weft_core::TaskState;
use weft_engine::Engine;
use weft_store_postgres::testing::SchemaGuard;

const WAIT: Duration = Duration::from_secs(30);

async fn process(guard: &SchemaGuard, name: &str, worker: bool) -> Engine {
    cluster_process(
        guard,
        name,
        worker,
        BTreeMap::from([("slow".to_string(), 1)]),
    )
    .await
}

#[tokio::test(flavor = "multi_thread")]
async fn a_task_claimed_by_another_worker_is_explained_as_claimed_by_it() {
    // A target that accepts and never answers: the first attempt holds the worker's only
    // slot for as long as the test needs.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}/", silent.local_addr().unwrap());
    let requests = Arc::new(AtomicUsize::new(0));
    let seen = requests.clone();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        while let Ok((socket, _)) = silent.accept().await {
            seen.fetch_add(1, Ordering::SeqCst);
            open.push(socket);
        }
    });
    let guard = schema().await;
    let gateway = process(&guard, "gw", false).await;
    let worker = process(&guard, "w1", true).await;
    gateway
        .flow_apply(&format!(
            "name: hang\nnodes:\n  call:\n    type: http\n    queue: slow\n    timeout: 60s\n    params: {{url: '{url}'}}\n"
        ))
        .await
        .unwrap();
    let first = start(&gateway, "hang").await;
    let second = start(&gateway, "hang").await;

    until("the first attempt to reach the target", WAIT, async || {
        (requests.load(Ordering::SeqCst) == 1).then_some(())
    })
    .await;
    for id in [&first, &second] {
        let x = until("the run to be claimed by the worker", WAIT, async || {
            let x = gateway.run_explain(id).await.unwrap();
            x.reasons.iter().any(|r| r.code == "claimed").then_some(x)
        })
        .await;
        let r = &x.reasons[0];
        assert_eq!((r.node.as_str(), r.task_state), ("call", TaskState::Ready));
        assert!(r.message.contains("claimed by worker w1"), "{}", r.message);
        assert!(r.message.contains("queue slow"), "{}", r.message);
        assert!(x.progressing, "a claimed task moves on by itself");
        assert_eq!(x.summary, "progressing: call claimed by a worker");
    }
    // One slot: the second run's attempt waits on the worker, not at the target.
    assert_eq!(requests.load(Ordering::SeqCst), 1);
    let view = gateway.run_get(&second).await.unwrap();
    assert_eq!(view.nodes[0].task.claimed_by.as_deref(), Some("w1"));

    held.abort();
    gateway.shutdown(Duration::from_secs(1)).await;
    worker.shutdown(Duration::from_secs(1)).await;
}
