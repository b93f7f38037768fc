//! Embedded, numbered migrations, recorded in `weft_schema_migrations`.
//!
//! Every pending migration is applied in ONE transaction that first takes a transaction-level
//! advisory lock keyed by the schema name: processes starting together queue on the lock, the
//! first applies the migrations, the others then find nothing to do. A database at a newer
//! version than this build is refused before anything is written, and a failing migration
//! rolls back with the rest, so a schema is never left half-migrated.

use crate::conv::describe;
use deadpool_postgres::Client;
use tokio_postgres::error::SqlState;

/// Migrations in order: (version, name, SQL).
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (1, "init", include_str!("migrations/0001_init.sql")),
    (2, "claims", include_str!("migrations/0002_claims.sql")),
    (3, "members", include_str!("migrations/0003_members.sql")),
    (
        4,
        "schedules",
        include_str!("migrations/0004_schedules.sql"),
    ),
    (5, "deferred", include_str!("migrations/0005_deferred.sql")),
    (
        6,
        "key_limits",
        include_str!("migrations/0006_key_limits.sql"),
    ),
    (7, "sweep", include_str!("migrations/0007_sweep.sql")),
    (
        8,
        "key_slots",
        include_str!("migrations/0008_key_slots.sql"),
    ),
    (
        9,
        "member_facts",
        include_str!("migrations/0009_member_facts.sql"),
    ),
    (
        10,
        "rate_buckets",
        include_str!("migrations/0010_rate_buckets.sql"),
    ),
    (
        11,
        "prepared_ticks",
        include_str!("migrations/0011_prepared_ticks.sql"),
    ),
    (
        12,
        "prepared_version",
        include_str!("migrations/0012_prepared_version.sql"),
    ),
];

/// The schema version this build writes.
pub const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;

/// First key of the migration advisory lock ("weft" in ASCII); the second is the schema's hash.
pub(crate) const MIGRATION_LOCK: i32 = 0x7765_6674;

/// Brings `schema` up to [`SCHEMA_VERSION`] (creating it if needed); returns the version
/// found before. Errors are sentences for people.
pub(crate) async fn migrate(client: &mut Client, schema: &str) -> Result<i64, String> {
    let fail = |what: &str, e: tokio_postgres::Error| {
        let hint = if e.code() == Some(&SqlState::INSUFFICIENT_PRIVILEGE) {
            format!(
                " (weft's database user needs the CREATE privilege on the database to create \
                 schema {schema}, or must own an existing schema {schema}; nothing was changed)"
            )
        } else {
            String::new()
        };
        format!(
            "cannot migrate PostgreSQL schema {schema}: {what}: {}{hint}",
            describe(&e)
        )
    };
    let tx = client.transaction().await.map_err(|e| fail("begin", e))?;
    tx.execute(
        "SELECT pg_advisory_xact_lock($1::int4, hashtext($2::text))",
        &[&MIGRATION_LOCK, &schema],
    )
    .await
    .map_err(|e| fail("lock", e))?;
    // Created only when missing: CREATE SCHEMA checks the CREATE privilege on the database
    // even with IF NOT EXISTS, which a role owning only its schema may not have.
    let exists: bool = tx
        .query_one("SELECT to_regnamespace($1) IS NOT NULL", &[&schema])
        .await
        .map_err(|e| fail("look up the schema", e))?
        .get(0);
    if !exists {
        // The name was checked to be a plain lowercase identifier (see `PgOptions`).
        tx.batch_execute(&format!("CREATE SCHEMA {schema}"))
            .await
            .map_err(|e| fail("create the schema", e))?;
    } else {
        // Without USAGE the schema silently drops out of the search path and every
        // statement would fail with a confusing "no schema selected": say what is missing.
        let row = tx
            .query_one(
                "SELECT current_user::text, has_schema_privilege($1, 'USAGE'), has_schema_privilege($1, 'CREATE')",
                &[&schema],
            )
            .await
            .map_err(|e| fail("check the schema's privileges", e))?;
        let (user, usage, create): (String, bool, bool) = (row.get(0), row.get(1), row.get(2));
        let missing: Vec<&str> = [("USAGE", usage), ("CREATE", create)]
            .into_iter()
            .filter_map(|(p, has)| (!has).then_some(p))
            .collect();
        if !missing.is_empty() {
            return Err(format!(
                "cannot migrate PostgreSQL schema {schema}: permission denied: user {user} lacks {} \
                 on it; grant it or make {user} the schema's owner (nothing was changed)",
                missing.join(" and ")
            ));
        }
    }
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS weft_schema_migrations (
             version    bigint      PRIMARY KEY,
             name       text        NOT NULL,
             applied_at timestamptz NOT NULL DEFAULT now()
         )",
    )
    .await
    .map_err(|e| fail("create the migrations table", e))?;
    let found: i64 = tx
        .query_one(
            "SELECT coalesce(max(version), 0)::int8 FROM weft_schema_migrations",
            &[],
        )
        .await
        .map_err(|e| fail("read the version", e))?
        .get(0);
    if found > SCHEMA_VERSION {
        return Err(format!(
            "PostgreSQL schema {schema} is at version {found}, newer than this build of weft understands ({SCHEMA_VERSION}); upgrade weft (nothing was changed)"
        ));
    }
    for (version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > found) {
        tx.batch_execute(sql)
            .await
            .map_err(|e| fail(&format!("migration {version} ({name})"), e))?;
        tx.execute(
            "INSERT INTO weft_schema_migrations (version, name) VALUES ($1, $2)",
            &[version, name],
        )
        .await
        .map_err(|e| fail("record the version", e))?;
    }
    tx.commit().await.map_err(|e| fail("commit", e))?;
    Ok(found)
}

/// The version recorded in the database (0 when it was never migrated).
pub(crate) async fn found_version(client: &Client) -> Result<i64, tokio_postgres::Error> {
    let stmt = client
        .prepare_cached("SELECT coalesce(max(version), 0)::int8 FROM weft_schema_migrations")
        .await;
    let stmt = match stmt {
        Ok(s) => s,
        Err(e) if e.code() == Some(&tokio_postgres::error::SqlState::UNDEFINED_TABLE) => {
            return Ok(0);
        }
        Err(e) => return Err(e),
    };
    Ok(client.query_one(&stmt, &[]).await?.get(0))
}
