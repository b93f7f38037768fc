//! Embedded, numbered migrations, applied in order on open and recorded in `user_version`.

use rusqlite::Connection;

/// Migrations in order; index + 1 is the schema version each one produces.
const MIGRATIONS: &[&str] = &[
    include_str!("migrations/0001_init.sql"),
    include_str!("migrations/0002_api_keys.sql"),
    include_str!("migrations/0003_claims.sql"),
    include_str!("migrations/0004_members.sql"),
    include_str!("migrations/0005_schedules.sql"),
    include_str!("migrations/0006_deferred.sql"),
    include_str!("migrations/0007_key_limits.sql"),
    include_str!("migrations/0008_sweep.sql"),
    include_str!("migrations/0009_key_slots.sql"),
    include_str!("migrations/0010_member_facts.sql"),
    include_str!("migrations/0011_rate_buckets.sql"),
    include_str!("migrations/0012_prepared_ticks.sql"),
    include_str!("migrations/0013_prepared_version.sql"),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// Brings the database up to [`SCHEMA_VERSION`]; refuses a database from a newer weft.
pub fn migrate(conn: &mut Connection) -> Result<(), String> {
    let current: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(|e| e.to_string())?;
    if current > SCHEMA_VERSION {
        return Err(format!(
            "the database is at schema version {current}, newer than this weft understands ({SCHEMA_VERSION}); upgrade weft"
        ));
    }
    for (i, sql) in MIGRATIONS.iter().enumerate().skip(current as usize) {
        let tx = conn.transaction().map_err(|e| e.to_string())?;
        tx.execute_batch(sql)
            .map_err(|e| format!("migration {} failed: {e}", i + 1))?;
        tx.pragma_update(None, "user_version", (i + 1) as i64)
            .map_err(|e| e.to_string())?;
        tx.commit().map_err(|e| e.to_string())?;
    }
    Ok(())
}
