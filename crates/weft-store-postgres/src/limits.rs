//! Run-time key limits (`weft_store::LimitStore`).

use crate::PostgresStore;
use crate::conv::{col, exec, rows};
use async_trait::async_trait;
use weft_store::{KeyLimitRecord, LimitStore, StoreResult};

#[async_trait]
impl LimitStore for PostgresStore {
    async fn limit_list(&self) -> StoreResult<Vec<KeyLimitRecord>> {
        let c = self.client().await?;
        let found = rows(
            &c,
            "SELECT key, concurrency, updated_at FROM key_limits ORDER BY key",
            &[],
        )
        .await?;
        found
            .iter()
            .map(|r| {
                Ok(KeyLimitRecord {
                    key: col(r, 0)?,
                    concurrency: col::<i32>(r, 1)? as u32,
                    updated_at: col(r, 2)?,
                })
            })
            .collect()
    }

    async fn limit_put(&self, limit: &KeyLimitRecord) -> StoreResult<()> {
        let c = self.client().await?;
        exec(
            &c,
            "INSERT INTO key_limits (key, concurrency, updated_at) VALUES ($1, $2, $3)
             ON CONFLICT (key) DO UPDATE SET concurrency = excluded.concurrency,
                 updated_at = excluded.updated_at",
            &[&limit.key, &(limit.concurrency as i32), &limit.updated_at],
        )
        .await?;
        Ok(())
    }

    async fn limit_delete(&self, key: &str) -> StoreResult<bool> {
        let c = self.client().await?;
        Ok(exec(&c, "DELETE FROM key_limits WHERE key = $1", &[&key]).await? > 0)
    }
}
