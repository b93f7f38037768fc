//! Run-time overrides of per-key concurrency limits (docs/decisions/0009): kept in the
//! store so every process of a cluster, and every restart, applies the same limits; and the
//! slots of concurrency keys and the rate buckets that the workers of a cluster share
//! (decision 0009 section 6).

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use weft_core::time::Millis;

use crate::StoreResult;

/// A concurrency key's limit set at run time; it takes precedence over the limit the
/// flows declare for that key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyLimitRecord {
    /// The rendered key, e.g. `customer:42`.
    pub key: String,
    /// Attempts with that key that may run at once (at least 1).
    pub concurrency: u32,
    /// When it was set.
    pub updated_at: Millis,
}

/// One attempt's hold on a slot of a concurrency key, shared by the processes of a cluster.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeySlotHold {
    /// The rendered key, e.g. `customer:42`.
    pub key: String,
    /// The run whose attempt holds the slot.
    pub run_id: String,
    /// The node of that attempt.
    pub node: String,
    /// The worker process holding it (its cluster node id).
    pub holder: String,
    /// When the slot frees by itself unless renewed (the holder died), ms since the epoch.
    pub lease_until: Millis,
}

/// Run-time limits of concurrency keys, and the key slots a cluster shares.
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Every override, by key.
    async fn limit_list(&self) -> StoreResult<Vec<KeyLimitRecord>>;
    /// Creates or replaces the override of `limit.key`.
    async fn limit_put(&self, limit: &KeyLimitRecord) -> StoreResult<()>;
    /// Removes the override of `key` (the flows' limit applies again); false if there was none.
    async fn limit_delete(&self, key: &str) -> StoreResult<bool>;

    /// Takes one of `hold.key`'s slots for `hold`'s task if fewer than `limit` unexpired
    /// holds (as of `now`) of other tasks exist, atomically with respect to every other
    /// acquire of the key; true if taken. A task that already holds a slot keeps it (its
    /// holder and lease are replaced). Expired holds are dropped on the way.
    async fn key_acquire(&self, hold: &KeySlotHold, limit: u32, now: Millis) -> StoreResult<bool>;
    /// Gives back the slot of `key` held by the task (`run_id`, `node`), if any.
    async fn key_release(&self, key: &str, run_id: &str, node: &str) -> StoreResult<()>;
    /// Extends every slot `holder` holds to `lease_until`; how many.
    async fn key_renew(&self, holder: &str, lease_until: Millis) -> StoreResult<u64>;
    /// The unexpired holds of `key` as of `now`, by run id and node.
    async fn key_holders(&self, key: &str, now: Millis) -> StoreResult<Vec<KeySlotHold>>;

    /// Takes the next start of rate bucket `bucket` (GCRA without burst; times in µs since
    /// the epoch), atomically with respect to every other take of the bucket: if the
    /// bucket's theoretical arrival time is at most `now_us` (or the bucket is new) it moves
    /// to `now_us + interval_us` and the answer is `None`, the start is allowed; otherwise
    /// nothing changes and the answer is `Some(tat)`, when the next start will be allowed.
    async fn rate_take(
        &self,
        bucket: &str,
        interval_us: u64,
        now_us: i64,
    ) -> StoreResult<Option<i64>>;

    /// Deletes what no longer limits anything as of `before` (ms since the epoch): rate
    /// buckets whose next start was allowed before it, and key slot holds whose lease ran
    /// out before it. A missing bucket or hold acts exactly as such a row does, so this
    /// only keeps the tables from growing with every key ever seen; the sweeper calls it
    /// with a margin for the workers' clocks. How many rows went.
    async fn limits_prune(&self, before: Millis) -> StoreResult<u64>;
}
