//! In-memory ready queues. Ready tasks are held here in priority order so a worker gets its
//! next task without a database read; the store remains the truth and the queues are rebuilt
//! from it at start. Each queue has its own concurrency limit, pause switch and rate limit,
//! all changeable while running (the rate is enforced by `limits`, where attempts start).

use parking_lot::Mutex;
use serde::Serialize;
use std::cmp::Reverse;
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering as AtomicOrdering};
use std::time::{Duration, Instant};
use tokio::sync::Notify;
use weft_store::{QueueRate, ReadyTask};

struct Item {
    /// When it became ready here, for the oldest-ready age.
    since: Instant,
    task: ReadyTask,
}

/// Tasks waiting for a slot: higher priority first, first in first out among equals. One
/// line per priority, each kept in chunks of [`CHUNK`] tasks, so a queue that grows to
/// hundreds of thousands of tasks (a paused queue under a burst of schedule ticks, say)
/// never moves them all to a larger block: a heap in one vector did, tens of milliseconds
/// at a time, stalling whoever was handing tasks to it.
#[derive(Default)]
struct Waiting {
    lines: BTreeMap<Reverse<i32>, VecDeque<VecDeque<Item>>>,
    len: usize,
}

/// Tasks per chunk of a line.
const CHUNK: usize = 1024;

impl Waiting {
    fn push(&mut self, item: Item) {
        let line = self.lines.entry(Reverse(item.task.priority)).or_default();
        match line.back_mut() {
            Some(chunk) if chunk.len() < CHUNK => chunk.push_back(item),
            _ => {
                let mut chunk = VecDeque::with_capacity(CHUNK);
                chunk.push_back(item);
                line.push_back(chunk);
            }
        }
        self.len += 1;
    }

    fn pop(&mut self) -> Option<Item> {
        let mut line = self.lines.first_entry()?;
        let chunk = line.get_mut().front_mut()?;
        let item = chunk.pop_front();
        if chunk.is_empty() {
            line.get_mut().pop_front();
            if line.get().is_empty() {
                line.remove();
            }
        }
        self.len -= usize::from(item.is_some());
        item
    }

    fn retain(&mut self, mut keep: impl FnMut(&Item) -> bool) {
        for line in self.lines.values_mut() {
            for chunk in line.iter_mut() {
                chunk.retain(&mut keep);
            }
            line.retain(|c| !c.is_empty());
        }
        self.lines.retain(|_, line| !line.is_empty());
        self.len = self.iter().count();
    }

    /// In the order they are taken.
    fn iter(&self) -> impl Iterator<Item = &Item> {
        self.lines.values().flatten().flatten()
    }

    /// When the task waiting longest became ready: the oldest front of a line (each line
    /// is in arrival order).
    fn oldest(&self) -> Option<Instant> {
        self.lines
            .values()
            .filter_map(|l| l.front()?.front().map(|i| i.since))
            .min()
    }
}

struct State {
    waiting: Waiting,
    running: u32,
    limit: u32,
    paused: bool,
    rate: Option<QueueRate>,
}

/// One named queue.
pub struct Queue {
    /// Name.
    pub name: String,
    state: Mutex<State>,
    /// Wakes the queue's dispatcher.
    pub(crate) wake: Notify,
    /// Microseconds between two starts under the queue's rate limit, 0 without one: read
    /// by every limited attempt, so it is kept outside the state's lock.
    rate_interval_us: AtomicU64,
    /// The queue's rate bucket, `queue:NAME` (shared by the processes of a cluster).
    pub(crate) rate_bucket: Arc<str>,
}

/// A rate limit as shown: at most `limit` starts per `per` (e.g. `1s`), the same shape as a
/// node's `rate_limit`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RateView {
    /// Starts per interval.
    pub limit: u32,
    /// The interval, e.g. `1s`.
    pub per: String,
}

impl From<QueueRate> for RateView {
    fn from(r: QueueRate) -> Self {
        Self {
            limit: r.limit,
            per: weft_core::duration::format(Duration::from_millis(r.per_ms)),
        }
    }
}

/// A queue's figures at one moment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct QueueStats {
    /// Name.
    pub name: String,
    /// Concurrency limit.
    pub concurrency: u32,
    /// Paused.
    pub paused: bool,
    /// Tasks waiting for a slot.
    pub ready: usize,
    /// Attempts running now.
    pub running: u32,
    /// How long the oldest task waiting for a slot has waited, in milliseconds (0 when none
    /// waits). Measured from when it became ready in this process.
    pub oldest_ready_age_ms: u64,
    /// At most this many starts per interval, if the queue has a rate limit.
    pub rate: Option<RateView>,
}

impl Queue {
    /// A queue with `limit` slots.
    pub fn new(name: &str, limit: u32, paused: bool) -> Self {
        Self {
            name: name.to_string(),
            state: Mutex::new(State {
                waiting: Waiting::default(),
                running: 0,
                limit,
                paused,
                rate: None,
            }),
            wake: Notify::new(),
            rate_interval_us: AtomicU64::new(0),
            rate_bucket: Arc::from(format!("queue:{name}")),
        }
    }

    /// Sets or (with `None`) clears the queue's rate limit; it applies to the next start.
    pub fn set_rate(&self, rate: Option<QueueRate>) {
        let interval = rate.map_or(0, |r| (r.per_ms * 1000 / u64::from(r.limit)).max(1));
        self.state.lock().rate = rate;
        self.rate_interval_us
            .store(interval, AtomicOrdering::Relaxed);
        self.wake.notify_one();
    }

    /// The queue's rate limit, if any.
    pub fn rate(&self) -> Option<QueueRate> {
        self.state.lock().rate
    }

    /// The queue's concurrency limit.
    pub fn limit(&self) -> u32 {
        self.state.lock().limit
    }

    /// Whether the queue is paused.
    pub fn paused(&self) -> bool {
        self.state.lock().paused
    }

    /// Microseconds between two starts under the queue's rate limit, 0 without one.
    pub(crate) fn rate_interval_us(&self) -> u64 {
        self.rate_interval_us.load(AtomicOrdering::Relaxed)
    }

    /// Adds ready tasks.
    pub fn push(&self, tasks: impl IntoIterator<Item = ReadyTask>) {
        let mut s = self.state.lock();
        let since = Instant::now();
        for task in tasks {
            s.waiting.push(Item { since, task });
        }
        drop(s);
        self.wake.notify_one();
    }

    /// Takes as many tasks as there are free slots, counting them as running.
    pub fn take_runnable(&self, max: usize) -> Vec<ReadyTask> {
        let mut s = self.state.lock();
        if s.paused {
            return Vec::new();
        }
        let free = s.limit.saturating_sub(s.running) as usize;
        let n = free.min(max).min(s.waiting.len);
        let mut out = Vec::with_capacity(n);
        for _ in 0..n {
            if let Some(item) = s.waiting.pop() {
                out.push(item.task);
            }
        }
        s.running += out.len() as u32;
        out
    }

    /// How many tasks to claim from a shared store now, or 0 while paused. A worker keeps
    /// up to its limit of claimed tasks waiting here beside the running ones, so a freed
    /// slot starts the next task at once instead of after a claim's round trip; it tops
    /// that up in batches (half the limit at a time, or anything when it holds nothing), so
    /// a busy worker pays one store round trip per batch rather than per task. What it has
    /// not started when it stops goes back to the store (`cluster::release_unstarted`).
    pub fn claimable(&self) -> u32 {
        let s = self.state.lock();
        if s.paused {
            return 0;
        }
        let held = s.running + s.waiting.len as u32;
        let want = (2 * s.limit).saturating_sub(held);
        if want >= (s.limit / 2).max(1) || (held == 0 && want > 0) {
            want
        } else {
            0
        }
    }

    /// Takes every waiting task out (none is started from here afterwards).
    pub fn drain(&self) -> Vec<ReadyTask> {
        let mut s = self.state.lock();
        let mut out = Vec::with_capacity(s.waiting.len);
        while let Some(item) = s.waiting.pop() {
            out.push(item.task);
        }
        out
    }

    /// Frees one slot.
    pub fn release(&self) {
        self.state.lock().running -= 1;
        self.wake.notify_one();
    }

    /// Changes the limit and/or pause switch.
    pub fn configure(&self, limit: Option<u32>, paused: Option<bool>) {
        let mut s = self.state.lock();
        if let Some(l) = limit {
            s.limit = l;
        }
        if let Some(p) = paused {
            s.paused = p;
        }
        drop(s);
        self.wake.notify_one();
    }

    /// Drops queued tasks of the given runs (they were cancelled).
    pub fn remove_runs(&self, runs: &std::collections::HashSet<&str>) {
        self.state
            .lock()
            .waiting
            .retain(|i| !runs.contains(&*i.task.run_id));
    }

    /// Current figures.
    pub fn stats(&self) -> QueueStats {
        let s = self.state.lock();
        let oldest = s.waiting.oldest();
        QueueStats {
            name: self.name.clone(),
            concurrency: s.limit,
            paused: s.paused,
            ready: s.waiting.len,
            running: s.running,
            oldest_ready_age_ms: oldest.map_or(0, |t| t.elapsed().as_millis() as u64),
            rate: s.rate.map(RateView::from),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn task(node: &str, priority: i32) -> ReadyTask {
        ReadyTask {
            run_id: Arc::from("r"),
            flow: Arc::from("f"),
            version: 1,
            node: Arc::from(node),
            attempt: 1,
            queue: Arc::from("q"),
            priority,
        }
    }

    #[test]
    fn priority_then_fifo_and_limit() {
        let q = Queue::new("q", 2, false);
        q.push([task("a", 0), task("b", 5), task("c", 0), task("d", 5)]);
        let got: Vec<_> = q
            .take_runnable(10)
            .iter()
            .map(|t| t.node.to_string())
            .collect();
        assert_eq!(got, ["b", "d"]);
        assert!(q.take_runnable(10).is_empty(), "limit of 2 reached");
        q.release();
        assert_eq!(&*q.take_runnable(10)[0].node, "a");
    }

    #[test]
    fn long_lines_keep_priority_then_arrival_order() {
        let q = Queue::new("q", u32::MAX, false);
        let n = CHUNK * 3 + 7;
        let of = |run: String, priority| ReadyTask {
            run_id: Arc::from(run),
            ..task("x", priority)
        };
        q.push((0..n).map(|i| of(format!("low-{i}"), 0)));
        q.push((0..n).map(|i| of(format!("high-{i}"), 1)));
        // Cancel every third low task, across chunk boundaries.
        let gone: Vec<String> = (0..n).step_by(3).map(|i| format!("low-{i}")).collect();
        q.remove_runs(&gone.iter().map(String::as_str).collect());
        let left = 2 * n - gone.len();
        assert_eq!(q.stats().ready, left);
        let got: Vec<String> = q
            .take_runnable(usize::MAX)
            .iter()
            .map(|t| t.run_id.to_string())
            .collect();
        let want: Vec<String> = (0..n)
            .map(|i| format!("high-{i}"))
            .chain((0..n).filter(|i| i % 3 != 0).map(|i| format!("low-{i}")))
            .collect();
        assert_eq!(got, want);
        assert_eq!(q.stats().ready, 0);
        assert!(q.take_runnable(1).is_empty());
    }

    #[test]
    fn pause_and_resize_apply_live() {
        let q = Queue::new("q", 1, true);
        q.push([task("a", 0), task("b", 0)]);
        assert!(q.take_runnable(10).is_empty());
        q.configure(Some(2), Some(false));
        assert_eq!(q.take_runnable(10).len(), 2);
    }

    #[test]
    fn oldest_ready_age_tracks_waiting_tasks() {
        let q = Queue::new("q", 1, true);
        assert_eq!(q.stats().oldest_ready_age_ms, 0, "empty queue");
        q.push([task("a", 0)]);
        let first = q
            .state
            .lock()
            .waiting
            .iter()
            .next()
            .map(|i| i.since)
            .unwrap();
        q.push([task("b", 0)]);
        let oldest = q.state.lock().waiting.oldest().unwrap();
        assert_eq!(oldest, first, "the age is the first-pushed task's");
        q.configure(None, Some(false));
        assert_eq!(q.take_runnable(10).len(), 1);
        q.release();
        assert_eq!(q.take_runnable(10).len(), 1);
        assert_eq!(q.stats().oldest_ready_age_ms, 0, "nothing waits");
    }
}
