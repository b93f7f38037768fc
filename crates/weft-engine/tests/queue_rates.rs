//! Queue rate limits on a real SQLite store (decision 0009): a real HTTP target on
//! loopback records when each request starts; every wait polls with a deadline.

mod common;

use common::{assert_spaced, succeeded, until};
use parking_lot::Mutex;
use std::sync::Arc;
use std::time::{Duration, Instant};
use weft_core::limits::RateLimitSpec;
use weft_engine::{Engine, EngineConfig, LimitWait, QueueChange};

const WAIT: Duration = Duration::from_secs(30);

/// Records the start of every request; answers at once.
#[derive(Clone, Default)]
struct Target {
    starts: Arc<Mutex<Vec<Instant>>>,
}

impl Target {
    async fn serve(&self) -> String {
        let starts = self.starts.clone();
        let go = move || {
            let starts = starts.clone();
            async move {
                starts.lock().push(Instant::now());
                axum::Json(serde_json::json!({"ok": true}))
            }
        };
        let app = axum::Router::new().route("/go", axum::routing::any(go));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        format!("http://{addr}/go")
    }

    fn sorted(&self) -> Vec<Instant> {
        let mut s = self.starts.lock().clone();
        s.sort();
        s
    }
}

fn rate(limit: i64, per: &str) -> QueueChange {
    QueueChange {
        rate: Some(Some(RateLimitSpec {
            limit,
            per: per.into(),
            key: None,
        })),
        ..Default::default()
    }
}

async fn apply(e: &Engine, url: &str) {
    e.flow_apply(&format!(
        "name: billed\nnodes:\n  call:\n    type: http\n    queue: invoicing\n    params: {{url: '{url}'}}\n"
    ))
    .await
    .unwrap();
}

#[tokio::test]
async fn a_queue_rate_spaces_every_task_of_the_queue_and_explain_names_it() {
    let env = common::sqlite(EngineConfig::default()).await;
    let e = &env.engine;
    let target = Target::default();
    let url = target.serve().await;
    apply(e, &url).await;
    let stats = e.queue_change("invoicing", rate(5, "1s")).await.unwrap();
    let shown = stats.rate.expect("the rate is shown");
    assert_eq!((shown.limit, shown.per.as_str()), (5, "1s"));

    let mut ids = Vec::new();
    for _ in 0..12 {
        ids.push(common::start(e, "billed").await);
    }
    let x = until(
        "a run explained as waiting on the queue's rate",
        WAIT,
        async || {
            for id in &ids {
                let x = e.run_explain(id).await.expect("explain");
                if x.reasons.iter().any(|r| r.code == "rate_limit") {
                    return Some(x);
                }
            }
            None
        },
    )
    .await;
    let r = x.reasons.iter().find(|r| r.code == "rate_limit").unwrap();
    assert!(
        r.message.contains("queue:invoicing") && r.message.contains("until"),
        "{}",
        r.message
    );
    until("every run to succeed", WAIT, async || {
        (succeeded(e, &ids).await == 12).then_some(())
    })
    .await;
    let starts = target.sorted();
    assert_eq!(starts.len(), 12, "one request per run");
    assert_spaced(
        &starts,
        5,
        Duration::from_secs(1),
        Duration::from_millis(100),
    );
    for id in &ids {
        let v = e.run_get(id).await.unwrap();
        assert_eq!(v.nodes[0].task.attempt, 1, "waiting used no attempt");
    }
}

#[tokio::test]
async fn a_queue_rate_changes_live_and_is_stored() {
    let env = common::sqlite(EngineConfig::default()).await;
    let e = &env.engine;
    let target = Target::default();
    let url = target.serve().await;
    apply(e, &url).await;
    // One start a minute: the first run starts, the others wait on the bucket.
    e.queue_change("invoicing", rate(1, "1m")).await.unwrap();
    let mut ids = Vec::new();
    for _ in 0..4 {
        ids.push(common::start(e, "billed").await);
    }
    let waiting = until("a run waiting on the queue's rate", WAIT, async || {
        for id in &ids {
            if let Some(LimitWait::RateLimit { bucket, .. }) = e.limit_wait(id, "call").await {
                return Some(bucket);
            }
        }
        None
    })
    .await;
    assert_eq!(waiting, "queue:invoicing");
    until("the first run to succeed", WAIT, async || {
        (succeeded(e, &ids).await >= 1).then_some(())
    })
    .await;
    assert_eq!(target.sorted().len(), 1, "only one start in the minute");

    // A faster rate applies to the tasks already waiting: they start within seconds, not
    // minutes.
    e.queue_change("invoicing", rate(20, "1s")).await.unwrap();
    until(
        "the waiting runs to start under the new rate",
        WAIT,
        async || (succeeded(e, &ids).await == 4).then_some(()),
    )
    .await;

    // Cleared: stored as cleared, so a restarted engine has no rate either.
    let cleared = QueueChange {
        rate: Some(None),
        ..Default::default()
    };
    assert!(
        e.queue_change("invoicing", cleared)
            .await
            .unwrap()
            .rate
            .is_none()
    );
    e.queue_change("invoicing", rate(7, "2s")).await.unwrap();
    e.shutdown(Duration::from_secs(5)).await;
    let store = weft_store_sqlite::SqliteStore::open(env.dir.path(), Default::default()).unwrap();
    let again = Engine::start(store, EngineConfig::default()).await.unwrap();
    let q = again
        .queue_list()
        .into_iter()
        .find(|q| q.name == "invoicing")
        .expect("the queue is known after a restart");
    let shown = q.rate.expect("the stored rate is applied at start");
    assert_eq!((shown.limit, shown.per.as_str()), (7, "2s"));
    again.shutdown(Duration::from_secs(5)).await;
}

#[tokio::test]
async fn bad_queue_rates_are_refused_naming_the_field() {
    let env = common::sqlite(EngineConfig::default()).await;
    let e = &env.engine;
    for (change, field, what) in [
        (rate(0, "1s"), "rate.limit", "must be at least 1, got 0"),
        (rate(-3, "1s"), "rate.limit", "must be at least 1, got -3"),
        (rate(5, "0s"), "rate.per", "must be longer than zero"),
        (rate(5, "soon"), "rate.per", "invalid duration"),
        (rate(5, "500us"), "rate.per", "must be at least 1ms"),
    ] {
        let err = e
            .queue_change("invoicing", change)
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(field) && err.contains(what), "{err}");
    }
    let keyed = QueueChange {
        rate: Some(Some(RateLimitSpec {
            limit: 1,
            per: "1s".into(),
            key: Some("k".into()),
        })),
        ..Default::default()
    };
    let err = e.queue_change("q", keyed).await.unwrap_err().to_string();
    assert!(err.contains("rate.key"), "{err}");
    assert!(
        e.queue_list()
            .iter()
            .all(|q| q.name != "invoicing" || q.rate.is_none()),
        "nothing was applied"
    );
}
