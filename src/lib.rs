//! log-pipeline ingests batches of web-access records over HTTP, stores them durably in hourly
//! NDJSON files, keeps hourly analytics up to date and exposes Prometheus metrics.
//!
//! # Layout
//!
//! Requests flow top to bottom; layers never reach up.
//!
//! - [`cli`], [`config`]: the command line and the typed configuration tree (YAML + flags + env),
//!   validated once at start-up.
//! - [`app`]: builds every component from a [`config::Config`], binds the listener and runs until a
//!   shutdown signal, then drains in order.
//! - [`server`]: connections: the cap, timeouts for silent and idle ones, draining at shutdown.
//! - [`http`]: the axum router, handlers, middleware (auth, metrics, timeouts) and the one
//!   [`http::ApiError`] type that maps failures (and the pipeline's refusal kinds) onto status
//!   codes and JSON bodies; the analytics routes (never stale, bounded) and the dashboard's
//!   embedded page. The router is built over an [`pipeline::Intake`] trait object, so its tests
//!   run in process with a stand-in pipeline.
//! - [`ingest`]: decoding and validation of request bodies (JSON array, CSV, NDJSON) into an
//!   [`record::EncodedBatch`]; pure functions, no I/O.
//! - [`record`]: the record type and its NDJSON line format (the compatibility contract).
//! - [`idempotency`]: what an `Idempotency-Key` means: keys, batch fingerprints, the ledger of
//!   keyed batches stored and the API's index of keys done and in flight; no I/O.
//! - [`layout`]: which file of the logs and analytics directories (and which object of the
//!   bucket) holds which hour.
//! - [`pipeline`]: where accepted batches go; one value owns each mode (v1: the store; v2: Kafka)
//!   from start-up to shutdown. [`pipeline::Intake`] is all the HTTP layer asks of it, and
//!   [`pipeline::Refusal`] what a refused batch means for the client (each backend's errors are
//!   mapped to it once, in `pipeline/refusal.rs`).
//! - [`kafka`]: v2, owned by [`kafka::KafkaPipeline`]: producer, consumer group (writing through
//!   the store with checkpoints; dead-letter topic), broker set-up and probe.
//! - [`objects`]: the bucket of `storage.backend: s3` (v2 on several machines): ranges of offsets
//!   written as objects whose names their messages fix, after an intent; exactly once with no
//!   local state.
//! - [`ship`]: `log-pipeline ship`, which copies the hour files to the bucket (v1 on several
//!   machines), named by byte range; nothing shipped twice, no local state.
//! - [`store`]: the durable hourly file store: group commit, fsync, rollback, torn-line repair,
//!   directory lock, caller checkpoints and the idempotency journal.
//! - [`analytics`]: incremental hourly summaries of the hour files, or of the bucket's objects
//!   (bots and humans split with the vendored isbot list) and the analytics API's bounded
//!   queries; reads what the store (or the consumers, through [`objects`]) wrote, shares no locks
//!   with it.
//! - [`metrics`]: every metric name, label and help text.
//! - [`telemetry`]: structured JSON logs.
//! - [`profiling`]: CPU, heap and task-dump profiles, off unless `profiling.*` (or the original's
//!   `PROFILE_*` variables) ask for them (whole-run capture, or a separate `/debug/pprof/`
//!   listener).

pub mod analytics;
pub mod app;
pub mod cli;
pub mod config;
pub mod http;
pub mod idempotency;
pub mod ingest;
pub mod kafka;
pub mod layout;
pub mod metrics;
pub mod objects;
pub mod pipeline;
pub mod profiling;
pub mod record;
pub mod server;
pub mod ship;
pub mod store;
pub mod telemetry;
