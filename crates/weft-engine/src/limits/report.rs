//! What the limiter reports: why a task waits (`weft run explain`) and the concurrency keys
//! in use (`weft limit list`).

use super::state::Waiting;
use super::{KeyUsage, LimitWait, Limits, TaskRef};
use crate::engine::TaskId;
use std::collections::HashSet;
use std::sync::Arc;
use weft_core::time::Millis;

impl Limits {
    /// Why `run_id`'s task of `node` waits on a limit in this process, if it does.
    pub fn wait_of(&self, now: Millis, run_id: &str, node: &str) -> Option<LimitWait> {
        let st = self.state.lock();
        let id: TaskId = (Arc::from(run_id), Arc::from(node));
        Some(match st.waiting.get(&id)?.clone() {
            Waiting::Key(key) => {
                let slots = st.keys.get(&key)?;
                LimitWait::Concurrency {
                    key: key.to_string(),
                    limit: st.overrides.get(&key).copied().unwrap_or(slots.limit),
                    holders: refs(&slots.holders),
                }
            }
            Waiting::Rate(bucket) => {
                let b = st.buckets.get(&bucket)?;
                let ahead = b
                    .waiting
                    .iter()
                    .position(|t| &*t.run_id == run_id && &*t.node == node)
                    .unwrap_or(0);
                let wait_ms = b.tat.saturating_sub(self.now_us()).div_ceil(1000) as Millis;
                LimitWait::RateLimit {
                    bucket: bucket.to_string(),
                    until: now + wait_ms,
                    ahead,
                }
            }
        })
    }

    /// Every concurrency key in use or overridden, by key.
    pub fn usage(&self) -> Vec<KeyUsage> {
        let st = self.state.lock();
        let mut names: HashSet<&Arc<str>> = st.keys.keys().collect();
        names.extend(st.overrides.keys());
        let mut out: Vec<KeyUsage> = names
            .into_iter()
            .map(|k| {
                let slots = st.keys.get(k);
                let over = st.overrides.get(k).copied();
                KeyUsage {
                    key: k.to_string(),
                    limit: over.or(slots.map(|s| s.limit)).unwrap_or(0),
                    override_limit: over,
                    running: slots.map(|s| refs(&s.holders)).unwrap_or_default(),
                    waiting: slots.map_or(0, |s| s.parked.len()),
                }
            })
            .collect();
        out.sort_by(|a, b| a.key.cmp(&b.key));
        out
    }
}

fn refs(ids: &HashSet<TaskId>) -> Vec<TaskRef> {
    let mut v: Vec<TaskRef> = ids
        .iter()
        .map(|(r, n)| TaskRef {
            run_id: r.to_string(),
            node: n.to_string(),
        })
        .collect();
    v.sort_by(|a, b| (&a.run_id, &a.node).cmp(&(&b.run_id, &b.node)));
    v
}
