//! Queue settings changed through one process of a cluster reach the workers of the
//! others (a real PostgreSQL schema shared by two engines): a queue paused through a
//! gateway stops being claimed everywhere, its concurrency follows a live change, and a
//! worker's own `[queues]` configuration keeps winning over a stored concurrency. Every
//! wait polls with a deadline.

mod common;

use common::{cluster_process, schema, succeeded, until};
use std::collections::BTreeMap;
use std::time::Duration;
use weft_core::RunState;
use weft_engine::Engine;

const WAIT: Duration = Duration::from_secs(30);

/// `queue`'s (concurrency, paused) as `engine` sees it, once it knows the queue.
fn seen(engine: &Engine, queue: &str) -> Option<(u32, bool)> {
    engine
        .queue_list()
        .into_iter()
        .find(|q| q.name == queue)
        .map(|q| (q.concurrency, q.paused))
}

#[tokio::test(flavor = "multi_thread")]
async fn a_queue_paused_and_resized_through_a_gateway_follows_on_every_worker() {
    let guard = schema().await;
    let gateway = cluster_process(&guard, "gw", false, BTreeMap::new()).await;
    // The worker's configuration sets `fixed` but says nothing of `jobs`.
    let worker = cluster_process(
        &guard,
        "w1",
        true,
        BTreeMap::from([("fixed".to_string(), 3)]),
    )
    .await;
    gateway
        .flow_apply("name: q\nnodes:\n  a: {type: noop, queue: jobs}\n")
        .await
        .unwrap();
    until("the worker to serve queue jobs", WAIT, async || {
        seen(&worker, "jobs")
    })
    .await;

    gateway.queue_set("jobs", None, Some(true)).await.unwrap();
    until("the worker to see jobs paused", WAIT, async || {
        seen(&worker, "jobs").filter(|s| s.1).map(|_| ())
    })
    .await;
    // Started while paused: the worker claims none of them. (Unpaused, it is woken by the
    // gateway's NOTIFY and the first runs would already have moved by the last start.)
    let mut ids = Vec::new();
    for _ in 0..5 {
        ids.push(common::start(&gateway, "q").await);
    }
    assert_eq!(worker.inflight(), 0);
    for id in &ids {
        let state = gateway.run_get(id).await.unwrap().run.state;
        assert_eq!(
            state,
            RunState::Queued,
            "run {id} moved while its queue was paused"
        );
    }

    gateway
        .queue_set("jobs", Some(7), Some(false))
        .await
        .unwrap();
    until(
        "the worker to see jobs resumed with 7 slots",
        WAIT,
        async || (seen(&worker, "jobs") == Some((7, false))).then_some(()),
    )
    .await;
    until(
        "every run started while paused to succeed",
        WAIT,
        async || (succeeded(&gateway, &ids).await == ids.len()).then_some(()),
    )
    .await;

    // A worker's own `[queues]` entry wins over a stored concurrency, as it does at start;
    // the pause switch still follows the store.
    until("the worker to serve queue fixed", WAIT, async || {
        seen(&worker, "fixed")
    })
    .await;
    gateway
        .queue_set("fixed", Some(9), Some(true))
        .await
        .unwrap();
    until("the worker to see fixed paused", WAIT, async || {
        seen(&worker, "fixed").filter(|s| s.1).map(|_| ())
    })
    .await;
    assert_eq!(seen(&worker, "fixed"), Some((3, true)));
    gateway.shutdown(Duration::from_secs(5)).await;
    worker.shutdown(Duration::from_secs(5)).await;
}
