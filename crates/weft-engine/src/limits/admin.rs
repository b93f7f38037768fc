//! Run-time key limits: loading the stored overrides, and the engine's calls to change and
//! read them.

use super::{KeyUsage, LimitWait};
use crate::engine::Inner;
use std::collections::HashMap;
use std::sync::Arc;

/// Most a run-time key limit may be.
pub const MAX_KEY_CONCURRENCY: u32 = 100_000;

/// Applies the stored run-time key limits; in a cluster, keeps re-reading them (and the
/// queues' settings: pause switch, concurrency, rate limit) so a change made through any
/// process reaches this one within a poll interval.
pub(crate) async fn load(inner: &Arc<Inner>) -> Result<(), crate::EngineError> {
    apply_stored(inner, inner.store.limit_list().await?);
    if let Some(poll) = inner.config.cluster.as_ref().map(|c| c.poll) {
        let inner = inner.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    _ = tokio::time::sleep(poll) => {}
                    _ = inner.stopping.cancelled() => return,
                }
                match inner.store.limit_list().await {
                    Ok(list) => apply_stored(&inner, list),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading key limits; keeping the last ones")
                    }
                }
                match inner.store.queue_list().await {
                    Ok(list) => crate::queue_admin::apply_stored_settings(&inner, &list),
                    Err(e) => {
                        tracing::warn!(error = %e, "reading queue settings; keeping the last ones")
                    }
                }
            }
        });
    }
    Ok(())
}

fn apply_stored(inner: &Arc<Inner>, list: Vec<weft_store::KeyLimitRecord>) {
    let current: HashMap<Arc<str>, u32> = inner.limits.state.lock().overrides.clone();
    let stored: HashMap<&str, u32> = list
        .iter()
        .map(|l| (l.key.as_str(), l.concurrency))
        .collect();
    for (key, limit) in &stored {
        if current.get(*key) != Some(limit) {
            inner.limits.set_override(inner, key, Some(*limit));
        }
    }
    for key in current.keys() {
        if !stored.contains_key(&**key) {
            inner.limits.set_override(inner, key, None);
        }
    }
}

impl crate::Engine {
    /// Sets the run-time concurrency limit of key `key` (a rendered key, e.g.
    /// `customer:42`), persistently and at once: parked tasks start if it grew; running
    /// attempts finish if it shrank. Every process of a cluster picks it up.
    pub async fn limit_set(
        &self,
        key: &str,
        concurrency: i64,
    ) -> Result<KeyUsage, crate::EngineError> {
        check_key(key)?;
        if !(1..=i64::from(MAX_KEY_CONCURRENCY)).contains(&concurrency) {
            return Err(crate::EngineError::BadRequest(format!(
                "concurrency: must be between 1 and {MAX_KEY_CONCURRENCY}, got {concurrency}"
            )));
        }
        let inner = &self.inner;
        let record = weft_store::KeyLimitRecord {
            key: key.to_string(),
            concurrency: concurrency as u32,
            updated_at: inner.now(),
        };
        inner.store.limit_put(&record).await?;
        inner
            .limits
            .set_override(inner, key, Some(concurrency as u32));
        Ok(self.limit_get(key))
    }

    /// Removes key `key`'s run-time limit: the flows' limit applies again.
    pub async fn limit_clear(&self, key: &str) -> Result<(), crate::EngineError> {
        check_key(key)?;
        if !self.inner.store.limit_delete(key).await? {
            return Err(crate::EngineError::NotFound(format!(
                "limit for key {key:?}"
            )));
        }
        self.inner.limits.set_override(&self.inner, key, None);
        Ok(())
    }

    /// One key's state in this process (zero figures for a key not in use).
    pub fn limit_get(&self, key: &str) -> KeyUsage {
        self.inner
            .limits
            .usage()
            .into_iter()
            .find(|u| u.key == key)
            .unwrap_or(KeyUsage {
                key: key.to_string(),
                limit: 0,
                override_limit: None,
                running: Vec::new(),
                waiting: 0,
            })
    }

    /// Every concurrency key in use in this process or with a run-time limit, by key.
    pub fn limit_list(&self) -> Vec<KeyUsage> {
        self.inner.limits.usage()
    }

    /// Why the task of `node` in run `run_id` is ready but not started because of a limit
    /// ("concurrency key K saturated by runs X and Y", "rate limit until T"), if it is
    /// waiting on one in this process. In a cluster the holders of a concurrency key are
    /// those of every process, read from the store. For `weft run explain`.
    pub async fn limit_wait(&self, run_id: &str, node: &str) -> Option<LimitWait> {
        let wait = self.inner.limits.wait_of(self.inner.now(), run_id, node)?;
        Some(super::shared::with_cluster_holders(&self.inner, wait).await)
    }
}

fn check_key(key: &str) -> Result<(), crate::EngineError> {
    if key.is_empty() || key.len() > weft_core::limits::MAX_KEY_LEN {
        return Err(crate::EngineError::BadRequest(format!(
            "key: must be 1 to {} bytes, got {}",
            weft_core::limits::MAX_KEY_LEN,
            key.len()
        )));
    }
    Ok(())
}
