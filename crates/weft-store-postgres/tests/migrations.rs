//! Migrations: idempotent, safe when several processes start at once, and refusing a
//! database from a newer weft. Also how connection failures read.

mod common;

use weft_store::HealthStore;
use weft_store_postgres::{PgOptions, PostgresStore, SCHEMA_VERSION};

async fn count(client: &tokio_postgres::Client, sql: &str, schema: &str) -> i64 {
    client.query_one(sql, &[&schema]).await.expect(sql).get(0)
}

const TABLES: &str = "SELECT count(*) FROM pg_tables WHERE schemaname = $1";
const RECORDED: &str = "SELECT count(*) FROM pg_tables t WHERE t.schemaname = $1 AND t.tablename = 'weft_schema_migrations'";

#[tokio::test]
async fn migrating_twice_is_a_no_op() {
    let (store, guard) = common::fresh().await;
    let raw = common::raw(&guard.schema).await;
    let tables = count(&raw, TABLES, &guard.schema).await;
    store.migrate().await.expect("second migrate");
    assert_eq!(count(&raw, TABLES, &guard.schema).await, tables);
    let versions: i64 = raw
        .query_one("SELECT count(*) FROM weft_schema_migrations", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(versions, SCHEMA_VERSION);
    let v = store.schema_version().await.expect("schema_version");
    assert_eq!((v.found, v.expected), (SCHEMA_VERSION, SCHEMA_VERSION));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_migrations_all_succeed_once() {
    let schema = common::schema_name();
    let guard = common::SchemaGuard {
        schema: schema.clone(),
    };
    let mut stores = Vec::new();
    for _ in 0..8 {
        stores.push(common::connect(&schema).await);
    }
    let tasks: Vec<_> = stores
        .iter()
        .cloned()
        .map(|s| tokio::spawn(async move { s.migrate().await }))
        .collect();
    for t in tasks {
        t.await
            .expect("join")
            .expect("every concurrent migrate succeeds");
    }
    let raw = common::raw(&guard.schema).await;
    assert_eq!(count(&raw, RECORDED, &schema).await, 1);
    let versions: Vec<i64> = raw
        .query(
            "SELECT version FROM weft_schema_migrations ORDER BY version",
            &[],
        )
        .await
        .unwrap()
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(versions, (1..=SCHEMA_VERSION).collect::<Vec<_>>());
    let runs: i64 = count(
        &raw,
        "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
         WHERE n.nspname = $1 AND c.relname = 'runs'",
        &schema,
    )
    .await;
    assert_eq!(runs, 1);
}

#[tokio::test]
async fn a_newer_database_is_refused() {
    let (store, guard) = common::fresh().await;
    let raw = common::raw(&guard.schema).await;
    raw.execute(
        "INSERT INTO weft_schema_migrations (version, name) VALUES (999, 'from the future')",
        &[],
    )
    .await
    .unwrap();
    let tables = count(&raw, TABLES, &guard.schema).await;
    let err = store
        .migrate()
        .await
        .expect_err("a newer schema is refused");
    assert!(
        err.contains("999") && err.contains("newer") && err.contains(&guard.schema),
        "{err}"
    );
    assert_eq!(
        count(&raw, TABLES, &guard.schema).await,
        tables,
        "nothing changed"
    );
    let v = store.schema_version().await.expect("schema_version");
    assert_eq!((v.found, v.expected), (999, SCHEMA_VERSION));
}

#[tokio::test]
async fn an_unreachable_server_is_a_clear_error_without_the_password() {
    let opts = PgOptions {
        connect_timeout: std::time::Duration::from_secs(2),
        ..PgOptions::default()
    };
    let err = match PostgresStore::connect("postgres://weft:s3cret@127.0.0.1:1/weft", opts).await {
        Ok(_) => panic!("nothing listens on port 1"),
        Err(e) => e,
    };
    assert!(
        err.starts_with("cannot connect to PostgreSQL at 127.0.0.1:1: "),
        "{err}"
    );
    assert!(!err.contains("s3cret"), "the password leaked: {err}");
}

#[tokio::test]
async fn a_bad_schema_name_is_refused() {
    let opts = PgOptions {
        schema: Some("Robert'); DROP TABLE x;--".into()),
        ..PgOptions::default()
    };
    let err = match PostgresStore::connect(&common::url(), opts).await {
        Ok(_) => panic!("accepted a bad schema name"),
        Err(e) => e,
    };
    assert!(err.contains("invalid PostgreSQL schema name"), "{err}");
}
