//! A consumer's **lease** on its partitions with `storage.backend: s3`: whether it may still write
//! their ranges to the bucket, asked before every request that writes one
//! ([`Ownership`]).
//!
//! A consumer holds a partition from its assignment to its revocation. But a process frozen
//! (SIGSTOP, a paused VM, a stalled host) for longer than `kafka.sessionTimeout` wakes up owning
//! nothing, and learns it only when librdkafka next checks its session: a flush that resumes
//! first could race the partition's new owner for a range's intent (see [`crate::objects`]). So
//! a write is withheld unless
//!
//! 1. the consumer holds the partition (a lost assignment is let go before anything else), and
//! 2. the process has not been paused for more than a third of `kafka.sessionTimeout` since
//!    the consumer last confirmed its assignment.
//!
//! A [`Pulse`] notices pauses: a thread ticks every [`TICK`], and a gap of more than that third
//! between two ticks, or between the last tick and a check, is a pause (a process starved of CPU
//! that long counts too). After a pause the consumer's thread confirms its assignment with
//! librdkafka ([`Lease::unconfirmed`], [`Lease::confirm`]); a new assignment confirms it as well.
//! A withheld write fails its flush, and the assignment-lost path drops what was read.
//!
//! What remains: a pause that begins after a write's check and before its request has reached
//! the store; and a pause that ends within about a network round trip of the session timeout,
//! when librdkafka (counting from the last heartbeat answer) still holds the session that the
//! coordinator (counting from the last heartbeat it received) has just expired, until the next
//! heartbeat's answer at most `heartbeat.interval.ms` (1 s) later.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::objects::Ownership;

/// How often the pulse ticks.
pub const TICK: Duration = Duration::from_millis(50);

/// Notices when this process did not run; one per process, shared by its consumers' leases.
#[derive(Debug)]
pub struct Pulse {
    /// A longer gap is a pause.
    max_gap: Duration,
    beat: Mutex<Beat>,
}

#[derive(Debug, Clone, Copy)]
struct Beat {
    last: Instant,
    /// Pauses noticed so far.
    pauses: u64,
}

impl Pulse {
    /// A pulse for consumers whose session times out after `session_timeout`, last ticked `now`.
    pub fn new(session_timeout: Duration, now: Instant) -> Pulse {
        Pulse {
            max_gap: session_timeout / 3,
            beat: Mutex::new(Beat {
                last: now,
                pauses: 0,
            }),
        }
    }

    /// Starts the thread that ticks every [`TICK`], as long as anything holds the pulse.
    pub fn start(session_timeout: Duration) -> std::io::Result<Arc<Pulse>> {
        let pulse = Arc::new(Pulse::new(session_timeout, Instant::now()));
        let weak: Weak<Pulse> = Arc::downgrade(&pulse);
        std::thread::Builder::new()
            .name("consumer-pulse".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    let Some(pulse) = weak.upgrade() else { break };
                    if let Some(pause) = pulse.tick(Instant::now()) {
                        tracing::warn!(?pause, "this process did not run for a while; the consumers confirm their assignment before writing to the bucket again");
                    }
                }
            })?;
        Ok(pulse)
    }

    /// A tick at `now`; returns the pause it ends, if the last tick is more than the limit ago.
    pub fn tick(&self, now: Instant) -> Option<Duration> {
        let mut beat = self.beat.lock().expect("pulse lock");
        let gap = now.saturating_duration_since(beat.last);
        beat.last = beat.last.max(now);
        if gap <= self.max_gap {
            return None;
        }
        beat.pauses += 1;
        Some(gap)
    }

    /// Pauses noticed so far.
    fn pauses(&self) -> u64 {
        self.beat.lock().expect("pulse lock").pauses
    }

    /// Pauses noticed so far, if the process runs at `now` as far as the pulse can tell; `None`
    /// while a pause may be going on that its thread has not counted yet.
    fn pauses_at(&self, now: Instant) -> Option<u64> {
        let beat = self.beat.lock().expect("pulse lock");
        (now.saturating_duration_since(beat.last) <= self.max_gap).then_some(beat.pauses)
    }
}

/// One consumer's lease on its partitions; its flushes ask it before each write.
#[derive(Debug)]
pub struct Lease {
    pulse: Arc<Pulse>,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    partitions: BTreeSet<i32>,
    /// The pulse's pauses when the assignment was last confirmed.
    confirmed: u64,
}

impl Lease {
    pub fn new(pulse: Arc<Pulse>) -> Lease {
        Lease {
            pulse,
            held: Mutex::default(),
        }
    }

    /// The group assigned `partitions`: held from now on, and the assignment is confirmed.
    pub fn hold(&self, partitions: impl IntoIterator<Item = i32>) {
        let pauses = self.pulse.pauses();
        let mut held = self.held.lock().expect("lease lock");
        held.partitions.extend(partitions);
        held.confirmed = pauses;
    }

    /// `partitions` were revoked (or lost): nothing of theirs is written any more.
    pub fn let_go(&self, partitions: impl IntoIterator<Item = i32>) {
        let mut held = self.held.lock().expect("lease lock");
        for partition in partitions {
            held.partitions.remove(&partition);
        }
    }

    /// If partitions are held and the process was paused since the assignment was last
    /// confirmed: the pauses to confirm it for ([`Lease::confirm`]).
    pub fn unconfirmed(&self) -> Option<u64> {
        let pauses = self.pulse.pauses();
        let held = self.held.lock().expect("lease lock");
        (!held.partitions.is_empty() && held.confirmed < pauses).then_some(pauses)
    }

    /// The group still held the assignment after the first `pauses` pauses.
    pub fn confirm(&self, pauses: u64) {
        let mut held = self.held.lock().expect("lease lock");
        held.confirmed = held.confirmed.max(pauses);
    }

    /// [`Ownership::withheld`] at `now`.
    fn withheld_at(&self, partition: i32, now: Instant) -> Option<String> {
        let pauses = self.pulse.pauses_at(now);
        let held = self.held.lock().expect("lease lock");
        if !held.partitions.contains(&partition) {
            return Some("this consumer no longer holds the partition".to_owned());
        }
        match pauses {
            Some(pauses) if pauses == held.confirmed => None,
            _ => Some(format!(
                "this process was paused for more than {:?} and its assignment is not confirmed since",
                self.pulse.max_gap
            )),
        }
    }
}

impl Ownership for Lease {
    fn withheld(&self, partition: i32) -> Option<String> {
        self.withheld_at(partition, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::objects::{ObjectError, Objects, Range};
    use crate::record::{EncodedBatch, Hour};

    const SESSION: Duration = Duration::from_secs(6);

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_held_partition_is_written_until_it_is_let_go() {
        let start = Instant::now();
        let lease = Lease::new(Arc::new(Pulse::new(SESSION, start)));
        assert!(lease.withheld_at(1, start).is_some(), "not assigned yet");
        lease.hold([1, 2]);
        assert_eq!(lease.withheld_at(1, at(start, 10)), None);
        lease.let_go([1]);
        let reason = lease.withheld_at(1, at(start, 20)).unwrap();
        assert!(reason.contains("no longer holds"), "{reason}");
        assert_eq!(lease.withheld_at(2, at(start, 20)), None);
    }

    #[test]
    fn after_a_pause_nothing_is_written_until_the_assignment_is_confirmed() {
        let start = Instant::now();
        let pulse = Arc::new(Pulse::new(SESSION, start));
        let lease = Lease::new(pulse.clone());
        lease.hold([0]);
        for ms in (50..=2000).step_by(50) {
            assert_eq!(pulse.tick(at(start, ms)), None, "a tick every 50 ms");
        }
        assert_eq!(lease.withheld_at(0, at(start, 2100)), None);
        assert_eq!(lease.unconfirmed(), None);
        // Frozen for 9 s: a write that runs before the pulse's next tick sees the gap ...
        let woke = at(start, 11_000);
        let reason = lease.withheld_at(0, woke).unwrap();
        assert!(reason.contains("paused for more than 2s"), "{reason}");
        // ... and once the pulse counted the pause, the assignment waits for confirmation.
        assert_eq!(pulse.tick(woke), Some(Duration::from_secs(9)));
        assert!(lease.withheld_at(0, woke).is_some());
        let pauses = lease.unconfirmed().expect("a pause to confirm");
        lease.confirm(pauses);
        assert_eq!(lease.withheld_at(0, woke), None);
        assert_eq!(lease.unconfirmed(), None);
    }

    #[test]
    fn a_new_assignment_confirms_and_a_lease_without_partitions_needs_no_confirmation() {
        let start = Instant::now();
        let pulse = Arc::new(Pulse::new(SESSION, start));
        let lease = Lease::new(pulse.clone());
        pulse.tick(at(start, 5_000));
        assert_eq!(lease.unconfirmed(), None, "nothing held");
        lease.hold([3]);
        assert_eq!(lease.unconfirmed(), None);
        assert_eq!(lease.withheld_at(3, at(start, 5_010)), None);
    }

    fn range(first: i64, last: i64) -> Range {
        let mut batch = EncodedBatch::default();
        for offset in first..=last {
            batch.push_line(Hour::from_index(490_000), format!("{offset}").as_bytes());
        }
        Range {
            partition: 0,
            first,
            last,
            batch,
            copies: Vec::new(),
            kept: Vec::new(),
        }
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_writer_frozen_past_the_session_timeout_leaves_the_new_owners_range_alone() {
        let (store, gate) =
            frozen_store::FrozenAfterGet::new("intents/t/00000/00000000000000000000.json");
        let store = Arc::new(store);
        let frozen = Arc::new(Objects::new(store.clone(), "", SESSION, Metrics::new()));
        let pulse = Arc::new(Pulse::new(SESSION, Instant::now()));
        let lease = Arc::new(Lease::new(pulse.clone()));
        lease.hold([0]);
        // It reads that nobody decided the range at 0 yet, and the process freezes right then.
        let write = tokio::spawn({
            let (frozen, lease) = (frozen.clone(), lease.clone());
            async move { frozen.write_owned("t", vec![range(0, 9)], &*lease).await }
        });
        gate.frozen().await;
        // Past the session timeout the partition is another instance's, which writes 0..=4.
        let new_owner = Lease::new(Arc::new(Pulse::new(SESSION, Instant::now())));
        new_owner.hold([0]);
        let objects = Objects::new(store.clone(), "", SESSION, Metrics::new());
        objects
            .write_owned("t", vec![range(0, 4)], &new_owner)
            .await
            .unwrap();
        // The frozen process wakes up: its pulse sees the pause before its write goes on.
        pulse.tick(Instant::now() + Duration::from_secs(9));
        gate.thaw();
        let err = write.await.unwrap().unwrap_err();
        assert!(
            matches!(err, ObjectError::Withheld { partition: 0, .. }),
            "{err}"
        );
        assert_eq!(
            objects.decided("t", 0, 0).await.unwrap().map(|d| d.last),
            Some(4),
            "the new owner's decision stands"
        );
        let records = store.records_objects().await;
        assert_eq!(records.len(), 1, "only the new owner's range: {records:?}");
    }

    /// An in-memory bucket whose one GET of a given key returns only once the test thaws it: a
    /// writer frozen right after it read that key.
    mod frozen_store {
        use std::fmt;
        use std::future::Future;
        use std::pin::Pin;
        use std::sync::{Arc, Mutex};

        use futures_util::TryStreamExt as _;
        use futures_util::stream::BoxStream;
        use object_store::memory::InMemory;
        use object_store::path::Path;
        use object_store::{
            CopyOptions, GetOptions, GetResult, ListResult, MultipartUpload, ObjectMeta,
            ObjectStore, PutMultipartOptions, PutOptions, PutPayload, PutResult, Result,
        };
        use tokio::sync::{Notify, oneshot};

        type Boxed<'a, T> = Pin<Box<dyn Future<Output = Result<T>> + Send + 'a>>;

        pub struct FrozenAfterGet {
            inner: InMemory,
            key: Path,
            /// Taken by the GET it freezes.
            thawed: Mutex<Option<oneshot::Receiver<()>>>,
            frozen: Arc<Notify>,
        }

        /// The test's side: when the writer froze, and its thaw.
        pub struct Gate {
            frozen: Arc<Notify>,
            thaw: oneshot::Sender<()>,
        }

        impl Gate {
            pub async fn frozen(&self) {
                self.frozen.notified().await;
            }

            pub fn thaw(self) {
                let _ = self.thaw.send(());
            }
        }

        impl FrozenAfterGet {
            pub fn new(key: &str) -> (FrozenAfterGet, Gate) {
                let (thaw, thawed) = oneshot::channel();
                let frozen = Arc::new(Notify::new());
                let store = FrozenAfterGet {
                    inner: InMemory::new(),
                    key: Path::from(key),
                    thawed: Mutex::new(Some(thawed)),
                    frozen: frozen.clone(),
                };
                (store, Gate { frozen, thaw })
            }

            /// The keys of the records objects.
            pub async fn records_objects(&self) -> Vec<String> {
                let listed: Vec<ObjectMeta> = self
                    .inner
                    .list(Some(&Path::from("logs")))
                    .try_collect()
                    .await
                    .unwrap();
                listed
                    .into_iter()
                    .map(|meta| meta.location.to_string())
                    .collect()
            }
        }

        impl fmt::Display for FrozenAfterGet {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "FrozenAfterGet({})", self.key)
            }
        }

        impl fmt::Debug for FrozenAfterGet {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl ObjectStore for FrozenAfterGet {
            fn put_opts<'a, 'b, 't>(
                &'a self,
                location: &'b Path,
                payload: PutPayload,
                opts: PutOptions,
            ) -> Boxed<'t, PutResult>
            where
                'a: 't,
                'b: 't,
            {
                self.inner.put_opts(location, payload, opts)
            }

            fn put_multipart_opts<'a, 'b, 't>(
                &'a self,
                location: &'b Path,
                opts: PutMultipartOptions,
            ) -> Boxed<'t, Box<dyn MultipartUpload>>
            where
                'a: 't,
                'b: 't,
            {
                self.inner.put_multipart_opts(location, opts)
            }

            fn get_opts<'a, 'b, 't>(
                &'a self,
                location: &'b Path,
                options: GetOptions,
            ) -> Boxed<'t, GetResult>
            where
                'a: 't,
                'b: 't,
            {
                Box::pin(async move {
                    let got = self.inner.get_opts(location, options).await;
                    let thawed = (*location == self.key)
                        .then(|| self.thawed.lock().unwrap().take())
                        .flatten();
                    if let Some(thawed) = thawed {
                        self.frozen.notify_one();
                        let _ = thawed.await;
                    }
                    got
                })
            }

            fn delete_stream(
                &self,
                locations: BoxStream<'static, Result<Path>>,
            ) -> BoxStream<'static, Result<Path>> {
                self.inner.delete_stream(locations)
            }

            fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
                self.inner.list(prefix)
            }

            fn list_with_delimiter<'a, 'b, 't>(
                &'a self,
                prefix: Option<&'b Path>,
            ) -> Boxed<'t, ListResult>
            where
                'a: 't,
                'b: 't,
            {
                self.inner.list_with_delimiter(prefix)
            }

            fn copy_opts<'a, 'b, 'c, 't>(
                &'a self,
                from: &'b Path,
                to: &'c Path,
                options: CopyOptions,
            ) -> Boxed<'t, ()>
            where
                'a: 't,
                'b: 't,
                'c: 't,
            {
                self.inner.copy_opts(from, to, options)
            }
        }
    }
}
