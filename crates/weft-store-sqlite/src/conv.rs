//! Translation between rusqlite and the store's types, kept at the boundary.

use rusqlite::ErrorCode;
use serde_json::Value;
use weft_store::StoreError;

thread_local! {
    /// Set when a SQLite call failed on this thread. The writer checks it after each
    /// operation: a SQLite error may strike after an operation has written part of its
    /// changes, so the whole batch is rolled back rather than committed half-applied.
    static FAILED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Returns and clears this thread's SQLite-failure flag.
pub fn take_failed() -> bool {
    FAILED.with(|f| f.replace(false))
}

/// Maps a SQLite error to the store's error kinds.
pub fn classify(e: rusqlite::Error) -> StoreError {
    if !matches!(e, rusqlite::Error::QueryReturnedNoRows) {
        FAILED.with(|f| f.set(true));
    }
    match &e {
        rusqlite::Error::QueryReturnedNoRows => StoreError::NotFound("row".into()),
        rusqlite::Error::SqliteFailure(f, _) => match f.code {
            ErrorCode::DiskFull => StoreError::Unavailable(
                "disk full: free space where the data directory lives; nothing in this write was kept".into(),
            ),
            ErrorCode::ReadOnly | ErrorCode::CannotOpen | ErrorCode::SystemIoFailure => {
                StoreError::Unavailable(e.to_string())
            }
            ErrorCode::DatabaseBusy | ErrorCode::DatabaseLocked => {
                StoreError::Unavailable(e.to_string())
            }
            ErrorCode::ConstraintViolation => StoreError::Conflict(e.to_string()),
            ErrorCode::DatabaseCorrupt | ErrorCode::NotADatabase => {
                StoreError::Corrupt(e.to_string())
            }
            _ => StoreError::Unavailable(e.to_string()),
        },
        _ => StoreError::Corrupt(e.to_string()),
    }
}

/// Parses stored JSON text.
pub fn json(text: Option<String>) -> Result<Option<Value>, StoreError> {
    text.map(|t| {
        serde_json::from_str(&t).map_err(|e| StoreError::Corrupt(format!("stored JSON: {e}")))
    })
    .transpose()
}

/// 64-bit FNV-1a, hex: a stable fingerprint of a flow document.
pub fn fingerprint(text: &str) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in text.bytes() {
        h ^= b as u64;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{h:016x}")
}
