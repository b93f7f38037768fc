//! Daily partitions of the history tables, created on demand, and retention by dropping them.
//!
//! `runs` and `tasks` are RANGE-partitioned by the creation millisecond encoded in the run id
//! (`id_ms` / `run_ms`). Partition `runs_pYYYYMMDD` holds one UTC day, `[day, day + 1)`, and
//! `tasks_pYYYYMMDD` the tasks of those runs. Before a write that inserts runs the driver makes
//! sure their days (and the day after, so midnight does not stall on DDL) exist; creation
//! runs in its own short transaction under an advisory lock with `IF NOT EXISTS`, so racing
//! processes are harmless. The days known to exist are cached per store. Anything that finds
//! no daily partition lands in the DEFAULT partitions, a safety net that retention never drops.

use crate::PostgresStore;
use crate::conv::{db, describe};
use std::collections::BTreeSet;
use tokio_postgres::error::SqlState;
use weft_core::time::Millis;
use weft_store::{Pruned, StoreResult};

/// One UTC day in milliseconds.
pub const DAY_MS: Millis = 86_400_000;
/// How long retention waits for the tables' locks before giving up (as `Unavailable`).
const LOCK_TIMEOUT_MS: u64 = 5_000;
/// Tries at creating a day's partitions before giving up on a lock conflict.
const CREATE_ATTEMPTS: u32 = 5;
/// How long one try waits for the parents' locks.
const CREATE_LOCK_TIMEOUT_MS: u64 = 2_000;
/// First key of the partition-creation advisory lock ("wefp"); the second is the schema's hash.
const PARTITION_LOCK: i32 = 0x7765_6670;

/// The partition suffix (`pYYYYMMDD`) of a day number (days since the Unix epoch).
fn suffix(day: i64) -> Option<String> {
    let at = chrono::DateTime::from_timestamp_millis(day.checked_mul(DAY_MS)?)?;
    Some(format!("p{}", at.format("%Y%m%d")))
}

/// The day number a partition suffix names.
fn day_of(suffix: &str) -> Option<i64> {
    let digits = suffix.strip_prefix('p')?;
    if digits.len() != 8 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let date = chrono::NaiveDate::parse_from_str(digits, "%Y%m%d").ok()?;
    let ms = date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis();
    Some(ms.div_euclid(DAY_MS))
}

impl PostgresStore {
    /// Makes sure a daily partition exists for every partition key in `keys` (and the day
    /// after each). Key 0 (ids that are not UUID v7) is left to the DEFAULT partitions.
    pub(crate) async fn ensure_partitions(
        &self,
        keys: impl IntoIterator<Item = i64>,
    ) -> StoreResult<()> {
        let missing: BTreeSet<i64> = {
            let known = self.partitions.lock();
            keys.into_iter()
                .filter(|&ms| ms > 0)
                .flat_map(|ms| {
                    let day = ms.div_euclid(DAY_MS);
                    [day, day + 1]
                })
                .filter(|d| !known.contains(d))
                .collect()
        };
        if missing.is_empty() {
            return Ok(());
        }
        // Creating a partition locks its parent ACCESS EXCLUSIVE; statements already
        // running hold the parents' weaker locks in their own order (a claim: tasks, then
        // runs), so PostgreSQL may pick this transaction as a deadlock victim or its lock
        // wait may time out. Both leave nothing behind: try again, a few times.
        let mut attempt = 0;
        loop {
            attempt += 1;
            let mut client = self.client().await?;
            match self.create_partitions(&mut client, &missing).await {
                Ok(()) => break,
                Err(e)
                    if attempt < CREATE_ATTEMPTS
                        && matches!(
                            e.code(),
                            Some(&SqlState::T_R_DEADLOCK_DETECTED | &SqlState::LOCK_NOT_AVAILABLE)
                        ) =>
                {
                    tracing::info!(attempt, error = %describe(&e), "creating a daily partition met a lock conflict; trying again");
                    tokio::time::sleep(std::time::Duration::from_millis(20 * attempt as u64)).await;
                }
                Err(e) => return Err(db(e)),
            }
        }
        self.partitions.lock().extend(missing);
        Ok(())
    }

    /// One try at creating the partitions of `days` (and their `tasks` twins).
    async fn create_partitions(
        &self,
        client: &mut deadpool_postgres::Client,
        days: &BTreeSet<i64>,
    ) -> Result<(), tokio_postgres::Error> {
        let tx = client.transaction().await?;
        tx.execute(
            "SELECT pg_advisory_xact_lock($1::int4, hashtext($2::text))",
            &[&PARTITION_LOCK, &self.schema],
        )
        .await?;
        let mut ddl = format!("SET LOCAL lock_timeout = '{CREATE_LOCK_TIMEOUT_MS}ms';\n");
        for &day in days {
            let Some(sfx) = suffix(day) else { continue };
            let (lo, hi) = (day * DAY_MS, (day + 1) * DAY_MS);
            for table in ["runs", "tasks"] {
                ddl.push_str(&format!(
                    "CREATE TABLE IF NOT EXISTS {table}_{sfx} PARTITION OF {table} FOR VALUES FROM ({lo}) TO ({hi});\n"
                ));
            }
        }
        match tx.batch_execute(&ddl).await {
            Ok(()) => tx.commit().await,
            // Rows for that day already sit in the DEFAULT partition (a partition dropped
            // while another process still wrote to its day): keep using DEFAULT for it.
            Err(e) if e.code() == Some(&SqlState::CHECK_VIOLATION) => {
                tracing::warn!(error = %describe(&e), "cannot create a daily partition; its rows stay in the DEFAULT partition");
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Retention: drops every daily partition (of `runs` and `tasks`) that ends at or before
    /// `cutoff`, unless it still holds a queued or running run. History is removed by
    /// dropping whole partitions, never by `DELETE`; only the small `run_idempotency` table
    /// has its rows for the dropped days deleted, so a key whose run is gone can be used
    /// again. Another process dropping the same day at the same moment is harmless.
    pub async fn drop_partitions_older_than(&self, cutoff: Millis) -> StoreResult<Pruned> {
        let mut client = self.client().await?;
        let rows = client
            .query(
                "SELECT c.relname::text FROM pg_inherits i
                 JOIN pg_class c ON c.oid = i.inhrelid
                 JOIN pg_class p ON p.oid = i.inhparent
                 JOIN pg_namespace n ON n.oid = p.relnamespace
                 WHERE p.relname = 'runs' AND n.nspname = current_schema()
                 ORDER BY 1",
                &[],
            )
            .await
            .map_err(db)?;
        let mut pruned = Pruned::default();
        for row in rows {
            let name: String = row.get(0);
            let Some(day) = name.strip_prefix("runs_").and_then(day_of) else {
                continue;
            };
            let (lo, hi) = (day * DAY_MS, (day + 1) * DAY_MS);
            if hi > cutoff {
                continue;
            }
            let sfx = name.trim_start_matches("runs_").to_string();
            let live_sql = format!(
                "SELECT EXISTS (SELECT 1 FROM runs_{sfx} WHERE state IN ('queued', 'running'))"
            );
            // Looked at first without locks: a day that is still live is skipped without
            // stalling anyone, and counting its runs does not hold the writers up. No run is
            // created in a past day, so the count holds until the drop.
            let first = client
                .query_one(
                    &format!("SELECT ({live_sql}), (SELECT count(*) FROM runs_{sfx})"),
                    &[],
                )
                .await;
            let (live, runs): (bool, i64) = match first {
                Ok(row) => (row.get(0), row.get(1)),
                Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => continue,
                Err(e) => return Err(db(e)),
            };
            if live {
                tracing::info!(partition = %name, "retention keeps a partition that holds live runs");
                continue;
            }
            let tx = client.transaction().await.map_err(db)?;
            // Dropping a partition takes an ACCESS EXCLUSIVE lock on its parent anyway; taking
            // the parents' locks first (then the partitions') keeps the order every query
            // uses, so retention waits instead of deadlocking, and no run in the partition
            // can change state (a replay) between the check and the drop. The wait is
            // bounded: retention gives up rather than stall every writer behind it.
            let locked = tx
                .batch_execute(&format!(
                    "SET LOCAL lock_timeout = '{LOCK_TIMEOUT_MS}ms';
                     LOCK TABLE runs, tasks IN ACCESS EXCLUSIVE MODE;
                     LOCK TABLE runs_{sfx}, tasks_{sfx} IN ACCESS EXCLUSIVE MODE;"
                ))
                .await;
            match locked {
                Ok(()) => {}
                // Another process dropped it meanwhile.
                Err(e) if e.code() == Some(&SqlState::UNDEFINED_TABLE) => continue,
                Err(e) => return Err(db(e)),
            }
            let live: bool = tx.query_one(&live_sql, &[]).await.map_err(db)?.get(0);
            if live {
                tracing::info!(partition = %name, "retention keeps a partition that holds live runs");
                continue;
            }
            tx.execute(
                "DELETE FROM run_idempotency WHERE run_ms >= $1 AND run_ms < $2",
                &[&lo, &hi],
            )
            .await
            .map_err(db)?;
            tx.batch_execute(&format!("DROP TABLE tasks_{sfx}; DROP TABLE runs_{sfx};"))
                .await
                .map_err(db)?;
            tx.commit().await.map_err(db)?;
            self.partitions.lock().remove(&day);
            pruned.runs += runs as u64;
            pruned.partitions.push(format!("runs_{sfx}"));
            pruned.partitions.push(format!("tasks_{sfx}"));
        }
        Ok(pruned)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn suffix_and_day_round_trip() {
        let day = 1_700_000_000_000i64.div_euclid(DAY_MS);
        let sfx = suffix(day).unwrap();
        assert_eq!(sfx, "p20231114");
        assert_eq!(day_of(&sfx), Some(day));
        assert_eq!(day_of("default"), None);
    }
}
