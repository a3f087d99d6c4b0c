//! The writer thread: the one owner of the hour files (through [`HourFiles`]), of the
//! idempotency journal and of the checkpoint state file while the store runs. It takes write groups off the queue, writes and
//! fsyncs each all-or-nothing (rolling every touched file back on a failure, and refusing writes
//! until damaged files are repaired), applies a group's positions and keys once it is durable,
//! and between groups does the periodic work: the `interval` fsync, closing idle files, expiring
//! keys and compacting the journal. How and why is in the store's docs.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{self, IoSlice};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant};

use tokio::sync::{OwnedSemaphorePermit, oneshot};

use super::checkpoint::{CheckpointState, write_checkpoint_state};
use super::disk::write_all_vectored;
use super::hour_files::{HourFiles, Touched};
use super::journal::Journal;
use super::{Checkpoint, MAX_OPEN_FILES, StoreError, StoreOptions};
use crate::config::FsyncPolicy;
use crate::idempotency::{ClaimGuard, SharedLedger, Update, now_ms};
use crate::layout;
use crate::metrics::Metrics;
use crate::record::{EncodedBatch, SiteHour};

/// A write group stops taking queued requests once it holds this many bytes.
const MAX_GROUP_BYTES: usize = 32 << 20;
/// A write group stops taking queued requests once they touch this many distinct hour files.
const MAX_GROUP_FILES: usize = MAX_OPEN_FILES;
/// How often damaged files are retried while the store refuses writes.
const REPAIR_INTERVAL: Duration = Duration::from_millis(500);

/// A request's claim: waiting for the writer...
pub(super) const QUEUED: u8 = 0;
/// ... taken by the writer: it will be written or rolled back, and answered...
pub(super) const TAKEN: u8 = 1;
/// ... or withdrawn by its caller before that: never written.
pub(super) const WITHDRAWN: u8 = 2;

/// What goes with a batch besides its lines.
#[derive(Default)]
pub(super) struct Extras {
    /// Positions to store with the lines.
    pub(super) checkpoint: Option<Checkpoint>,
    /// Ledger updates to store with the lines.
    pub(super) updates: Vec<Update>,
    /// The key in flight, let go just before the answer (after the ledger has the outcome), so
    /// that a client's next request with it, sent as soon as it has the answer, finds it done.
    pub(super) hold: Option<ClaimGuard>,
}

/// A batch handed to the writer, and how to answer it.
pub(super) struct Request {
    pub(super) batch: EncodedBatch,
    pub(super) extras: Extras,
    pub(super) reply: oneshot::Sender<Result<(), StoreError>>,
    /// [`QUEUED`] until either the writer takes the request ([`TAKEN`]) or its caller withdraws
    /// it ([`WITHDRAWN`]); whichever comes first decides.
    pub(super) claim: Arc<AtomicU8>,
    /// Released when the request is dropped, after the writer answered.
    pub(super) _permit: OwnedSemaphorePermit,
}

/// What the writer shares with the store's handles.
#[derive(Clone)]
pub(super) struct Shared {
    /// No failure is left unrepaired: the store can take writes.
    pub(super) healthy: Arc<AtomicBool>,
    /// The positions of the last committed checkpointed group.
    pub(super) checkpoint: Arc<Mutex<Checkpoint>>,
    /// Keyed batches stored, applied once each group is durable.
    pub(super) ledger: SharedLedger,
}

/// The writer thread's state: the hour files, the journal, the checkpoint and the policy.
pub(super) struct Writer {
    dir: PathBuf,
    options: StoreOptions,
    files: HourFiles,
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

impl Writer {
    pub(super) fn new(
        options: StoreOptions,
        lock: File,
        journal: Journal,
        shared: Shared,
        metrics: Metrics,
        done: oneshot::Sender<()>,
    ) -> Writer {
        Writer {
            dir: options.logs_dir.clone(),
            files: HourFiles::new(
                options.logs_dir.clone(),
                shared.healthy.clone(),
                metrics.clone(),
            ),
            options,
            healthy: shared.healthy,
            checkpoint: shared.checkpoint,
            journal,
            journal_damaged: None,
            intent_left: false,
            ledger: shared.ledger,
            metrics,
            last_sync: Instant::now(),
            _lock: lock,
            done: Some(done),
        }
    }

    /// Takes write groups from `requests` until every sender is gone, then syncs and closes every
    /// file and releases the directory lock.
    pub(super) fn run(mut self, requests: mpsc::Receiver<Request>) {
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
        self.files.close_all();
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
        let mut hours: HashSet<SiteHour> =
            first.batch.chunks.iter().map(|c| c.site_hour()).collect();
        let mut group = vec![first];
        while bytes < MAX_GROUP_BYTES && hours.len() < MAX_GROUP_FILES {
            match requests.try_recv() {
                Ok(request) => {
                    bytes += request.batch.bytes();
                    hours.extend(request.batch.chunks.iter().map(|c| c.site_hour()));
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
        if !self.files.whole() {
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
        self.files.enforce_cap();
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
            drop(request.extras.hold);
            let _ = request.reply.send(result.clone());
        }
    }

    fn write_group(&mut self, group: &[Request]) -> Result<(), StoreError> {
        // Each file's chunks in arrival order: one batch's lines stay contiguous.
        let mut plan: Vec<(SiteHour, Vec<IoSlice<'_>>)> = Vec::new();
        let mut position: HashMap<SiteHour, usize> = HashMap::new();
        for request in group {
            for chunk in &request.batch.chunks {
                let at = *position.entry(chunk.site_hour()).or_insert_with(|| {
                    plan.push((chunk.site_hour(), Vec::new()));
                    plan.len() - 1
                });
                plan[at].1.push(IoSlice::new(&chunk.lines));
            }
        }
        let positions = group
            .iter()
            .filter_map(|r| r.extras.checkpoint.as_ref())
            .fold(None, |merged, update| {
                let mut merged: Checkpoint = merged
                    .unwrap_or_else(|| self.checkpoint.lock().expect("checkpoint lock").clone());
                merged.extend(update.iter().map(|(k, v)| (k.clone(), *v)));
                Some(merged)
            });

        let updates: Vec<&Update> = group.iter().flat_map(|r| r.extras.updates.iter()).collect();

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
        plan: &mut [(SiteHour, Vec<IoSlice<'_>>)],
        positions: Option<&Checkpoint>,
        updates: &[&Update],
        touched: &mut Vec<Touched>,
    ) -> io::Result<()> {
        let group: HashSet<SiteHour> = plan.iter().map(|(hour, _)| hour.clone()).collect();
        for (hour, _) in plan.iter() {
            let file = self.files.open(hour, &group)?;
            touched.push(Touched {
                file: hour.clone(),
                previous_length: file.length,
                written: false,
            });
        }
        // Positions or keys go with these lines: first the pending record.
        let intent = positions.is_some() || !updates.is_empty();
        if intent {
            let mut lengths: BTreeMap<String, u64> = touched
                .iter()
                .map(|t| (layout::site_hour_file(&t.file), t.previous_length))
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
            let file = self.files.opened(hour);
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
            let hours: Vec<SiteHour> = touched.iter().map(|t| t.file.clone()).collect();
            self.files.sync(&hours)?;
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

    /// Rolls the journal (if the group wrote to it) and every touched file back to their lengths
    /// before the group ([`HourFiles::roll_back`]), then clears the group's pending record.
    /// Returns the error to report: [`StoreError::WriteFailed`] if the rollback worked, else
    /// [`StoreError::Inconsistent`]; what it could not roll back is damaged until
    /// [`Writer::repair`] fixes it.
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
        failures.extend(self.files.roll_back(touched));
        // Only once everything is back may the pending record go: until then it is what would
        // cut the group's lines after a crash.
        if self.files.whole()
            && self.journal_damaged.is_none()
            && let Err(e) = self.clear_intent()
        {
            failures.push(format!("checkpoint state: {e}"));
        }
        if self.files.whole() && self.journal_damaged.is_none() && !self.intent_left {
            self.healthy.store(true, Ordering::Relaxed);
        }
        if failures.is_empty() {
            StoreError::WriteFailed(cause.to_string())
        } else {
            self.healthy.store(false, Ordering::Relaxed);
            StoreError::Inconsistent(format!("{cause}; rollback: {}", failures.join("; ")))
        }
    }

    /// Tries to repair the journal and every damaged hour file ([`HourFiles::repair`]), then to
    /// clear a failed group's pending record. Returns whether the store is whole again (and sets
    /// readiness accordingly).
    fn repair(&mut self) -> bool {
        if self.files.whole() && self.journal_damaged.is_none() && !self.intent_left {
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
        self.files.repair();
        if self.files.whole()
            && self.journal_damaged.is_none()
            && let Err(e) = self.clear_intent()
        {
            tracing::error!(error = %e, "a failed group's pending record cannot be cleared yet; refusing writes");
        }
        let whole = self.files.whole() && self.journal_damaged.is_none() && !self.intent_left;
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

    /// Periodic work between groups: repairs, the interval fsync, closing idle files.
    fn maintain(&mut self) {
        self.repair();
        self.tend_keys();
        if self.options.fsync == FsyncPolicy::Interval
            && self.last_sync.elapsed() >= self.options.fsync_interval
        {
            self.files.sync_all_dirty();
            self.last_sync = Instant::now();
        }
        self.files.close_idle(self.options.idle_file_timeout);
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::*;
    use crate::idempotency::{Claim, Fingerprint, KeyIndex};
    use crate::layout::KEYS_JOURNAL;
    use crate::store::Store;
    use crate::store::checkpoint::read_checkpoint_state;
    use crate::store::fixtures::{batch, claim, keyed, options, paths, read};

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
}
