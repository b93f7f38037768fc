//! End-to-end tests of every flow in `examples/flows/`.
//!
//! Each example is parsed and compiled, then applied to a real engine over a real SQLite
//! store in a temporary directory and run against a local HTTP server that stands in for
//! the payment, review, account and notification services. The examples read every URL
//! from their input, so the tests point them at that server.
//!
//! Adding a file to `examples/flows/` without adding it to [`SCENARIOS`] (and a test for
//! it here) fails `every_example_is_valid_and_has_a_scenario`.

use axum::Router;
use axum::body::Bytes;
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;
use tempfile::TempDir;
use weft_core::time::{Clock, ManualClock, SystemClock};
use weft_core::{RunState, TaskState};
use weft_engine::{Engine, EngineConfig, RunView, StartRun};
use weft_store::{DlqFilter, DynStore, TaskRecord};
use weft_store_sqlite::SqliteStore;

/// Longest any run in these tests may take; the slowest (`hello`) spends about 2.5 s in
/// retry back-offs and its delay.
const DEADLINE: Duration = Duration::from_secs(30);

/// Every example flow, by file stem; each has tests below whose names start with it.
const SCENARIOS: &[&str] = &["hello", "notify-fanout", "order", "reminder", "signup"];

// ---- the stand-in services --------------------------------------------------------------

/// One request the stand-in server received.
#[derive(Debug, Clone)]
struct Hit {
    path: String,
    headers: HeaderMap,
    body: Value,
}

#[derive(Default)]
struct MockState {
    hits: Vec<Hit>,
    /// Scripted responses served (first in, first out) before the default one, by path.
    script: HashMap<String, VecDeque<(StatusCode, Value)>>,
}

/// A local HTTP server on 127.0.0.1:0 that records every request.
#[derive(Clone)]
struct Mock {
    base: String,
    state: Arc<Mutex<MockState>>,
}

impl Mock {
    async fn start() -> Mock {
        let state = Arc::new(Mutex::new(MockState::default()));
        let app = Router::new().fallback(handle).with_state(state.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        Mock { base, state }
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// The next `times` requests to `path` get `status` with `body`.
    fn respond(&self, path: &str, status: u16, body: Value, times: usize) {
        let mut s = self.state.lock().unwrap();
        let q = s.script.entry(path.to_string()).or_default();
        for _ in 0..times {
            q.push_back((StatusCode::from_u16(status).unwrap(), body.clone()));
        }
    }

    fn hits(&self, path: &str) -> Vec<Hit> {
        let s = self.state.lock().unwrap();
        s.hits.iter().filter(|h| h.path == path).cloned().collect()
    }
}

async fn handle(
    axum::extract::State(state): axum::extract::State<Arc<Mutex<MockState>>>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let path = uri.path().to_string();
    let body: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
    let mut s = state.lock().unwrap();
    s.hits.push(Hit {
        path: path.clone(),
        headers,
        body: body.clone(),
    });
    if let Some((status, reply)) = s.script.get_mut(&path).and_then(VecDeque::pop_front) {
        return (status, axum::Json(reply)).into_response();
    }
    if method != Method::POST {
        return StatusCode::METHOD_NOT_ALLOWED.into_response();
    }
    let (status, reply) = match path.as_str() {
        "/pay" => (
            StatusCode::OK,
            json!({ "id": format!("ch_{}", body["order_id"].as_str().unwrap_or("?")),
                    "status": "captured", "amount": body["amount"] }),
        ),
        "/review" => (
            StatusCode::OK,
            json!({ "decision": "approved", "reviewer": "ops@example.com" }),
        ),
        "/accounts" => (StatusCode::CREATED, json!({ "id": "acct_42" })),
        _ => (StatusCode::ACCEPTED, json!({ "accepted": true })),
    };
    (status, axum::Json(reply)).into_response()
}

// ---- the engine -------------------------------------------------------------------------

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../examples/flows")
}

/// Every example file: (file stem, text), sorted by name.
fn example_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = std::fs::read_dir(examples_dir())
        .expect("examples/flows exists")
        .map(|e| e.unwrap().path())
        .filter(|p| {
            matches!(
                p.extension().and_then(|e| e.to_str()),
                Some("yaml" | "yml" | "json")
            )
        })
        .map(|p| {
            let stem = p.file_stem().unwrap().to_string_lossy().into_owned();
            (stem, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    files.sort();
    files
}

/// An engine over a fresh SQLite store with every example flow applied.
struct Harness {
    engine: Engine,
    dir: TempDir,
}

impl Harness {
    async fn start() -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let engine = start_engine(&dir, Arc::new(SystemClock)).await;
        for (stem, text) in example_files() {
            let applied = engine
                .flow_apply(&text)
                .await
                .unwrap_or_else(|e| panic!("{stem}: {e}"));
            assert_eq!(applied.version, 1, "{stem}");
        }
        Harness { engine, dir }
    }

    async fn start_run(&self, flow: &str, input: Value) -> String {
        let created = self
            .engine
            .run_start(StartRun {
                flow: flow.into(),
                input,
                ..Default::default()
            })
            .await
            .unwrap();
        assert!(created.created);
        created.id
    }

    /// Simulates a restart a day later: stops this engine and starts a new one over the
    /// same data directory (a fresh store handle, so everything comes from disk) with a
    /// clock `ahead` in the future.
    async fn restart_later(&mut self, ahead: Duration) {
        self.engine.shutdown(Duration::from_secs(5)).await;
        let later = SystemClock.now_ms() + ahead.as_millis() as i64;
        self.engine = start_engine(&self.dir, Arc::new(ManualClock::new(later))).await;
    }
}

async fn start_engine(dir: &TempDir, clock: Arc<dyn Clock>) -> Engine {
    let store: DynStore = SqliteStore::open(dir.path(), Default::default()).unwrap();
    Engine::start_with_clock(store, EngineConfig::default(), clock)
        .await
        .unwrap()
}

async fn within<T>(what: &str, f: impl Future<Output = T>) -> T {
    tokio::time::timeout(DEADLINE, f)
        .await
        .unwrap_or_else(|_| panic!("{what} did not happen within {DEADLINE:?}"))
}

async fn finish(engine: &Engine, id: &str) -> RunView {
    within(&format!("run {id} finishing"), engine.wait_run(id))
        .await
        .unwrap()
}

/// Polls a run until `pred` holds. The engine only announces finished runs, so waiting for
/// an intermediate state (a parked timer, a suspended parent) has to look.
async fn until(engine: &Engine, id: &str, pred: impl Fn(&RunView) -> bool) -> RunView {
    within(&format!("run {id} reaching the expected state"), async {
        loop {
            let view = engine.run_get(id).await.unwrap();
            if pred(&view) {
                return view;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
}

fn node<'a>(view: &'a RunView, name: &str) -> &'a TaskRecord {
    &view
        .nodes
        .iter()
        .find(|n| n.task.node == name)
        .unwrap_or_else(|| panic!("run has no node {name}"))
        .task
}

fn states(view: &RunView) -> Vec<(String, TaskState)> {
    view.nodes
        .iter()
        .map(|n| (n.task.node.clone(), n.task.state))
        .collect()
}

fn assert_node(view: &RunView, name: &str, state: TaskState) {
    assert_eq!(
        node(view, name).state,
        state,
        "node {name}; all nodes: {:?}",
        states(view)
    );
}

fn output(view: &RunView, name: &str) -> Value {
    node(view, name)
        .output
        .clone()
        .unwrap_or_else(|| panic!("node {name} has no output: {:?}", node(view, name)))
}

// ---- every example ----------------------------------------------------------------------

#[test]
fn every_example_is_valid_and_has_a_scenario() {
    let files = example_files();
    assert!(files.len() >= 3, "expected at least three example flows");
    for (stem, text) in &files {
        let spec = weft_core::parse_flow(text).unwrap_or_else(|e| panic!("{stem}: {e}"));
        let flow = weft_core::compile(&spec).unwrap_or_else(|e| panic!("{stem}: {e}"));
        assert_eq!(flow.name(), stem, "a file's name should be its flow's name");
        assert!(
            spec.description.is_some(),
            "{stem}: examples should say what they do"
        );
    }
    let on_disk: BTreeSet<&str> = files.iter().map(|(s, _)| s.as_str()).collect();
    let covered: BTreeSet<&str> = SCENARIOS.iter().copied().collect();
    assert_eq!(
        on_disk, covered,
        "every example needs an end-to-end test here"
    );
}

// ---- hello ------------------------------------------------------------------------------

#[tokio::test]
async fn hello_retries_branches_waits_and_joins() {
    let h = Harness::start().await;
    let regular = h.start_run("hello", json!({"name": "Ada"})).await;
    let vip = h.start_run("hello", json!({"vip": true})).await;

    let view = finish(&h.engine, &regular).await;
    assert_eq!(view.run.state, RunState::Succeeded, "{:?}", states(&view));
    assert_eq!(
        output(&view, "greet"),
        json!({"greeting": "Hello, Ada!", "vip": false})
    );
    let flaky = node(&view, "flaky");
    assert_eq!(flaky.attempt, 3, "two failures, then success");
    assert_eq!(flaky.attempts.len(), 2);
    assert!(
        flaky
            .attempts
            .iter()
            .all(|a| a.error.as_deref() == Some("simulated outage"))
    );
    assert_eq!(output(&view, "is_vip"), json!({"taken": "else"}));
    assert_node(&view, "red_carpet", TaskState::Skipped);
    assert_node(&view, "queue_up", TaskState::Succeeded);
    assert_eq!(
        output(&view, "done")["message"],
        "Hello, Ada! You are in (after a short wait)."
    );

    let view = finish(&h.engine, &vip).await;
    assert_eq!(view.run.state, RunState::Succeeded, "{:?}", states(&view));
    assert_node(&view, "red_carpet", TaskState::Succeeded);
    assert_node(&view, "queue_up", TaskState::Skipped);
    assert_eq!(
        output(&view, "done")["message"],
        "Hello, world! You are in (vip)."
    );
}

// ---- order ------------------------------------------------------------------------------

fn order_input(mock: &Mock, order_id: &str, amount: f64) -> Value {
    json!({
        "order_id": order_id,
        "customer_email": "ada@example.com",
        "amount": amount,
        "payment_url": mock.url("/pay"),
        "review_url": mock.url("/review"),
    })
}

#[tokio::test]
async fn order_small_is_approved_automatically() {
    let mock = Mock::start().await;
    let h = Harness::start().await;
    let id = h
        .start_run("order", order_input(&mock, "A-1001", 42.5))
        .await;
    let view = finish(&h.engine, &id).await;

    assert_eq!(view.run.state, RunState::Succeeded, "{:?}", states(&view));
    assert_eq!(
        output(&view, "validate"),
        json!({"order_id": "A-1001", "email": "ada@example.com", "amount": 42.5, "currency": "USD"})
    );
    let charge = output(&view, "charge");
    assert_eq!(charge["status"], 200);
    assert_eq!(
        charge["body"],
        json!({"id": "ch_A-1001", "status": "captured", "amount": 42.5})
    );
    assert_eq!(node(&view, "charge").queue, "payments");
    assert_eq!(output(&view, "check_amount"), json!({"taken": "else"}));
    assert_node(&view, "review", TaskState::Skipped);
    assert_node(&view, "auto_approve", TaskState::Succeeded);
    assert_eq!(
        output(&view, "record"),
        json!({"order_id": "A-1001", "charge_id": "ch_A-1001", "decision": "approved", "decided_by": "auto"})
    );
    let message = output(&view, "confirm")["message"]
        .as_str()
        .unwrap()
        .to_string();
    assert!(
        message.contains("order A-1001 charged (ch_A-1001)")
            && message.contains("approved by auto"),
        "{message}"
    );

    let pays = mock.hits("/pay");
    assert_eq!(pays.len(), 1);
    assert_eq!(
        pays[0].body,
        json!({"order_id": "A-1001", "amount": 42.5, "currency": "USD"})
    );
    assert_eq!(pays[0].headers["idempotency-key"], "order-A-1001");
    assert_eq!(pays[0].headers["x-weft-run"], id.as_str());
    assert!(mock.hits("/review").is_empty(), "small orders skip review");
}

#[tokio::test]
async fn order_large_goes_to_review() {
    let mock = Mock::start().await;
    let h = Harness::start().await;
    let large = h
        .start_run("order", order_input(&mock, "A-2000", 2500.0))
        .await;
    // The threshold can be lowered per run.
    let mut input = order_input(&mock, "A-2001", 500.0);
    input["review_threshold"] = json!(100);
    let lowered = h.start_run("order", input).await;

    for (id, order) in [(large, "A-2000"), (lowered, "A-2001")] {
        let view = finish(&h.engine, &id).await;
        assert_eq!(view.run.state, RunState::Succeeded, "{:?}", states(&view));
        assert_eq!(output(&view, "check_amount"), json!({"taken": "then"}));
        assert_node(&view, "review", TaskState::Succeeded);
        assert_eq!(node(&view, "review").queue, "review");
        assert_node(&view, "auto_approve", TaskState::Skipped);
        assert_node(&view, "record", TaskState::Succeeded);
        assert_node(&view, "confirm", TaskState::Succeeded);
        assert_eq!(
            output(&view, "record"),
            json!({"order_id": order, "charge_id": format!("ch_{order}"),
                   "decision": "approved", "decided_by": "ops@example.com"})
        );
    }
    let reviews = mock.hits("/review");
    assert_eq!(reviews.len(), 2);
    let mut ids: Vec<&str> = reviews
        .iter()
        .map(|r| r.body["charge_id"].as_str().unwrap())
        .collect();
    ids.sort();
    assert_eq!(ids, ["ch_A-2000", "ch_A-2001"]);
}

#[tokio::test]
async fn order_charge_retries_a_failing_payment_service() {
    let mock = Mock::start().await;
    mock.respond("/pay", 503, json!({"error": "try again"}), 1);
    let h = Harness::start().await;
    let id = h
        .start_run("order", order_input(&mock, "A-3000", 10.0))
        .await;
    let view = finish(&h.engine, &id).await;

    assert_eq!(view.run.state, RunState::Succeeded, "{:?}", states(&view));
    let charge = node(&view, "charge");
    assert_eq!(charge.attempt, 2, "one failure, then success");
    assert_eq!(charge.attempts.len(), 1, "{:?}", charge.attempts);
    let err = charge.attempts[0].error.as_deref().unwrap_or_default();
    assert!(err.contains("HTTP 503"), "{err}");
    assert_eq!(charge.output.as_ref().unwrap()["body"]["id"], "ch_A-3000");
    // Both attempts carried the same idempotency key, so the payment service can dedupe.
    let pays = mock.hits("/pay");
    assert_eq!(pays.len(), 2);
    assert!(
        pays.iter()
            .all(|p| p.headers["idempotency-key"] == "order-A-3000")
    );
}

#[tokio::test]
async fn order_declined_card_is_dead_lettered_and_replay_resumes_the_run() {
    let mock = Mock::start().await;
    mock.respond("/pay", 402, json!({"error": "card declined"}), 1);
    let h = Harness::start().await;
    let id = h
        .start_run("order", order_input(&mock, "A-4000", 10.0))
        .await;
    let view = finish(&h.engine, &id).await;

    // 402 is not worth retrying: dead after one attempt despite max_attempts 4.
    assert_eq!(view.run.state, RunState::Failed, "{:?}", states(&view));
    assert_node(&view, "charge", TaskState::Dead);
    assert_eq!(node(&view, "charge").attempts.len(), 1);
    assert_node(&view, "check_amount", TaskState::Waiting);
    let error = view.run.error.clone().unwrap_or_default();
    assert!(
        error.contains("charge") && error.contains("HTTP 402"),
        "{error}"
    );
    let dead = h
        .engine
        .dlq_list(&DlqFilter {
            flow: Some("order".into()),
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(dead.len(), 1);
    assert_eq!(
        (dead[0].run_id.as_str(), dead[0].node.as_str()),
        (id.as_str(), "charge")
    );

    // The customer fixed their card: replay the dead node and the run carries on.
    h.engine.dlq_replay(&id, "charge").await.unwrap();
    let view = finish(&h.engine, &id).await;
    assert_eq!(view.run.state, RunState::Succeeded, "{:?}", states(&view));
    assert_eq!(view.run.error, None);
    assert_node(&view, "auto_approve", TaskState::Succeeded);
    assert_node(&view, "confirm", TaskState::Succeeded);
    assert_eq!(mock.hits("/pay").len(), 2);
    assert!(
        h.engine
            .dlq_list(&DlqFilter::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn order_missing_field_stops_at_validate_before_charging() {
    let mock = Mock::start().await;
    let h = Harness::start().await;
    let mut input = order_input(&mock, "A-5000", 10.0);
    input.as_object_mut().unwrap().remove("customer_email");
    let id = h.start_run("order", input).await;
    let view = finish(&h.engine, &id).await;

    // A missing field fails the template instead of rendering `null`.
    assert_eq!(view.run.state, RunState::Failed, "{:?}", states(&view));
    assert_node(&view, "validate", TaskState::Dead);
    let err = node(&view, "validate").error.clone().unwrap_or_default();
    assert!(
        err.contains("input.customer_email") && err.contains("undefined"),
        "{err}"
    );
    assert_node(&view, "charge", TaskState::Waiting);
    assert!(mock.hits("/pay").is_empty(), "nothing may be charged");
}

// ---- notify-fanout ----------------------------------------------------------------------

const CHANNELS: &[(&str, &str)] = &[
    ("email", "email"),
    ("sms", "sms"),
    ("push", "push"),
    ("webhook", "webhooks"),
];

fn fanout_input(mock: &Mock) -> Value {
    json!({
        "user_id": "u-7",
        "message": "Your order has shipped",
        "email_url": mock.url("/notify/email"),
        "sms_url": mock.url("/notify/sms"),
        "push_url": mock.url("/notify/push"),
        "webhook_url": mock.url("/notify/webhook"),
    })
}

#[tokio::test]
async fn notify_fanout_calls_every_channel_then_joins() {
    let mock = Mock::start().await;
    let h = Harness::start().await;
    let id = h.start_run("notify-fanout", fanout_input(&mock)).await;
    let view = finish(&h.engine, &id).await;

    assert_eq!(view.run.state, RunState::Succeeded, "{:?}", states(&view));
    for (channel, queue) in CHANNELS {
        let hits = mock.hits(&format!("/notify/{channel}"));
        assert_eq!(hits.len(), 1, "{channel} called once");
        assert_eq!(hits[0].body["user_id"], "u-7", "{channel}");
        assert_node(&view, channel, TaskState::Succeeded);
        assert_eq!(node(&view, channel).queue, *queue);
    }
    assert_eq!(
        mock.hits("/notify/sms")[0].body["text"],
        "Notification: Your order has shipped"
    );
    assert_eq!(
        mock.hits("/notify/webhook")[0].headers["x-weft-run"],
        id.as_str()
    );
    assert_eq!(
        output(&view, "deliver"),
        json!({"user_id": "u-7", "email": 202, "sms": 202, "push": 202, "webhook": 202})
    );
    let queues: BTreeSet<String> = h.engine.queue_list().into_iter().map(|q| q.name).collect();
    for (_, queue) in CHANNELS {
        assert!(queues.contains(*queue), "{queues:?}");
    }
}

#[tokio::test]
async fn notify_fanout_dead_channel_fails_the_run_until_replayed() {
    let mock = Mock::start().await;
    // 410 Gone is not retryable: the webhook is dead-lettered at once.
    mock.respond("/notify/webhook", 410, json!({"error": "gone"}), 1);
    let h = Harness::start().await;
    let id = h.start_run("notify-fanout", fanout_input(&mock)).await;
    let view = finish(&h.engine, &id).await;

    assert_eq!(view.run.state, RunState::Failed, "{:?}", states(&view));
    for channel in ["email", "sms", "push"] {
        assert_node(&view, channel, TaskState::Succeeded);
    }
    assert_node(&view, "webhook", TaskState::Dead);
    assert_node(&view, "deliver", TaskState::Waiting);

    h.engine.dlq_replay(&id, "webhook").await.unwrap();
    let view = finish(&h.engine, &id).await;
    assert_eq!(view.run.state, RunState::Succeeded, "{:?}", states(&view));
    assert_eq!(output(&view, "deliver")["webhook"], 202);
    // Only the dead channel was sent again.
    assert_eq!(mock.hits("/notify/webhook").len(), 2);
    assert_eq!(mock.hits("/notify/email").len(), 1);
}

// ---- reminder ---------------------------------------------------------------------------

const DAY: Duration = Duration::from_secs(24 * 3600);

fn reminder_input(mock: &Mock, email: &str) -> Value {
    json!({ "email": email, "remind_url": mock.url("/remind") })
}

/// The run is parked on its `wait` timer, due a day after it was created.
fn assert_parked_for_a_day(view: &RunView) {
    // The run reads `queued` while its only scheduled node is a timer (no attempt has run
    // yet); what matters here is that it is alive and parked.
    assert!(
        !view.run.state.is_terminal(),
        "{:?} {:?}",
        view.run.state,
        states(view)
    );
    let wait = node(view, "wait");
    assert_eq!(wait.state, TaskState::Pending, "{:?}", states(view));
    let due = wait.scheduled_at.expect("a pending delay has a due time");
    let ahead = due - view.run.created_at;
    assert!(
        (ahead - DAY.as_millis() as i64).abs() < 5_000,
        "due {ahead} ms after creation, expected about 24h"
    );
    assert_node(view, "remind", TaskState::Waiting);
}

#[tokio::test]
async fn reminder_parks_on_a_durable_timer_that_survives_a_restart() {
    let mock = Mock::start().await;
    let mut h = Harness::start().await;
    let kept = h
        .start_run("reminder", reminder_input(&mock, "kept@example.com"))
        .await;
    let cancelled = h
        .start_run("reminder", reminder_input(&mock, "gone@example.com"))
        .await;
    for id in [&kept, &cancelled] {
        let view = h.engine.run_get(id).await.unwrap();
        assert_parked_for_a_day(&view);
    }
    assert_eq!(
        h.engine.inflight(),
        0,
        "a waiting delay holds no worker slot"
    );

    h.engine.run_cancel(&cancelled).await.unwrap();
    let view = finish(&h.engine, &cancelled).await;
    assert_eq!(view.run.state, RunState::Cancelled);
    assert!(
        view.nodes
            .iter()
            .all(|n| n.task.state == TaskState::Cancelled),
        "{:?}",
        states(&view)
    );

    // A day later, after a restart: the timer was only a row on disk, and it fires.
    h.restart_later(DAY + Duration::from_secs(60)).await;
    let view = finish(&h.engine, &kept).await;
    assert_eq!(view.run.state, RunState::Succeeded, "{:?}", states(&view));
    let fired = output(&view, "wait");
    assert!(
        fired["fired_at"].is_string() && fired["due_at"].is_string(),
        "{fired}"
    );
    assert_eq!(output(&view, "remind")["status"], 202);
    assert_eq!(
        output(&view, "done")["message"],
        "reminder sent to kept@example.com (HTTP 202)"
    );
    let sent = mock.hits("/remind");
    assert_eq!(sent.len(), 1, "the cancelled run must not remind");
    assert_eq!(sent[0].body["to"], "kept@example.com");
    assert!(
        sent[0].body["text"]
            .as_str()
            .unwrap()
            .starts_with("You started something")
    );
    let view = h.engine.run_get(&cancelled).await.unwrap();
    assert_eq!(view.run.state, RunState::Cancelled);
}

// ---- signup -----------------------------------------------------------------------------

#[tokio::test]
async fn signup_runs_reminder_as_a_child_run() {
    let mock = Mock::start().await;
    let mut h = Harness::start().await;
    let id = h
        .start_run(
            "signup",
            json!({
                "email": "grace@example.com",
                "name": "Grace",
                "accounts_url": mock.url("/accounts"),
                "email_url": mock.url("/email"),
            }),
        )
        .await;

    // The parent waits for its child without a worker slot.
    let view = until(&h.engine, &id, |v| {
        node(v, "nudge").state == TaskState::Suspended
            && node(v, "welcome").state == TaskState::Succeeded
    })
    .await;
    assert!(!view.run.state.is_terminal());
    assert_eq!(output(&view, "create_account")["body"]["id"], "acct_42");
    assert_node(&view, "done", TaskState::Waiting);
    let child = node(&view, "nudge")
        .child_run
        .clone()
        .expect("a suspended subflow names its child run");
    let child_view = until(&h.engine, &child, |v| {
        node(v, "wait").state == TaskState::Pending
    })
    .await;
    assert_eq!(child_view.run.flow, "reminder");
    assert_eq!(child_view.run.parent_run.as_deref(), Some(id.as_str()));
    assert_eq!(
        child_view.run.input,
        json!({"email": "grace@example.com", "remind_url": mock.url("/email"),
               "message": "Hi Grace, your account is waiting for you."})
    );
    assert_parked_for_a_day(&child_view);
    let welcome = mock.hits("/email");
    assert_eq!(welcome.len(), 1);
    assert_eq!(
        welcome[0].body["text"],
        "Welcome, Grace! Your account id is acct_42."
    );

    // A day later the child fires, finishes, and the parent resumes from it.
    h.restart_later(DAY + Duration::from_secs(60)).await;
    let view = finish(&h.engine, &id).await;
    assert_eq!(view.run.state, RunState::Succeeded, "{:?}", states(&view));
    let child_view = h.engine.run_get(&child).await.unwrap();
    assert_eq!(child_view.run.state, RunState::Succeeded);
    let nudge = output(&view, "nudge");
    assert_eq!(nudge["remind"]["status"], 202, "{nudge}");
    assert_eq!(
        output(&view, "done")["message"],
        "signed up grace@example.com as acct_42; reminder sent to grace@example.com (HTTP 202)"
    );
    let emails = mock.hits("/email");
    assert_eq!(emails.len(), 2, "welcome, then the reminder");
    assert_eq!(
        emails[1].body["text"],
        "Hi Grace, your account is waiting for you."
    );
}

#[tokio::test]
async fn signup_cancelled_while_waiting_cancels_its_child_run() {
    let mock = Mock::start().await;
    let h = Harness::start().await;
    let id = h
        .start_run(
            "signup",
            json!({
                "email": "linus@example.com",
                "name": "Linus",
                "accounts_url": mock.url("/accounts"),
                "email_url": mock.url("/email"),
            }),
        )
        .await;
    let view = until(&h.engine, &id, |v| {
        node(v, "nudge").state == TaskState::Suspended
    })
    .await;
    let child = node(&view, "nudge").child_run.clone().unwrap();

    h.engine.run_cancel(&id).await.unwrap();
    let view = finish(&h.engine, &id).await;
    assert_eq!(view.run.state, RunState::Cancelled);
    assert_node(&view, "nudge", TaskState::Cancelled);
    assert_node(&view, "done", TaskState::Cancelled);
    let child_view = finish(&h.engine, &child).await;
    assert_eq!(child_view.run.state, RunState::Cancelled);
    assert_node(&child_view, "wait", TaskState::Cancelled);
}
