//! The consumer group that turns the topic back into stored records.
//!
//! Each of the `kafka.consumers` consumers runs on its own thread with a librdkafka
//! `BaseConsumer` and a [`Buffer`] from the [`Sink`] chosen at start-up (the hour files,
//! [`files`], or the bucket, [`bucket`]): the group's code here knows neither. A message whose
//! value is a valid record is encoded into the buffer; one that is not goes to the dead-letter
//! topic ([`DeadLetters`]) before its offset can count as consumed, so nothing is skipped
//! silently and a poison message never stalls its partition. A flush is due when the buffer says
//! so (its size or age); while one flush is being written the next buffer fills, so the write
//! latency does not limit the consumption rate:
//!
//! 1. the buffer is stored through the sink (with what makes a re-read harmless: the files'
//!    checkpoint, the bucket's intents);
//! 2. only then are the offsets committed to Kafka.
//!
//! When partitions are assigned, each starts after what the sink kept on this machine, else at
//! the committed offset ([`start_position`](super::resume::start_position)); the first messages after a start are
//! checked against it ([`Resume::admit`](super::resume::Resume::admit)). When partitions are revoked (rebalance, shutdown) the
//! buffer is flushed and committed synchronously before they are let go.
//!
//! Records of batches sent with an `Idempotency-Key` carry it ([`keyed`](super::keyed)); a
//! consumer drops such a record when its buffer says another copy is stored or being stored, so a
//! batch produced twice (a client retrying after a timeout) is stored once.
//!
//! Guarantee: every record acknowledged by Kafka is stored once by the process that consumes its
//! partition (each sink's module says what "once" covers across processes).
//!
//! # Where each part lives
//!
//! - this file: the group, its threads and their loop ([`run`]);
//! - [`sink`]: the seam ([`Sink`], [`Buffer`]); [`files`] and [`bucket`]: its two backends;
//! - `shared`: one consumer's state and how a message is taken;
//! - `incarnation`: which incarnation of the topic the positions belong to;
//! - `letters`: dead letters on their way;
//! - `flush`: flushes and commits; `rebalance`: assignments, revocations, statistics.
//!
//! # Threads and locks
//!
//! - One thread per consumer runs [`run`]; librdkafka calls the rebalance and statistics callbacks
//!   of `GroupContext` on that same thread, from inside `poll`. So the `State` mutex is never
//!   contended: it exists because the callbacks reach the state through a shared `&Shared`. It is
//!   never held across `poll` (a callback would deadlock on it).
//! - At most one flush is in flight per consumer, so checkpoints advance in order.
//! - The sink's writes run on the tokio runtime (`Shared::runtime`); the consumer thread waits
//!   for them with `block_on` only where it must (revocation, shutdown, a full buffer).

pub mod bucket;
pub mod files;
mod flush;
mod incarnation;
mod letters;
mod rebalance;
mod shared;
pub mod sink;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};

use super::dead_letter::DeadLetters;
use super::{KafkaSettings, base_config};
use crate::config::KafkaConfig;
use crate::ingest::Limits;
use crate::metrics::Metrics;
use rebalance::GroupContext;
use shared::{Shared, State};
pub use sink::{Buffer, Sink};

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
/// Broker requests made from rebalance callbacks (committed offsets, synchronous commits).
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

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

impl ConsumerGroup {
    /// Starts `kafka.consumers` consumers in group `kafka.groupID`, writing through `sink`.
    pub fn start(
        settings: &KafkaSettings,
        sink: Arc<dyn Sink>,
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
        let mut threads = Vec::new();
        for index in 0..kafka.consumers {
            let shared = Arc::new(Shared {
                index,
                topic: kafka.topic.clone(),
                sink: sink.clone(),
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
                state: Mutex::new(State::new(sink.buffer(
                    &kafka.topic,
                    index,
                    runtime.clone(),
                )?)),
                // At least one producer batch (ours hold up to kafka.batchSize messages).
                resume_window: kafka.batch_size.max(1000) as i64,
            });
            let consumer: BaseConsumer<GroupContext> = consumer_config(kafka, index)
                .create_with_context(GroupContext {
                    shared: shared.clone(),
                })?;
            consumer.subscribe(&[&kafka.topic])?;
            let thread = std::thread::Builder::new()
                .name(format!("kafka-consumer-{index}"))
                .spawn(move || run(consumer, shared))?;
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
fn run(consumer: BaseConsumer<GroupContext>, shared: Arc<Shared>) {
    // While one flush is being written, messages keep arriving into the buffer, up to this many;
    // the next flush takes them all. That keeps the write latency off the consumption rate.
    let buffer_cap = shared.state().buffer.cap().max(MIN_BUFFER_CAP);
    while !shared.stop.load(Ordering::Relaxed) {
        shared.confirm_lease(&consumer);
        let (buffered, due, flushing) = {
            let mut state = shared.state();
            let (buffered, due) = state.buffer.due(buffer_cap);
            (buffered, due, state.flushing.is_some())
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
