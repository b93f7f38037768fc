//! The open-loop generator. A dedicated OS thread walks the [`Schedule`] and, at each
//! arrival's due time, queues a job (or drops it, counted, when `max_in_flight` jobs are
//! already queued or in flight). One task per connection takes jobs and sends them.
//!
//! The schedule thread uses `std::thread::sleep` (tens of µs precision on Linux) rather than
//! tokio's 1 ms timer wheel, so at 20,000 arrivals/s requests leave close to their plan. At
//! high rates it wakes every 200 µs and queues all arrivals due by then: waking once per
//! arrival (every 50 µs) made it use its CPU share faster, and on a busy machine the kernel
//! then held it off the CPU for whole milliseconds (measured: send lag p99 ~5 ms vs ~3 ms
//! with batching, both at load average ~4.5 on 2 cores).
//! Latency is measured from the *intended* send time: when the server is slow, queued jobs
//! wait and that wait is counted, instead of the generator silently sending less.

use crate::client::Conn;
use crate::recorder::{Done, Outcome, Recorder};
use crate::scenario::{Scenario, Schedule, StepKind};
use crate::target::Target;
use crate::tracker::Tracker;
use bytes::Bytes;
use hyper::Method;
use parking_lot::Mutex;
use rand::Rng;
use serde_json::Value;
use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;

/// A request that left more than this after its intended time counts as `late`.
pub const LATE_AFTER: Duration = Duration::from_millis(5);
/// Arrivals due within this much of now are sent now rather than slept for.
const EARLY_SLACK: Duration = Duration::from_micros(20);
/// Shortest sleep of the schedule thread: at high rates it wakes about this often and
/// queues every arrival due by then, instead of waking once per arrival.
const MIN_SLEEP: Duration = Duration::from_micros(200);
/// Longest single sleep of the schedule thread, so a stop is noticed quickly.
const MAX_SLEEP: Duration = Duration::from_millis(50);
/// Run ids kept for `get_run` to read.
const RECENT_RUNS: usize = 1024;

struct Job {
    at: Duration,
    phase: usize,
    step: usize,
    n: u64,
}

/// A step ready to send: the parts that do not change per arrival are built once.
enum Prepared {
    Start {
        template: Value,
        fixed: Option<Bytes>,
        flow: String,
        wait: bool,
    },
    GetRun,
    Fixed {
        method: Method,
        path: String,
        body: Option<Bytes>,
    },
}

/// State shared by the schedule thread, the connection tasks and the monitors.
pub(crate) struct Shared {
    queue: Mutex<VecDeque<Job>>,
    notify: Notify,
    outstanding: AtomicUsize,
    /// The schedule has no more arrivals (or was stopped).
    pub(crate) done: AtomicBool,
    /// End early: set by the abort watchdog.
    pub(crate) stop: AtomicBool,
    pub(crate) recorder: Mutex<Recorder>,
    pub(crate) start: Instant,
    /// µs since `start` of the last 2xx answer.
    pub(crate) last_ok_us: AtomicU64,
    /// µs since `start` of the last failed request.
    pub(crate) last_fail_us: AtomicU64,
    pub(crate) connects: AtomicU64,
    /// Arrivals dropped so far (the schedule thread's own recorder is merged only at the end).
    pub(crate) dropped: AtomicU64,
    recent_runs: Mutex<VecDeque<String>>,
    steps: Vec<Prepared>,
    weights: Vec<u32>,
    max_in_flight: usize,
    timeout: Duration,
}

impl Shared {
    pub(crate) fn new(scenario: &Scenario, start: Instant) -> Arc<Self> {
        let steps = scenario.steps.iter().map(prepare).collect();
        Arc::new(Self {
            queue: Mutex::new(VecDeque::new()),
            notify: Notify::new(),
            outstanding: AtomicUsize::new(0),
            done: AtomicBool::new(false),
            stop: AtomicBool::new(false),
            recorder: Mutex::new(Recorder::new(scenario)),
            start,
            last_ok_us: AtomicU64::new(0),
            last_fail_us: AtomicU64::new(0),
            connects: AtomicU64::new(0),
            dropped: AtomicU64::new(0),
            recent_runs: Mutex::new(VecDeque::new()),
            steps,
            weights: scenario.steps.iter().map(|s| s.weight).collect(),
            max_in_flight: scenario.max_in_flight,
            timeout: scenario.timeout,
        })
    }

    /// Stops the schedule and wakes every connection task.
    pub(crate) fn halt(&self) {
        self.stop.store(true, Ordering::SeqCst);
        self.finish();
    }

    fn finish(&self) {
        self.done.store(true, Ordering::SeqCst);
        self.notify.notify_waiters();
    }
}

fn prepare(s: &crate::scenario::Step) -> Prepared {
    let json = |v: &Value| Bytes::from(serde_json::to_vec(v).unwrap_or_default());
    match s.kind {
        StepKind::StartRun => {
            let template = s
                .input
                .clone()
                .unwrap_or_else(|| Value::Object(Default::default()));
            let flow = s.flow.clone().unwrap_or_default();
            let fixed = (!has_placeholder(&template))
                .then(|| json(&serde_json::json!({ "flow": flow, "input": template })));
            Prepared::Start {
                template,
                fixed,
                flow,
                wait: s.wait,
            }
        }
        StepKind::GetRun => Prepared::GetRun,
        StepKind::ListRuns => {
            let limit = s.limit.unwrap_or(crate::scenario::DEFAULT_LIST_LIMIT);
            let path = match &s.flow {
                Some(f) => format!("/v1/runs?limit={limit}&flow={f}"),
                None => format!("/v1/runs?limit={limit}"),
            };
            Prepared::Fixed {
                method: Method::GET,
                path,
                body: None,
            }
        }
        StepKind::Request => Prepared::Fixed {
            method: s
                .method
                .as_deref()
                .unwrap_or("GET")
                .parse()
                .unwrap_or(Method::GET),
            path: s.path.clone().unwrap_or_else(|| "/".into()),
            body: s.body.as_ref().map(json),
        },
    }
}

fn has_placeholder(v: &Value) -> bool {
    match v {
        Value::String(s) => s.contains("{{n}}") || s.contains("{{rand}}"),
        Value::Array(a) => a.iter().any(has_placeholder),
        Value::Object(o) => o.values().any(has_placeholder),
        _ => false,
    }
}

fn render(v: &Value, n: u64) -> Value {
    match v {
        Value::String(s) if s.contains("{{") => Value::String(
            s.replace("{{n}}", &n.to_string())
                .replace("{{rand}}", &rand::rng().random::<u64>().to_string()),
        ),
        Value::Array(a) => Value::Array(a.iter().map(|x| render(x, n)).collect()),
        Value::Object(o) => {
            Value::Object(o.iter().map(|(k, x)| (k.clone(), render(x, n))).collect())
        }
        other => other.clone(),
    }
}

/// The schedule thread's body: queues arrivals at their due times until the plan ends or
/// the test is stopped. It counts into its own `local` recorder, merged at the end, so it
/// never waits for a lock a (possibly descheduled) connection task holds.
pub(crate) fn dispatch(shared: Arc<Shared>, schedule: Schedule, mut local: Recorder) {
    plan(&shared, schedule, &mut local);
    shared.recorder.lock().merge(local);
    shared.finish();
}

fn plan(shared: &Shared, schedule: Schedule, local: &mut Recorder) {
    let total: u32 = shared.weights.iter().sum();
    let mut rng = rand::rng();
    for (n, (at, phase)) in schedule.enumerate() {
        let due = shared.start + at;
        loop {
            if shared.stop.load(Ordering::Relaxed) {
                return;
            }
            let now = Instant::now();
            if due <= now + EARLY_SLACK {
                break;
            }
            std::thread::sleep((due - now).max(MIN_SLEEP).min(MAX_SLEEP));
        }
        let mut pick = rng.random_range(0..total);
        let step = shared
            .weights
            .iter()
            .position(|w| {
                if pick < *w {
                    true
                } else {
                    pick -= w;
                    false
                }
            })
            .unwrap_or(0);
        let admitted = shared
            .outstanding
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |o| {
                (o < shared.max_in_flight).then_some(o + 1)
            })
            .is_ok();
        let lag = Instant::now().saturating_duration_since(due);
        local.planned(phase, step, at, lag, !admitted);
        if !admitted {
            shared.dropped.fetch_add(1, Ordering::Relaxed);
        }
        if admitted {
            shared.queue.lock().push_back(Job {
                at,
                phase,
                step,
                n: n as u64,
            });
            shared.notify.notify_one();
        }
    }
}

/// One connection's task: takes jobs until the schedule is done and the queue is empty.
pub(crate) async fn connection(
    shared: Arc<Shared>,
    addr: SocketAddr,
    target: Arc<Target>,
    tracker: Arc<Tracker>,
) {
    let mut conn = Conn::new(addr, target);
    while let Some(job) = next_job(&shared).await {
        if shared.stop.load(Ordering::Relaxed) {
            // Ended early: what is still queued was never sent.
            shared
                .recorder
                .lock()
                .planned_unsent(job.phase, job.step, job.at);
        } else {
            send(&shared, &mut conn, &tracker, job).await;
        }
        shared.outstanding.fetch_sub(1, Ordering::AcqRel);
    }
    shared.connects.fetch_add(conn.connects, Ordering::Relaxed);
}

async fn next_job(shared: &Shared) -> Option<Job> {
    loop {
        let notified = shared.notify.notified();
        tokio::pin!(notified);
        // Registered before checking, so a push or finish in between still wakes us.
        notified.as_mut().enable();
        if let Some(job) = shared.queue.lock().pop_front() {
            return Some(job);
        }
        if shared.done.load(Ordering::SeqCst) {
            return None;
        }
        notified.await;
    }
}

async fn send(shared: &Shared, conn: &mut Conn, tracker: &Tracker, job: Job) {
    let intended = shared.start + job.at;
    let (method, path, body) = match &shared.steps[job.step] {
        Prepared::Start {
            template,
            fixed,
            flow,
            ..
        } => {
            let body = fixed.clone().unwrap_or_else(|| {
                Bytes::from(
                    serde_json::to_vec(
                        &serde_json::json!({ "flow": flow, "input": render(template, job.n) }),
                    )
                    .unwrap_or_default(),
                )
            });
            (Method::POST, "/v1/runs".to_string(), Some(body))
        }
        Prepared::GetRun => {
            let id = {
                let runs = shared.recent_runs.lock();
                (!runs.is_empty()).then(|| runs[rand::rng().random_range(0..runs.len())].clone())
            };
            let Some(id) = id else {
                shared.recorder.lock().skipped(job.phase, job.step);
                return;
            };
            (Method::GET, format!("/v1/runs/{id}"), None)
        }
        Prepared::Fixed { method, path, body } => (method.clone(), path.clone(), body.clone()),
    };
    let lag = Instant::now().saturating_duration_since(intended);
    let answer = conn.call(method, &path, body, shared.timeout).await;
    let latency = Instant::now().saturating_duration_since(intended);
    let outcome = match &answer {
        Ok(a) => Outcome::Status(a.status),
        Err(f) => Outcome::Failed(*f),
    };
    shared.recorder.lock().done(Done {
        phase: job.phase,
        step: job.step,
        at: job.at,
        latency,
        lag,
        outcome,
    });
    let elapsed_us = shared.start.elapsed().as_micros() as u64;
    let Some(a) = answer.ok().filter(|a| (200..300).contains(&a.status)) else {
        shared.last_fail_us.fetch_max(elapsed_us, Ordering::Relaxed);
        return;
    };
    shared.last_ok_us.fetch_max(elapsed_us, Ordering::Relaxed);
    if let Prepared::Start { wait, .. } = &shared.steps[job.step]
        && let Some(id) = run_id(&a.body)
    {
        {
            let mut runs = shared.recent_runs.lock();
            if runs.len() == RECENT_RUNS {
                runs.pop_front();
            }
            runs.push_back(id.clone());
        }
        if *wait {
            tracker.follow(id, intended);
        }
    }
}

fn run_id(body: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Created {
        id: String,
    }
    serde_json::from_slice::<Created>(body).ok().map(|c| c.id)
}
