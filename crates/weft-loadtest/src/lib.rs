//! `weft-loadtest`: the engine behind `weft loadtest` (and the load part of `weft validate`).
//!
//! It exists as its own crate, apart from the engine, API and stores, so that it measures a
//! weft gateway strictly from the outside, over HTTP, like any client would, and builds and
//! tests in seconds. The pieces:
//! - [`scenario`]: the YAML scenario (weighted steps, rate phases, SLOs), validated before any
//!   traffic is sent.
//! - [`generator`]: the open-loop generator: arrivals are scheduled by the clock, latency is
//!   measured from each arrival's *intended* send time, so a slow server cannot hide its
//!   latency by slowing the generator down (coordinated omission).
//! - [`report`]: the result model (JSON), [`html`]: the offline HTML report, [`baseline`]:
//!   saved reports and side-by-side comparison, [`slo`]: thresholds and their verdicts.
//! - [`selftest`]: measures the generator itself against a static in-process endpoint.

pub mod baseline;
mod client;
mod error;
pub mod generator;
pub mod html;
mod progress;
mod recorder;
pub mod report;
mod runner;
pub mod scenario;
mod scrape;
pub mod selftest;
pub mod slo;
mod target;
mod tracker;

pub use error::LoadtestError;
pub use progress::Progress;
pub use report::Report;
pub use runner::{RunOptions, run};
pub use scenario::Scenario;
pub use target::Target;
