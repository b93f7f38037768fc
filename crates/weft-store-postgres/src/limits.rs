//! Run-time key limits and the cluster's key slots and rate buckets
//! (`weft_store::LimitStore`).

use crate::PostgresStore;
use crate::conv::{col, db, exec, row, rows};
use async_trait::async_trait;
use weft_core::time::Millis;
use weft_store::{KeyLimitRecord, KeySlotHold, LimitStore, StoreResult};

/// First key of the per-key advisory lock that serialises a key's acquires ("wefk"); the
/// second is the key's hash (a collision only makes two keys wait for each other).
const KEY_SLOT_LOCK: i32 = 0x7765_666b;

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

    async fn key_acquire(&self, hold: &KeySlotHold, limit: u32, now: Millis) -> StoreResult<bool> {
        let mut c = self.client().await?;
        let tx = c.transaction().await.map_err(db)?;
        exec(
            &tx,
            "SELECT pg_advisory_xact_lock($1::int4, hashtext($2::text))",
            &[&KEY_SLOT_LOCK, &hold.key],
        )
        .await?;
        exec(
            &tx,
            "DELETE FROM key_slots WHERE key = $1 AND lease_until <= $2",
            &[&hold.key, &now],
        )
        .await?;
        let others: i64 = match row(
            &tx,
            "SELECT count(*) FROM key_slots WHERE key = $1 AND NOT (run_id = $2 AND node = $3)",
            &[&hold.key, &hold.run_id, &hold.node],
        )
        .await?
        {
            Some(r) => col(&r, 0)?,
            None => 0,
        };
        if others >= i64::from(limit) {
            return Ok(false); // dropping the transaction rolls it back
        }
        exec(
            &tx,
            "INSERT INTO key_slots (key, run_id, node, holder, lease_until)
             VALUES ($1, $2, $3, $4, $5)
             ON CONFLICT (key, run_id, node) DO UPDATE SET holder = excluded.holder,
                 lease_until = excluded.lease_until",
            &[
                &hold.key,
                &hold.run_id,
                &hold.node,
                &hold.holder,
                &hold.lease_until,
            ],
        )
        .await?;
        tx.commit().await.map_err(db)?;
        Ok(true)
    }

    async fn key_release(&self, key: &str, run_id: &str, node: &str) -> StoreResult<()> {
        let c = self.client().await?;
        exec(
            &c,
            "DELETE FROM key_slots WHERE key = $1 AND run_id = $2 AND node = $3",
            &[&key, &run_id, &node],
        )
        .await?;
        Ok(())
    }

    async fn key_renew(&self, holder: &str, lease_until: Millis) -> StoreResult<u64> {
        let c = self.client().await?;
        exec(
            &c,
            "UPDATE key_slots SET lease_until = $2 WHERE holder = $1 AND lease_until < $2",
            &[&holder, &lease_until],
        )
        .await
    }

    async fn key_holders(&self, key: &str, now: Millis) -> StoreResult<Vec<KeySlotHold>> {
        let c = self.client().await?;
        let found = rows(
            &c,
            "SELECT run_id, node, holder, lease_until FROM key_slots
             WHERE key = $1 AND lease_until > $2 ORDER BY run_id, node",
            &[&key, &now],
        )
        .await?;
        found
            .iter()
            .map(|r| {
                Ok(KeySlotHold {
                    key: key.to_string(),
                    run_id: col(r, 0)?,
                    node: col(r, 1)?,
                    holder: col(r, 2)?,
                    lease_until: col(r, 3)?,
                })
            })
            .collect()
    }

    async fn rate_take(
        &self,
        bucket: &str,
        interval_us: u64,
        now_us: i64,
    ) -> StoreResult<Option<i64>> {
        let c = self.client().await?;
        let interval = i64::try_from(interval_us).unwrap_or(i64::MAX);
        // One statement: the upsert moves the bucket only when its time has come (the row
        // lock serialises concurrent takes); when it did not, the second branch reads when
        // the next start is allowed. A row inserted by a concurrent first take after this
        // statement's snapshot reads as nothing: the caller then waits one interval.
        let found = row(
            &c,
            "WITH took AS (
                 INSERT INTO rate_buckets (bucket, tat) VALUES ($1::text, $2::int8 + $3::int8)
                 ON CONFLICT (bucket) DO UPDATE SET tat = excluded.tat
                 WHERE rate_buckets.tat <= $2::int8
                 RETURNING tat)
             SELECT true, 0::int8 FROM took
             UNION ALL
             SELECT false, tat FROM rate_buckets
             WHERE bucket = $1 AND NOT EXISTS (SELECT 1 FROM took)",
            &[&bucket, &now_us, &interval],
        )
        .await?;
        Ok(match found {
            Some(r) if col::<bool>(&r, 0)? => None,
            Some(r) => Some(col::<i64>(&r, 1)?),
            None => Some(now_us.saturating_add(interval)),
        })
    }

    async fn limits_prune(&self, before: Millis) -> StoreResult<u64> {
        let c = self.client().await?;
        let buckets = exec(
            &c,
            "DELETE FROM rate_buckets WHERE tat < $1",
            &[&before.saturating_mul(1000)],
        )
        .await?;
        let holds = exec(
            &c,
            "DELETE FROM key_slots WHERE lease_until < $1",
            &[&before],
        )
        .await?;
        Ok(buckets + holds)
    }
}
