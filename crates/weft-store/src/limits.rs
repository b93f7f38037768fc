//! Run-time overrides of per-key concurrency limits (docs/decisions/0009): kept in the
//! store so every process of a cluster, and every restart, applies the same limits.

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

/// Run-time limits of concurrency keys.
#[async_trait]
pub trait LimitStore: Send + Sync {
    /// Every override, by key.
    async fn limit_list(&self) -> StoreResult<Vec<KeyLimitRecord>>;
    /// Creates or replaces the override of `limit.key`.
    async fn limit_put(&self, limit: &KeyLimitRecord) -> StoreResult<()>;
    /// Removes the override of `key` (the flows' limit applies again); false if there was none.
    async fn limit_delete(&self, key: &str) -> StoreResult<bool>;
}
