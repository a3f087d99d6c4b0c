//! The scale suite (`make test-scale`): several instances of the release binary in one consumer
//! group, writing to one bucket of a real S3-compatible store (Garage, `scripts/garage-local.sh`)
//! with `storage.backend: s3`, and a tansu broker. Every scenario reads the whole bucket back and
//! checks the promise across all objects: every acknowledged record exactly once, no line torn.
//! Rows go to the same summary table as the fault suite's.
//!
//! - [`instances`]: three instances under load through all three; `kill -9` of one, then of
//!   another, ten rounds.
//! - [`paused`]: the object store paused (SIGSTOP) under load, then resumed.
//! - [`store_restart`]: the object store killed (`kill -9`) under load and started again, with
//!   its storage kept and with it lost (on a Garage node of its own, [`garage`]).
//! - [`ingest_rate`]: one instance's dashboard shows the ingest rate and records stored of all
//!   three instances under a steady load.
//! - [`frozen`]: one instance frozen (SIGSTOP) past `kafka.sessionTimeout` under load, then
//!   thawed, three rounds.
//! - [`keyed`]: batches with an `Idempotency-Key` sent again through another instance.
//! - [`sites`]: three customer sites through three instances, all killed once under load: every
//!   record below its own site's prefix, every site's object named in its range's intent; and
//!   each kind of key, and reloads by `SIGHUP`, in s3 mode.
//! - [`ship`]: v1's hour files shipped to the bucket by `log-pipeline ship`, three times, with
//!   late records in between; a v2 instance's analytics count them.

// The harness is shared with the API tests and the fault suite; this suite uses part of it.
#[allow(dead_code, unused_imports)]
#[path = "../api/support/mod.rs"]
mod support;

#[allow(dead_code)]
#[path = "../faults/load.rs"]
mod load;
#[path = "../faults/summary.rs"]
mod summary;

mod bucket;
mod garage;

mod frozen;
mod ingest_rate;
mod instances;
mod keyed;
mod paused;
mod ship;
mod sites;
mod store_restart;
