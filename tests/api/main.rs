//! Integration tests of the HTTP API and the binary, from the outside: status codes, JSON bodies,
//! files on disk and scraped metrics.
//!
//! Plain `cargo test` runs those that need nothing but this crate; those that need the broker,
//! Prometheus, Go, Chromium or the release binary are `#[ignore = "needs ...: make test"]`, and
//! `make test` runs them too (see `support/external.rs`, whose gate fails an unmarked one).
//! None needs root: the scenarios that do are in the fault suite (tests/faults).

mod analytics;
mod analytics_hostile;
mod auth;
mod dashboard;
mod endpoints;
mod idempotency;
mod ingest;
mod kafka;
mod malformed;
mod process;
mod profiling;
mod prometheus;
mod rejections;
mod site_access;
mod site_analytics;
mod site_layout;
mod squatting;
mod startup;
mod storage;
mod support;
