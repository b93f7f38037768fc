//! Test databases, for this crate's tests and for other crates' tests that need a real
//! PostgreSQL (feature `testing`): every test gets its own schema in the database named by
//! `WEFT_TEST_DATABASE_URL`, dropped again when its guard goes away. An unreachable
//! database fails the test with a message naming the URL and the variable; nothing skips.

use crate::{PgOptions, PostgresStore};
use std::sync::Arc;

/// The variable naming the test database.
pub const URL_VAR: &str = "WEFT_TEST_DATABASE_URL";
/// The database used when the variable is not set.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/postgres";

/// The test database URL.
pub fn url() -> String {
    std::env::var(URL_VAR).unwrap_or_else(|_| DEFAULT_URL.to_string())
}

/// The test database URL for messages, with any password masked.
pub fn shown_url() -> String {
    let url = url();
    let Some(start) = url.find("://").map(|i| i + 3) else {
        return url;
    };
    let Some(at) = url[start..].find('@').map(|i| start + i) else {
        return url;
    };
    match url[start..at].find(':') {
        Some(colon) => format!("{}***{}", &url[..start + colon + 1], &url[at..]),
        None => url,
    }
}

/// A fresh, unique schema name.
pub fn schema_name() -> String {
    format!("weft_t_{}", uuid::Uuid::now_v7().simple())
}

/// Drops its schema (CASCADE) when dropped. `Drop` is synchronous and may run inside the
/// test's runtime, so the drop runs on its own thread with its own small runtime.
pub struct SchemaGuard {
    /// The schema to drop.
    pub schema: String,
}

impl Drop for SchemaGuard {
    fn drop(&mut self) {
        let (url, schema) = (url(), self.schema.clone());
        let dropped = std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("runtime for dropping the test schema");
            rt.block_on(async move {
                let (client, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                    .await
                    .map_err(|e| e.to_string())?;
                tokio::spawn(conn);
                // The store's connections live on the test's runtime, which is blocked while
                // this runs: a rollback they still owe cannot reach the server, and their
                // locks would block the drop. End the sessions holding locks in the schema.
                client
                    .execute(
                        "SELECT pg_terminate_backend(l.pid) FROM pg_locks l
                         JOIN pg_class c ON c.oid = l.relation
                         JOIN pg_namespace n ON n.oid = c.relnamespace
                         WHERE n.nspname = $1 AND l.pid <> pg_backend_pid()",
                        &[&schema],
                    )
                    .await
                    .map_err(|e| e.to_string())?;
                client
                    .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
                    .await
                    .map_err(|e| e.to_string())
            })
        })
        .join();
        if let Ok(Err(e)) | Err(e) = dropped.map_err(|_| "panicked".to_string()) {
            eprintln!("could not drop test schema {}: {e}", self.schema);
        }
    }
}

/// Connects a store to a new schema, without migrating. Panics with a clear message (naming
/// the URL and the variable) when the database cannot be reached: tests never skip.
pub async fn connect(schema: &str) -> Arc<PostgresStore> {
    let opts = PgOptions {
        schema: Some(schema.to_string()),
        pool_size: 4,
        ..PgOptions::default()
    };
    match PostgresStore::connect(&url(), opts).await {
        Ok(s) => s,
        Err(e) => panic!(
            "the PostgreSQL tests need a database: {e}\n(database URL {}, from {URL_VAR}, default {DEFAULT_URL})",
            shown_url()
        ),
    }
}

/// A migrated store on a fresh schema, with the guard that drops the schema.
pub async fn fresh() -> (Arc<PostgresStore>, SchemaGuard) {
    let schema = schema_name();
    let store = connect(&schema).await;
    let guard = SchemaGuard {
        schema: schema.clone(),
    };
    store.migrate().await.expect("migrate a fresh schema");
    (store, guard)
}

/// A plain client on the test database with `search_path` set to `schema`.
pub async fn raw(schema: &str) -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&url(), tokio_postgres::NoTls)
        .await
        .unwrap_or_else(|e| panic!("connect to {} ({URL_VAR}): {e}", shown_url()));
    tokio::spawn(conn);
    client
        .batch_execute(&format!("SET search_path = {schema}"))
        .await
        .expect("set search_path");
    client
}
