//! The one seam between the consumer group and where it writes.
//!
//! A [`Sink`] is chosen once, at start-up (`crate::storage`): the hour files of this machine
//! ([`files`](super::files)) or the bucket ([`bucket`](super::bucket)). It hands each consumer a
//! [`Buffer`], which holds what the consumer read and has not stored yet, in the backend's own
//! shape, and writes it. The group's code (polling, dead letters, the topic's incarnation,
//! rebalances, commits) asks only these two traits, so it knows neither backend; a third backend
//! is one more implementation of them.

use std::collections::BTreeMap;

use futures_util::future::BoxFuture;

use super::super::keyed::KeyedRecord;
use crate::idempotency::{Retention, SharedLedger};
use crate::record::EncodedBatch;
use crate::site::SiteId;

/// Where the consumer group writes what it reads (see the module docs).
pub trait Sink: Send + Sync {
    /// The buffer of consumer `index`, reading `topic`; its writes run on `runtime`.
    fn buffer(
        &self,
        topic: &str,
        index: usize,
        runtime: tokio::runtime::Handle,
    ) -> anyhow::Result<Box<dyn Buffer>>;

    /// Per partition of `topic`: the offset after what this process stored (the consumer lag,
    /// and when a batch acknowledged here is readable).
    fn stored(&self, topic: &str) -> BTreeMap<i32, i64>;

    /// What a consumer does when the topic was created again (its offsets restart from 0).
    fn after_recreation(&self) -> AfterRecreation;

    /// What v2's `Idempotency-Key` index starts from: the keyed batches the consumers stored
    /// whole before this start, if the sink keeps them on this machine (else none, kept for
    /// `retention`).
    fn whole_batches(&self, retention: Retention) -> SharedLedger;

    /// Whether it can take the consumers' writes now (part of `/ready`); if not, why.
    fn readiness(&self) -> Result<(), &'static str>;

    /// Releases what it holds, once the consumers stopped (the files: sync and close).
    fn shutdown(&self) -> BoxFuture<'_, ()>;
}

/// See [`Sink::after_recreation`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AfterRecreation {
    /// Store what was read of the old topic, then read the new one from its beginning.
    ReadFromStart,
    /// Store what was read, then stop reading (the new offsets would name what is stored).
    Stop,
}

/// A write handed to the runtime by [`Buffer::start_flush`].
pub struct Flushing {
    pub write: tokio::task::JoinHandle<Result<(), String>>,
    /// Per partition: the first offset written and the offset after the last (the commit).
    pub partitions: BTreeMap<i32, (i64, i64)>,
    /// Produce timestamps (ms since the epoch) of its records, for the latency histogram.
    pub produced_at: Vec<i64>,
}

/// What one consumer read and has not stored yet, and how it gets stored. Called from the
/// consumer's own thread only (see "Threads and locks" in [`super`]).
///
/// The hooks after [`Buffer::checkpoint`] have no-op defaults: a backend that keeps nothing
/// per partition (the files) needs none of them.
pub trait Buffer: Send {
    /// How many messages it holds before a flush must free it.
    fn cap(&self) -> usize;

    /// How many messages it holds, and whether a flush is due (`cap`: the consumer's limit).
    fn due(&mut self, cap: usize) -> (usize, bool);

    /// Before the message at `offset` of `partition` is taken; if what it needs to know cannot be
    /// read: the offset to read the partition again from, and why.
    fn prepare(&mut self, _partition: i32, _offset: i64) -> Result<(), (i64, String)> {
        Ok(())
    }

    /// Whether `record` (of a keyed batch), at `offset` of `partition`, is stored (or being
    /// stored) already, by another copy.
    fn is_copy(&self, record: &KeyedRecord, partition: i32, offset: i64) -> bool;

    /// The message at `offset` of `partition` is a copy: consumed, not stored.
    fn copy_dropped(&mut self, partition: i32, offset: i64);

    /// Where the record at the next offset of `partition`, of `site` (`None`: unsited), is
    /// encoded: it is stored under that site.
    fn batch(&mut self, partition: i32, site: Option<&SiteId>) -> &mut EncodedBatch;

    /// The record at `offset` of `partition` was encoded into [`Buffer::batch`]; it was produced
    /// at `produced_ms`, with `keyed` if its batch had an `Idempotency-Key`.
    fn taken(&mut self, partition: i32, offset: i64, produced_ms: i64, keyed: Option<KeyedRecord>);

    /// The message at `offset` of `partition` counts as consumed (a delivered dead letter).
    fn consumed(&mut self, partition: i32, offset: i64);

    /// Hands what is ready to be stored to the runtime, if anything.
    fn start_flush(&mut self) -> Option<Flushing>;

    /// The flush [`Buffer::start_flush`] started is over (stored or not).
    fn flush_done(&mut self) {}

    /// Drops everything buffered (a flush before it failed); per partition, where it began.
    fn discard(&mut self) -> BTreeMap<i32, i64>;

    /// Per partition of this consumer's topic: the offset after what is stored on this machine,
    /// which reading resumes after (empty when nothing is kept here).
    fn checkpoint(&self) -> BTreeMap<i32, i64>;

    /// `partition` is read again from `first` after a failed flush.
    fn rewound(&mut self, _partition: i32, _first: i64) {}

    /// Everything buffered is to be stored now (revocation, shutdown).
    fn seal_all(&mut self) {}

    /// After the last flush before a revocation or shutdown: drops what could not be stored
    /// yet (read again by the partition's next owner).
    fn drop_open(&mut self) {}

    /// `partition` was assigned; reading starts at `start` if known, else at the committed
    /// offset.
    fn assigned(&mut self, _partition: i32, _start: Option<i64>) {}

    /// The assignment of `partitions` is complete: this consumer writes them from now on.
    fn hold(&mut self, _partitions: &[i32]) {}

    /// The group gave `partitions` to another consumer already (this one missed its session):
    /// nothing read from them is stored.
    fn lost(&mut self, _partitions: &[i32]) {}

    /// `partitions` were revoked, after what was read from them was stored.
    fn let_go(&mut self, _partitions: &[i32]) {}

    /// If this process was paused since the assignment was last confirmed, and its writes wait
    /// for the group to confirm it: the pauses to confirm ([`Buffer::confirm`]).
    fn unconfirmed(&self) -> Option<u64> {
        None
    }

    /// The group still holds this consumer's assignment after `pauses` pauses.
    fn confirm(&mut self, _pauses: u64) {}
}
