//! The limiter's bookkeeping under one lock: concurrency keys with their holders and parked
//! tasks, rate buckets with their waiting tasks, and what each task has already been
//! granted. It decides one admission step at a time without waiting: the steps that need
//! the store (a cluster's key slots and rate buckets) are handed back to `admit`, which asks
//! the store and comes back with the answer.

use super::task_id;
use crate::engine::TaskId;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use weft_core::CompiledNode;
use weft_core::limits::RenderedKeys;
use weft_store::ReadyTask;

#[derive(Default)]
pub(super) struct State {
    pub keys: HashMap<Arc<str>, KeySlots>,
    pub buckets: HashMap<Arc<str>, Bucket>,
    pub overrides: HashMap<Arc<str>, u32>,
    /// What a task sent back to its queue (or waiting) already holds.
    pub passes: HashMap<TaskId, Pass>,
    /// What each parked task waits for.
    pub waiting: HashMap<TaskId, Waiting>,
    admitted: u64,
}

#[derive(Default)]
pub(super) struct KeySlots {
    /// The limit the flow gives (an override takes precedence).
    pub limit: u32,
    pub holders: HashSet<TaskId>,
    pub parked: VecDeque<ReadyTask>,
    /// A retry of the parked tasks after the cluster's key was full is pending.
    pub retry_armed: bool,
}

pub(super) struct Bucket {
    /// Theoretical arrival time of the next start, µs since the limiter's epoch.
    pub tat: u64,
    interval: u64,
    pub waiting: VecDeque<ReadyTask>,
    armed: bool,
}

impl Bucket {
    /// A new interval: the next start is due no later than one new interval from `now`.
    /// (A timer armed under the old interval still fires; it admits only what is due.)
    pub fn reset(&mut self, now: u64, interval: u64) {
        self.interval = interval;
        self.tat = self.tat.min(now + interval);
        self.armed = false;
    }
}

/// What a task has been granted on its way to starting.
#[derive(Default)]
pub(super) struct Pass {
    /// The concurrency key whose slot (in this process) it holds.
    pub slot: Option<Arc<str>>,
    /// In a cluster: it also holds that key's slot in the store.
    pub slot_shared: bool,
    /// The rate steps it has passed (bits: [`NODE_RATE`], [`QUEUE_RATE`]).
    pub done: u8,
    /// The local bucket whose timer let it through, still to be taken in the store.
    pub granted: Option<Arc<str>>,
}

/// The node's rate limit step.
pub(super) const NODE_RATE: u8 = 1;
/// The queue's rate limit step.
pub(super) const QUEUE_RATE: u8 = 2;

#[derive(Clone)]
pub(super) enum Waiting {
    Key(Arc<str>),
    Rate(Arc<str>),
}

/// The rate buckets a task passes through, in order: the node's, then its queue's (name and
/// interval in µs); and whether each step is also taken in the store (a cluster).
pub(super) struct Rates {
    pub node: Option<(Arc<str>, u64)>,
    pub queue: Option<(Arc<str>, u64)>,
    pub shared: bool,
}

/// The next thing an admission does.
pub(super) enum Step {
    /// Start the attempt.
    Go,
    /// Parked (its pass is kept here); arm the timer of this bucket at this time, if set.
    Parked(Option<(Arc<str>, u64)>),
    /// In a cluster: take a slot of this key in the store.
    Key(Arc<str>),
    /// In a cluster: take a start of this bucket (interval in µs; the step's bit) in the store.
    Rate(Arc<str>, u64, u8),
}

impl State {
    /// The next step of `task`'s admission at `now` (µs), given what `pass` already holds.
    /// In a cluster (`rates.shared`) key slots and rate starts are also taken in the store.
    pub fn step(
        &mut self,
        (task, node, keys): (&ReadyTask, Option<&CompiledNode>, &RenderedKeys),
        rates: &Rates,
        now: u64,
        pass: &mut Pass,
    ) -> Step {
        let shared = rates.shared;
        let id = task_id(task);
        if pass.slot.is_none()
            && let (Some(kl), Some(key)) =
                (node.and_then(|n| n.concurrency.as_ref()), &keys.concurrency)
        {
            let limit = self.overrides.get(key).copied().unwrap_or(kl.limit);
            let slots = self.keys.entry(key.clone()).or_default();
            slots.limit = kl.limit;
            if slots.holders.len() as u32 >= limit {
                slots.parked.push_back(task.clone());
                self.waiting.insert(id, Waiting::Key(key.clone()));
                return Step::Parked(None);
            }
            slots.holders.insert(id.clone());
            pass.slot = Some(key.clone());
        }
        if shared
            && !pass.slot_shared
            && let Some(key) = &pass.slot
        {
            return Step::Key(key.clone());
        }
        let steps = [(NODE_RATE, &rates.node), (QUEUE_RATE, &rates.queue)];
        for (bit, rate) in steps {
            let Some((bucket, interval)) = rate else {
                continue;
            };
            if pass.done & bit != 0 {
                continue;
            }
            let granted = pass.granted.as_ref().is_some_and(|g| g == bucket);
            if granted {
                pass.granted = None;
            }
            if !granted && !self.take_local(bucket, *interval, now) {
                let b = self.buckets.get_mut(bucket).expect("take_local made it");
                b.waiting.push_back(task.clone());
                let arm = (!b.armed).then(|| {
                    b.armed = true;
                    (bucket.clone(), b.tat)
                });
                self.passes.insert(id.clone(), std::mem::take(pass));
                self.waiting.insert(id, Waiting::Rate(bucket.clone()));
                return Step::Parked(arm);
            }
            if shared {
                return Step::Rate(bucket.clone(), *interval, bit);
            }
            pass.done |= bit;
        }
        Step::Go
    }

    /// Takes the next start of `bucket` in this process if it is due and none waits.
    fn take_local(&mut self, bucket: &Arc<str>, interval: u64, now: u64) -> bool {
        let b = self.buckets.entry(bucket.clone()).or_insert(Bucket {
            tat: 0,
            interval,
            waiting: VecDeque::new(),
            armed: false,
        });
        b.interval = interval;
        if !(b.waiting.is_empty() && b.tat <= now) {
            return false;
        }
        b.tat = now + interval;
        self.admitted += 1;
        if self.admitted.is_multiple_of(4096) {
            self.buckets
                .retain(|_, b| b.tat > now || !b.waiting.is_empty() || b.armed);
        }
        true
    }

    /// The cluster's `bucket` refused `task` until `at` (µs, this process's epoch): it waits
    /// first in the bucket's line, keeping `pass`; the bucket's timer to arm, if not armed.
    pub fn defer(
        &mut self,
        task: &ReadyTask,
        bucket: &Arc<str>,
        interval: u64,
        at: u64,
        pass: Pass,
    ) -> Option<(Arc<str>, u64)> {
        let id = task_id(task);
        let b = self.buckets.entry(bucket.clone()).or_insert(Bucket {
            tat: 0,
            interval,
            waiting: VecDeque::new(),
            armed: false,
        });
        b.tat = b.tat.max(at);
        b.waiting.push_front(task.clone());
        let arm = (!b.armed).then(|| {
            b.armed = true;
            (bucket.clone(), b.tat)
        });
        self.passes.insert(id.clone(), pass);
        self.waiting.insert(id, Waiting::Rate(bucket.clone()));
        arm
    }

    /// Takes back the local slot of `task`, which found `key` full across the cluster, and
    /// parks it first in the key's line.
    pub fn unhold(&mut self, key: &Arc<str>, task: &ReadyTask) {
        let id = task_id(task);
        let slots = self.keys.entry(key.clone()).or_default();
        slots.holders.remove(&id);
        slots.parked.push_front(task.clone());
        self.waiting.insert(id, Waiting::Key(key.clone()));
    }

    /// Frees `id`'s slot of `key`; the tasks that now hold a slot.
    pub fn release(&mut self, key: &Arc<str>, id: &TaskId) -> Vec<ReadyTask> {
        let Some(slots) = self.keys.get_mut(key) else {
            return Vec::new();
        };
        slots.holders.remove(id);
        let woken = self.fill(key);
        if let Some(slots) = self.keys.get(key)
            && slots.holders.is_empty()
            && slots.parked.is_empty()
        {
            self.keys.remove(key);
        }
        woken
    }

    /// Hands `key`'s free slots to its oldest parked tasks.
    pub fn fill(&mut self, key: &Arc<str>) -> Vec<ReadyTask> {
        let Some(slots) = self.keys.get_mut(key) else {
            return Vec::new();
        };
        let limit = self.overrides.get(key).copied().unwrap_or(slots.limit);
        let mut woken = Vec::new();
        while (slots.holders.len() as u32) < limit {
            let Some(t) = slots.parked.pop_front() else {
                break;
            };
            let id = task_id(&t);
            slots.holders.insert(id.clone());
            self.waiting.remove(&id);
            self.passes.entry(id).or_default().slot = Some(key.clone());
            woken.push(t);
        }
        woken
    }

    /// Admits what `bucket` allows now; the tasks admitted, and when to look again.
    pub fn fire(&mut self, bucket: &Arc<str>, now: u64) -> (Vec<ReadyTask>, Option<u64>) {
        let Some(b) = self.buckets.get_mut(bucket) else {
            return (Vec::new(), None);
        };
        b.armed = false;
        let mut admitted = Vec::new();
        while b.tat <= now {
            let Some(t) = b.waiting.pop_front() else {
                break;
            };
            b.tat += b.interval;
            admitted.push(t);
        }
        let again = (!b.waiting.is_empty()).then(|| {
            b.armed = true;
            b.tat
        });
        for t in &admitted {
            let id = task_id(t);
            self.waiting.remove(&id);
            self.passes.entry(id).or_default().granted = Some(bucket.clone());
        }
        (admitted, again)
    }
}
