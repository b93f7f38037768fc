//! The sweeper's store cases (weft_store::conformance::sweep) on SQLite, with the damage
//! made through a second connection to the same database file.

use std::sync::{Arc, Mutex};
use weft_store::DynStore;
use weft_store::conformance::sweep::{self, Tamper};

fn setup() -> (DynStore, Tamper, tempfile::TempDir) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = weft_store_sqlite::SqliteStore::open(dir.path(), Default::default())
        .expect("open the store");
    let file = std::fs::read_dir(dir.path())
        .expect("list the data dir")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "db"))
        .expect("the database file");
    let conn = rusqlite::Connection::open(file).expect("a second connection");
    conn.busy_timeout(std::time::Duration::from_secs(10))
        .expect("busy timeout");
    let conn = Arc::new(Mutex::new(conn));
    let tamper: Tamper = Box::new(move |sql| {
        let conn = conn.clone();
        Box::pin(async move {
            conn.lock().unwrap().execute_batch(&sql).expect("tamper");
        })
    });
    (store, tamper, dir)
}

#[tokio::test]
async fn wrong_counters_are_found_and_recounted() {
    let (store, tamper, _dir) = setup();
    sweep::wrong_counters_are_found_and_recounted(store, tamper).await;
}

#[tokio::test]
async fn orphans_and_lost_children_are_found() {
    let (store, tamper, _dir) = setup();
    sweep::orphans_and_lost_children_are_found(store, tamper).await;
}
