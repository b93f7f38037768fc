//! Queue settings: stored by name (with their rate limit, if any), overwritten by a later put.

use crate::{DynStore, QueueRate, QueueSettings};

fn queue(name: &str, concurrency: u32, paused: bool) -> QueueSettings {
    QueueSettings {
        name: name.into(),
        concurrency,
        paused,
        rate: None,
    }
}

async fn listed(store: &DynStore) -> Vec<QueueSettings> {
    let mut list = store.queue_list().await.expect("queue_list");
    list.sort_by(|a, b| a.name.cmp(&b.name));
    list
}

/// A new store has no queue settings.
pub async fn empty_store_has_no_queues(store: DynStore) {
    assert!(store.queue_list().await.expect("queue_list").is_empty());
}

/// What is put is listed back as it was.
pub async fn put_list_round_trip(store: DynStore) {
    let (fast, slow) = (queue("fast", 8, false), queue("slow", 1, true));
    store.queue_put(&slow).await.expect("queue_put slow");
    store.queue_put(&fast).await.expect("queue_put fast");
    assert_eq!(listed(&store).await, vec![fast, slow]);
}

/// A second put of the same name replaces its settings rather than adding a queue.
pub async fn put_overwrites(store: DynStore) {
    store
        .queue_put(&queue("fast", 8, false))
        .await
        .expect("queue_put");
    store
        .queue_put(&queue("other", 2, false))
        .await
        .expect("queue_put");
    let updated = queue("fast", 3, true);
    store.queue_put(&updated).await.expect("queue_put update");
    assert_eq!(
        listed(&store).await,
        vec![updated, queue("other", 2, false)]
    );
}

/// A queue's rate limit is stored with it, replaced by a later put, and cleared by a put
/// without one.
pub async fn rate_round_trip(store: DynStore) {
    let mut invoicing = queue("invoicing", 4, false);
    invoicing.rate = Some(QueueRate {
        limit: 10,
        per_ms: 1_000,
    });
    store.queue_put(&invoicing).await.expect("queue_put rate");
    assert_eq!(listed(&store).await, vec![invoicing.clone()]);
    invoicing.rate = Some(QueueRate {
        limit: 3,
        per_ms: 60_000,
    });
    store
        .queue_put(&invoicing)
        .await
        .expect("queue_put new rate");
    assert_eq!(listed(&store).await, vec![invoicing.clone()]);
    invoicing.rate = None;
    store
        .queue_put(&invoicing)
        .await
        .expect("queue_put no rate");
    assert_eq!(listed(&store).await, vec![invoicing]);
}
