//! Run-time key limits (`weft_store::LimitStore`): writes on the writer thread, reads on
//! the read pool.

use crate::SqliteStore;
use crate::conv::classify;
use async_trait::async_trait;
use rusqlite::{Connection, params};
use weft_store::{KeyLimitRecord, LimitStore, StoreResult};

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
}
