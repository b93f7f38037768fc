//! The event log: one bounded ring of the latest events, numbered by `seq`, that every
//! subscriber reads at its own cursor.
//!
//! One structure serves both replay and live delivery, so a resuming client cannot see a
//! gap or a duplicate between "what was buffered" and "what came next": both are the same
//! sequence. Publishing takes a short write lock and never waits for a subscriber; a
//! subscriber that falls more than its allowance behind the head is told it lagged (it is
//! dropped by the API) instead of holding events back.

use super::{EventKind, LiveEvent};
use parking_lot::RwLock;
use std::collections::VecDeque;
use std::sync::Arc;
use tokio::sync::Notify;

/// Events kept for replay by default.
pub const DEFAULT_EVENT_BUFFER: usize = 100_000;
/// How many live events a subscriber may leave unread before it is dropped, by default.
pub const DEFAULT_SUBSCRIBER_LAG: usize = 32_768;
/// Most events handed to a subscriber per read (bounds how long a read holds the lock).
const READ_CHUNK: usize = 512;
/// Most events a read looks at, matching or not.
const SCAN_CHUNK: usize = 4096;

/// The ring of recent events plus a wake-up for readers.
pub struct EventLog {
    ring: RwLock<Ring>,
    published: Notify,
    capacity: usize,
}

struct Ring {
    events: VecDeque<Arc<LiveEvent>>,
    /// The seq the next published event gets.
    next_seq: u64,
}

impl Ring {
    fn first_seq(&self) -> u64 {
        self.next_seq - self.events.len() as u64
    }
}

/// Which events a subscriber wants.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Only this run's events.
    pub run: Option<String>,
    /// Only runs of this flow.
    pub flow: Option<String>,
    /// Only these kinds (all when empty).
    pub kinds: Vec<EventKind>,
}

impl EventFilter {
    /// True if `ev` passes the filter.
    pub fn matches(&self, ev: &LiveEvent) -> bool {
        (self.kinds.is_empty() || self.kinds.contains(&ev.kind()))
            && self.run.as_deref().is_none_or(|r| r == ev.run_id())
            && self.flow.as_deref().is_none_or(|f| f == ev.flow())
    }
}

/// A subscriber fell too far behind; it must reconnect (and resume from its last seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("slow consumer: fell {behind} events behind")]
pub struct Lagged {
    /// Events published that it had not read.
    pub behind: u64,
}

/// A resumption that could not be exact: events between the requested seq and
/// `first_available` are gone (or the seq belongs to an earlier process).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Gap {
    /// The seq the client asked to resume after.
    pub requested: u64,
    /// The first seq the subscription delivers.
    pub first_available: u64,
}

impl EventLog {
    /// A log keeping the latest `capacity` events (at least one).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            ring: RwLock::new(Ring {
                events: VecDeque::with_capacity(capacity.min(4096)),
                next_seq: 1,
            }),
            published: Notify::new(),
            capacity,
        }
    }

    /// How many events are kept for replay.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// The seq of the latest event (0 before the first).
    pub fn last_seq(&self) -> u64 {
        self.ring.read().next_seq - 1
    }

    /// Numbers and appends `events`, dropping the oldest beyond capacity, and wakes readers.
    pub fn publish(&self, events: Vec<LiveEvent>) {
        if events.is_empty() {
            return;
        }
        {
            let mut ring = self.ring.write();
            for mut ev in events {
                ev.seq = ring.next_seq;
                ring.next_seq += 1;
                if ring.events.len() == self.capacity {
                    ring.events.pop_front();
                }
                ring.events.push_back(Arc::new(ev));
            }
        }
        self.published.notify_waiters();
    }

    /// Subscribes from now on (`after` = None) or to every retained event after seq
    /// `after`. A subscriber may leave at most `max_lag` live events unread.
    pub fn subscribe(
        self: &Arc<Self>,
        after: Option<u64>,
        filter: EventFilter,
        max_lag: usize,
    ) -> Subscription {
        let ring = self.ring.read();
        let (first, head) = (ring.first_seq(), ring.next_seq);
        drop(ring);
        let (next, gap) = match after {
            None => (head, None),
            Some(s) if s.saturating_add(1) < first || s >= head => (
                first,
                Some(Gap {
                    requested: s,
                    first_available: first,
                }),
            ),
            Some(s) => (s + 1, None),
        };
        Subscription {
            log: self.clone(),
            next,
            live_from: head,
            max_lag: max_lag.max(1) as u64,
            filter,
            gap,
        }
    }
}

/// One subscriber's cursor into the log.
pub struct Subscription {
    log: Arc<EventLog>,
    /// The seq it reads next.
    next: u64,
    /// The head when it subscribed: events from here on are live, older ones replay.
    live_from: u64,
    max_lag: u64,
    filter: EventFilter,
    gap: Option<Gap>,
}

impl Subscription {
    /// The gap in a resumption, once (None if resumption was exact).
    pub fn take_gap(&mut self) -> Option<Gap> {
        self.gap.take()
    }

    /// Waits for matching events and appends them (at most a chunk) to `out`.
    pub async fn next_batch(&mut self, out: &mut Vec<Arc<LiveEvent>>) -> Result<(), Lagged> {
        let log = self.log.clone();
        loop {
            let notified = log.published.notified();
            let mut notified = std::pin::pin!(notified);
            // Registered before reading, so a publish between the read and the wait wakes us.
            notified.as_mut().enable();
            let caught_up = self.read(out)?;
            if !out.is_empty() {
                return Ok(());
            }
            if caught_up {
                notified.await;
            }
        }
    }

    /// Reads what is available into `out` without waiting; true if nothing is left.
    pub fn try_read(&mut self, out: &mut Vec<Arc<LiveEvent>>) -> Result<bool, Lagged> {
        self.read(out)
    }

    fn read(&mut self, out: &mut Vec<Arc<LiveEvent>>) -> Result<bool, Lagged> {
        let ring = self.log.ring.read();
        let (first, head) = (ring.first_seq(), ring.next_seq);
        let unread_live = head - self.next.max(self.live_from);
        if self.next < first || unread_live > self.max_lag {
            return Err(Lagged {
                behind: head - self.next,
            });
        }
        let start = (self.next - first) as usize;
        for ev in ring.events.range(start..).take(SCAN_CHUNK) {
            self.next = ev.seq + 1;
            if self.filter.matches(ev) {
                out.push(ev.clone());
                if out.len() >= READ_CHUNK {
                    break;
                }
            }
        }
        Ok(self.next == head)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::events::{EventBody, RunEvent, RunEventState};

    fn ev(run: &str) -> LiveEvent {
        LiveEvent::new(
            0,
            EventBody::Run(RunEvent {
                run_id: run.into(),
                flow: "f".into(),
                state: RunEventState::Created,
                error: None,
            }),
        )
    }

    fn seqs(v: &[Arc<LiveEvent>]) -> Vec<u64> {
        v.iter().map(|e| e.seq).collect()
    }

    #[test]
    fn resume_replays_exactly_what_follows_the_seq() {
        let log = Arc::new(EventLog::new(10));
        log.publish((0..5).map(|_| ev("a")).collect());
        let mut sub = log.subscribe(Some(2), EventFilter::default(), 100);
        assert_eq!(sub.take_gap(), None);
        let mut out = Vec::new();
        assert!(sub.try_read(&mut out).unwrap());
        assert_eq!(seqs(&out), vec![3, 4, 5]);
        log.publish(vec![ev("a")]);
        out.clear();
        sub.try_read(&mut out).unwrap();
        assert_eq!(seqs(&out), vec![6]);
    }

    #[test]
    fn resuming_before_the_buffer_reports_a_gap() {
        let log = Arc::new(EventLog::new(3));
        log.publish((0..5).map(|_| ev("a")).collect());
        let mut sub = log.subscribe(Some(0), EventFilter::default(), 100);
        let gap = sub.take_gap().unwrap();
        assert_eq!(gap.first_available, 3);
        let mut out = Vec::new();
        sub.try_read(&mut out).unwrap();
        assert_eq!(seqs(&out), vec![3, 4, 5]);
        // A seq from the future (an earlier process) is a gap too.
        let mut sub = log.subscribe(Some(99), EventFilter::default(), 100);
        assert_eq!(sub.take_gap().unwrap().first_available, 3);
    }

    #[test]
    fn a_subscriber_too_far_behind_lags_but_replay_does_not_count() {
        let log = Arc::new(EventLog::new(100));
        log.publish((0..50).map(|_| ev("a")).collect());
        let mut replaying = log.subscribe(Some(0), EventFilter::default(), 4);
        let mut out = Vec::new();
        assert!(replaying.try_read(&mut out).unwrap());
        assert_eq!(out.len(), 50);
        let mut live = log.subscribe(None, EventFilter::default(), 4);
        log.publish((0..5).map(|_| ev("a")).collect());
        assert_eq!(live.try_read(&mut out), Err(Lagged { behind: 5 }));
    }

    #[test]
    fn filters_skip_other_runs() {
        let log = Arc::new(EventLog::new(100));
        let filter = EventFilter {
            run: Some("b".into()),
            ..Default::default()
        };
        let mut sub = log.subscribe(None, filter, 100);
        log.publish(vec![ev("a"), ev("b"), ev("a")]);
        let mut out = Vec::new();
        sub.try_read(&mut out).unwrap();
        assert_eq!(seqs(&out), vec![2]);
    }
}
