//! The durable hourly file store: `<logsDir>/YYYY-MM-DD/HH.log.json`.
//!
//! # How a batch becomes durable
//!
//! Callers ([`Store::append`]) hand over an [`EncodedBatch`](crate::record::EncodedBatch) and wait. One dedicated writer thread
//! owns every open hour file. It takes the first waiting request plus everything queued behind it
//! (a *write group*), appends each file's chunks with one vectored write, fsyncs each touched file
//! once (policy `always`), and only then answers every request of the group. While one group is
//! being fsynced the next one queues up, so durability costs one fsync per file per group rather
//! than per request (group commit).
//!
//! A group is all-or-nothing: if any write or fsync fails, every file the group touched is
//! truncated back to its previous length and every request of the group gets the error. The
//! caller never sees success for bytes that are not on disk, and a retry after a failure cannot
//! duplicate lines.
//!
//! # Checkpoints
//!
//! A writer that consumes from elsewhere (the Kafka consumers) passes its next positions with a
//! batch ([`Store::append_with_checkpoint`]). The store then keeps a small state file
//! (`.checkpoint.json`) that is updated around the data write: first a *pending* record naming the
//! length of every file the group will touch, then the data and its fsync, then the new positions.
//! At start-up a pending record means a crash happened in between, and the files are truncated back
//! to the recorded lengths, so lines and positions always agree: nothing is stored twice when the
//! caller resumes from [`Store::checkpoint`]. A group that fails clears its pending record once
//! its rollback is done (until then the store refuses writes).
//!
//! # Idempotency keys
//!
//! A batch may carry [`Update`](crate::idempotency::Update)s of the idempotency
//! [`Ledger`](crate::idempotency::Ledger) (v1: "this keyed batch is stored";
//! v2's consumers: "these records of that keyed batch are stored"). They are appended to the
//! journal (`.idempotency.jsonl`, `journal.rs`) in the same group as the lines, under the same
//! pending record, fsynced with them and rolled back with them: after a crash at any instant the
//! lines and their key are both there or neither is. The ledger is applied in memory only once the
//! group is durable, and rebuilt from the journal at start-up. A batch carrying a key holds the
//! API's [`ClaimGuard`](crate::idempotency::ClaimGuard) until its outcome is known, so that the key is in flight exactly as long.
//!
//! # Start-up repair and exclusivity
//!
//! [`Store::open`] takes an exclusive lock on `<logsDir>/.lock` (a second process gets
//! [`StoreError::Locked`]), rolls back any pending checkpoint, truncates an unterminated last
//! line from every hour file (a crash mid-write; such a line was never acknowledged), and reads
//! the idempotency journal.
//!
//! # Bounded state
//!
//! Pending work is bounded in bytes (`storage.maxPendingBytes`; beyond it [`StoreError::Overloaded`]
//! is returned at once). Files idle for `storage.idleFileTimeout` are synced and closed, and at most
//! [`MAX_OPEN_FILES`] stay open.
//!
//! # Layout
//!
//! - [`Store`] (`handle.rs`): the handle every caller holds; opening, handing over batches,
//!   readiness, shutdown.
//! - `writer.rs`: the writer thread (write groups, rollback, repair, periodic work);
//!   `hour_files.rs`: the hour files it has open or left damaged.
//! - `recovery.rs`: what opening does before the writer starts.
//! - `checkpoint.rs`: the checkpoint state file; `journal.rs`: the idempotency journal.
//! - `disk.rs`: the file operations both the writer and the recovery build on.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use crate::config::{FsyncPolicy, IdempotencyConfig, StorageConfig};
use crate::idempotency::Retention;

mod checkpoint;
mod disk;
#[cfg(test)]
mod fixtures;
mod handle;
mod hour_files;
mod journal;
mod recovery;
mod writer;

pub use handle::Store;

/// At most this many hour files stay open; the least recently written is closed beyond it.
pub const MAX_OPEN_FILES: usize = 64;

/// Positions of an external source (e.g. `"logs/0"` → next Kafka offset), stored with the data.
pub type Checkpoint = BTreeMap<String, i64>;

/// How the store is set up; built from `storage.*`.
#[derive(Debug, Clone)]
pub struct StoreOptions {
    pub logs_dir: PathBuf,
    pub fsync: FsyncPolicy,
    pub fsync_interval: Duration,
    pub max_pending_bytes: usize,
    pub idle_file_timeout: Duration,
    pub write_timeout: Duration,
    /// How long, and how many, idempotency keys are kept.
    pub keys: Retention,
}

impl StoreOptions {
    /// The options `storage.*` and `idempotency.*` give.
    pub fn from_config(storage: &StorageConfig, idempotency: &IdempotencyConfig) -> StoreOptions {
        StoreOptions {
            logs_dir: storage.logs_dir.clone(),
            fsync: storage.fsync,
            fsync_interval: storage.fsync_interval,
            max_pending_bytes: storage.max_pending_bytes,
            idle_file_timeout: storage.idle_file_timeout,
            write_timeout: storage.write_timeout,
            keys: Retention::from_config(idempotency),
        }
    }
}

/// Why the store refused or failed a batch.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    /// Another process holds the logs directory.
    #[error(
        "logs directory {dir} is in use by another log-pipeline process ({holder}); stop it or use another --logs-dir"
    )]
    Locked { dir: PathBuf, holder: String },
    /// Pending work is at its bound; the caller should retry later.
    #[error("the store has too much pending work")]
    Overloaded,
    /// The store is shutting down or its writer stopped.
    #[error("the store is closed")]
    Closed,
    /// Writing failed and everything the batch added was rolled back: nothing of it is stored.
    #[error("storage write failed, nothing was stored: {0}")]
    WriteFailed(String),
    /// Writing failed and the rollback failed too: part of the batch may be on disk.
    #[error("storage write failed and could not be rolled back: {0}")]
    Inconsistent(String),
    /// The caller's deadline passed while the batch waited for the writer; it was withdrawn and
    /// nothing of it is stored.
    #[error("the batch waited for the writer past its deadline and was withdrawn")]
    Withdrawn,
    /// The writer took the batch but did not answer within `storage.writeTimeout`: it may be
    /// stored or not (the write completes or rolls back later).
    #[error("the writer did not answer within storage.writeTimeout")]
    OutcomeUnknown,
    /// Opening the store failed.
    #[error("cannot open the logs directory {dir}: {reason}")]
    Open { dir: PathBuf, reason: String },
}
