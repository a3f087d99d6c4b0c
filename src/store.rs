//! The durable hourly file store: `<logsDir>/YYYY-MM-DD/HH.log.json`.
//!
//! # How a batch becomes durable
//!
//! Callers ([`Store::append`]) hand over an [`EncodedBatch`] and wait. One dedicated writer thread
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
//! A batch may carry [`Update`]s of the idempotency [`Ledger`] (v1: "this keyed batch is stored";
//! v2's consumers: "these records of that keyed batch are stored"). They are appended to the
//! journal (`.idempotency.jsonl`, [`journal`]) in the same group as the lines, under the same
//! pending record, fsynced with them and rolled back with them: after a crash at any instant the
//! lines and their key are both there or neither is. The ledger is applied in memory only once the
//! group is durable, and rebuilt from the journal at start-up. A batch carrying a key holds the
//! API's [`ClaimGuard`] until its outcome is known, so that the key is in flight exactly as long.
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

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io::{self, IoSlice, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, oneshot};

use crate::config::{FsyncPolicy, IdempotencyConfig, StorageConfig};
use crate::idempotency::{ClaimGuard, Retention, SharedLedger, Update, now_ms};
use crate::layout::{self, CHECKPOINT_FILE, LOCK_FILE};
use crate::metrics::Metrics;
use crate::record::{EncodedBatch, Hour};

mod journal;
use journal::Journal;

/// At most this many hour files stay open; the least recently written is closed beyond it.
pub const MAX_OPEN_FILES: usize = 64;
/// A write group stops taking queued requests once it holds this many bytes.
const MAX_GROUP_BYTES: usize = 32 << 20;
/// A write group stops taking queued requests once they touch this many distinct hour files.
const MAX_GROUP_FILES: usize = MAX_OPEN_FILES;
/// A group's files are fsynced in parallel from this many on...
const PARALLEL_SYNC_FROM: usize = 4;
/// ... by at most this many threads.
const SYNC_THREADS: usize = 8;
/// How often damaged files are retried while the store refuses writes.
const REPAIR_INTERVAL: Duration = Duration::from_millis(500);

/// A request's claim: waiting for the writer...
const QUEUED: u8 = 0;
/// ... taken by the writer: it will be written or rolled back, and answered...
const TAKEN: u8 = 1;
/// ... or withdrawn by its caller before that: never written.
const WITHDRAWN: u8 = 2;

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
            keys: Retention {
                retention: idempotency.retention,
                max_keys: idempotency.max_keys,
            },
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

/// A handle to the store; cheap to clone, shared by the HTTP sink and consumers.
#[derive(Clone)]
pub struct Store {
    inner: Arc<Inner>,
}

struct Inner {
    requests: Mutex<Option<mpsc::Sender<Request>>>,
    pending: Arc<Semaphore>,
    max_pending_bytes: usize,
    write_timeout: Duration,
    healthy: Arc<AtomicBool>,
    checkpoint: Arc<Mutex<Checkpoint>>,
    ledger: SharedLedger,
    done: Mutex<Option<oneshot::Receiver<()>>>,
    metrics: Metrics,
}

/// What goes with a batch besides its lines.
#[derive(Default)]
struct Extras {
    checkpoint: Option<Checkpoint>,
    updates: Vec<Update>,
    /// Released when the request is dropped, after its outcome is decided.
    hold: Option<ClaimGuard>,
}

struct Request {
    batch: EncodedBatch,
    checkpoint: Option<Checkpoint>,
    updates: Vec<Update>,
    /// The key in flight, let go just before the answer (after the ledger has the outcome), so
    /// that a client's next request with it, sent as soon as it has the answer, finds it done.
    hold: Option<ClaimGuard>,
    reply: oneshot::Sender<Result<(), StoreError>>,
    /// [`QUEUED`] until either the writer takes the request ([`TAKEN`]) or its caller withdraws
    /// it ([`WITHDRAWN`]); whichever comes first decides.
    claim: Arc<AtomicU8>,
    /// Released when the request is dropped, after the writer answered.
    _permit: OwnedSemaphorePermit,
}

impl Store {
    /// Opens (creating if needed) the logs directory: locks it, repairs it, starts the writer.
    pub fn open(options: StoreOptions, metrics: Metrics) -> Result<Store, StoreError> {
        let (store, writer, requests) = Store::prepare(options, metrics)?;
        store.start(writer, requests);
        Ok(store)
    }

    fn prepare(
        options: StoreOptions,
        metrics: Metrics,
    ) -> Result<(Store, Writer, mpsc::Receiver<Request>), StoreError> {
        let dir = options.logs_dir.clone();
        let open_error = |reason: String| StoreError::Open {
            dir: dir.clone(),
            reason,
        };
        fs::create_dir_all(&dir).map_err(|e| open_error(e.to_string()))?;
        let lock = lock_dir(&dir)?;
        let checkpoint = recover_checkpoint(&dir)
            .map_err(|e| open_error(format!("checkpoint recovery: {e}")))?;
        repair_torn_lines(&dir).map_err(|e| open_error(format!("torn-line repair: {e}")))?;
        let (journal, ledger) = Journal::open(&dir, options.keys)
            .map_err(|e| open_error(format!("idempotency journal: {e}")))?;
        metrics.idempotency_keys.set(ledger.len() as i64);
        let ledger = SharedLedger::new(ledger);

        let (sender, requests) = mpsc::channel();
        let healthy = Arc::new(AtomicBool::new(true));
        let checkpoint = Arc::new(Mutex::new(checkpoint));
        let (done_tx, done_rx) = oneshot::channel();
        let writer = Writer {
            dir: dir.clone(),
            options: options.clone(),
            files: HashMap::new(),
            damaged: BTreeMap::new(),
            healthy: healthy.clone(),
            checkpoint: checkpoint.clone(),
            journal,
            journal_damaged: None,
            intent_left: false,
            ledger: ledger.clone(),
            metrics: metrics.clone(),
            last_sync: Instant::now(),
            _lock: lock,
            done: Some(done_tx),
        };
        let max_pending_bytes = options.max_pending_bytes.clamp(1, Semaphore::MAX_PERMITS);
        let store = Store {
            inner: Arc::new(Inner {
                requests: Mutex::new(Some(sender)),
                pending: Arc::new(Semaphore::new(max_pending_bytes)),
                max_pending_bytes,
                write_timeout: options.write_timeout,
                healthy,
                checkpoint,
                ledger,
                done: Mutex::new(Some(done_rx)),
                metrics,
            }),
        };
        Ok((store, writer, requests))
    }

    fn start(&self, writer: Writer, requests: mpsc::Receiver<Request>) {
        std::thread::Builder::new()
            .name("store-writer".into())
            .spawn(move || writer.run(requests))
            .expect("spawning the store writer thread");
    }

    /// Appends a batch and returns once it is stored (and fsynced, with `fsync: always`).
    pub async fn append(&self, batch: EncodedBatch) -> Result<(), StoreError> {
        self.submit(batch, Extras::default(), None).await
    }

    /// [`Store::append`], for a caller that cannot wait past `deadline` for the writer: a batch
    /// still queued then is withdrawn ([`StoreError::Withdrawn`], nothing stored). One the writer
    /// has taken is waited for at most `storage.writeTimeout` more
    /// ([`StoreError::OutcomeUnknown`] beyond; the write still completes or rolls back).
    pub async fn append_by(
        &self,
        batch: EncodedBatch,
        deadline: std::time::Instant,
    ) -> Result<(), StoreError> {
        self.submit(batch, Extras::default(), Some(deadline)).await
    }

    /// [`Store::append_by`] for a batch sent with an idempotency key: `update` (the whole batch
    /// stored under its key) is made durable with the lines, and `hold` (the key in flight) is
    /// released once the batch's outcome is decided, even if that is after the caller stopped
    /// waiting.
    pub async fn append_keyed_by(
        &self,
        batch: EncodedBatch,
        update: Update,
        hold: ClaimGuard,
        deadline: std::time::Instant,
    ) -> Result<(), StoreError> {
        let extras = Extras {
            updates: vec![update],
            hold: Some(hold),
            ..Extras::default()
        };
        self.submit(batch, extras, Some(deadline)).await
    }

    /// Appends a batch and makes `checkpoint` and `updates` durable together with it: after a
    /// crash, either the lines, the positions and the updates are all there, or none is.
    pub async fn append_with_checkpoint(
        &self,
        batch: EncodedBatch,
        checkpoint: Checkpoint,
        updates: Vec<Update>,
    ) -> Result<(), StoreError> {
        let extras = Extras {
            checkpoint: Some(checkpoint),
            updates,
            hold: None,
        };
        self.submit(batch, extras, None).await
    }

    async fn submit(
        &self,
        batch: EncodedBatch,
        extras: Extras,
        deadline: Option<std::time::Instant>,
    ) -> Result<(), StoreError> {
        let cost = batch.bytes().clamp(1, self.inner.max_pending_bytes);
        let permit = self
            .inner
            .pending
            .clone()
            .try_acquire_many_owned(cost as u32)
            .map_err(|_| StoreError::Overloaded)?;
        let (reply, answer) = oneshot::channel();
        let claim = Arc::new(AtomicU8::new(QUEUED));
        {
            let requests = self.inner.requests.lock().expect("store sender lock");
            let sender = requests.as_ref().ok_or(StoreError::Closed)?;
            self.inner.metrics.store_queue_depth.inc();
            let request = Request {
                batch,
                checkpoint: extras.checkpoint,
                updates: extras.updates,
                hold: extras.hold,
                reply,
                claim: claim.clone(),
                _permit: permit,
            };
            if sender.send(request).is_err() {
                self.inner.metrics.store_queue_depth.dec();
                return Err(StoreError::Closed);
            }
        }
        let answered =
            |answer: Result<Result<(), StoreError>, _>| answer.unwrap_or(Err(StoreError::Closed));
        let Some(deadline) = deadline else {
            return answered(answer.await);
        };
        tokio::pin!(answer);
        if let Ok(answer) = tokio::time::timeout_at(deadline.into(), &mut answer).await {
            return answered(answer);
        }
        if claim
            .compare_exchange(QUEUED, WITHDRAWN, Ordering::AcqRel, Ordering::Acquire)
            .is_ok()
        {
            return Err(StoreError::Withdrawn);
        }
        match tokio::time::timeout(self.inner.write_timeout, answer).await {
            Ok(answer) => answered(answer),
            Err(_) => Err(StoreError::OutcomeUnknown),
        }
    }

    /// The idempotency ledger: keyed batches stored (records of them, for v2's consumers),
    /// updated once each group is durable.
    pub fn ledger(&self) -> &SharedLedger {
        &self.inner.ledger
    }

    /// The positions stored with the last committed checkpointed batch (or recovered at open).
    pub fn checkpoint(&self) -> Checkpoint {
        self.inner
            .checkpoint
            .lock()
            .expect("checkpoint lock")
            .clone()
    }

    /// Whether the store can take writes: open, and no rollback has failed; if not, why.
    pub fn readiness(&self) -> Result<(), &'static str> {
        let open = self
            .inner
            .requests
            .lock()
            .expect("store sender lock")
            .is_some();
        if !open {
            Err("the store is closed")
        } else if !self.inner.healthy.load(Ordering::Relaxed) {
            Err(
                "storage cannot take writes: hour files are being repaired after a failed write or fsync",
            )
        } else {
            Ok(())
        }
    }

    /// Stops taking batches, lets the writer finish what is queued, syncs and closes every file
    /// and releases the directory lock. Idempotent.
    pub async fn shutdown(&self) {
        self.inner
            .requests
            .lock()
            .expect("store sender lock")
            .take();
        let done = self.inner.done.lock().expect("store done lock").take();
        if let Some(done) = done {
            let _ = done.await;
        }
    }
}

/// Takes the exclusive lock on the logs directory and records our PID in the lock file.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let open_error = |e: io::Error| StoreError::Open {
        dir: dir.to_owned(),
        reason: format!("{}: {e}", path.display()),
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(open_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => format!("lock file {}", path.display()),
                pid => format!("pid {pid}, lock file {}", path.display()),
            };
            return Err(StoreError::Locked {
                dir: dir.to_owned(),
                holder,
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(open_error(e)),
    }
    file.set_len(0).map_err(open_error)?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(open_error)?;
    Ok(file)
}

/// The checkpoint state file's contents.
#[derive(Debug, Default, Serialize, Deserialize)]
struct CheckpointState {
    positions: Checkpoint,
    /// Present while a checkpointed group is being written: each touched file's length before it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pending: Option<BTreeMap<String, u64>>,
}

fn read_checkpoint_state(dir: &Path) -> io::Result<CheckpointState> {
    match fs::read(dir.join(CHECKPOINT_FILE)) {
        Ok(bytes) => serde_json::from_slice(&bytes)
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(CheckpointState::default()),
        Err(e) => Err(e),
    }
}

/// Writes the state file atomically: temp file, fsync, rename, fsync of the directory.
fn write_checkpoint_state(dir: &Path, state: &CheckpointState) -> io::Result<()> {
    let temp = dir.join(format!("{CHECKPOINT_FILE}.tmp"));
    let mut file = File::create(&temp)?;
    file.write_all(&serde_json::to_vec(state).map_err(io::Error::other)?)?;
    file.sync_all()?;
    fs::rename(&temp, dir.join(CHECKPOINT_FILE))?;
    sync_dir(dir)
}

/// Rolls back a checkpointed group interrupted by a crash and returns the committed positions.
fn recover_checkpoint(dir: &Path) -> io::Result<Checkpoint> {
    let mut state = read_checkpoint_state(dir)?;
    if let Some(pending) = state.pending.take() {
        for (name, length) in &pending {
            let path = dir.join(name);
            match OpenOptions::new().write(true).open(&path) {
                Ok(file) => {
                    if file.metadata()?.len() > *length {
                        tracing::warn!(file = %path.display(), length, "rolling back lines written after the last checkpoint");
                        file.set_len(*length)?;
                        file.sync_all()?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        write_checkpoint_state(dir, &state)?;
    }
    Ok(state.positions)
}

/// Truncates an unterminated last line from every hour file (left by a crash mid-write).
fn repair_torn_lines(dir: &Path) -> io::Result<()> {
    for (_, path) in layout::hour_files(dir)? {
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        let length = file.metadata()?.len();
        let keep = complete_prefix(&mut file, length)?;
        if keep < length {
            tracing::warn!(
                file = %path.display(),
                removed_bytes = length - keep,
                "truncating an unterminated last line left by an interrupted write"
            );
            file.set_len(keep)?;
            file.sync_all()?;
        }
    }
    Ok(())
}

/// The length of the longest prefix of the file that ends with a newline (0 if none).
fn complete_prefix(file: &mut File, length: u64) -> io::Result<u64> {
    let mut end = length;
    let mut buf = vec![0u8; 64 * 1024];
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let window = &mut buf[..(end - start) as usize];
        file.seek(SeekFrom::Start(start))?;
        file.read_exact(window)?;
        if let Some(newline) = window.iter().rposition(|&b| b == b'\n') {
            return Ok(start + newline as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// An open hour file owned by the writer.
struct HourFile {
    file: File,
    /// Length of the file as far as the writer knows (all writes go through it).
    length: u64,
    last_write: Instant,
    /// Written since its last fsync.
    dirty: bool,
    /// Parent directories still to fsync (it, or its day, was just created); each leaves the
    /// list only once its fsync succeeded.
    new_dirs: Vec<PathBuf>,
}

/// The writer thread's state: every open hour file and the policy.
struct Writer {
    dir: PathBuf,
    options: StoreOptions,
    files: HashMap<Hour, HourFile>,
    /// Hour files a failure left in a state that is not known to be clean (a rollback or an
    /// fsync failed), with the length each must go back to when that is known. Nothing is
    /// appended anywhere until [`Writer::repair`] has made every one of them end with a complete
    /// line again on a fresh descriptor.
    damaged: BTreeMap<Hour, Option<u64>>,
    healthy: Arc<AtomicBool>,
    checkpoint: Arc<Mutex<Checkpoint>>,
    journal: Journal,
    /// The journal's length and lines to go back to, when a failed group's rollback of it failed.
    journal_damaged: Option<(u64, u64)>,
    /// A failed group's pending record is still in the state file: it must be cleared (once
    /// every rollback is done) before anything else is written, or a later crash would cut
    /// acknowledged lines.
    intent_left: bool,
    ledger: SharedLedger,
    metrics: Metrics,
    last_sync: Instant,
    /// Held for the writer's lifetime; dropping it releases the directory lock.
    _lock: File,
    done: Option<oneshot::Sender<()>>,
}

/// A file a group is writing, for rollback.
struct Touched {
    hour: Hour,
    previous_length: u64,
    /// The group wrote to it (or tried to).
    written: bool,
}

impl Writer {
    fn run(mut self, requests: mpsc::Receiver<Request>) {
        loop {
            match requests.recv_timeout(self.next_maintenance()) {
                Ok(first) => {
                    let group = Self::take_group(first, &requests);
                    self.commit(group);
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            }
            self.maintain();
        }
        self.close_all();
        let done = self.done.take();
        // Release the directory lock before telling `shutdown` we are done.
        drop(self);
        if let Some(done) = done {
            let _ = done.send(());
        }
    }

    /// The first request plus whatever is already queued behind it, up to [`MAX_GROUP_BYTES`]
    /// and [`MAX_GROUP_FILES`] distinct hour files (a request alone may exceed the latter: it
    /// then forms its own group).
    fn take_group(first: Request, requests: &mpsc::Receiver<Request>) -> Vec<Request> {
        let mut bytes = first.batch.bytes();
        let mut hours: HashSet<Hour> = first.batch.chunks.iter().map(|c| c.hour).collect();
        let mut group = vec![first];
        while bytes < MAX_GROUP_BYTES && hours.len() < MAX_GROUP_FILES {
            match requests.try_recv() {
                Ok(request) => {
                    bytes += request.batch.bytes();
                    hours.extend(request.batch.chunks.iter().map(|c| c.hour));
                    group.push(request);
                }
                Err(_) => break,
            }
        }
        group
    }

    fn next_maintenance(&self) -> Duration {
        let mut next = self.options.idle_file_timeout;
        if self.options.fsync == FsyncPolicy::Interval {
            next = next.min(self.options.fsync_interval);
        }
        if !self.damaged.is_empty() {
            next = next.min(REPAIR_INTERVAL);
        }
        next.max(Duration::from_millis(10))
    }

    fn commit(&mut self, group: Vec<Request>) {
        self.metrics.store_queue_depth.sub(group.len() as i64);
        // Requests their callers withdrew are dropped unwritten (their callers said "nothing
        // stored"); the others are ours to answer from now on.
        let group: Vec<Request> = group
            .into_iter()
            .filter(|request| {
                request
                    .claim
                    .compare_exchange(QUEUED, TAKEN, Ordering::AcqRel, Ordering::Acquire)
                    .is_ok()
            })
            .collect();
        if group.is_empty() {
            return;
        }
        let records: usize = group.iter().map(|r| r.batch.records()).sum();
        let result = if self.repair() {
            self.write_group(&group)
        } else {
            Err(StoreError::WriteFailed(
                "hour files left damaged by an earlier failure are not repaired yet".to_owned(),
            ))
        };
        // Files beyond the cap stayed open while the group needed them.
        self.enforce_open_file_cap();
        match &result {
            Ok(()) => {
                self.metrics.logs_ingested.inc_by(records as u64);
                self.metrics.store_commits.inc();
                self.metrics.store_group_batches.observe(group.len() as f64);
            }
            Err(err) => {
                self.metrics.ingest_errors.inc_by(group.len() as u64);
                tracing::error!(error = %err, batches = group.len(), records, "write group failed");
            }
        }
        for request in group {
            drop(request.hold);
            let _ = request.reply.send(result.clone());
        }
    }

    fn write_group(&mut self, group: &[Request]) -> Result<(), StoreError> {
        // Each file's chunks in arrival order: one batch's lines stay contiguous.
        let mut plan: Vec<(Hour, Vec<IoSlice<'_>>)> = Vec::new();
        let mut position: HashMap<Hour, usize> = HashMap::new();
        for request in group {
            for chunk in &request.batch.chunks {
                let at = *position.entry(chunk.hour).or_insert_with(|| {
                    plan.push((chunk.hour, Vec::new()));
                    plan.len() - 1
                });
                plan[at].1.push(IoSlice::new(&chunk.lines));
            }
        }
        let positions =
            group
                .iter()
                .filter_map(|r| r.checkpoint.as_ref())
                .fold(None, |merged, update| {
                    let mut merged: Checkpoint = merged.unwrap_or_else(|| {
                        self.checkpoint.lock().expect("checkpoint lock").clone()
                    });
                    merged.extend(update.iter().map(|(k, v)| (k.clone(), *v)));
                    Some(merged)
                });

        let updates: Vec<&Update> = group.iter().flat_map(|r| r.updates.iter()).collect();

        let mut touched = Vec::with_capacity(plan.len());
        let journal_before = (self.journal.length, self.journal.lines());
        let outcome = self.write_plan(&mut plan, positions.as_ref(), &updates, &mut touched);
        match outcome {
            Ok(()) => {
                if let Some(positions) = positions {
                    *self.checkpoint.lock().expect("checkpoint lock") = positions;
                }
                if !updates.is_empty() {
                    let keys = self.ledger.apply_all(updates);
                    self.metrics.idempotency_keys.set(keys as i64);
                }
                Ok(())
            }
            Err(err) => {
                let journal = (!updates.is_empty()).then_some(journal_before);
                Err(self.roll_back(&touched, journal, err))
            }
        }
    }

    /// Opens every file of the plan (so the rollback knows every previous length, and no file of
    /// the group is closed while it is written), writes, fsyncs per policy, and keeps the
    /// checkpoint in step. `touched` lists every file opened for the group, written or not.
    fn write_plan(
        &mut self,
        plan: &mut [(Hour, Vec<IoSlice<'_>>)],
        positions: Option<&Checkpoint>,
        updates: &[&Update],
        touched: &mut Vec<Touched>,
    ) -> io::Result<()> {
        let group: HashSet<Hour> = plan.iter().map(|(hour, _)| *hour).collect();
        for (hour, _) in plan.iter() {
            let file = self.file(*hour, &group)?;
            touched.push(Touched {
                hour: *hour,
                previous_length: file.length,
                written: false,
            });
        }
        // Positions or keys go with these lines: first the pending record.
        let intent = positions.is_some() || !updates.is_empty();
        if intent {
            let mut lengths: BTreeMap<String, u64> = touched
                .iter()
                .map(|t| (layout::hour_file(t.hour), t.previous_length))
                .collect();
            if !updates.is_empty() {
                lengths.insert(Journal::name().to_owned(), self.journal.length);
            }
            let state = CheckpointState {
                positions: self.checkpoint.lock().expect("checkpoint lock").clone(),
                pending: Some(lengths),
            };
            // From here on a failure leaves a pending record to clear.
            self.intent_left = true;
            write_checkpoint_state(&self.dir, &state)?;
        }
        for ((hour, slices), touched) in plan.iter_mut().zip(touched.iter_mut()) {
            let file = self.files.get_mut(hour).expect("opened above");
            touched.written = true;
            file.dirty = true;
            file.last_write = Instant::now();
            let written = write_all_vectored(&mut file.file, slices);
            // Count what reached the file even on error, so rollback knows what to undo.
            file.length += written.as_ref().map_or_else(|(n, _)| *n, |n| *n) as u64;
            written.map_err(|(_, e)| e)?;
        }
        if !updates.is_empty() {
            self.journal.append(updates)?;
        }
        if self.options.fsync == FsyncPolicy::Always || intent {
            let hours: Vec<Hour> = touched.iter().map(|t| t.hour).collect();
            self.sync_files(&hours)?;
        }
        if !updates.is_empty() {
            self.journal.sync()?;
        }
        if intent {
            let state = CheckpointState {
                positions: positions
                    .cloned()
                    .unwrap_or_else(|| self.checkpoint.lock().expect("checkpoint lock").clone()),
                pending: None,
            };
            write_checkpoint_state(&self.dir, &state)?;
            self.intent_left = false;
        }
        Ok(())
    }

    /// Truncates every touched file back to its length before the group, each through a fresh
    /// descriptor (after a failed fsync, the old one's next fsync could report success for data
    /// the kernel dropped), and drops the old descriptors. Returns the error to report:
    /// [`StoreError::WriteFailed`] if the rollback worked, else [`StoreError::Inconsistent`]; the
    /// files it could not roll back are damaged until [`Writer::repair`] fixes them.
    fn roll_back(
        &mut self,
        touched: &[Touched],
        journal: Option<(u64, u64)>,
        cause: io::Error,
    ) -> StoreError {
        let mut failures = Vec::new();
        if let Some((length, lines)) = journal
            && let Err(e) = self.journal.roll_back(length, lines)
        {
            tracing::error!(error = %e, "idempotency journal rollback failed; refusing writes until it is repaired");
            failures.push(format!("idempotency journal: {e}"));
            self.journal_damaged = Some((length, lines));
        }
        for t in touched.iter().filter(|t| t.written) {
            // Closed even if an fsync failure dropped it already: never reused after a failure.
            self.files.remove(&t.hour);
            let path = self.dir.join(layout::hour_file(t.hour));
            match truncate_and_sync(&path, t.previous_length) {
                Ok(()) => {
                    // Back to its length before the group, synced: whole again.
                    self.damaged.remove(&t.hour);
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "rollback failed; unacknowledged lines may remain until the file is repaired");
                    failures.push(e.to_string());
                    self.damaged.insert(t.hour, Some(t.previous_length));
                }
            }
        }
        // Only once everything is back may the pending record go: until then it is what would
        // cut the group's lines after a crash.
        if self.damaged.is_empty()
            && self.journal_damaged.is_none()
            && let Err(e) = self.clear_intent()
        {
            failures.push(format!("checkpoint state: {e}"));
        }
        if self.damaged.is_empty() && self.journal_damaged.is_none() && !self.intent_left {
            self.healthy.store(true, Ordering::Relaxed);
        }
        self.metrics.store_open_files.set(self.files.len() as i64);
        if failures.is_empty() {
            StoreError::WriteFailed(cause.to_string())
        } else {
            self.healthy.store(false, Ordering::Relaxed);
            StoreError::Inconsistent(format!("{cause}; rollback: {}", failures.join("; ")))
        }
    }

    /// Tries to repair every damaged file: back to its known length if possible, else cut to its
    /// last complete line; then fsync, all on a fresh descriptor. Returns whether the store is
    /// whole again (and sets readiness accordingly).
    fn repair(&mut self) -> bool {
        if self.damaged.is_empty() && self.journal_damaged.is_none() && !self.intent_left {
            return true;
        }
        if let Some((length, lines)) = self.journal_damaged {
            match self.journal.roll_back(length, lines) {
                Ok(()) => {
                    self.journal_damaged = None;
                    self.metrics.store_repairs.inc();
                    tracing::warn!("idempotency journal repaired after a failure");
                }
                Err(e) => {
                    tracing::error!(error = %e, "idempotency journal still cannot be repaired; refusing writes")
                }
            }
        }
        let damaged = std::mem::take(&mut self.damaged);
        for (hour, length) in damaged {
            let path = self.dir.join(layout::hour_file(hour));
            match repair_file(&path, length) {
                Ok(removed) => {
                    self.metrics.store_repairs.inc();
                    tracing::warn!(file = %path.display(), removed_bytes = removed, "hour file repaired after a failure");
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "hour file still cannot be repaired; refusing writes");
                    self.damaged.insert(hour, length);
                }
            }
        }
        if self.damaged.is_empty()
            && self.journal_damaged.is_none()
            && let Err(e) = self.clear_intent()
        {
            tracing::error!(error = %e, "a failed group's pending record cannot be cleared yet; refusing writes");
        }
        let whole = self.damaged.is_empty() && self.journal_damaged.is_none() && !self.intent_left;
        self.healthy.store(whole, Ordering::Relaxed);
        whole
    }

    /// Clears the pending record a failed group left (its rollback is done): the committed
    /// positions stay.
    fn clear_intent(&mut self) -> io::Result<()> {
        if !self.intent_left {
            return Ok(());
        }
        let state = CheckpointState {
            positions: self.checkpoint.lock().expect("checkpoint lock").clone(),
            pending: None,
        };
        write_checkpoint_state(&self.dir, &state)?;
        self.intent_left = false;
        Ok(())
    }

    /// Forgets expired keys, and rewrites the journal once it is mostly about them.
    fn tend_keys(&mut self) {
        let live = self.ledger.expire(now_ms());
        self.metrics.idempotency_keys.set(live as i64);
        if !self.journal.wants_compaction(live)
            || self.intent_left
            || self.journal_damaged.is_some()
        {
            return;
        }
        if let Err(e) = self.journal.compact(&self.ledger.updates()) {
            tracing::error!(error = %e, live, "idempotency journal compaction failed; it stays as it is");
        }
    }

    /// The open hour file for `hour`, opening or creating it (and its day directory) if needed.
    /// Beyond [`MAX_OPEN_FILES`] the least recently written file that `group` does not need is
    /// closed first; the group's own files are never closed before its outcome is known.
    fn file(&mut self, hour: Hour, group: &HashSet<Hour>) -> io::Result<&mut HourFile> {
        if !self.files.contains_key(&hour) {
            if self.files.len() >= MAX_OPEN_FILES
                && let Some(idle) = self.least_recent(|h| !group.contains(h))
            {
                self.close(idle);
            }
            let opened = self.open_file(hour)?;
            self.files.insert(hour, opened);
            self.metrics.store_open_files.set(self.files.len() as i64);
        }
        Ok(self.files.get_mut(&hour).expect("inserted above"))
    }

    fn open_file(&self, hour: Hour) -> io::Result<HourFile> {
        let path = self.dir.join(layout::hour_file(hour));
        let mut new_dirs = Vec::new();
        let file = match OpenOptions::new().append(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let day = self.dir.join(layout::day_dir(hour));
                match fs::create_dir(&day) {
                    Ok(()) => new_dirs.push(self.dir.clone()),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                new_dirs.push(day);
                OpenOptions::new().append(true).create(true).open(&path)?
            }
            Err(e) => return Err(e),
        };
        let length = file.metadata()?.len();
        Ok(HourFile {
            file,
            length,
            last_write: Instant::now(),
            dirty: false,
            new_dirs,
        })
    }

    /// fsyncs the data of `hours` that are dirty, several at a time when there are many (a batch
    /// spanning many hours would otherwise hold the writer for one fsync per file in a row), then
    /// their new directories. A file whose fsync fails is dropped (never fsynced again on the
    /// same descriptor) and the error returned.
    fn sync_files(&mut self, hours: &[Hour]) -> io::Result<()> {
        let dirty: Vec<(Hour, &File)> = hours
            .iter()
            .filter_map(|hour| Some((*hour, self.files.get(hour)?)))
            .filter(|(_, open)| open.dirty)
            .map(|(hour, open)| (hour, &open.file))
            .collect();
        let results: Vec<(Hour, io::Result<()>)> = if dirty.len() < PARALLEL_SYNC_FROM {
            dirty
                .iter()
                .map(|(hour, file)| (*hour, file.sync_data()))
                .collect()
        } else {
            let per_thread = dirty.len().div_ceil(SYNC_THREADS);
            std::thread::scope(|scope| {
                let workers: Vec<_> = dirty
                    .chunks(per_thread)
                    .map(|files| {
                        scope.spawn(move || {
                            files
                                .iter()
                                .map(|(hour, file)| (*hour, file.sync_data()))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|worker| worker.join().expect("an fsync thread does not panic"))
                    .collect()
            })
        };
        let mut failure = None;
        for (hour, result) in results {
            match result {
                Ok(()) => {
                    self.metrics.store_fsyncs.inc();
                    if let Some(open) = self.files.get_mut(&hour) {
                        open.dirty = false;
                    }
                }
                Err(e) => {
                    self.fsync_failed(hour, &e);
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        for hour in hours {
            self.sync_new_dirs(*hour)?;
        }
        Ok(())
    }

    /// fsyncs the directories created for `hour`'s file; each leaves the list only once synced.
    fn sync_new_dirs(&mut self, hour: Hour) -> io::Result<()> {
        let Some(open) = self.files.get_mut(&hour) else {
            return Ok(());
        };
        while let Some(dir) = open.new_dirs.last() {
            sync_dir(dir)?;
            open.new_dirs.pop();
        }
        Ok(())
    }

    /// A failed fsync: the data written since the last good one may be gone, and the descriptor
    /// must not be fsynced again (Linux reports the error once; a retry "succeeds"). The file is
    /// dropped and marked damaged, which makes the store refuse writes until it is repaired.
    fn fsync_failed(&mut self, hour: Hour, error: &io::Error) {
        tracing::error!(file = %layout::hour_file(hour), %error, "fsync failed; data written since the last fsync may be lost");
        self.metrics.store_fsync_errors.inc();
        self.files.remove(&hour);
        self.metrics.store_open_files.set(self.files.len() as i64);
        self.damaged.entry(hour).or_insert(None);
        self.healthy.store(false, Ordering::Relaxed);
    }

    /// fsyncs every dirty file (the `interval` policy, idle close, shutdown). Failures are
    /// handled by [`Writer::fsync_failed`].
    fn sync_all_dirty(&mut self) {
        let hours: Vec<Hour> = self.files.keys().copied().collect();
        if let Err(e) = self.sync_files(&hours) {
            tracing::error!(error = %e, "periodic fsync failed");
        }
        self.last_sync = Instant::now();
    }

    /// Periodic work between groups: repairs, the interval fsync, closing idle files.
    fn maintain(&mut self) {
        self.repair();
        self.tend_keys();
        if self.options.fsync == FsyncPolicy::Interval
            && self.last_sync.elapsed() >= self.options.fsync_interval
        {
            self.sync_all_dirty();
        }
        let idle: Vec<Hour> = self
            .files
            .iter()
            .filter(|(_, f)| f.last_write.elapsed() >= self.options.idle_file_timeout)
            .map(|(hour, _)| *hour)
            .collect();
        for hour in idle {
            self.close(hour);
        }
    }

    /// The least recently written open file that `eligible` allows.
    fn least_recent(&self, eligible: impl Fn(&Hour) -> bool) -> Option<Hour> {
        self.files
            .iter()
            .filter(|(hour, _)| eligible(hour))
            .min_by_key(|(_, f)| f.last_write)
            .map(|(h, _)| *h)
    }

    /// Closes the least recently written files beyond [`MAX_OPEN_FILES`].
    fn enforce_open_file_cap(&mut self) {
        while self.files.len() > MAX_OPEN_FILES {
            match self.least_recent(|_| true) {
                Some(hour) => self.close(hour),
                None => break,
            }
        }
    }

    /// Syncs (if dirty) and closes a file.
    fn close(&mut self, hour: Hour) {
        if let Err(e) = self.sync_files(&[hour]) {
            tracing::error!(file = %layout::hour_file(hour), error = %e, "fsync before close failed");
        }
        self.files.remove(&hour);
        self.metrics.store_open_files.set(self.files.len() as i64);
    }

    fn close_all(&mut self) {
        self.sync_all_dirty();
        self.files.clear();
        self.metrics.store_open_files.set(0);
    }
}

/// Truncates `path` to `length` and fsyncs it, through a descriptor of its own, opened without
/// ever blocking (a special file in place of an hour file must not hang the writer).
fn truncate_and_sync(path: &Path, length: u64) -> io::Result<()> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)?;
    if file.metadata()?.len() > length {
        file.set_len(length)?;
    }
    file.sync_all()
}

/// Repairs a damaged hour file on fresh descriptors: back to `length` if that is known and
/// possible, else (e.g. the file is append-only) at least cut to its last complete line, since a
/// torn tail must go before anything is appended; then fsync. Returns how many bytes were removed.
fn repair_file(path: &Path, length: Option<u64>) -> io::Result<u64> {
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    let current = file.metadata()?.len();
    if let Some(length) = length.filter(|length| *length < current)
        && truncate_and_sync(path, length).is_ok()
    {
        return Ok(current - length);
    }
    let keep = complete_prefix(&mut file, current)?;
    if keep < current {
        truncate_and_sync(path, keep)?;
    } else {
        // fsync needs no write access: the file is whole, make that durable.
        file.sync_all()?;
    }
    Ok(current - keep)
}

/// Writes every slice in order. On failure returns how many bytes did reach the file.
fn write_all_vectored(
    file: &mut File,
    slices: &mut [IoSlice<'_>],
) -> Result<usize, (usize, io::Error)> {
    let mut remaining = slices;
    let mut written = 0;
    while !remaining.is_empty() {
        match file.write_vectored(remaining) {
            Ok(0) => return Err((written, io::ErrorKind::WriteZero.into())),
            Ok(n) => {
                written += n;
                IoSlice::advance_slices(&mut remaining, n);
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err((written, e)),
        }
    }
    Ok(written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::{Claim, Fingerprint, Key, KeyIndex};
    use crate::layout::KEYS_JOURNAL;
    use chrono::{DateTime, Utc};

    fn options(dir: &Path) -> StoreOptions {
        StoreOptions {
            logs_dir: dir.to_owned(),
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_secs(1),
            max_pending_bytes: 1 << 20,
            idle_file_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            keys: Retention {
                retention: Duration::from_secs(3600),
                max_keys: 1000,
            },
        }
    }

    fn batch(records: &[(&str, &str)]) -> EncodedBatch {
        let mut batch = EncodedBatch::default();
        for (ts, path) in records {
            let ts: DateTime<Utc> = DateTime::parse_from_rfc3339(ts).unwrap().into();
            batch.push(&ts, path, "test-agent");
        }
        batch
    }

    fn read(dir: &Path, name: &str) -> String {
        fs::read_to_string(dir.join(name)).unwrap_or_default()
    }

    fn paths(text: &str) -> Vec<String> {
        text.lines()
            .map(|l| {
                serde_json::from_str::<serde_json::Value>(l).unwrap()["path"]
                    .as_str()
                    .unwrap()
                    .to_owned()
            })
            .collect()
    }

    #[tokio::test]
    async fn batches_land_in_their_event_hour_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(options(dir.path()), Metrics::new()).unwrap();
        store
            .append(batch(&[
                ("2025-11-22T14:10:00Z", "/a"),
                ("2025-11-22T15:00:00Z", "/b"),
                ("2025-11-22T14:20:00+00:00", "/c"),
            ]))
            .await
            .unwrap();
        store
            .append(batch(&[("2025-11-22T14:30:00Z", "/d")]))
            .await
            .unwrap();
        store.shutdown().await;
        assert_eq!(
            paths(&read(dir.path(), "2025-11-22/14.log.json")),
            ["/a", "/c", "/d"]
        );
        assert_eq!(paths(&read(dir.path(), "2025-11-22/15.log.json")), ["/b"]);
    }

    #[tokio::test]
    async fn queued_batches_are_committed_as_one_group_and_stay_contiguous() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let (store, writer, requests) =
            Store::prepare(options(dir.path()), metrics.clone()).unwrap();
        let mut tasks = Vec::new();
        for i in 0..20 {
            let store = store.clone();
            let paths: Vec<String> = (0..5).map(|j| format!("/b{i}/r{j}")).collect();
            tasks.push(tokio::spawn(async move {
                let records: Vec<(&str, &str)> = paths
                    .iter()
                    .map(|p| ("2025-11-22T14:00:00Z", p.as_str()))
                    .collect();
                store.append(batch(&records)).await
            }));
        }
        // The writer is not running yet: wait until all 20 requests are queued, then start it.
        while metrics.store_queue_depth.get() < 20 {
            tokio::task::yield_now().await;
        }
        store.start(writer, requests);
        for task in tasks {
            task.await.unwrap().unwrap();
        }
        assert_eq!(
            metrics.store_commits.get(),
            1,
            "20 queued batches must share one write and fsync"
        );
        assert_eq!(metrics.logs_ingested.get(), 100);
        assert_eq!(metrics.store_queue_depth.get(), 0);
        let stored = paths(&read(dir.path(), "2025-11-22/14.log.json"));
        assert_eq!(stored.len(), 100);
        for chunk in stored.chunks(5) {
            let prefix = chunk[0].split("/r").next().unwrap();
            assert!(
                chunk.iter().all(|p| p.starts_with(&format!("{prefix}/r"))),
                "batch split: {chunk:?}"
            );
        }
        store.shutdown().await;
    }

    #[tokio::test]
    async fn failed_group_is_rolled_back_in_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let store = Store::open(options(dir.path()), metrics.clone()).unwrap();
        store
            .append(batch(&[
                ("2025-11-22T14:00:00Z", "/before-14"),
                ("2025-11-22T15:00:00Z", "/before-15"),
            ]))
            .await
            .unwrap();
        // Hour 16 cannot be opened: a directory stands where its file would be. Hours 14 and 15
        // come first in the batch, so both are written before the group fails.
        fs::create_dir_all(dir.path().join("2025-11-22/16.log.json")).unwrap();
        let err = store
            .append(batch(&[
                ("2025-11-22T14:05:00Z", "/x"),
                ("2025-11-22T15:05:00Z", "/y"),
                ("2025-11-22T16:05:00Z", "/z"),
            ]))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::WriteFailed(_)), "{err:?}");
        assert_eq!(
            paths(&read(dir.path(), "2025-11-22/14.log.json")),
            ["/before-14"]
        );
        assert_eq!(
            paths(&read(dir.path(), "2025-11-22/15.log.json")),
            ["/before-15"]
        );
        assert_eq!(metrics.ingest_errors.get(), 1);
        assert_eq!(metrics.logs_ingested.get(), 2);
        assert_eq!(store.readiness(), Ok(()));
        // The store keeps working, appending right after the rolled-back points.
        store
            .append(batch(&[
                ("2025-11-22T14:06:00Z", "/after-14"),
                ("2025-11-22T15:06:00Z", "/after-15"),
            ]))
            .await
            .unwrap();
        assert_eq!(
            paths(&read(dir.path(), "2025-11-22/14.log.json")),
            ["/before-14", "/after-14"]
        );
        assert_eq!(
            paths(&read(dir.path(), "2025-11-22/15.log.json")),
            ["/before-15", "/after-15"]
        );
        store.shutdown().await;
    }

    #[tokio::test]
    async fn a_group_over_more_hours_than_open_files_is_rolled_back_in_every_file() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let mut opts = options(dir.path());
        opts.max_pending_bytes = 64 << 20;
        let store = Store::open(opts, metrics.clone()).unwrap();
        // 73 hours from 2025-01-01T00:00Z, one record each; the 73rd cannot be opened.
        let stamps: Vec<String> = (0..73)
            .map(|h| format!("2025-01-{:02}T{:02}:00:00Z", 1 + h / 24, h % 24))
            .collect();
        fs::create_dir_all(dir.path().join("2025-01-04/00.log.json")).unwrap();
        let records: Vec<(&str, &str)> = stamps.iter().map(|ts| (ts.as_str(), "/x")).collect();
        let err = store.append(batch(&records)).await.unwrap_err();
        assert!(matches!(err, StoreError::WriteFailed(_)), "{err:?}");
        let lines: usize = layout::hour_files(dir.path())
            .unwrap()
            .iter()
            .map(|(_, path)| fs::read_to_string(path).unwrap().lines().count())
            .sum();
        assert_eq!(lines, 0, "nothing of the refused batch stays on disk");
        assert!(metrics.store_open_files.get() <= MAX_OPEN_FILES as i64);
        assert_eq!(store.readiness(), Ok(()));
        store.shutdown().await;
    }

    #[test]
    fn repair_cuts_a_torn_tail_or_goes_back_to_the_known_length() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        fs::write(&path, "one\ntwo\nthr").unwrap();
        assert_eq!(repair_file(&path, None).unwrap(), 3);
        assert_eq!(fs::read_to_string(&path).unwrap(), "one\ntwo\n");
        assert_eq!(repair_file(&path, Some(4)).unwrap(), 4);
        assert_eq!(fs::read_to_string(&path).unwrap(), "one\n");
        assert_eq!(repair_file(&path, None).unwrap(), 0, "a whole file stays");
        assert_eq!(repair_file(&dir.path().join("missing"), None).unwrap(), 0);
    }

    #[tokio::test]
    async fn torn_last_line_is_truncated_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let complete = String::from_utf8(
            batch(&[("2025-11-22T14:00:00Z", "/ok")]).chunks[0]
                .lines
                .clone(),
        )
        .unwrap();
        fs::create_dir_all(dir.path().join("2025-11-22")).unwrap();
        fs::write(
            dir.path().join("2025-11-22/14.log.json"),
            format!("{complete}{{\"timestamp\":\"2025-11"),
        )
        .unwrap();
        fs::write(
            dir.path().join("2025-11-22/15.log.json"),
            "no newline at all",
        )
        .unwrap();
        fs::write(dir.path().join("2025-11-22/16.log.json"), &complete).unwrap();
        let store = Store::open(options(dir.path()), Metrics::new()).unwrap();
        assert_eq!(read(dir.path(), "2025-11-22/14.log.json"), complete);
        assert_eq!(read(dir.path(), "2025-11-22/15.log.json"), "");
        assert_eq!(read(dir.path(), "2025-11-22/16.log.json"), complete);
        store
            .append(batch(&[("2025-11-22T14:00:00Z", "/next")]))
            .await
            .unwrap();
        assert_eq!(
            paths(&read(dir.path(), "2025-11-22/14.log.json")),
            ["/ok", "/next"]
        );
        store.shutdown().await;
    }

    #[test]
    fn complete_prefix_scans_back_across_windows() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("f");
        let mut content = b"first\n".to_vec();
        content.extend(std::iter::repeat_n(b'x', 200 * 1024));
        fs::write(&path, &content).unwrap();
        let mut file = File::open(&path).unwrap();
        assert_eq!(complete_prefix(&mut file, content.len() as u64).unwrap(), 6);
    }

    #[tokio::test]
    async fn second_open_of_the_same_directory_is_refused_until_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(options(dir.path()), Metrics::new()).unwrap();
        let Err(err) = Store::open(options(dir.path()), Metrics::new()) else {
            panic!("second open succeeded")
        };
        let message = err.to_string();
        assert!(matches!(err, StoreError::Locked { .. }));
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        store.shutdown().await;
        let again = Store::open(options(dir.path()), Metrics::new()).unwrap();
        again.shutdown().await;
    }

    #[tokio::test]
    async fn pending_work_is_bounded_in_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        let mut opts = options(dir.path());
        let one = batch(&[("2025-11-22T14:00:00Z", "/a")]);
        opts.max_pending_bytes = one.bytes() * 2;
        let (store, writer, requests) = Store::prepare(opts, metrics.clone()).unwrap();
        let first = tokio::spawn({
            let (store, one) = (store.clone(), one.clone());
            async move { store.append(one).await }
        });
        let second = tokio::spawn({
            let (store, one) = (store.clone(), one.clone());
            async move { store.append(one).await }
        });
        while metrics.store_queue_depth.get() < 2 {
            tokio::task::yield_now().await;
        }
        assert!(matches!(
            store.append(one.clone()).await,
            Err(StoreError::Overloaded)
        ));
        store.start(writer, requests);
        first.await.unwrap().unwrap();
        second.await.unwrap().unwrap();
        store.append(one).await.unwrap();
        store.shutdown().await;
        assert_eq!(paths(&read(dir.path(), "2025-11-22/14.log.json")).len(), 3);
    }

    #[tokio::test]
    async fn checkpoint_is_stored_with_the_data_and_recovered() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(options(dir.path()), Metrics::new()).unwrap();
        assert!(store.checkpoint().is_empty());
        let positions = Checkpoint::from([("logs/0".to_owned(), 10), ("logs/1".to_owned(), 4)]);
        store
            .append_with_checkpoint(
                batch(&[("2025-11-22T14:00:00Z", "/a")]),
                positions,
                Vec::new(),
            )
            .await
            .unwrap();
        store
            .append_with_checkpoint(
                batch(&[("2025-11-22T14:00:00Z", "/b")]),
                Checkpoint::from([("logs/0".to_owned(), 11)]),
                Vec::new(),
            )
            .await
            .unwrap();
        store.shutdown().await;
        let reopened = Store::open(options(dir.path()), Metrics::new()).unwrap();
        assert_eq!(
            reopened.checkpoint(),
            Checkpoint::from([("logs/0".to_owned(), 11), ("logs/1".to_owned(), 4)])
        );
        reopened.shutdown().await;
    }

    #[tokio::test]
    async fn crash_between_data_and_checkpoint_rolls_the_data_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(options(dir.path()), Metrics::new()).unwrap();
        store
            .append_with_checkpoint(
                batch(&[("2025-11-22T14:00:00Z", "/kept")]),
                Checkpoint::from([("logs/0".to_owned(), 1)]),
                Vec::new(),
            )
            .await
            .unwrap();
        store.shutdown().await;
        let hour14 = read(dir.path(), "2025-11-22/14.log.json");
        // Simulate a crash after the data of the next group was written but before its
        // checkpoint: the pending record names the lengths before the group.
        let state = CheckpointState {
            positions: Checkpoint::from([("logs/0".to_owned(), 1)]),
            pending: Some(BTreeMap::from([
                ("2025-11-22/14.log.json".to_owned(), hour14.len() as u64),
                ("2025-11-22/15.log.json".to_owned(), 0),
            ])),
        };
        write_checkpoint_state(dir.path(), &state).unwrap();
        let unacknowledged = batch(&[
            ("2025-11-22T14:00:00Z", "/dup"),
            ("2025-11-22T15:00:00Z", "/dup"),
        ]);
        for chunk in &unacknowledged.chunks {
            let mut file = OpenOptions::new()
                .append(true)
                .create(true)
                .open(dir.path().join(layout::hour_file(chunk.hour)))
                .unwrap();
            file.write_all(&chunk.lines).unwrap();
        }
        let reopened = Store::open(options(dir.path()), Metrics::new()).unwrap();
        assert_eq!(
            reopened.checkpoint(),
            Checkpoint::from([("logs/0".to_owned(), 1)])
        );
        assert_eq!(
            paths(&read(dir.path(), "2025-11-22/14.log.json")),
            ["/kept"]
        );
        assert_eq!(read(dir.path(), "2025-11-22/15.log.json"), "");
        reopened.shutdown().await;
        assert!(read_checkpoint_state(dir.path()).unwrap().pending.is_none());
    }

    fn keyed(key: &str, batch: &EncodedBatch) -> (Update, Key) {
        let key = Key::parse(key.as_bytes()).unwrap();
        let update = Update::whole(
            key,
            Fingerprint::of(batch),
            batch.records() as u32,
            now_ms(),
        );
        (update, key)
    }

    fn claim(index: &Arc<KeyIndex>, key: Key) -> ClaimGuard {
        match index.claim(key, Fingerprint(0), now_ms()) {
            Claim::Fresh(guard) => guard,
            other => panic!("{other:?}"),
        }
    }

    #[tokio::test]
    async fn a_keyed_batch_and_its_key_are_stored_together_and_read_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(options(dir.path()), Metrics::new()).unwrap();
        let index = KeyIndex::new(store.ledger().clone());
        let one = batch(&[
            ("2025-11-22T14:00:00Z", "/a"),
            ("2025-11-22T15:00:00Z", "/b"),
        ]);
        let (update, key) = keyed("k1", &one);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let hold = claim(&index, key);
        store
            .append_keyed_by(one.clone(), update, hold, deadline)
            .await
            .unwrap();
        // The key left flight once the outcome was decided, and the ledger has it.
        assert!(matches!(
            index.claim(key, Fingerprint::of(&one), now_ms()),
            Claim::Replay { records: 2 }
        ));
        store.shutdown().await;
        let reopened = Store::open(options(dir.path()), Metrics::new()).unwrap();
        // Read back whole: the same batch replays, every record of it is held.
        assert!(matches!(
            KeyIndex::new(reopened.ledger().clone()).claim(key, Fingerprint::of(&one), now_ms()),
            Claim::Replay { records: 2 }
        ));
        for index in 0..2 {
            assert!(
                reopened
                    .ledger()
                    .holds_record(key, Fingerprint::of(&one), index)
            );
        }
        reopened.shutdown().await;
    }

    #[tokio::test]
    async fn a_failed_keyed_group_rolls_back_its_key_and_clears_its_pending_record() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(options(dir.path()), Metrics::new()).unwrap();
        let index = KeyIndex::new(store.ledger().clone());
        fs::create_dir_all(dir.path().join("2025-11-22/16.log.json")).unwrap();
        let failing = batch(&[
            ("2025-11-22T14:00:00Z", "/x"),
            ("2025-11-22T16:00:00Z", "/z"),
        ]);
        let (update, key) = keyed("k", &failing);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let err = store
            .append_keyed_by(failing.clone(), update, claim(&index, key), deadline)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::WriteFailed(_)), "{err:?}");
        assert_eq!(read(dir.path(), "2025-11-22/14.log.json"), "");
        assert_eq!(read(dir.path(), KEYS_JOURNAL), "");
        assert!(read_checkpoint_state(dir.path()).unwrap().pending.is_none());
        assert!(store.ledger().is_empty(), "the key is not held");
        // A plain batch afterwards is stored and survives a restart (no stale pending record
        // cuts it).
        store
            .append(batch(&[("2025-11-22T14:00:00Z", "/plain")]))
            .await
            .unwrap();
        store.shutdown().await;
        let reopened = Store::open(options(dir.path()), Metrics::new()).unwrap();
        assert_eq!(
            paths(&read(dir.path(), "2025-11-22/14.log.json")),
            ["/plain"]
        );
        // The key is new again.
        assert!(matches!(
            KeyIndex::new(reopened.ledger().clone()).claim(
                key,
                Fingerprint::of(&failing),
                now_ms()
            ),
            Claim::Fresh(_)
        ));
        reopened.shutdown().await;
    }

    #[tokio::test]
    async fn a_crash_inside_a_keyed_group_loses_the_lines_and_the_key_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(options(dir.path()), Metrics::new()).unwrap();
        let index = KeyIndex::new(store.ledger().clone());
        let kept = batch(&[("2025-11-22T14:00:00Z", "/kept")]);
        let (update, key) = keyed("kept", &kept);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        store
            .append_keyed_by(kept.clone(), update, claim(&index, key), deadline)
            .await
            .unwrap();
        store.shutdown().await;
        let hour14 = read(dir.path(), "2025-11-22/14.log.json").len() as u64;
        let journal = read(dir.path(), KEYS_JOURNAL).len() as u64;
        // A crash after the next keyed group wrote its lines and its key, before it completed:
        // its pending record names the lengths before it.
        let lost = batch(&[("2025-11-22T14:00:00Z", "/lost")]);
        let (lost_update, lost_key) = keyed("lost", &lost);
        let state = CheckpointState {
            positions: Checkpoint::new(),
            pending: Some(BTreeMap::from([
                ("2025-11-22/14.log.json".to_owned(), hour14),
                (KEYS_JOURNAL.to_owned(), journal),
            ])),
        };
        write_checkpoint_state(dir.path(), &state).unwrap();
        let append = |name: &str, bytes: &[u8]| {
            let mut file = OpenOptions::new()
                .append(true)
                .open(dir.path().join(name))
                .unwrap();
            file.write_all(bytes).unwrap();
        };
        append("2025-11-22/14.log.json", &lost.chunks[0].lines);
        let mut line = serde_json::to_vec(&lost_update).unwrap();
        line.push(b'\n');
        append(KEYS_JOURNAL, &line);

        let reopened = Store::open(options(dir.path()), Metrics::new()).unwrap();
        assert_eq!(
            paths(&read(dir.path(), "2025-11-22/14.log.json")),
            ["/kept"]
        );
        let ledger = reopened.ledger();
        assert!(ledger.holds_record(key, Fingerprint::of(&kept), 0));
        assert!(!ledger.holds_record(lost_key, Fingerprint::of(&lost), 0));
        assert_eq!(ledger.len(), 1, "only the kept key is held");
        reopened.shutdown().await;
    }

    #[tokio::test]
    async fn interval_and_never_policies_store_the_same_lines() {
        for policy in [FsyncPolicy::Interval, FsyncPolicy::Never] {
            let dir = tempfile::tempdir().unwrap();
            let mut opts = options(dir.path());
            opts.fsync = policy;
            opts.fsync_interval = Duration::from_millis(10);
            let store = Store::open(opts, Metrics::new()).unwrap();
            store
                .append(batch(&[("2025-11-22T14:00:00Z", "/a")]))
                .await
                .unwrap();
            store.shutdown().await;
            assert_eq!(
                paths(&read(dir.path(), "2025-11-22/14.log.json")),
                ["/a"],
                "{policy:?}"
            );
        }
    }

    #[tokio::test]
    async fn appends_after_shutdown_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(options(dir.path()), Metrics::new()).unwrap();
        store.shutdown().await;
        assert!(store.readiness().is_err());
        let err = store
            .append(batch(&[("2025-11-22T14:00:00Z", "/a")]))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Closed));
    }
}
