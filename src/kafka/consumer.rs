//! The consumer group that turns the topic back into hour files.
//!
//! Each of the `kafka.consumers` consumers runs on its own thread with a librdkafka
//! `BaseConsumer` and a buffer. A message whose value is a valid record is encoded into the
//! buffer; one that is not goes to the dead-letter topic ([`DeadLetters`]) before its offset can
//! count as consumed, so nothing is skipped silently and a poison message never stalls its
//! partition. The buffer is flushed every `consumer.flushSize` records or `consumer.flushInterval`;
//! while one flush is being written the next buffer fills, so fsync latency does not limit the
//! consumption rate:
//!
//! 1. the records are appended through the [`Store`] (group commit, fsync) **together with a
//!    checkpoint** of every buffered partition's next offset (`topic/partition` → offset);
//! 2. only then are the offsets committed to Kafka.
//!
//! When partitions are assigned, each starts after what is already stored here
//! ([`resume::start_position`]), so a crash between steps 1 and 2 stores nothing twice; the first
//! messages after a start are checked against it ([`Resume::admit`]). When partitions are revoked
//! (rebalance, shutdown) the buffer is flushed, checkpointed and committed synchronously before
//! they are let go.
//!
//! Records of batches sent with an `Idempotency-Key` carry it ([`keyed`](super::keyed)); a
//! consumer drops such a record when the store's ledger (or what it has buffered or is flushing)
//! says it is stored already, and writes the ledger's update for the ones it stores in the same
//! flush, so a batch produced twice (a client retrying after a timeout) is stored once.
//!
//! Guarantee: every record acknowledged by Kafka is written to the hour files of the process that
//! consumes its partition, once. The limit: if a partition moves to a process with a *different*
//! logs directory after a crash between steps 1 and 2 of the old owner, the new owner resumes from
//! the committed offset and the records of that last flush are in both directories.
//!
//! # The bucket ([`Destination::Objects`], `storage.backend: s3`)
//!
//! Instead of one buffer for the store, each partition's messages are cut into offset ranges
//! ([`ranges`](super::ranges)); a flush writes the sealed ranges through
//! [`Objects`] (intent, then records objects) and then commits. Keyed records are deduplicated
//! by where their kept copy is ([`KeptCopies`]), or as the range's intent says when it was
//! decided before. No checkpoint and no ledger are kept here: a partition starts at its
//! committed offset, and the first range opened there (after an assignment or a rewind) asks the
//! bucket whether an earlier writer decided where it ends, and so on range after range until one
//! was not decided. That makes every record land in exactly
//! one object whichever process reads it, which removes the limit above (see [`crate::objects`]).
//! Before its first range, a newly assigned partition learns from the intents before it which
//! keyed records earlier owners kept ([`Objects::kept_before`]). Every write asks the
//! consumer's [`Lease`] whether the partition is still its own.
//!
//! # Threads and locks
//!
//! - One thread per consumer runs [`run`]; librdkafka calls the rebalance and statistics callbacks
//!   of [`GroupContext`] on that same thread, from inside `poll`. So the [`State`] mutex is never
//!   contended: it exists because the callbacks reach the state through a shared `&Shared`. It is
//!   never held across `poll` (a callback would deadlock on it).
//! - At most one flush is in flight per consumer, so checkpoints advance in order.
//! - The store's writes run on the tokio runtime ([`Shared::runtime`]); the consumer thread waits
//!   for them with `block_on` only where it must (revocation, shutdown, a full buffer).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::BorrowedMessage;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientConfig, ClientContext, Message, Offset, TopicPartitionList};

use super::dead_letter::{DeadLetter, DeadLetters};
use super::keyed::{KeptCopies, KeyedRecord};
use super::lease::{Lease, Pulse};
use super::ranges::{RangeLimits, Ranges};
use super::resume::{self, Admission, Resume, Start};
use super::topic_id::{self, Described, TopicId};
use super::{KafkaSettings, base_config, checkpoint_key};
use crate::config::KafkaConfig;
use crate::idempotency::{Fingerprint, Key, Update, Written, now_ms};
use crate::ingest::{self, Limits};
use crate::metrics::Metrics;
use crate::objects::{ObjectError, Objects};
use crate::record::EncodedBatch;
use crate::store::{Checkpoint, Store};

/// How long one `poll` waits for a message, which bounds how late a stop or a flush deadline is seen.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// Poll timeout while a flush is being written, so its completion is committed promptly.
const FLUSHING_POLL_TIMEOUT: Duration = Duration::from_millis(2);
/// Messages the buffer may hold while a flush is in flight, at least.
const MIN_BUFFER_CAP: usize = 50_000;
/// librdkafka `max.partition.fetch.bytes`, unless `kafka.fetchMaxBytes` is smaller.
const MAX_PARTITION_FETCH_BYTES: usize = 8 << 20;
/// Back-off after a failed flush before trying again.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// The first back-off after a failed dead-letter send; it doubles up to the maximum.
const DEAD_LETTER_BACKOFF: Duration = Duration::from_millis(250);
const MAX_DEAD_LETTER_BACKOFF: Duration = Duration::from_secs(30);
/// Broker requests made from rebalance callbacks (committed offsets, synchronous commits).
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);
/// How long the check of the topic's id may take before a message is taken.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

/// The running consumers; [`ConsumerGroup::shutdown`] flushes and stops them.
pub struct ConsumerGroup {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    /// The partitions the consumers of this process own now.
    owned: Arc<Mutex<BTreeSet<i32>>>,
    /// How many consumers hold an assignment (possibly empty): not yet joined or in the middle of
    /// a rebalance, a consumer does not.
    assigned: Arc<AtomicUsize>,
    consumers: usize,
    /// Per consumer, its partitions stalled behind a dead letter that failed to go out.
    stalled: Arc<Mutex<BTreeMap<usize, usize>>>,
    /// How often the probe saw the topic created again (see [`Recreations`]).
    recreations: Arc<AtomicU64>,
    dead_letters: Arc<DeadLetters>,
    /// A consumer writing to the bucket stopped because the topic was created again.
    stalled_by_recreation: Arc<AtomicBool>,
}

/// Tells the consumers the topic was created again.
pub struct Recreations {
    count: Arc<AtomicU64>,
    dead_letters: Arc<DeadLetters>,
}

impl Recreations {
    /// Every consumer checks which incarnation it reads before it takes another message (see
    /// [`Shared::verify_incarnation`]), and the dead-letter producer is replaced (the broker does
    /// not know its producer id any more).
    pub fn signal(&self) {
        self.count.fetch_add(1, Ordering::AcqRel);
        self.dead_letters.renew_now("the topic was created again");
    }
}

/// Where the consumers write what they read.
#[derive(Clone)]
pub enum Destination {
    /// The hour files of this machine, with a checkpoint of the partitions' next offsets.
    Files(Store),
    /// The bucket, in offset ranges (see [`crate::objects`]); nothing kept on this machine.
    Objects(Arc<Objects>, RangeLimits),
}

impl Destination {
    /// What this process has stored so far, read once (see [`Stored::next`]).
    pub fn stored(&self) -> Stored {
        match self {
            Destination::Files(store) => Stored::Checkpoint(store.checkpoint()),
            Destination::Objects(objects, _) => Stored::Written(objects.written()),
        }
    }
}

/// A snapshot of [`Destination::stored`].
pub enum Stored {
    Checkpoint(Checkpoint),
    /// Per partition, the offset after the last range written.
    Written(BTreeMap<i32, i64>),
}

impl Stored {
    /// The offset after what this process stored of `partition` of `topic`, if it knows.
    pub fn next(&self, topic: &str, partition: i32) -> Option<i64> {
        match self {
            Stored::Checkpoint(checkpoint) => {
                checkpoint.get(&checkpoint_key(topic, partition)).copied()
            }
            Stored::Written(written) => written.get(&partition).copied(),
        }
    }
}

impl ConsumerGroup {
    /// Starts `kafka.consumers` consumers in group `kafka.groupID`, writing to `destination`.
    pub fn start(
        settings: &KafkaSettings,
        destination: Destination,
        metrics: Metrics,
    ) -> anyhow::Result<ConsumerGroup> {
        let kafka = &settings.kafka;
        let stop = Arc::new(AtomicBool::new(false));
        let owned = Arc::new(Mutex::new(BTreeSet::new()));
        let assigned = Arc::new(AtomicUsize::new(0));
        let stalled = Arc::new(Mutex::new(BTreeMap::new()));
        let runtime = tokio::runtime::Handle::current();
        let dead_letters = Arc::new(DeadLetters::new(kafka)?);
        let recreations = Arc::new(AtomicU64::new(0));
        let stalled_by_recreation = Arc::new(AtomicBool::new(false));
        // Only the bucket's writes need to know whether this process was paused (see `lease`).
        let pulse = match &destination {
            Destination::Objects(..) => Some(Pulse::start(kafka.session_timeout)?),
            Destination::Files(_) => None,
        };
        let mut threads = Vec::new();
        for index in 0..kafka.consumers {
            let shared = Arc::new(Shared {
                index,
                topic: kafka.topic.clone(),
                destination: destination.clone(),
                runtime: runtime.clone(),
                dead_letters: dead_letters.clone(),
                limits: Limits {
                    max_records: 1,
                    max_field_bytes: settings.max_field_bytes,
                    max_hours: 1,
                },
                metrics: metrics.clone(),
                stop: stop.clone(),
                owned: owned.clone(),
                assigned: assigned.clone(),
                stalled: stalled.clone(),
                recreations: recreations.clone(),
                stalled_by_recreation: stalled_by_recreation.clone(),
                lease: pulse.clone().map(|pulse| Arc::new(Lease::new(pulse))),
                state: Mutex::new(State::default()),
                // At least one producer batch (ours hold up to kafka.batchSize messages).
                resume_window: kafka.batch_size.max(1000) as i64,
            });
            let consumer: BaseConsumer<GroupContext> = consumer_config(kafka, index)
                .create_with_context(GroupContext {
                    shared: shared.clone(),
                })?;
            consumer.subscribe(&[&kafka.topic])?;
            let flush_size = settings.consumer.flush_size;
            let flush_interval = settings.consumer.flush_interval;
            let thread = std::thread::Builder::new()
                .name(format!("kafka-consumer-{index}"))
                .spawn(move || run(consumer, shared, flush_size, flush_interval))?;
            threads.push(thread);
        }
        Ok(ConsumerGroup {
            threads,
            stop,
            owned,
            assigned,
            consumers: kafka.consumers,
            stalled,
            recreations,
            dead_letters,
            stalled_by_recreation,
        })
    }

    /// Whether a consumer stopped reading because the topic was created again while it writes
    /// to the bucket (see [`Shared::restart_incarnation`]).
    pub fn stalled_by_recreation(&self) -> bool {
        self.stalled_by_recreation.load(Ordering::Relaxed)
    }

    /// What the probe calls when it sees the topic created again (see [`Recreations`]).
    pub fn recreations(&self) -> Recreations {
        Recreations {
            count: self.recreations.clone(),
            dead_letters: self.dead_letters.clone(),
        }
    }

    /// Partitions stalled behind a dead letter that failed to go out (retried with back-off).
    pub fn stalled_partitions(&self) -> usize {
        self.stalled.lock().expect("stalled lock").values().sum()
    }

    /// The partitions the consumers of this process own now, if every consumer holds an
    /// assignment; `None` before they have joined the group and during a rebalance, when the
    /// ownership of every partition is open.
    pub fn owned_partitions(&self) -> Option<BTreeSet<i32>> {
        let owned = self.owned.lock().expect("owned lock").clone();
        (self.assigned.load(Ordering::Relaxed) >= self.consumers).then_some(owned)
    }

    /// Flushes every buffer, checkpoints, commits, leaves the group and waits for the threads.
    pub async fn shutdown(self) {
        self.stop.store(true, Ordering::Relaxed);
        let threads = self.threads;
        let _ = tokio::task::spawn_blocking(move || {
            for thread in threads {
                if thread.join().is_err() {
                    tracing::error!("a Kafka consumer thread panicked");
                }
            }
        })
        .await;
    }
}

/// The settings of consumer `index` of the group (`bench/broker.rs` measures the broker through
/// the same settings).
pub fn consumer_config(kafka: &KafkaConfig, index: usize) -> ClientConfig {
    let mut client = base_config(kafka);
    client
        .set("group.id", &kafka.group_id)
        .set("client.id", format!("log-pipeline-consumer-{index}"))
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        .set("auto.offset.reset", "earliest")
        .set(
            "session.timeout.ms",
            kafka.session_timeout.as_millis().to_string(),
        )
        .set("heartbeat.interval.ms", "1000")
        .set("statistics.interval.ms", "1000")
        // Keep the fetcher busy: no 1 s back-off when the local queue is momentarily full
        // (librdkafka's default `fetch.queue.backoff.ms`). The fetch size bounds most of the
        // memory (see `kafka.fetchMaxBytes`).
        .set("fetch.max.bytes", kafka.fetch_max_bytes.to_string())
        .set(
            "max.partition.fetch.bytes",
            kafka
                .fetch_max_bytes
                .min(MAX_PARTITION_FETCH_BYTES)
                .to_string(),
        )
        .set("fetch.queue.backoff.ms", "5")
        .set("queued.max.messages.kbytes", "32768");
    client
}

/// One consumer's loop: poll, buffer, flush when full or old; flush and leave when stopped.
fn run(
    consumer: BaseConsumer<GroupContext>,
    shared: Arc<Shared>,
    flush_size: usize,
    flush_interval: Duration,
) {
    // While one flush is being written, messages keep arriving into the buffer, up to this many;
    // the next flush takes them all. That keeps the fsync latency off the consumption rate.
    let buffer_cap = match &shared.destination {
        Destination::Files(_) => flush_size,
        Destination::Objects(_, limits) => limits.max_messages,
    }
    .max(MIN_BUFFER_CAP);
    while !shared.stop.load(Ordering::Relaxed) {
        shared.confirm_lease(&consumer);
        let (buffered, due, flushing) = {
            let mut state = shared.state();
            let flushing = state.flushing.is_some();
            match &shared.destination {
                Destination::Files(_) => {
                    let due = state.buffer.messages >= flush_size
                        || state
                            .buffer
                            .started
                            .is_some_and(|started| started.elapsed() >= flush_interval);
                    (state.buffer.messages, due, flushing)
                }
                Destination::Objects(_, limits) => {
                    let buffered = state.buffer.ranges.messages();
                    // A full buffer closes every range where it is, so the next flush frees it.
                    let due =
                        (state.buffer.ranges).seal_due(limits.max_age, buffered >= buffer_cap);
                    (buffered, due, flushing)
                }
            }
        };
        if buffered >= buffer_cap && flushing {
            // Full while the previous flush is still being written: wait for it.
            if shared.finish_flush(&consumer, CommitMode::Async, true) == Some(false) {
                std::thread::sleep(RETRY_BACKOFF);
            }
            continue;
        }
        let timeout = if flushing {
            FLUSHING_POLL_TIMEOUT
        } else {
            POLL_TIMEOUT
        };
        match consumer.poll(timeout) {
            Some(Ok(message)) if shared.verify_incarnation(&consumer, &message) => {
                shared.take(&consumer, &message);
            }
            Some(Ok(_)) => {}
            Some(Err(err)) => {
                tracing::warn!(error = %err, "Kafka consumer error");
                // The broker may have restarted without its storage: check which topic it
                // holds before taking anything more.
                shared.state().verify = true;
            }
            None => {}
        }
        shared.tend_dead_letters(&consumer);
        if shared.finish_flush(&consumer, CommitMode::Async, false) == Some(false) {
            std::thread::sleep(RETRY_BACKOFF);
        }
        if due {
            shared.start_flush();
        }
    }
    shared.flush_all(&consumer, CommitMode::Sync);
    // Dropping the consumer closes it: the revoke callback runs (nothing left to flush) and the
    // group is left at once rather than after the session timeout.
    drop(consumer);
}

/// What a consumer thread and its callbacks share.
struct Shared {
    /// Which of the group's consumers (`kafka-consumer-<index>`).
    index: usize,
    topic: String,
    destination: Destination,
    /// The runtime the store's writes and the dead-letter sends run on.
    runtime: tokio::runtime::Handle,
    dead_letters: Arc<DeadLetters>,
    limits: Limits,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
    /// The partitions of every consumer of this process (see [`ConsumerGroup::owned_partitions`]).
    owned: Arc<Mutex<BTreeSet<i32>>>,
    /// See [`ConsumerGroup::assigned`].
    assigned: Arc<AtomicUsize>,
    /// See [`ConsumerGroup::stalled_partitions`].
    stalled: Arc<Mutex<BTreeMap<usize, usize>>>,
    /// See [`Recreations`].
    recreations: Arc<AtomicU64>,
    /// See [`ConsumerGroup::stalled_by_recreation`].
    stalled_by_recreation: Arc<AtomicBool>,
    /// With [`Destination::Objects`]: whether its partitions are still its own to write.
    lease: Option<Arc<Lease>>,
    state: Mutex<State>,
    /// The first rewind distance when the broker skips past a resume point.
    resume_window: i64,
}

/// The mutable part of a consumer (see "Threads and locks" above).
#[derive(Default)]
struct State {
    buffer: Buffer,
    /// The flush being written, if any.
    flushing: Option<Flush>,
    /// Per assigned partition: where it resumes (see [`resume`]).
    resume: BTreeMap<i32, Resume>,
    /// Per partition paused behind a dead letter: that dead letter.
    dead_letters: BTreeMap<i32, PendingDeadLetter>,
    /// With [`Destination::Objects`]: the partitions whose next range must first look for the
    /// end an earlier writer decided (after an assignment or a rewind, until one has none).
    lookups: BTreeSet<i32>,
    /// With [`Destination::Objects`]: where the kept copy of each recent keyed record is.
    kept: KeptCopies,
    /// With [`Destination::Objects`]: the newly assigned partitions whose keyed records stored
    /// by earlier owners are not in `kept` yet.
    seeds: BTreeSet<i32>,
    /// The topic's id when this consumer last checked (its positions belong to it), if known.
    incarnation: Option<TopicId>,
    /// The connection to the broker failed since the last check, or the probe saw the topic
    /// created again: check the topic's id before taking another message.
    verify: bool,
    /// [`Shared::recreations`] as last seen.
    recreations_seen: u64,
}

/// A buffer being written by the store.
struct Flush {
    write: tokio::task::JoinHandle<Result<(), String>>,
    partitions: BTreeMap<i32, (i64, i64)>,
    produced_at: Vec<i64>,
    /// The records of keyed batches it writes (not in the ledger until it is done).
    keyed: KeyedWrites,
    /// The topic's id its offsets belong to (committed with them).
    incarnation: Option<TopicId>,
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

/// A dead letter on its way; its partition is paused until the broker has it.
struct PendingDeadLetter {
    letter: Arc<DeadLetter>,
    /// The send in flight, if any.
    sending: Option<tokio::task::JoinHandle<Result<(), String>>>,
    /// Failed sends so far.
    failures: u32,
    /// When to send again after a failure.
    retry_at: Instant,
}

impl PendingDeadLetter {
    fn failed(&mut self, reason: &str) {
        self.failures += 1;
        let backoff = DEAD_LETTER_BACKOFF
            .saturating_mul(1 << self.failures.min(6))
            .min(MAX_DEAD_LETTER_BACKOFF);
        self.retry_at = Instant::now() + backoff;
        tracing::warn!(
            error = reason,
            partition = self.letter.partition,
            offset = self.letter.offset,
            failures = self.failures,
            retry_in = ?backoff,
            "cannot deliver a dead letter; its partition waits, the others go on"
        );
    }
}

/// Consumed messages not yet stored.
#[derive(Default)]
struct Buffer {
    batch: EncodedBatch,
    /// Messages buffered, valid or dead-lettered.
    messages: usize,
    /// Per partition: the first buffered offset (to rewind to after a failed flush) and the next
    /// offset after the buffered messages (the checkpoint and commit position).
    partitions: BTreeMap<i32, (i64, i64)>,
    /// Produce timestamps (ms since the epoch) of buffered records, for the latency histogram.
    produced_at: Vec<i64>,
    /// The buffered records of keyed batches.
    keyed: KeyedWrites,
    /// When the oldest buffered message arrived.
    started: Option<Instant>,
    /// With [`Destination::Objects`], the messages are in these ranges instead of `batch`.
    ranges: Ranges,
}

impl Buffer {
    /// Counts the message at `offset` of `partition` as consumed: its offset is stored with the
    /// next flush.
    fn consumed(&mut self, partition: i32, offset: i64) {
        self.messages += 1;
        self.started.get_or_insert_with(Instant::now);
        let entry = self
            .partitions
            .entry(partition)
            .or_insert((offset, offset + 1));
        entry.1 = offset + 1;
    }
}

impl Shared {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("consumer state lock")
    }

    /// Whether `message` may be taken: before the first message after a failed connection to the
    /// broker (or after the probe saw the topic created again), asks the broker for the topic's
    /// id (see [`topic_id`]). The same as this consumer's positions, or none reported: yes. Another
    /// one: the topic was created again and its offsets restarted from 0 (see
    /// [`Shared::restart_incarnation`]); no. No answer: no, and the message is read again after a
    /// pause.
    fn verify_incarnation(
        &self,
        consumer: &BaseConsumer<GroupContext>,
        message: &BorrowedMessage<'_>,
    ) -> bool {
        let recreations = self.recreations.load(Ordering::Acquire);
        {
            let mut state = self.state();
            if recreations != state.recreations_seen {
                state.recreations_seen = recreations;
                state.verify = true;
            }
            if !state.verify {
                return true;
            }
        }
        let now = match topic_id::describe(consumer.client(), &self.topic, VERIFY_TIMEOUT) {
            Ok(Described::Id(id)) => id,
            Ok(Described::NoId) => {
                // A broker that reports no topic ids: positions cannot be told apart.
                self.state().verify = false;
                return true;
            }
            Err(err) => {
                tracing::warn!(error = %err, consumer = self.index, "cannot ask the broker which topic it holds; reading again after a pause");
                self.seek(consumer, message.partition(), message.offset());
                std::thread::sleep(RETRY_BACKOFF);
                return false;
            }
        };
        let before = {
            let mut state = self.state();
            state.verify = false;
            state.incarnation.replace(now)
        };
        match before {
            Some(before) if before != now => {
                self.restart_incarnation(consumer, before, now);
                false
            }
            _ => true,
        }
    }

    /// The topic was created again (its id went from `before` to `now`): what was read from the
    /// old one is stored as it is, and every partition of this consumer is read again from the
    /// beginning of the new one, whose offsets mean nothing to the positions kept so far.
    ///
    /// With the bucket, ranges are named by offsets, and the new topic's would land on the
    /// objects of the old one: the consumer stops taking messages instead (and says why on
    /// `/ready`), so that nothing stored is ever replaced.
    fn restart_incarnation(
        &self,
        consumer: &BaseConsumer<GroupContext>,
        before: TopicId,
        now: TopicId,
    ) {
        let assignment = consumer.assignment().unwrap_or_default();
        let partitions: Vec<i32> = assignment
            .elements_for_topic(&self.topic)
            .iter()
            .map(|element| element.partition())
            .collect();
        if self.writes_objects() {
            tracing::error!(
                consumer = self.index,
                %before,
                %now,
                "the Kafka topic was created again; its offsets would name objects the bucket already holds, so this consumer stops reading (see docs: the broker lost its storage)"
            );
            self.flush_all(consumer, CommitMode::Sync);
            self.stalled_by_recreation.store(true, Ordering::Relaxed);
            for partition in partitions {
                self.pause(consumer, partition, true);
            }
            return;
        }
        tracing::warn!(
            consumer = self.index,
            %before,
            %now,
            partitions = ?partitions,
            "the Kafka topic was created again: storing what was read from the old one, then reading its partitions from the beginning"
        );
        self.flush_all(consumer, CommitMode::Sync);
        let mut state = self.state();
        for partition in &partitions {
            state
                .resume
                .insert(*partition, Resume::at(0, self.resume_window));
            // A dead letter of the old topic: its offset means nothing in the new one.
            state.dead_letters.remove(partition);
        }
        self.report_stalled(&state);
        drop(state);
        for partition in partitions {
            self.seek(consumer, partition, 0);
            self.pause(consumer, partition, false);
        }
    }

    /// Buffers one message, or dead-letters it if it is not a valid record.
    fn take(&self, consumer: &BaseConsumer<GroupContext>, message: &BorrowedMessage<'_>) {
        let partition = message.partition();
        let offset = message.offset();
        let mut state = self.state();
        if let Some(resume) = state.resume.get_mut(&partition) {
            match resume.admit(offset) {
                Admission::Take => {}
                Admission::TakeAfterGap { floor } => tracing::warn!(
                    partition,
                    floor,
                    first = offset,
                    "offsets missing from the partition; continuing after the gap"
                ),
                Admission::AlreadyStored => return,
                Admission::Rewind { to } => {
                    tracing::warn!(
                        partition,
                        first = offset,
                        rewind_to = to,
                        "the broker skipped offsets after the resume point; reading again from earlier"
                    );
                    self.seek(consumer, partition, to);
                    return;
                }
            }
        }
        if state.dead_letters.contains_key(&partition) {
            // Paused behind a dead letter; read again from after it once it is delivered.
            return;
        }
        let objects = match &self.destination {
            Destination::Objects(objects, _) => Some(objects),
            Destination::Files(_) => None,
        };
        if let Some(objects) = objects
            && let Err((first, err)) = self.prepare_range(&mut state, objects, partition, offset)
        {
            tracing::error!(error = %err, partition, offset = first, "cannot read the bucket; reading the partition again from here after a pause");
            state
                .resume
                .insert(partition, Resume::at(first, self.resume_window));
            drop(state);
            self.seek(consumer, partition, first);
            std::thread::sleep(RETRY_BACKOFF);
            return;
        }
        // Keyed batches are deduplicated against this machine's ledger, or with the bucket by
        // where each record's kept copy is (`KeptCopies`).
        let keyed = KeyedRecord::of(message);
        if let Some(record) = &keyed
            && self.already_stored(&state, record, partition, offset)
        {
            // Produced again by a retry of its batch: consumed, not stored twice.
            if objects.is_some() {
                state.buffer.ranges.copy_dropped(partition, offset);
            }
            self.consumed(&mut state, partition, offset);
            self.metrics.kafka_consumed_messages.inc();
            self.metrics.idempotency_duplicates_dropped.inc();
            return;
        }
        let value = message.payload().unwrap_or_default();
        let batch = match objects {
            Some(_) => state.buffer.ranges.batch(partition),
            None => &mut state.buffer.batch,
        };
        match ingest::append_record(value, &self.limits, batch) {
            Ok(()) => {
                let produced = message
                    .timestamp()
                    .to_millis()
                    .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
                match objects {
                    Some(_) => state.buffer.ranges.produced(partition, produced),
                    None => state.buffer.produced_at.push(produced),
                }
                self.consumed(&mut state, partition, offset);
                match keyed {
                    Some(record) if objects.is_some() => {
                        state.kept.keep(&record, partition, offset);
                        // For whoever starts after this range (see `prepare_range`).
                        state.buffer.ranges.kept(partition, &record, offset);
                    }
                    Some(record) => state
                        .buffer
                        .keyed
                        .entry(record.key)
                        .or_insert_with(|| (record.fingerprint, record.records, Written::default()))
                        .2
                        .insert(record.index),
                    None => {}
                }
                self.metrics.kafka_consumed_messages.inc();
            }
            Err(err) => {
                // Its offset counts as consumed only once the dead-letter topic has it; until
                // then its partition is paused, and the others go on.
                let letter = Arc::new(DeadLetter::of(message, err.describe()));
                let pending = PendingDeadLetter {
                    sending: Some(self.send_dead_letter(&letter)),
                    letter,
                    failures: 0,
                    retry_at: Instant::now(),
                };
                state.dead_letters.insert(partition, pending);
                drop(state);
                self.pause(consumer, partition, true);
            }
        }
    }

    /// With the bucket, before the message at `offset` of `partition` is taken: after an
    /// assignment, the keyed records earlier owners stored before where reading starts are in
    /// `kept` (a batch retried through another instance has its later copy in this partition);
    /// and a range is open for the message, ending where an earlier writer decided, if one did
    /// (see [`crate::objects`]). If the bucket does not answer: where to read again from.
    fn prepare_range(
        &self,
        state: &mut State,
        objects: &Objects,
        partition: i32,
        offset: i64,
    ) -> Result<(), (i64, ObjectError)> {
        if state.buffer.ranges.ready_for(partition, offset) {
            return Ok(());
        }
        let first = state.buffer.ranges.first_for(partition, offset);
        let unread = |err| (first, err);
        if state.seeds.contains(&partition) {
            let kept = (self.runtime)
                .block_on(objects.kept_before(&self.topic, partition, first))
                .map_err(unread)?;
            let records = state.kept.seed(partition, &kept);
            tracing::info!(
                partition,
                before = first,
                records,
                consumer = self.index,
                "keyed records stored by earlier owners of the partition, read from its intents"
            );
            state.seeds.remove(&partition);
        }
        let decided = if state.lookups.contains(&partition) {
            (self.runtime)
                .block_on(objects.decided(&self.topic, partition, first))
                .map_err(unread)?
        } else {
            None
        };
        if decided.is_none() {
            state.lookups.remove(&partition);
        }
        state.buffer.ranges.open(partition, first, decided);
        Ok(())
    }

    /// After this process was paused (see [`Lease`]): confirms that the group still holds this
    /// consumer's assignment, so that its writes go on. Two requests through librdkafka's main
    /// thread, one after the other: that thread serves its queue, then checks the group session
    /// (`rd_kafka_cgrp_serve`, which lets the assignment go when no heartbeat was answered for
    /// `session.timeout.ms`), so by the second answer that check has run since the pause.
    fn confirm_lease(&self, consumer: &BaseConsumer<GroupContext>) {
        let Some(lease) = &self.lease else { return };
        let Some(pauses) = lease.unconfirmed() else {
            return;
        };
        for _ in 0..2 {
            if let Err(err) = consumer.assignment() {
                tracing::warn!(error = %err, consumer = self.index, "cannot ask librdkafka for the assignment; writes to the bucket wait");
                return;
            }
        }
        if consumer.assignment_lost() {
            // The revocation that follows lets the partitions go.
            return;
        }
        lease.confirm(pauses);
        tracing::info!(
            consumer = self.index,
            "the assignment stands after the pause; writing to the bucket again"
        );
    }

    /// Counts the message at `offset` of `partition` as consumed: in the buffer for the store
    /// ([`Buffer::consumed`]), or in its partition's open range.
    fn consumed(&self, state: &mut State, partition: i32, offset: i64) {
        match &self.destination {
            Destination::Files(_) => state.buffer.consumed(partition, offset),
            Destination::Objects(_, limits) => {
                state.buffer.ranges.consumed(partition, offset, limits)
            }
        }
    }

    fn writes_objects(&self) -> bool {
        matches!(self.destination, Destination::Objects(..))
    }

    /// Whether a record of a keyed batch (at `offset` of `partition`) is stored, or being stored,
    /// already: with the bucket, whether another copy of it was kept.
    fn already_stored(
        &self,
        state: &State,
        record: &KeyedRecord,
        partition: i32,
        offset: i64,
    ) -> bool {
        if self.writes_objects() {
            // A range read again does what its first writer did; otherwise, by position.
            return (state.buffer.ranges.decided_copy(partition, offset))
                .unwrap_or_else(|| state.kept.is_copy(record, partition, offset));
        }
        if holds(&state.buffer.keyed, record)
            || state
                .flushing
                .as_ref()
                .is_some_and(|flush| holds(&flush.keyed, record))
        {
            return true;
        }
        let Destination::Files(store) = &self.destination else {
            return false;
        };
        store
            .ledger()
            .holds_record(record.key, record.fingerprint, record.index)
    }

    fn send_dead_letter(
        &self,
        letter: &Arc<DeadLetter>,
    ) -> tokio::task::JoinHandle<Result<(), String>> {
        let (dead_letters, letter) = (self.dead_letters.clone(), letter.clone());
        self.runtime
            .spawn(async move { dead_letters.send(&letter).await })
    }

    /// Completes delivered dead letters (their partition resumes after them) and retries failed
    /// ones with a growing back-off, without ever blocking the poll loop.
    fn tend_dead_letters(&self, consumer: &BaseConsumer<GroupContext>) {
        let mut state = self.state();
        if state.dead_letters.is_empty() {
            return;
        }
        let mut delivered = Vec::new();
        for (partition, pending) in state.dead_letters.iter_mut() {
            if let Some(sending) = &pending.sending
                && sending.is_finished()
            {
                let sending = pending.sending.take().expect("checked above");
                match self.runtime.block_on(sending) {
                    Ok(Ok(())) => {
                        delivered.push((*partition, pending.letter.clone()));
                        continue;
                    }
                    Ok(Err(reason)) => pending.failed(&reason),
                    Err(join) => pending.failed(&join.to_string()),
                }
                self.metrics.kafka_dead_letter_failures.inc();
            }
            if pending.sending.is_none() && Instant::now() >= pending.retry_at {
                pending.sending = Some(self.send_dead_letter(&pending.letter));
            }
        }
        for (partition, letter) in &delivered {
            state.dead_letters.remove(partition);
            self.consumed(&mut state, *partition, letter.offset);
            state.resume.insert(
                *partition,
                Resume::at(letter.offset + 1, self.resume_window),
            );
            self.metrics.kafka_dead_letters.inc();
            self.metrics.kafka_consumed_messages.inc();
            tracing::warn!(partition, offset = letter.offset, reason = %letter.reason, truncated = letter.truncated(), topic = %self.dead_letters.topic(), "message is not a valid record; sent to the dead-letter topic");
        }
        self.report_stalled(&state);
        drop(state);
        for (partition, letter) in delivered {
            self.seek(consumer, partition, letter.offset + 1);
            self.pause(consumer, partition, false);
        }
    }

    /// Pauses (or resumes) one partition of the topic.
    fn pause(&self, consumer: &BaseConsumer<GroupContext>, partition: i32, pause: bool) {
        let mut partitions = TopicPartitionList::new();
        partitions.add_partition(&self.topic, partition);
        let done = if pause {
            consumer.pause(&partitions)
        } else {
            consumer.resume(&partitions)
        };
        if let Err(err) = done {
            tracing::error!(error = %err, partition, pause, "pausing or resuming a partition failed");
        }
    }

    /// Counts this consumer's partitions stalled behind a dead letter that failed to go out.
    fn report_stalled(&self, state: &State) {
        let stalled = state
            .dead_letters
            .values()
            .filter(|pending| pending.failures > 0)
            .count();
        self.metrics
            .kafka_stalled_partitions
            .with_label_values(&[&self.index.to_string()])
            .set(stalled as i64);
        self.stalled
            .lock()
            .expect("stalled lock")
            .insert(self.index, stalled);
    }

    fn seek(&self, consumer: &BaseConsumer<GroupContext>, partition: i32, offset: i64) {
        if let Err(err) = consumer.seek(
            &self.topic,
            partition,
            Offset::Offset(offset),
            BROKER_TIMEOUT,
        ) {
            tracing::error!(error = %err, partition, offset, "seek failed");
        }
    }

    /// Hands the buffer to the store, with the checkpoint of its partitions, without waiting,
    /// unless a flush is already in flight or nothing is buffered.
    fn start_flush(&self) {
        let mut state = self.state();
        if state.flushing.is_some() {
            return;
        }
        let store = match &self.destination {
            Destination::Files(store) => store.clone(),
            Destination::Objects(objects, _) => {
                // The sealed ranges; open ones go on filling.
                let taken = state.buffer.ranges.take_sealed();
                if taken.ranges.is_empty() {
                    return;
                }
                let (objects, topic) = (objects.clone(), self.topic.clone());
                let ranges = taken.ranges;
                let lease = self.lease.clone().expect("a lease with the bucket");
                let write = self.runtime.spawn(async move {
                    objects
                        .write_owned(&topic, ranges, &*lease)
                        .await
                        .map_err(|err| err.to_string())
                });
                state.flushing = Some(Flush {
                    write,
                    partitions: taken.partitions,
                    produced_at: taken.produced_at,
                    keyed: KeyedWrites::default(),
                    incarnation: state.incarnation,
                });
                return;
            }
        };
        if state.buffer.partitions.is_empty() {
            return;
        }
        let Buffer {
            batch,
            partitions,
            produced_at,
            keyed,
            ..
        } = std::mem::take(&mut state.buffer);
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
        let write = self.runtime.spawn(async move {
            store
                .append_with_checkpoint(batch, checkpoint, updates)
                .await
                .map_err(|err| err.to_string())
        });
        let incarnation = state.incarnation;
        state.flushing = Some(Flush {
            write,
            partitions,
            produced_at,
            keyed,
            incarnation,
        });
    }

    /// Completes the flush in flight if it is done (or, with `wait`, once it is): commits its
    /// offsets. `None` if there was nothing to complete, else whether it was stored. A failed
    /// flush rewinds its partitions (and those of everything buffered after it) to read them again.
    fn finish_flush(
        &self,
        consumer: &BaseConsumer<GroupContext>,
        mode: CommitMode,
        wait: bool,
    ) -> Option<bool> {
        let flush = {
            let mut state = self.state();
            if !wait && !state.flushing.as_ref()?.write.is_finished() {
                return None;
            }
            state.flushing.take()?
        };
        let stored = match self.runtime.block_on(flush.write) {
            Ok(stored) => stored,
            Err(err) => Err(err.to_string()),
        };
        if let Err(reason) = stored {
            tracing::error!(error = %reason, "cannot store consumed records; rewinding to read them again");
            let mut state = self.state();
            let later = std::mem::take(&mut state.buffer);
            let mut rewind: BTreeMap<i32, i64> = later.ranges.firsts();
            rewind.extend(later.partitions.iter().map(|(p, (first, _))| (*p, *first)));
            rewind.extend(flush.partitions.iter().map(|(p, (first, _))| (*p, *first)));
            for (partition, first) in rewind {
                state
                    .resume
                    .insert(partition, Resume::at(first, self.resume_window));
                if self.writes_objects() {
                    // What was written may have its intent: the range is read again up to its end.
                    state.lookups.insert(partition);
                    state.buffer.ranges.start_at(partition, first);
                }
                self.seek(consumer, partition, first);
            }
            return Some(false);
        }
        let now = chrono::Utc::now().timestamp_millis();
        for produced in flush.produced_at {
            self.metrics
                .kafka_end_to_end
                .observe((now - produced).max(0) as f64 / 1000.0);
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, (_, next)) in &flush.partitions {
            let mut element = offsets.add_partition(&self.topic, *partition);
            let _ = element.set_offset(Offset::Offset(*next));
            if let Some(id) = flush.incarnation {
                // Which incarnation of the topic the offset counts in: a committed offset of
                // another one is ignored when the partition is assigned.
                element.set_metadata(id.to_string());
            }
        }
        if let Err(err) = consumer.commit(&offsets, mode) {
            // Not fatal: the checkpoint stored with the lines is what prevents re-writing them.
            tracing::warn!(error = %err, "offset commit failed; the stored checkpoint covers it");
        }
        Some(true)
    }

    /// Stores everything read so far and commits it, waiting: before partitions are let go and
    /// at shutdown. Returns whether everything was stored.
    /// With the bucket, open ranges are sealed where they are, except those waiting for a
    /// decided end: they are dropped, and whoever reads their partition next completes them.
    fn flush_all(&self, consumer: &BaseConsumer<GroupContext>, mode: CommitMode) -> bool {
        if self.finish_flush(consumer, mode, true) == Some(false) {
            return false;
        }
        self.state().buffer.ranges.seal_due(Duration::ZERO, true);
        self.start_flush();
        let stored = self.finish_flush(consumer, mode, true) != Some(false);
        self.state().buffer.ranges.drop_open();
        stored
    }

    /// Positions each newly assigned partition after what is already stored here
    /// ([`resume::start_position`]) and records its resume point.
    fn assign(&self, consumer: &BaseConsumer<GroupContext>, assigned: &mut TopicPartitionList) {
        let checkpoint = match &self.destination {
            Destination::Files(store) => store.checkpoint(),
            // Nothing here: the committed offset and the intents in the bucket say it all.
            Destination::Objects(..) => Checkpoint::new(),
        };
        let committed = consumer
            .committed_offsets(assigned.clone(), BROKER_TIMEOUT)
            .ok();
        let partitions: Vec<(String, i32)> = assigned
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        // Which incarnation of the topic the broker holds now (see `topic_id`).
        let current = match topic_id::describe(consumer.client(), &self.topic, BROKER_TIMEOUT) {
            Ok(Described::Id(id)) => Some(id),
            Ok(Described::NoId) | Err(_) => None,
        };
        let mut state = self.state();
        let recreated = match (state.incarnation, current) {
            (Some(before), Some(now)) if before != now => {
                tracing::warn!(%before, %now, consumer = self.index, "the Kafka topic was created again since this consumer last read it: its checkpoint is ignored");
                true
            }
            _ => false,
        };
        if current.is_some() {
            state.incarnation = current;
            state.verify = false;
        }
        if recreated && self.writes_objects() {
            // See `restart_incarnation`: nothing of the new topic is read into the bucket.
            drop(state);
            tracing::error!(
                consumer = self.index,
                "the Kafka topic was created again; its offsets would name objects the bucket already holds, so this consumer does not read it (see docs: the broker lost its storage)"
            );
            self.stalled_by_recreation.store(true, Ordering::Relaxed);
            let _ = consumer.pause(assigned);
            return;
        }
        for (topic, partition) in partitions {
            let saved = checkpoint
                .get(&checkpoint_key(&topic, partition))
                .copied()
                .filter(|_| !recreated);
            let element = committed
                .as_ref()
                .and_then(|c| c.find_partition(&topic, partition));
            let voided = element
                .as_ref()
                .is_some_and(|e| !same_incarnation(e.metadata(), current));
            let committed = element.filter(|_| !voided).and_then(|e| match e.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            });
            let high_watermark = || {
                consumer
                    .fetch_watermarks(&topic, partition, BROKER_TIMEOUT)
                    .ok()
                    .map(|(_, high)| high)
            };
            let (start, ignored) =
                resume::start_position(saved, committed, high_watermark, self.resume_window);
            if ignored {
                tracing::warn!(
                    %topic,
                    partition,
                    checkpoint = saved,
                    "checkpoint is beyond the end of the partition and the group has no committed offset: \
                     the topic was recreated; starting from its beginning"
                );
            }
            tracing::info!(%topic, partition, checkpoint = ?saved, ?committed, ?start, consumer = self.index, "partition assigned");
            if let Destination::Objects(objects, _) = &self.destination {
                state.buffer.ranges.forget(partition);
                state.lookups.insert(partition);
                state.seeds.insert(partition);
                // Its lag counts from the committed offset until this process writes.
                objects.forget_written(partition);
            }
            if start == Start::Beginning && voided {
                // Explicitly: left unset, the client would start at the committed offset of the
                // old incarnation.
                let _ = assigned.set_partition_offset(&topic, partition, Offset::Beginning);
            }
            if let Start::At(offset) = start {
                let _ = assigned.set_partition_offset(&topic, partition, Offset::Offset(offset));
                state
                    .resume
                    .insert(partition, Resume::at(offset, self.resume_window));
                if self.writes_objects() {
                    state.buffer.ranges.start_at(partition, offset);
                }
            }
        }
        drop(state);
        if let Some(lease) = &self.lease {
            lease.hold(assigned.elements().iter().map(|e| e.partition()));
        }
        let mut owned = self.owned.lock().expect("owned lock");
        owned.extend(assigned.elements().iter().map(|e| e.partition()));
        drop(owned);
        self.assigned.fetch_add(1, Ordering::Relaxed);
        self.report_assignment(assigned.count() as i64);
    }

    /// Lets go of revoked partitions, after what was read from them is stored and committed.
    fn revoke(&self, consumer: &BaseConsumer<GroupContext>, revoked: &TopicPartitionList) {
        if self.writes_objects() && consumer.assignment_lost() {
            // Another instance owns them already (this one was too slow to poll): writing new
            // ranges now could race it. What was read is read again by the new owner.
            tracing::warn!(
                consumer = self.index,
                "assignment lost; dropping what was read and not yet written"
            );
            // A flush in flight writes nothing more of them either.
            if let Some(lease) = &self.lease {
                lease.let_go(revoked.elements().iter().map(|e| e.partition()));
            }
            let mut state = self.state();
            for element in revoked.elements() {
                state.buffer.ranges.forget(element.partition());
            }
        }
        self.flush_all(consumer, CommitMode::Sync);
        if let Some(lease) = &self.lease {
            lease.let_go(revoked.elements().iter().map(|e| e.partition()));
        }
        let mut state = self.state();
        for element in revoked.elements() {
            let _ = self
                .metrics
                .kafka_consumer_lag
                .remove_label_values(&[&element.partition().to_string()]);
            state.resume.remove(&element.partition());
            state.lookups.remove(&element.partition());
            state.seeds.remove(&element.partition());
            state.buffer.ranges.forget(element.partition());
            // Not consumed: the next owner reads (and dead-letters) it again.
            state.dead_letters.remove(&element.partition());
        }
        self.report_stalled(&state);
        drop(state);
        let mut owned = self.owned.lock().expect("owned lock");
        for element in revoked.elements() {
            owned.remove(&element.partition());
        }
        drop(owned);
        let _ = self
            .assigned
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| n.checked_sub(1));
        self.report_assignment(0);
        tracing::info!(
            partitions = revoked.count(),
            consumer = self.index,
            "partitions revoked"
        );
    }

    fn report_assignment(&self, partitions: i64) {
        self.metrics
            .kafka_consumer_partitions
            .with_label_values(&[&self.index.to_string()])
            .set(partitions);
    }
}

/// librdkafka callbacks of one consumer: rebalances and statistics.
struct GroupContext {
    shared: Arc<Shared>,
}

impl ClientContext for GroupContext {
    /// Consumer lag per partition: the partition's high watermark minus the next offset that is
    /// durably stored here (the checkpoint), for the partitions this consumer owns.
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.shared.topic) else {
            return;
        };
        let stored_now = self.shared.destination.stored();
        // Statistics gathered before a revocation may arrive after it: a partition let go
        // since gets no series again.
        let owned = self.shared.owned.lock().expect("owned lock").clone();
        for (partition, stats) in &topic.partitions {
            if *partition < 0 || !stats.desired || stats.hi_offset < 0 || !owned.contains(partition)
            {
                continue;
            }
            let stored = stored_now
                .next(&self.shared.topic, *partition)
                .unwrap_or(stats.committed_offset.max(0));
            self.shared
                .metrics
                .kafka_consumer_lag
                .with_label_values(&[&partition.to_string()])
                .set((stats.hi_offset - stored).max(0));
        }
    }
}

impl ConsumerContext for GroupContext {
    fn rebalance(
        &self,
        consumer: &BaseConsumer<Self>,
        err: RDKafkaRespErr,
        partitions: &mut TopicPartitionList,
    ) {
        match err {
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS => {
                self.shared.assign(consumer, partitions);
                log_result("assign", consumer.assign(partitions));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                self.shared.revoke(consumer, partitions);
                log_result("unassign", consumer.unassign());
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                log_result("unassign", consumer.unassign());
            }
        }
    }
}

/// Whether a committed offset whose metadata is `metadata` counts in the topic whose id is
/// `current`: committed by this version with another id, it does not (the topic was created
/// again since); without an id (an older version, or an unknown id), it is taken as it is.
fn same_incarnation(metadata: &str, current: Option<TopicId>) -> bool {
    match (TopicId::parse(metadata), current) {
        (Some(committed), Some(current)) => committed == current,
        _ => true,
    }
}

fn log_result(what: &str, result: KafkaResult<()>) {
    if let Err(err) = result {
        tracing::error!(error = %err, "{what} failed");
    }
}
