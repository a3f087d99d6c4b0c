//! The handle every caller holds: [`Store::open`] (recovery, then the writer thread), the ways to
//! hand over a batch and wait for its outcome (bounded pending bytes, deadlines, withdrawal while
//! still queued), what the store knows (checkpoint, ledger, readiness) and shutdown.

use std::sync::atomic::{AtomicBool, AtomicU8, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::Duration;

use tokio::sync::{Semaphore, oneshot};

use super::recovery::{self, Recovered};
use super::writer::{Extras, QUEUED, Request, Shared, WITHDRAWN, Writer};
use super::{Checkpoint, StoreError, StoreOptions};
use crate::idempotency::{ClaimGuard, SharedLedger, Update};
use crate::metrics::Metrics;
use crate::record::EncodedBatch;

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
    /// Readiness, the positions and the ledger, as the writer keeps them.
    shared: Shared,
    done: Mutex<Option<oneshot::Receiver<()>>>,
    metrics: Metrics,
}

impl Store {
    /// Opens (creating if needed) the logs directory: locks it, repairs it, starts the writer.
    pub fn open(options: StoreOptions, metrics: Metrics) -> Result<Store, StoreError> {
        let (store, writer, requests) = Store::prepare(options, metrics)?;
        store.start(writer, requests);
        Ok(store)
    }

    /// Recovers the directory and builds the store and its writer, not started yet (a test can
    /// queue requests first).
    pub(super) fn prepare(
        options: StoreOptions,
        metrics: Metrics,
    ) -> Result<(Store, Writer, mpsc::Receiver<Request>), StoreError> {
        let Recovered {
            lock,
            checkpoint,
            journal,
            ledger,
        } = recovery::recover(&options.logs_dir, options.keys)?;
        metrics.idempotency_keys.set(ledger.len() as i64);
        let shared = Shared {
            healthy: Arc::new(AtomicBool::new(true)),
            checkpoint: Arc::new(Mutex::new(checkpoint)),
            ledger: SharedLedger::new(ledger),
        };
        let (sender, requests) = mpsc::channel();
        let (done_tx, done_rx) = oneshot::channel();
        let max_pending_bytes = options.max_pending_bytes.clamp(1, Semaphore::MAX_PERMITS);
        let store = Store {
            inner: Arc::new(Inner {
                requests: Mutex::new(Some(sender)),
                pending: Arc::new(Semaphore::new(max_pending_bytes)),
                max_pending_bytes,
                write_timeout: options.write_timeout,
                shared: shared.clone(),
                done: Mutex::new(Some(done_rx)),
                metrics: metrics.clone(),
            }),
        };
        let writer = Writer::new(options, lock, journal, shared, metrics, done_tx);
        Ok((store, writer, requests))
    }

    /// Starts the writer thread.
    pub(super) fn start(&self, writer: Writer, requests: mpsc::Receiver<Request>) {
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

    /// Queues the batch for the writer within the pending-bytes bound and waits for its answer;
    /// with a `deadline`, withdraws it if the writer has not taken it by then.
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
                extras,
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
        &self.inner.shared.ledger
    }

    /// The positions stored with the last committed checkpointed batch (or recovered at open).
    pub fn checkpoint(&self) -> Checkpoint {
        self.inner
            .shared
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
        } else if !self.inner.shared.healthy.load(Ordering::Relaxed) {
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::fixtures::{batch, options, paths, read};

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
    async fn a_batch_still_queued_at_its_deadline_is_withdrawn_and_never_written() {
        let dir = tempfile::tempdir().unwrap();
        let metrics = Metrics::new();
        // The writer is not running yet: the batch stays queued past its deadline.
        let (store, writer, requests) =
            Store::prepare(options(dir.path()), metrics.clone()).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_millis(50);
        let err = store
            .append_by(batch(&[("2025-11-22T14:00:00Z", "/late")]), deadline)
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Withdrawn), "{err:?}");
        store.start(writer, requests);
        store
            .append(batch(&[("2025-11-22T14:00:00Z", "/next")]))
            .await
            .unwrap();
        store.shutdown().await;
        assert_eq!(
            paths(&read(dir.path(), "2025-11-22/14.log.json")),
            ["/next"]
        );
        assert_eq!(metrics.store_queue_depth.get(), 0);
        assert_eq!(
            metrics.logs_ingested.get(),
            1,
            "only the batch not withdrawn"
        );
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
