//! API keys and store health: small tables and queries kept apart from the run machinery.

use crate::conv::classify;
use rusqlite::{Connection, OptionalExtension, Row, params};
use weft_core::time::Millis;
use weft_store::{ApiKeyRecord, ApiRole, NewApiKey, StoreError, StoreResult};

const COLUMNS: &str = "id, name, role, hash, created_at, revoked_at";

fn record(r: &Row) -> rusqlite::Result<ApiKeyRecord> {
    let role: String = r.get(2)?;
    let role = ApiRole::parse(&role).ok_or_else(|| {
        rusqlite::Error::FromSqlConversionFailure(
            2,
            rusqlite::types::Type::Text,
            format!("unknown role {role:?}").into(),
        )
    })?;
    Ok(ApiKeyRecord {
        id: r.get(0)?,
        name: r.get(1)?,
        role,
        hash: r.get(3)?,
        created_at: r.get(4)?,
        revoked_at: r.get(5)?,
    })
}

/// Inserts a key (on the writer connection).
pub fn create(c: &Connection, k: &NewApiKey) -> StoreResult<ApiKeyRecord> {
    // Checked first: a failed INSERT would roll back the writer's whole batch.
    let taken = c
        .prepare_cached("SELECT 1 FROM api_keys WHERE id = ?1")
        .and_then(|mut s| s.exists([&k.id]))
        .map_err(classify)?;
    if taken {
        return Err(StoreError::Conflict(format!("api key {} exists", k.id)));
    }
    c.prepare_cached(
        "INSERT INTO api_keys (id, name, role, hash, created_at) VALUES (?1, ?2, ?3, ?4, ?5)",
    )
    .and_then(|mut s| s.execute(params![k.id, k.name, k.role.as_str(), k.hash, k.created_at]))
    .map_err(classify)?;
    Ok(ApiKeyRecord {
        id: k.id.clone(),
        name: k.name.clone(),
        role: k.role,
        hash: k.hash.clone(),
        created_at: k.created_at,
        revoked_at: None,
    })
}

/// Every key, oldest first.
pub fn list(c: &Connection) -> StoreResult<Vec<ApiKeyRecord>> {
    c.prepare_cached(&format!(
        "SELECT {COLUMNS} FROM api_keys ORDER BY created_at, id"
    ))
    .and_then(|mut s| s.query_map([], record)?.collect())
    .map_err(classify)
}

/// Marks a key revoked (on the writer connection).
pub fn revoke(c: &Connection, id: &str, at: Millis) -> StoreResult<ApiKeyRecord> {
    let found: Option<ApiKeyRecord> = c
        .prepare_cached(&format!("SELECT {COLUMNS} FROM api_keys WHERE id = ?1"))
        .and_then(|mut s| s.query_row([id], record).optional())
        .map_err(classify)?;
    let Some(mut key) = found else {
        return Err(StoreError::NotFound(format!("api key {id}")));
    };
    if key.revoked_at.is_some() {
        return Err(StoreError::Conflict(format!(
            "api key {id} is already revoked"
        )));
    }
    c.prepare_cached("UPDATE api_keys SET revoked_at = ?2 WHERE id = ?1")
        .and_then(|mut s| s.execute(params![id, at]))
        .map_err(classify)?;
    key.revoked_at = Some(at);
    Ok(key)
}

/// The database's schema version.
pub fn schema_version(c: &Connection) -> StoreResult<i64> {
    c.query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(classify)
}
