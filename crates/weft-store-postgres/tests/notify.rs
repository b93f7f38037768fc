//! Ready announcements between processes (LISTEN/NOTIFY): each store below has its own pool
//! and its own listener, as separate weft processes would. Announcements need no tables,
//! so the schemas are never created. Every wait has a deadline.

mod common;

use std::sync::Arc;
use std::time::Duration;
use tokio::sync::broadcast::Receiver;
use weft_store::ClaimStore;

const WAIT: Duration = Duration::from_secs(10);

async fn next(rx: &mut Receiver<Arc<str>>) -> Arc<str> {
    tokio::time::timeout(WAIT, rx.recv())
        .await
        .unwrap_or_else(|_| panic!("no announcement within {WAIT:?}"))
        .expect("announcements still open")
}

/// Waits until the store listens: its listener passes on "" each time it starts listening.
async fn listening(rx: &mut Receiver<Arc<str>>) {
    while !next(rx).await.is_empty() {}
}

/// The queue names received before `marker` ("" skipped).
async fn before(rx: &mut Receiver<Arc<str>>, marker: &str) -> Vec<String> {
    let mut got = Vec::new();
    loop {
        let name = next(rx).await;
        if &*name == marker {
            return got;
        }
        if !name.is_empty() {
            got.push(name.to_string());
        }
    }
}

/// A sending and a receiving store on `schema` (each with its own pool, as two processes
/// would), the receiver already listening.
async fn pair(
    schema: &str,
) -> (
    Arc<weft_store_postgres::PostgresStore>,
    Arc<weft_store_postgres::PostgresStore>,
    Receiver<Arc<str>>,
) {
    let sender = common::connect(schema).await;
    let receiver = common::connect(schema).await;
    let mut rx = receiver
        .ready_announcements()
        .expect("PostgreSQL announces");
    listening(&mut rx).await;
    (sender, receiver, rx)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_announcement_reaches_stores_on_the_same_schema_only() {
    let (schema, elsewhere) = (common::schema_name(), common::schema_name());
    let (sender, receiver, mut rx) = pair(&schema).await;
    let (other_sender, other, mut other_rx) = pair(&elsewhere).await;
    assert_ne!(receiver.ready_channel(), other.ready_channel());

    sender.announce_ready(&["work"]);
    assert_eq!(before(&mut rx, "work").await, Vec::<String>::new());
    // Sent after "work" reached the first schema: had the second schema heard "work", it
    // would have heard it before this marker.
    other_sender.announce_ready(&["marker"]);
    assert_eq!(
        before(&mut other_rx, "marker").await,
        Vec::<String>::new(),
        "another schema's announcement was heard"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_burst_of_announcements_is_coalesced() {
    let schema = common::schema_name();
    let (sender, _receiver, mut rx) = pair(&schema).await;

    for _ in 0..1000 {
        sender.announce_ready(&["burst"]);
    }
    // Queued behind whatever of the burst is still pending, so it arrives last.
    sender.announce_ready(&["end"]);
    let got = before(&mut rx, "end").await;
    assert!(
        !got.is_empty() && got.len() <= 20 && got.iter().all(|q| q == "burst"),
        "1,000 announcements became {} notifications: {got:?}",
        got.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_listener_reconnects_after_its_connection_is_killed() {
    let schema = common::schema_name();
    let (sender, receiver, mut rx) = pair(&schema).await;
    sender.announce_ready(&["first"]);
    assert_eq!(before(&mut rx, "first").await, Vec::<String>::new());

    let admin = common::raw(&schema).await;
    let killed = admin
        .query(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE query = $1",
            &[&format!("LISTEN {}", receiver.ready_channel())],
        )
        .await
        .expect("terminate the listener's backend");
    assert_eq!(killed.len(), 1, "one listener on this schema");

    // Listening again: announcements made while it was away are lost, so it says "" (every
    // queue) once it is back.
    listening(&mut rx).await;
    sender.announce_ready(&["second"]);
    assert_eq!(before(&mut rx, "second").await, Vec::<String>::new());
}
