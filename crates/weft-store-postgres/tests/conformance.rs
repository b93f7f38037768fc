//! The store conformance suite against the PostgreSQL driver: every case on its own fresh
//! schema (see `common`), in the database named by `WEFT_TEST_DATABASE_URL`.

mod common;

weft_store::conformance_tests!(async {
    let (store, guard) = common::fresh().await;
    (store as weft_store::DynStore, guard)
});
