//! Run-time key limits, key slots and rate buckets (`weft_store::LimitStore`): writes on the writer
//! thread (which also makes each acquire's count and insert atomic), reads on the read pool.

use crate::SqliteStore;
use crate::conv::classify;
use async_trait::async_trait;
use rusqlite::{Connection, OptionalExtension, params};
use weft_core::time::Millis;
use weft_store::{KeyLimitRecord, KeySlotHold, LimitStore, StoreResult};

fn db<T>(r: rusqlite::Result<T>) -> StoreResult<T> {
    r.map_err(classify)
}

fn list(c: &Connection) -> StoreResult<Vec<KeyLimitRecord>> {
    db(
        c.prepare_cached("SELECT key, concurrency, updated_at FROM key_limits ORDER BY key")
            .and_then(|mut s| {
                s.query_map([], |r| {
                    Ok(KeyLimitRecord {
                        key: r.get(0)?,
                        concurrency: r.get(1)?,
                        updated_at: r.get(2)?,
                    })
                })?
                .collect()
            }),
    )
}

fn acquire(c: &Connection, h: &KeySlotHold, limit: u32, now: Millis) -> rusqlite::Result<bool> {
    c.prepare_cached("DELETE FROM key_slots WHERE key = ?1 AND lease_until <= ?2")?
        .execute(params![h.key, now])?;
    let others: i64 = c
        .prepare_cached(
            "SELECT count(*) FROM key_slots WHERE key = ?1 AND NOT (run_id = ?2 AND node = ?3)",
        )?
        .query_row(params![h.key, h.run_id, h.node], |r| r.get(0))?;
    if others >= i64::from(limit) {
        return Ok(false);
    }
    c.prepare_cached(
        "INSERT INTO key_slots (key, run_id, node, holder, lease_until)
         VALUES (?1, ?2, ?3, ?4, ?5)
         ON CONFLICT (key, run_id, node) DO UPDATE SET holder = excluded.holder,
             lease_until = excluded.lease_until",
    )?
    .execute(params![h.key, h.run_id, h.node, h.holder, h.lease_until])?;
    Ok(true)
}

fn holders(c: &Connection, key: &str, now: Millis) -> StoreResult<Vec<KeySlotHold>> {
    db(c.prepare_cached(
        "SELECT run_id, node, holder, lease_until FROM key_slots
         WHERE key = ?1 AND lease_until > ?2 ORDER BY run_id, node",
    )
    .and_then(|mut s| {
        s.query_map(params![key, now], |r| {
            Ok(KeySlotHold {
                key: key.to_string(),
                run_id: r.get(0)?,
                node: r.get(1)?,
                holder: r.get(2)?,
                lease_until: r.get(3)?,
            })
        })?
        .collect()
    }))
}

#[async_trait]
impl LimitStore for SqliteStore {
    async fn limit_list(&self) -> StoreResult<Vec<KeyLimitRecord>> {
        self.readers.with(list).await
    }

    async fn limit_put(&self, limit: &KeyLimitRecord) -> StoreResult<()> {
        let l = limit.clone();
        self.writer
            .exec(move |w| {
                db(w.conn
                    .prepare_cached(
                        "INSERT INTO key_limits (key, concurrency, updated_at) VALUES (?1, ?2, ?3)
                         ON CONFLICT (key) DO UPDATE SET concurrency = excluded.concurrency,
                             updated_at = excluded.updated_at",
                    )
                    .and_then(|mut s| s.execute(params![l.key, l.concurrency, l.updated_at])))
                .map(|_| ())
            })
            .await
    }

    async fn limit_delete(&self, key: &str) -> StoreResult<bool> {
        let key = key.to_string();
        self.writer
            .exec(move |w| {
                db(w.conn
                    .prepare_cached("DELETE FROM key_limits WHERE key = ?1")
                    .and_then(|mut s| s.execute([key])))
                .map(|n| n > 0)
            })
            .await
    }

    async fn key_acquire(&self, hold: &KeySlotHold, limit: u32, now: Millis) -> StoreResult<bool> {
        let h = hold.clone();
        self.writer
            .exec(move |w| db(acquire(&w.conn, &h, limit, now)))
            .await
    }

    async fn key_release(&self, key: &str, run_id: &str, node: &str) -> StoreResult<()> {
        let ids = [key.to_string(), run_id.to_string(), node.to_string()];
        self.writer
            .exec(move |w| {
                db(w.conn
                    .prepare_cached(
                        "DELETE FROM key_slots WHERE key = ?1 AND run_id = ?2 AND node = ?3",
                    )
                    .and_then(|mut s| s.execute(params![ids[0], ids[1], ids[2]])))
                .map(|_| ())
            })
            .await
    }

    async fn key_renew(&self, holder: &str, lease_until: Millis) -> StoreResult<u64> {
        let holder = holder.to_string();
        self.writer
            .exec(move |w| {
                db(w.conn
                    .prepare_cached(
                        "UPDATE key_slots SET lease_until = ?2 WHERE holder = ?1 AND lease_until < ?2",
                    )
                    .and_then(|mut s| s.execute(params![holder, lease_until])))
                .map(|n| n as u64)
            })
            .await
    }

    async fn key_holders(&self, key: &str, now: Millis) -> StoreResult<Vec<KeySlotHold>> {
        let key = key.to_string();
        self.readers.with(move |c| holders(c, &key, now)).await
    }

    async fn rate_take(
        &self,
        bucket: &str,
        interval_us: u64,
        now_us: i64,
    ) -> StoreResult<Option<i64>> {
        let bucket = bucket.to_string();
        let interval = i64::try_from(interval_us).unwrap_or(i64::MAX);
        self.writer
            .exec(move |w| db(take(&w.conn, &bucket, interval, now_us)))
            .await
    }

    async fn limits_prune(&self, before: Millis) -> StoreResult<u64> {
        self.writer
            .exec(move |w| {
                let mut n = 0;
                for (sql, at) in [
                    (
                        "DELETE FROM rate_buckets WHERE tat < ?1",
                        before.saturating_mul(1000),
                    ),
                    ("DELETE FROM key_slots WHERE lease_until < ?1", before),
                ] {
                    n += db(w.conn.prepare_cached(sql).and_then(|mut s| s.execute([at])))?;
                }
                Ok(n as u64)
            })
            .await
    }
}

/// The writer thread runs one closure at a time, so the read and the write are atomic.
fn take(c: &Connection, bucket: &str, interval: i64, now: i64) -> rusqlite::Result<Option<i64>> {
    let tat: Option<i64> = c
        .prepare_cached("SELECT tat FROM rate_buckets WHERE bucket = ?1")?
        .query_row([bucket], |r| r.get(0))
        .optional()?;
    if let Some(tat) = tat.filter(|&t| t > now) {
        return Ok(Some(tat));
    }
    c.prepare_cached(
        "INSERT INTO rate_buckets (bucket, tat) VALUES (?1, ?2)
         ON CONFLICT (bucket) DO UPDATE SET tat = excluded.tat",
    )?
    .execute(params![bucket, now.saturating_add(interval)])?;
    Ok(None)
}
