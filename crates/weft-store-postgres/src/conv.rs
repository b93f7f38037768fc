//! Translation between tokio-postgres and the store's types, kept at the boundary.

use deadpool_postgres::PoolError;
use serde_json::Value;
use tokio_postgres::Row;
use tokio_postgres::error::SqlState;
use tokio_postgres::types::FromSql;
use weft_store::StoreError;

/// Maps a PostgreSQL error to the store's error kinds.
pub(crate) fn db(e: tokio_postgres::Error) -> StoreError {
    let Some(d) = e.as_db_error() else {
        // No server answer: the connection broke or never worked.
        return if e.is_closed() {
            StoreError::Unavailable("the PostgreSQL connection was closed".into())
        } else {
            StoreError::Unavailable(describe(&e))
        };
    };
    let text = match d.detail() {
        Some(detail) => format!("{} ({detail})", d.message()),
        None => d.message().to_string(),
    };
    let code = d.code().code();
    if *d.code() == SqlState::UNIQUE_VIOLATION || *d.code() == SqlState::EXCLUSION_VIOLATION {
        StoreError::Conflict(text)
    } else if ["08", "40", "53", "54", "55", "57", "58", "XX"]
        .iter()
        .any(|class| code.starts_with(class))
    {
        StoreError::Unavailable(format!("PostgreSQL: {text}"))
    } else {
        // A statement the server refused for what it says (a bug) or data it cannot read.
        StoreError::Corrupt(format!("PostgreSQL error {code}: {text}"))
    }
}

/// A tokio-postgres error as one sentence: the server's message, or the deepest cause.
pub(crate) fn describe(e: &tokio_postgres::Error) -> String {
    if let Some(d) = e.as_db_error() {
        return d.message().to_string();
    }
    let mut cause: &dyn std::error::Error = e;
    while let Some(next) = cause.source() {
        cause = next;
    }
    let text = cause.to_string();
    if text.is_empty() { e.to_string() } else { text }
}

/// Maps a failure to get a pooled connection.
pub(crate) fn pool(e: PoolError) -> StoreError {
    match e {
        PoolError::Closed => StoreError::Closed,
        PoolError::Backend(e) => StoreError::Unavailable(format!(
            "cannot connect to PostgreSQL: {}",
            describe(&e)
        )),
        PoolError::Timeout(_) => StoreError::Unavailable(
            "no PostgreSQL connection became free in time (the pool is exhausted or the server does not answer)".into(),
        ),
        other => StoreError::Unavailable(format!("PostgreSQL connection pool: {other}")),
    }
}

/// Reads column `i` of a row, reporting a type mismatch as corrupt data.
pub(crate) fn col<'a, T: FromSql<'a>>(row: &'a Row, i: usize) -> Result<T, StoreError> {
    row.try_get(i)
        .map_err(|e| StoreError::Corrupt(format!("column {i}: {e}")))
}

/// Parses stored JSON text.
pub(crate) fn json(text: Option<String>) -> Result<Option<Value>, StoreError> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))
    })
    .transpose()
}

/// Serializes a value for a text column.
pub(crate) fn to_text<T: serde::Serialize + ?Sized>(v: &T) -> Result<String, StoreError> {
    serde_json::to_string(v).map_err(|e| StoreError::Corrupt(e.to_string()))
}

/// The partition key of a run: the Unix millisecond in its UUID v7 id, or 0 for an id that
/// is not a UUID v7 (such runs live in the DEFAULT partitions).
pub(crate) fn run_ms(id: &str) -> i64 {
    match uuid::Uuid::parse_str(id) {
        Ok(u) if u.get_version_num() == 7 => {
            let b = u.as_bytes();
            b[..6].iter().fold(0i64, |acc, &x| (acc << 8) | x as i64)
        }
        _ => 0,
    }
}

/// 64-bit FNV-1a, hex: a stable fingerprint of a flow document.
pub(crate) fn fingerprint(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// The limit a list request asks for: 0 means 50, at most 1000.
pub(crate) fn limit(l: u32) -> i64 {
    if l == 0 { 50 } else { l.min(1000) as i64 }
}

/// Runs a cached prepared statement and returns its rows.
pub(crate) async fn rows(
    c: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Vec<Row>, StoreError> {
    let stmt = c.prepare_cached(sql).await.map_err(db)?;
    c.query(&stmt, params).await.map_err(db)
}

/// Runs a cached prepared statement that returns at most one row.
pub(crate) async fn row(
    c: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<Option<Row>, StoreError> {
    let stmt = c.prepare_cached(sql).await.map_err(db)?;
    c.query_opt(&stmt, params).await.map_err(db)
}

/// Runs a cached prepared statement; returns how many rows it changed.
pub(crate) async fn exec(
    c: &impl deadpool_postgres::GenericClient,
    sql: &str,
    params: &[&(dyn tokio_postgres::types::ToSql + Sync)],
) -> Result<u64, StoreError> {
    let stmt = c.prepare_cached(sql).await.map_err(db)?;
    c.execute(&stmt, params).await.map_err(db)
}

#[cfg(test)]
mod tests {
    use super::run_ms;

    #[test]
    fn run_ms_reads_the_uuid_v7_timestamp() {
        let ts = uuid::Timestamp::from_unix(uuid::NoContext, 1_700_000_000, 123_000_000);
        let id = uuid::Uuid::new_v7(ts).to_string();
        assert_eq!(run_ms(&id), 1_700_000_000_123);
        assert_eq!(run_ms("not-a-uuid"), 0);
        assert_eq!(run_ms(&uuid::Uuid::nil().to_string()), 0);
    }
}
