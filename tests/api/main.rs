//! Integration tests of the HTTP API and the binary, from the outside: status codes, JSON bodies,
//! files on disk and scraped metrics.

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
mod squatting;
mod startup;
mod storage;
mod support;
