//! Follows runs started with `wait: true` to their final state by polling
//! `GET /v1/runs/{id}` on a few connections of its own, so its polls never delay the
//! measured traffic and are reported apart from it. Completion latency is taken from the
//! run's own `created_at`/`finished_at` (exact, whatever the poll interval), and also as the
//! client saw it (intended start -> the poll that found it finished).

use crate::client::Conn;
use crate::recorder::{histogram, latency};
use crate::report::CompletionStats;
use crate::scenario::WaitOptions;
use crate::target::Target;
use hdrhistogram::Histogram;
use hyper::Method;
use parking_lot::Mutex;
use std::collections::{BTreeMap, VecDeque};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

/// Connections the tracker polls on.
pub(crate) const TRACKER_CONNECTIONS: usize = 4;

struct Pending {
    id: String,
    intended: Instant,
    next_poll: Instant,
}

#[derive(Default)]
struct Acc {
    followed: u64,
    not_followed: u64,
    by_state: BTreeMap<String, u64>,
    polls: u64,
}

/// Runs being followed and what their ends measured.
pub(crate) struct Tracker {
    pending: Mutex<VecDeque<Pending>>,
    acc: Mutex<Acc>,
    server: Mutex<Histogram<u64>>,
    observed: Mutex<Histogram<u64>>,
    opts: WaitOptions,
    /// Set when no more runs will be added; the tracker then drains until `deadline`.
    closed: AtomicBool,
    deadline: Mutex<Option<Instant>>,
    timeout: Duration,
}

impl Tracker {
    pub(crate) fn new(opts: WaitOptions, timeout: Duration) -> Arc<Self> {
        Arc::new(Self {
            pending: Mutex::new(VecDeque::new()),
            acc: Mutex::new(Acc::default()),
            server: Mutex::new(histogram(3)),
            observed: Mutex::new(histogram(3)),
            opts,
            closed: AtomicBool::new(false),
            deadline: Mutex::new(None),
            timeout,
        })
    }

    /// Follows run `id`, started at `intended`; beyond `max_tracked` it is only counted.
    pub(crate) fn follow(&self, id: String, intended: Instant) {
        let mut p = self.pending.lock();
        if p.len() >= self.opts.max_tracked {
            self.acc.lock().not_followed += 1;
            return;
        }
        self.acc.lock().followed += 1;
        p.push_back(Pending {
            id,
            intended,
            next_poll: Instant::now() + self.opts.poll_interval,
        });
    }

    /// No more runs will come; wait at most `wait.timeout` (or not at all when `abandon`).
    pub(crate) fn close(&self, abandon: bool) {
        let wait = if abandon {
            Duration::ZERO
        } else {
            self.opts.timeout
        };
        *self.deadline.lock() = Some(Instant::now() + wait);
        self.closed.store(true, Ordering::SeqCst);
    }

    /// One polling loop; [`TRACKER_CONNECTIONS`] of them run at once.
    pub(crate) async fn poll_loop(self: Arc<Self>, addr: SocketAddr, target: Arc<Target>) {
        let mut conn = Conn::new(addr, target);
        loop {
            if self.closed.load(Ordering::SeqCst)
                && (self.pending.lock().is_empty()
                    || self.deadline.lock().is_some_and(|d| Instant::now() >= d))
            {
                return;
            }
            let next = {
                let mut p = self.pending.lock();
                match p.front() {
                    Some(f) if f.next_poll <= Instant::now() => p.pop_front(),
                    _ => None,
                }
            };
            let Some(mut run) = next else {
                // Nothing due: the queue is in poll order, so its head says how long to wait.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            };
            let answer = conn
                .call(
                    Method::GET,
                    &format!("/v1/runs/{}", run.id),
                    None,
                    self.timeout,
                )
                .await;
            self.acc.lock().polls += 1;
            if let Ok(a) = answer
                && a.status == 200
                && let Some((state, took_ms)) = finished(&a.body)
            {
                let mut acc = self.acc.lock();
                *acc.by_state.entry(state).or_default() += 1;
                self.server
                    .lock()
                    .saturating_record((took_ms.max(0) as u64 * 1000).max(1));
                self.observed
                    .lock()
                    .saturating_record(run.intended.elapsed().as_micros().max(1) as u64);
                continue;
            }
            run.next_poll = Instant::now() + self.opts.poll_interval;
            self.pending.lock().push_back(run);
        }
    }

    /// What was measured; runs still pending count as unfinished.
    pub(crate) fn stats(&self) -> CompletionStats {
        let acc = self.acc.lock();
        CompletionStats {
            followed: acc.followed,
            not_followed: acc.not_followed,
            by_state: acc.by_state.clone(),
            unfinished: self.pending.lock().len() as u64,
            latency: latency(&self.server.lock()),
            observed_latency: latency(&self.observed.lock()),
            polls: acc.polls,
        }
    }
}

/// (final state, created -> finished in ms) of a finished run's JSON.
fn finished(body: &[u8]) -> Option<(String, i64)> {
    #[derive(serde::Deserialize)]
    struct Run {
        state: String,
        created_at: i64,
        finished_at: Option<i64>,
    }
    let r: Run = serde_json::from_slice(body).ok()?;
    let end = r.finished_at?;
    matches!(r.state.as_str(), "succeeded" | "failed" | "cancelled")
        .then(|| (r.state, end - r.created_at))
}
