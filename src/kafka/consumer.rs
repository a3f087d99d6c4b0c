//! The consumer group that turns the topic back into hour files.
//!
//! Each of the `kafka.consumers` consumers runs on its own thread with a librdkafka
//! `BaseConsumer` and a buffer. A message whose value is a valid record is encoded into the
//! buffer; one that is not goes to the dead-letter topic (with the reason in an `error` header)
//! before its offset can count as consumed, so nothing is skipped silently and a poison message
//! never stalls its partition. The buffer is flushed every `consumer.flushSize` records or
//! `consumer.flushInterval`; while one flush is being written the next buffer fills, so fsync
//! latency does not limit the consumption rate (one flush in flight at a time keeps checkpoints
//! in order):
//!
//! 1. the records are appended through the [`Store`] (group commit, fsync) **together with a
//!    checkpoint** of every buffered partition's next offset (`topic/partition` → offset);
//! 2. only then are the offsets committed to Kafka.
//!
//! When partitions are assigned, each starts from the larger of its checkpoint and its committed
//! offset: after a crash between steps 1 and 2 the records already stored are not consumed again.
//! When partitions are revoked (rebalance, shutdown) the buffer is flushed, checkpointed and
//! committed synchronously before they are let go.
//!
//! Guarantee: every record acknowledged by Kafka is written to the hour files of the process that
//! consumes its partition, once. The limit: if a partition moves to a process with a *different*
//! logs directory after a crash between steps 1 and 2 of the old owner, the new owner resumes from
//! the committed offset and the records of that last flush are in both directories.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::FutureRecord;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Message, Offset, TopicPartitionList};

use super::producer::KafkaSink;
use super::{base_config, checkpoint_key};
use crate::config::Config;
use crate::ingest::{self, Limits};
use crate::metrics::Metrics;
use crate::record::EncodedBatch;
use crate::store::{Checkpoint, Store};

/// How long one `poll` waits for a message, which bounds how late a stop or a flush deadline is seen.
const POLL_TIMEOUT: Duration = Duration::from_millis(100);
/// Poll timeout while a flush is being written, so its completion is committed promptly.
const FLUSHING_POLL_TIMEOUT: Duration = Duration::from_millis(2);
/// Messages the buffer may hold while a flush is in flight, at least.
const MIN_BUFFER_CAP: usize = 50_000;
/// Back-off after a failed flush or dead-letter send before trying again.
const RETRY_BACKOFF: Duration = Duration::from_millis(500);
/// Broker requests made from rebalance callbacks (committed offsets, synchronous commits).
const BROKER_TIMEOUT: Duration = Duration::from_secs(10);

/// The running consumers; [`ConsumerGroup::shutdown`] flushes and stops them.
pub struct ConsumerGroup {
    threads: Vec<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
}

impl ConsumerGroup {
    /// Starts `kafka.consumers` consumers in group `kafka.groupID`.
    pub fn start(
        config: &Config,
        store: Store,
        dead_letters: KafkaSink,
        metrics: Metrics,
    ) -> anyhow::Result<ConsumerGroup> {
        let stop = Arc::new(AtomicBool::new(false));
        let runtime = tokio::runtime::Handle::current();
        let mut threads = Vec::new();
        for index in 0..config.kafka.consumers {
            let shared = Arc::new(Shared {
                topic: config.kafka.topic.clone(),
                dead_letter_topic: config.kafka.dead_letter_topic.clone(),
                store: store.clone(),
                runtime: runtime.clone(),
                dead_letters: dead_letters.clone(),
                limits: Limits {
                    max_records: 1,
                    max_field_bytes: config.ingestion.max_field_bytes,
                },
                metrics: metrics.clone(),
                stop: stop.clone(),
                buffer: Mutex::new(Buffer::default()),
                flushing: Mutex::new(None),
                resume: Mutex::new(BTreeMap::new()),
                // At least one producer batch (ours hold up to kafka.batchSize messages).
                resume_window: config.kafka.batch_size.max(1000) as i64,
            });
            let consumer: BaseConsumer<GroupContext> = base_config(config)
                .set("group.id", &config.kafka.group_id)
                .set("client.id", format!("log-pipeline-consumer-{index}"))
                .set("enable.auto.commit", "false")
                .set("enable.auto.offset.store", "false")
                .set("auto.offset.reset", "earliest")
                // Fast group joins and failure detection (librdkafka's default is 45 s).
                .set("session.timeout.ms", "6000")
                .set("heartbeat.interval.ms", "1000")
                .set("statistics.interval.ms", "1000")
                // Keep the fetcher busy: bigger fetches, and no 1 s back-off when the local queue
                // is momentarily full (librdkafka's default `fetch.queue.backoff.ms`).
                .set("max.partition.fetch.bytes", "8388608")
                .set("fetch.queue.backoff.ms", "5")
                .set("queued.max.messages.kbytes", "32768")
                .create_with_context(GroupContext {
                    shared: shared.clone(),
                })?;
            consumer.subscribe(&[&config.kafka.topic])?;
            let flush_size = config.consumer.flush_size;
            let flush_interval = config.consumer.flush_interval;
            let thread = std::thread::Builder::new()
                .name(format!("kafka-consumer-{index}"))
                .spawn(move || run(consumer, shared, flush_size, flush_interval))?;
            threads.push(thread);
        }
        Ok(ConsumerGroup { threads, stop })
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

/// One consumer's loop: poll, buffer, flush when full or old; flush and leave when stopped.
fn run(
    consumer: BaseConsumer<GroupContext>,
    shared: Arc<Shared>,
    flush_size: usize,
    flush_interval: Duration,
) {
    // While one flush is being written, messages keep arriving into the buffer, up to this many;
    // the next flush takes them all. That keeps the fsync latency off the consumption rate.
    let buffer_cap = flush_size.max(MIN_BUFFER_CAP);
    while !shared.stop.load(Ordering::Relaxed) {
        let (buffered, due) = {
            let buffer = shared.buffer.lock().expect("buffer lock");
            let due = buffer.messages >= flush_size
                || buffer
                    .started
                    .is_some_and(|started| started.elapsed() >= flush_interval);
            (buffer.messages, due)
        };
        let flushing = shared.flushing.lock().expect("flush lock").is_some();
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
            Some(Ok(message)) => shared.take(&consumer, &message),
            Some(Err(err)) => tracing::warn!(error = %err, "Kafka consumer error"),
            None => {}
        }
        if shared.finish_flush(&consumer, CommitMode::Async, false) == Some(false) {
            std::thread::sleep(RETRY_BACKOFF);
        }
        if due && shared.flushing.lock().expect("flush lock").is_none() {
            shared.start_flush();
        }
    }
    shared.flush_all(&consumer, CommitMode::Sync);
    // Dropping the consumer closes it: the revoke callback runs (nothing left to flush) and the
    // group is left at once rather than after the session timeout.
    drop(consumer);
}

/// What a consumer thread and its rebalance callbacks share.
struct Shared {
    topic: String,
    dead_letter_topic: String,
    store: Store,
    runtime: tokio::runtime::Handle,
    dead_letters: KafkaSink,
    limits: Limits,
    metrics: Metrics,
    stop: Arc<AtomicBool>,
    buffer: Mutex<Buffer>,
    /// The flush being written, if any (at most one, so checkpoints advance in order).
    flushing: Mutex<Option<Flush>>,
    /// Per assigned partition: where it must resume (see [`Shared::admit`]).
    resume: Mutex<BTreeMap<i32, Resume>>,
    /// The first rewind distance when the broker skips past a resume point.
    resume_window: i64,
}

/// A buffer being written by the store.
struct Flush {
    write: tokio::task::JoinHandle<Result<(), crate::store::StoreError>>,
    partitions: BTreeMap<i32, (i64, i64)>,
    produced_at: Vec<i64>,
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
    /// When the oldest buffered message arrived.
    started: Option<Instant>,
}

impl Shared {
    /// Buffers one message, or dead-letters it if it is not a valid record.
    fn take(&self, consumer: &BaseConsumer<GroupContext>, message: &BorrowedMessage<'_>) {
        let partition = message.partition();
        let offset = message.offset();
        if !self.admit(consumer, partition, offset) {
            return;
        }
        let value = message.payload().unwrap_or_default();
        let mut buffer = self.buffer.lock().expect("buffer lock");
        if let Err(err) = ingest::append_record(value, &self.limits, &mut buffer.batch) {
            let reason = err.describe();
            // Its offset may count as consumed only once the dead-letter topic has it.
            while let Err(send_error) = self.dead_letter(message, &reason) {
                tracing::warn!(error = %send_error, partition, offset, "cannot dead-letter a message yet; retrying");
                if self.stop.load(Ordering::Relaxed) {
                    // Leave it unconsumed: it is read again after the restart.
                    drop(buffer);
                    let _ = consumer.seek(
                        &self.topic,
                        partition,
                        Offset::Offset(offset),
                        BROKER_TIMEOUT,
                    );
                    return;
                }
                std::thread::sleep(RETRY_BACKOFF);
            }
            self.metrics.kafka_dead_letters.inc();
            tracing::warn!(partition, offset, %reason, topic = %self.dead_letter_topic, "message is not a valid record; sent to the dead-letter topic");
        } else {
            let produced = message
                .timestamp()
                .to_millis()
                .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
            buffer.produced_at.push(produced);
        }
        self.metrics.kafka_consumed_messages.inc();
        buffer.messages += 1;
        buffer.started.get_or_insert_with(Instant::now);
        let entry = buffer
            .partitions
            .entry(partition)
            .or_insert((offset, offset + 1));
        entry.1 = offset + 1;
    }

    fn dead_letter(&self, message: &BorrowedMessage<'_>, reason: &str) -> Result<(), String> {
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "error",
                value: Some(reason),
            })
            .insert(Header {
                key: "source.topic",
                value: Some(self.topic.as_str()),
            })
            .insert(Header {
                key: "source.partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "source.offset",
                value: Some(offset.as_str()),
            });
        let mut record = FutureRecord::<[u8], [u8]>::to(&self.dead_letter_topic)
            .payload(message.payload().unwrap_or_default())
            .headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        self.runtime.block_on(self.dead_letters.send_one(record))
    }

    /// Hands the buffer to the store, with the checkpoint of its partitions, without waiting.
    fn start_flush(&self) {
        let mut flushing = self.flushing.lock().expect("flush lock");
        debug_assert!(
            flushing.is_none(),
            "one flush at a time keeps checkpoints in order"
        );
        let mut buffer = self.buffer.lock().expect("buffer lock");
        if buffer.partitions.is_empty() {
            return;
        }
        let Buffer {
            batch,
            partitions,
            produced_at,
            ..
        } = std::mem::take(&mut *buffer);
        let checkpoint: Checkpoint = partitions
            .iter()
            .map(|(partition, (_, next))| (checkpoint_key(&self.topic, *partition), *next))
            .collect();
        let store = self.store.clone();
        let write = self
            .runtime
            .spawn(async move { store.append_with_checkpoint(batch, checkpoint).await });
        *flushing = Some(Flush {
            write,
            partitions,
            produced_at,
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
            let mut flushing = self.flushing.lock().expect("flush lock");
            if !wait && !flushing.as_ref()?.write.is_finished() {
                return None;
            }
            flushing.take()?
        };
        let stored = match self.runtime.block_on(flush.write) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(err)) => Err(err.to_string()),
            Err(err) => Err(err.to_string()),
        };
        if let Err(reason) = stored {
            tracing::error!(error = %reason, "cannot store consumed records; rewinding to read them again");
            let later = std::mem::take(&mut *self.buffer.lock().expect("buffer lock"));
            let mut rewind = later.partitions;
            rewind.extend(flush.partitions);
            let mut resume = self.resume.lock().expect("resume lock");
            for (partition, (first, _)) in rewind {
                resume.insert(partition, Resume::at(first, self.resume_window));
                if let Err(err) = consumer.seek(
                    &self.topic,
                    partition,
                    Offset::Offset(first),
                    BROKER_TIMEOUT,
                ) {
                    tracing::error!(error = %err, partition, "rewind failed");
                }
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
            let _ = offsets.add_partition_offset(&self.topic, *partition, Offset::Offset(*next));
        }
        if let Err(err) = consumer.commit(&offsets, mode) {
            // Not fatal: the checkpoint stored with the lines is what prevents re-writing them.
            tracing::warn!(error = %err, "offset commit failed; the stored checkpoint covers it");
        }
        Some(true)
    }

    /// Stores everything read so far and commits it, waiting: before partitions are let go and
    /// at shutdown. Returns whether everything was stored.
    fn flush_all(&self, consumer: &BaseConsumer<GroupContext>, mode: CommitMode) -> bool {
        if self.finish_flush(consumer, mode, true) == Some(false) {
            return false;
        }
        self.start_flush();
        self.finish_flush(consumer, mode, true) != Some(false)
    }

    /// Starts each newly assigned partition after what is already stored here: the larger of
    /// its checkpoint and its committed offset. That offset becomes the partition's resume floor.
    fn position_from_checkpoint(
        &self,
        consumer: &BaseConsumer<GroupContext>,
        assigned: &mut TopicPartitionList,
    ) {
        let checkpoint = self.store.checkpoint();
        let committed = consumer
            .committed_offsets(assigned.clone(), BROKER_TIMEOUT)
            .ok();
        let partitions: Vec<(String, i32)> = assigned
            .elements()
            .iter()
            .map(|e| (e.topic().to_owned(), e.partition()))
            .collect();
        let mut resume = self.resume.lock().expect("resume lock");
        for (topic, partition) in partitions {
            let saved = checkpoint.get(&checkpoint_key(&topic, partition)).copied();
            let committed = committed
                .as_ref()
                .and_then(|c| c.find_partition(&topic, partition))
                .and_then(|e| match e.offset() {
                    Offset::Offset(offset) => Some(offset),
                    _ => None,
                });
            let saved = saved.filter(|saved| {
                committed.is_some()
                    || !self.beyond_partition_end(consumer, &topic, partition, *saved)
            });
            let start = match (saved, committed) {
                (Some(saved), Some(committed)) => saved.max(committed),
                (one, other) => match one.or(other) {
                    Some(start) => start,
                    // Never consumed by this group: start at the beginning, nothing to skip.
                    None => continue,
                },
            };
            tracing::info!(%topic, partition, checkpoint = ?saved, ?committed, start, "partition assigned");
            let _ = assigned.set_partition_offset(&topic, partition, Offset::Offset(start));
            resume.insert(partition, Resume::at(start, self.resume_window));
        }
    }

    /// Whether a checkpoint lies beyond the end of its partition while the group has no committed
    /// offset: the topic was recreated (or the broker lost it, as tansu's memory storage does on a
    /// restart). Resuming there would silently drop every new record below it, so the checkpoint
    /// is ignored. Unless the partition is empty, a margin of one producer batch allows for
    /// brokers that report the high watermark at the start of the last batch (tansu 0.6).
    fn beyond_partition_end(
        &self,
        consumer: &BaseConsumer<GroupContext>,
        topic: &str,
        partition: i32,
        saved: i64,
    ) -> bool {
        match consumer.fetch_watermarks(topic, partition, BROKER_TIMEOUT) {
            // An empty partition (high watermark 0) holds none of what the checkpoint counts.
            Ok((_, high))
                if saved > high
                    && (high == 0 || saved > high.saturating_add(self.resume_window)) =>
            {
                tracing::warn!(
                    topic,
                    partition,
                    checkpoint = saved,
                    high_watermark = high,
                    "checkpoint is beyond the end of the partition and the group has no committed offset: \
                     the topic was recreated; starting from its beginning"
                );
                true
            }
            _ => false,
        }
    }

    /// Checks a message against its partition's resume floor. Returns false if it must not be
    /// buffered: it is below the floor (already stored here), or the broker skipped past the
    /// floor and the partition was rewound to read the skipped records.
    ///
    /// Why the rewind: a fetch from an offset inside a record batch must return that whole batch
    /// (the client drops the records before the offset). tansu 0.6 returns the *next* batch
    /// instead, silently skipping the rest of the batch; resuming there would lose records.
    fn admit(&self, consumer: &BaseConsumer<GroupContext>, partition: i32, offset: i64) -> bool {
        let mut resume = self.resume.lock().expect("resume lock");
        let Some(state) = resume.get_mut(&partition) else {
            return true;
        };
        if offset < state.floor {
            return false;
        }
        if state.verified || offset == state.floor || state.floor == 0 || state.exhausted {
            if offset > state.floor && !state.verified {
                tracing::warn!(
                    partition,
                    floor = state.floor,
                    first = offset,
                    "offsets missing from the partition; continuing after the gap"
                );
            }
            state.verified = true;
            return true;
        }
        let target = (state.floor - state.window).max(0);
        tracing::warn!(
            partition,
            floor = state.floor,
            first = offset,
            rewind_to = target,
            "the broker skipped offsets after the resume point; reading again from earlier"
        );
        state.exhausted = target == 0;
        state.window = state.window.saturating_mul(2);
        if let Err(err) = consumer.seek(
            &self.topic,
            partition,
            Offset::Offset(target),
            BROKER_TIMEOUT,
        ) {
            tracing::error!(error = %err, partition, "rewind failed");
        }
        false
    }
}

/// Where a partition must resume, and whether the broker was seen to deliver from there.
#[derive(Debug, Clone, Copy)]
struct Resume {
    /// The first offset not yet stored here.
    floor: i64,
    /// The first message at or after `floor` has been seen at `floor` (or a gap was accepted).
    verified: bool,
    /// How far before `floor` the next rewind starts.
    window: i64,
    /// A rewind to offset 0 was already made.
    exhausted: bool,
}

impl Resume {
    fn at(floor: i64, window: i64) -> Resume {
        Resume {
            floor,
            verified: false,
            window,
            exhausted: false,
        }
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
        let checkpoint = self.shared.store.checkpoint();
        for (partition, stats) in &topic.partitions {
            if *partition < 0 || !stats.desired || stats.hi_offset < 0 {
                continue;
            }
            let stored = checkpoint
                .get(&checkpoint_key(&self.shared.topic, *partition))
                .copied()
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
                self.shared.position_from_checkpoint(consumer, partitions);
                log_result("assign", consumer.assign(partitions));
            }
            RDKafkaRespErr::RD_KAFKA_RESP_ERR__REVOKE_PARTITIONS => {
                // Let go only after what was read from them is stored and committed.
                self.shared.flush_all(consumer, CommitMode::Sync);
                for element in partitions.elements() {
                    let _ = self
                        .shared
                        .metrics
                        .kafka_consumer_lag
                        .remove_label_values(&[&element.partition().to_string()]);
                }
                let mut resume = self.shared.resume.lock().expect("resume lock");
                for element in partitions.elements() {
                    resume.remove(&element.partition());
                }
                drop(resume);
                tracing::info!(partitions = partitions.count(), "partitions revoked");
                log_result("unassign", consumer.unassign());
            }
            other => {
                tracing::error!(error = ?other, "rebalance error");
                log_result("unassign", consumer.unassign());
            }
        }
    }
}

fn log_result(what: &str, result: KafkaResult<()>) {
    if let Err(err) = result {
        tracing::error!(error = %err, "{what} failed");
    }
}
