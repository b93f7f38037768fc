//! The store conformance suite against the embedded driver: every case on its own SQLite
//! file in a fresh temp dir.

weft_store::conformance_tests!(async {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = weft_store_sqlite::SqliteStore::open(dir.path(), Default::default())
        .expect("open the store");
    (store as weft_store::DynStore, dir)
});
