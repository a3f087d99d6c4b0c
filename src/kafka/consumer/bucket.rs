//! The consumers' [`Sink`] for `storage.backend: s3`: the bucket, in offset ranges.
//!
//! Each partition's messages are cut into offset ranges ([`ranges`](super::super::ranges)); a
//! flush writes the sealed ranges through [`Objects`] (intent, then records objects) and then
//! the group commits. Keyed records are deduplicated by where their kept copy is
//! ([`KeptCopies`]), or as the range's intent says when it was decided before. No checkpoint and
//! no ledger are kept on this machine: a partition starts at its committed offset, and the first
//! range opened there (after an assignment or a rewind) asks the bucket whether an earlier
//! writer decided where it ends, and so on range after range until one was not decided. That
//! makes every record land in exactly one object whichever process reads it (see
//! [`crate::objects`]). Before its first range, a newly assigned partition learns from the
//! intents before it which keyed records earlier owners kept ([`Objects::kept_before`]). Every
//! write asks the consumer's [`Lease`] whether the partition is still its own.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use futures_util::future::BoxFuture;

use super::super::keyed::{KeptCopies, KeyedRecord};
use super::super::lease::{Lease, Pulse};
use super::super::ranges::{RangeLimits, Ranges};
use super::sink::{AfterRecreation, Buffer, Flushing, Sink};
use crate::idempotency::{Ledger, Retention, SharedLedger};
use crate::objects::Objects;
use crate::record::EncodedBatch;
use crate::site::SiteId;

/// The bucket, through [`Objects`].
pub struct BucketSink {
    objects: Arc<Objects>,
    limits: RangeLimits,
    /// Whether this process was paused (see [`Lease`]); one per process.
    pulse: Arc<Pulse>,
}

impl BucketSink {
    /// Writes through `objects`, cutting ranges at `limits`; a pause of this process longer
    /// than a third of `session_timeout` stops its writes until the group confirms them.
    pub fn new(
        objects: Arc<Objects>,
        limits: RangeLimits,
        session_timeout: Duration,
    ) -> anyhow::Result<BucketSink> {
        Ok(BucketSink {
            objects,
            limits,
            pulse: Pulse::start(session_timeout)?,
        })
    }
}

impl Sink for BucketSink {
    fn buffer(
        &self,
        topic: &str,
        index: usize,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<Box<dyn Buffer>> {
        Ok(Box::new(BucketBuffer {
            topic: topic.to_owned(),
            index,
            runtime,
            objects: self.objects.clone(),
            limits: self.limits,
            lease: Arc::new(Lease::new(self.pulse.clone())),
            ranges: Ranges::default(),
            lookups: BTreeSet::new(),
            kept: KeptCopies::default(),
            seeds: BTreeSet::new(),
        }))
    }

    fn stored(&self, _topic: &str) -> BTreeMap<i32, i64> {
        self.objects.written()
    }

    /// Ranges are named by offsets: the new topic's would land on the objects of the old one.
    fn after_recreation(&self) -> AfterRecreation {
        AfterRecreation::Stop
    }

    /// Nothing on this machine: a batch retried through another instance is known by the
    /// consumers instead (see [`KeptCopies`]).
    fn whole_batches(&self, retention: Retention) -> SharedLedger {
        SharedLedger::new(Ledger::new(retention))
    }

    /// Nothing on this machine: the bucket is not on the way to an acknowledgement (the broker
    /// is), and its outages show as the consumer lag while the writes retry.
    fn readiness(&self) -> Result<(), &'static str> {
        Ok(())
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
}

struct BucketBuffer {
    topic: String,
    /// Which consumer of the group, for the logs.
    index: usize,
    runtime: tokio::runtime::Handle,
    objects: Arc<Objects>,
    limits: RangeLimits,
    /// Whether its partitions are still its own to write.
    lease: Arc<Lease>,
    ranges: Ranges,
    /// The partitions whose next range must first look for the end an earlier writer decided
    /// (after an assignment or a rewind, until one has none).
    lookups: BTreeSet<i32>,
    /// Where the kept copy of each recent keyed record is.
    kept: KeptCopies,
    /// The newly assigned partitions whose keyed records stored by earlier owners are not in
    /// `kept` yet.
    seeds: BTreeSet<i32>,
}

impl Buffer for BucketBuffer {
    fn cap(&self) -> usize {
        self.limits.max_messages
    }

    fn due(&mut self, cap: usize) -> (usize, bool) {
        let buffered = self.ranges.messages();
        // A full buffer closes every range where it is, so the next flush frees it.
        (
            buffered,
            self.ranges.seal_due(self.limits.max_age, buffered >= cap),
        )
    }

    /// After an assignment, the keyed records earlier owners stored before where reading starts
    /// are in `kept` (a batch retried through another instance has its later copy in this
    /// partition); and a range is open for the message, ending where an earlier writer decided,
    /// if one did (see [`crate::objects`]).
    fn prepare(&mut self, partition: i32, offset: i64) -> Result<(), (i64, String)> {
        if self.ranges.ready_for(partition, offset) {
            return Ok(());
        }
        let first = self.ranges.first_for(partition, offset);
        let unread = |err: crate::objects::ObjectError| (first, err.to_string());
        if self.seeds.contains(&partition) {
            let kept = (self.runtime)
                .block_on(self.objects.kept_before(&self.topic, partition, first))
                .map_err(unread)?;
            let records = self.kept.seed(partition, &kept);
            tracing::info!(
                partition,
                before = first,
                records,
                consumer = self.index,
                "keyed records stored by earlier owners of the partition, read from its intents"
            );
            self.seeds.remove(&partition);
        }
        let decided = if self.lookups.contains(&partition) {
            (self.runtime)
                .block_on(self.objects.decided(&self.topic, partition, first))
                .map_err(unread)?
        } else {
            None
        };
        if decided.is_none() {
            self.lookups.remove(&partition);
        }
        self.ranges.open(partition, first, decided);
        Ok(())
    }

    /// A range read again does what its first writer did; otherwise, by position.
    fn is_copy(&self, record: &KeyedRecord, partition: i32, offset: i64) -> bool {
        (self.ranges.decided_copy(partition, offset))
            .unwrap_or_else(|| self.kept.is_copy(record, partition, offset))
    }

    fn copy_dropped(&mut self, partition: i32, offset: i64) {
        self.ranges.copy_dropped(partition, offset);
        self.consumed(partition, offset);
    }

    fn batch(&mut self, partition: i32, site: Option<&SiteId>) -> &mut EncodedBatch {
        self.ranges.batch(partition, site)
    }

    fn taken(&mut self, partition: i32, offset: i64, produced_ms: i64, keyed: Option<KeyedRecord>) {
        self.ranges.produced(partition, produced_ms);
        if let Some(record) = keyed {
            self.kept.keep(&record, partition, offset);
            // For whoever starts after this range (see `prepare`); before the offset counts,
            // which may seal the range.
            self.ranges.kept(partition, &record, offset);
        }
        self.consumed(partition, offset);
    }

    fn consumed(&mut self, partition: i32, offset: i64) {
        self.ranges.consumed(partition, offset, &self.limits);
    }

    /// The sealed ranges; open ones go on filling.
    fn start_flush(&mut self) -> Option<Flushing> {
        let taken = self.ranges.take_sealed();
        if taken.ranges.is_empty() {
            return None;
        }
        let (objects, topic, lease) =
            (self.objects.clone(), self.topic.clone(), self.lease.clone());
        let ranges = taken.ranges;
        let write = self.runtime.spawn(async move {
            objects
                .write_owned(&topic, ranges, &*lease)
                .await
                .map_err(|err| err.to_string())
        });
        Some(Flushing {
            write,
            partitions: taken.partitions,
            produced_at: taken.produced_at,
        })
    }

    fn discard(&mut self) -> BTreeMap<i32, i64> {
        std::mem::take(&mut self.ranges).firsts()
    }

    /// Nothing here: the committed offset and the intents in the bucket say it all.
    fn checkpoint(&self) -> BTreeMap<i32, i64> {
        BTreeMap::new()
    }

    /// What was written may have its intent: the range is read again up to its end.
    fn rewound(&mut self, partition: i32, first: i64) {
        self.lookups.insert(partition);
        self.ranges.start_at(partition, first);
    }

    fn seal_all(&mut self) {
        self.ranges.seal_due(Duration::ZERO, true);
    }

    /// Open ranges waiting for a decided end: whoever reads their partition next completes them.
    fn drop_open(&mut self) {
        self.ranges.drop_open();
    }

    fn assigned(&mut self, partition: i32, start: Option<i64>) {
        self.ranges.forget(partition);
        self.lookups.insert(partition);
        self.seeds.insert(partition);
        // Its lag counts from the committed offset until this process writes.
        self.objects.forget_written(partition);
        if let Some(offset) = start {
            self.ranges.start_at(partition, offset);
        }
    }

    fn hold(&mut self, partitions: &[i32]) {
        self.lease.hold(partitions.iter().copied());
    }

    /// Another instance owns them already: writing new ranges now could race it. What was read
    /// is read again by the new owner; a flush in flight writes nothing more of them either.
    fn lost(&mut self, partitions: &[i32]) {
        tracing::warn!(
            consumer = self.index,
            "assignment lost; dropping what was read and not yet written"
        );
        self.lease.let_go(partitions.iter().copied());
        for partition in partitions {
            self.ranges.forget(*partition);
        }
    }

    fn let_go(&mut self, partitions: &[i32]) {
        self.lease.let_go(partitions.iter().copied());
        for partition in partitions {
            self.lookups.remove(partition);
            self.seeds.remove(partition);
            self.ranges.forget(*partition);
        }
    }

    fn unconfirmed(&self) -> Option<u64> {
        self.lease.unconfirmed()
    }

    fn confirm(&mut self, pauses: u64) {
        self.lease.confirm(pauses);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use object_store::memory::InMemory;

    use super::*;
    use crate::idempotency::{Fingerprint, Key};
    use crate::metrics::Metrics;
    use crate::record::Hour;

    #[tokio::test]
    async fn a_keyed_record_that_completes_its_range_is_kept_in_it() {
        let session = Duration::from_secs(6);
        let objects = Objects::new(Arc::new(InMemory::new()), "", session, Metrics::new());
        let pulse = Arc::new(Pulse::new(session, Instant::now()));
        let mut buffer = BucketBuffer {
            topic: "logs".to_owned(),
            index: 0,
            runtime: tokio::runtime::Handle::current(),
            objects: Arc::new(objects),
            // One message a range: taking it seals its range.
            limits: RangeLimits {
                max_messages: 1,
                max_bytes: 1 << 20,
                max_age: Duration::from_secs(60),
            },
            lease: Arc::new(Lease::new(pulse)),
            ranges: Ranges::default(),
            lookups: BTreeSet::new(),
            kept: KeptCopies::default(),
            seeds: BTreeSet::new(),
        };
        let record = KeyedRecord {
            key: Key(7),
            fingerprint: Fingerprint(9),
            index: 0,
            records: 1,
        };
        buffer.prepare(0, 0).expect("no bucket request needed");
        buffer
            .batch(0, None)
            .push_line(Hour::from_index(490_000), b"{\"x\":1}");
        buffer.taken(0, 0, 0, Some(record));
        let sealed = buffer.ranges.take_sealed();
        assert_eq!(sealed.ranges.len(), 1);
        let kept: Vec<(u128, i64)> = (sealed.ranges[0].kept.iter())
            .map(|run| (run.key, run.offset))
            .collect();
        assert_eq!(
            kept,
            [(7, 0)],
            "the range's intent names the keyed record it stored"
        );
        assert!(
            buffer.is_copy(&record, 1, 5),
            "a later copy elsewhere is known"
        );
    }
}
