//! The shared test-database helpers (see `weft_store_postgres::testing`).

#[allow(unused_imports)]
pub use weft_store_postgres::testing::*;
