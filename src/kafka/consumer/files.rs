//! The consumers' [`Sink`] for `storage.backend: local`: the hour files of this machine.
//!
//! A consumer's messages go into one [`EncodedBatch`]; a flush appends it through the [`Store`]
//! (group commit, fsync) **together with a checkpoint** of every buffered partition's next
//! offset (`topic/partition` → offset) and the ledger's update for the keyed records it stores,
//! and only then are the offsets committed. When partitions are assigned, each starts after the
//! checkpoint ([`resume::start_position`](super::super::resume::start_position)), so a crash
//! between the append and the commit stores nothing twice. A keyed record is a copy when the
//! ledger, the buffer or the flush being written holds it.
//!
//! The limit: if a partition moves to a process with a *different* logs directory after a crash
//! between the append and the commit of the old owner, the new owner resumes from the committed
//! offset and the records of that last flush are in both directories.

use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

use super::super::keyed::KeyedRecord;
use super::sink::{AfterRecreation, Buffer, Flushing, Sink};
use crate::idempotency::{Fingerprint, Key, Retention, SharedLedger, Update, Written, now_ms};
use crate::record::{EncodedBatch, SiteBatches};
use crate::site::SiteId;
use crate::store::{Checkpoint, Store};

/// The hour files, through the [`Store`]: flushed every `consumer.flushSize` records or
/// `consumer.flushInterval`.
pub struct FilesSink {
    store: Store,
    flush_size: usize,
    flush_interval: Duration,
}

impl FilesSink {
    pub fn new(store: Store, flush_size: usize, flush_interval: Duration) -> FilesSink {
        FilesSink {
            store,
            flush_size,
            flush_interval,
        }
    }
}

impl Sink for FilesSink {
    fn buffer(
        &self,
        topic: &str,
        _index: usize,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<Box<dyn Buffer>> {
        Ok(Box::new(FilesBuffer {
            topic: topic.to_owned(),
            store: self.store.clone(),
            runtime,
            flush_size: self.flush_size,
            flush_interval: self.flush_interval,
            buffered: Buffered::default(),
            flushing: KeyedWrites::default(),
        }))
    }

    fn stored(&self, topic: &str) -> BTreeMap<i32, i64> {
        of_topic(&self.store.checkpoint(), topic)
    }

    fn after_recreation(&self) -> AfterRecreation {
        AfterRecreation::ReadFromStart
    }

    fn whole_batches(&self, _retention: Retention) -> SharedLedger {
        self.store.ledger().whole_batches()
    }

    fn readiness(&self) -> Result<(), &'static str> {
        self.store.readiness()
    }

    fn shutdown(&self) -> BoxFuture<'_, ()> {
        Box::pin(self.store.shutdown())
    }
}

/// Per partition of `topic`, its offset in `checkpoint`.
fn of_topic(checkpoint: &Checkpoint, topic: &str) -> BTreeMap<i32, i64> {
    checkpoint
        .iter()
        .filter_map(|(key, next)| {
            let (named, partition) = key.rsplit_once('/')?;
            (named == topic).then_some((partition.parse().ok()?, *next))
        })
        .collect()
}

/// The checkpoint key of a partition: `topic/partition`.
fn checkpoint_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}

/// Per key: the batch's fingerprint and record count, and which of its records.
type KeyedWrites = HashMap<Key, (Fingerprint, u32, Written)>;

/// Whether `writes` hold `record`.
fn holds(writes: &KeyedWrites, record: &KeyedRecord) -> bool {
    writes
        .get(&record.key)
        .is_some_and(|(fingerprint, _, written)| {
            *fingerprint == record.fingerprint && written.contains(record.index)
        })
}

struct FilesBuffer {
    topic: String,
    store: Store,
    runtime: tokio::runtime::Handle,
    flush_size: usize,
    flush_interval: Duration,
    buffered: Buffered,
    /// The keyed records of the flush being written (not in the ledger until it is done).
    flushing: KeyedWrites,
}

/// Consumed messages not yet stored.
#[derive(Default)]
struct Buffered {
    /// Per site, its records: one write of all of them (one checkpoint covers every site).
    batches: SiteBatches,
    /// Messages buffered, valid or dead-lettered.
    messages: usize,
    /// Per partition: the first buffered offset (to rewind to after a failed flush) and the next
    /// offset after the buffered messages (the checkpoint and commit position).
    partitions: BTreeMap<i32, (i64, i64)>,
    produced_at: Vec<i64>,
    /// The buffered records of keyed batches.
    keyed: KeyedWrites,
    /// When the oldest buffered message arrived.
    started: Option<Instant>,
}

impl Buffer for FilesBuffer {
    fn cap(&self) -> usize {
        self.flush_size
    }

    fn due(&mut self, _cap: usize) -> (usize, bool) {
        let buffered = &self.buffered;
        let due = buffered.messages >= self.flush_size
            || buffered
                .started
                .is_some_and(|started| started.elapsed() >= self.flush_interval);
        (buffered.messages, due)
    }

    fn is_copy(&self, record: &KeyedRecord, _partition: i32, _offset: i64) -> bool {
        holds(&self.buffered.keyed, record)
            || holds(&self.flushing, record)
            || (self.store.ledger()).holds_record(record.key, record.fingerprint, record.index)
    }

    fn copy_dropped(&mut self, partition: i32, offset: i64) {
        self.consumed(partition, offset);
    }

    fn batch(&mut self, _partition: i32, site: Option<&SiteId>) -> &mut EncodedBatch {
        self.buffered.batches.batch(site)
    }

    fn taken(&mut self, partition: i32, offset: i64, produced_ms: i64, keyed: Option<KeyedRecord>) {
        self.buffered.produced_at.push(produced_ms);
        self.consumed(partition, offset);
        if let Some(record) = keyed {
            (self.buffered.keyed)
                .entry(record.key)
                .or_insert_with(|| (record.fingerprint, record.records, Written::default()))
                .2
                .insert(record.index);
        }
    }

    fn consumed(&mut self, partition: i32, offset: i64) {
        let buffered = &mut self.buffered;
        buffered.messages += 1;
        buffered.started.get_or_insert_with(Instant::now);
        let entry = (buffered.partitions)
            .entry(partition)
            .or_insert((offset, offset + 1));
        entry.1 = offset + 1;
    }

    fn start_flush(&mut self) -> Option<Flushing> {
        if self.buffered.partitions.is_empty() {
            return None;
        }
        let Buffered {
            batches,
            partitions,
            produced_at,
            keyed,
            ..
        } = std::mem::take(&mut self.buffered);
        let checkpoint: Checkpoint = partitions
            .iter()
            .map(|(partition, (_, next))| (checkpoint_key(&self.topic, *partition), *next))
            .collect();
        let now = now_ms();
        let updates: Vec<Update> = keyed
            .iter()
            .map(|(key, (fingerprint, records, written))| Update {
                key: key.0,
                fingerprint: fingerprint.0,
                records: *records,
                at_ms: now,
                written: written.clone(),
            })
            .collect();
        self.flushing = keyed;
        let store = self.store.clone();
        let write = self.runtime.spawn(async move {
            store
                .append_with_checkpoint(batches.into_batch(), checkpoint, updates)
                .await
                .map_err(|err| err.to_string())
        });
        Some(Flushing {
            write,
            partitions,
            produced_at,
        })
    }

    fn flush_done(&mut self) {
        // Stored: the ledger has them now. Failed: they are read again.
        self.flushing.clear();
    }

    fn discard(&mut self) -> BTreeMap<i32, i64> {
        let discarded = std::mem::take(&mut self.buffered);
        (discarded.partitions.iter())
            .map(|(partition, (first, _))| (*partition, *first))
            .collect()
    }

    fn checkpoint(&self) -> BTreeMap<i32, i64> {
        of_topic(&self.store.checkpoint(), &self.topic)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_checkpoint_is_read_for_its_topic_only() {
        let checkpoint: Checkpoint = [
            ("logs/0".to_owned(), 5),
            ("logs/12".to_owned(), 7),
            ("logs-other/0".to_owned(), 9),
            ("with/slash/3".to_owned(), 11),
        ]
        .into_iter()
        .collect();
        assert_eq!(
            of_topic(&checkpoint, "logs"),
            BTreeMap::from([(0, 5), (12, 7)])
        );
        assert_eq!(
            of_topic(&checkpoint, "with/slash"),
            BTreeMap::from([(3, 11)])
        );
    }
}
