//! One consumer's state, shared by its thread and its librdkafka callbacks, and how a message is
//! taken into its buffer.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::BorrowedMessage;
use rdkafka::{Message, Offset, TopicPartitionList};

use super::super::dead_letter::{DeadLetter, DeadLetters};
use super::super::keyed::KeyedRecord;
use super::super::resume::{Admission, Resume};
use super::super::site_header;
use super::super::topic_id::TopicId;
use super::letters::PendingDeadLetter;
use super::rebalance::GroupContext;
use super::sink::{Buffer, Flushing, Sink};
use super::{BROKER_TIMEOUT, RETRY_BACKOFF};
use crate::ingest::{self, Limits};
use crate::metrics::Metrics;

/// What a consumer thread and its callbacks share.
pub(super) struct Shared {
    /// Which of the group's consumers (`kafka-consumer-<index>`).
    pub index: usize,
    pub topic: String,
    /// Where the group writes (its buffer is in [`State::buffer`]).
    pub sink: Arc<dyn Sink>,
    /// The runtime the sink's writes and the dead-letter sends run on.
    pub runtime: tokio::runtime::Handle,
    pub dead_letters: Arc<DeadLetters>,
    pub limits: Limits,
    pub metrics: Metrics,
    pub stop: Arc<AtomicBool>,
    /// The partitions of every consumer of this process (see
    /// [`ConsumerGroup::owned_partitions`](super::ConsumerGroup::owned_partitions)).
    pub owned: Arc<Mutex<BTreeSet<i32>>>,
    /// How many consumers hold an assignment (see `ConsumerGroup::assigned`).
    pub assigned: Arc<AtomicUsize>,
    /// See [`ConsumerGroup::stalled_partitions`](super::ConsumerGroup::stalled_partitions).
    pub stalled: Arc<Mutex<BTreeMap<usize, usize>>>,
    /// See [`Recreations`](super::Recreations).
    pub recreations: Arc<AtomicU64>,
    /// See [`ConsumerGroup::stalled_by_recreation`](super::ConsumerGroup::stalled_by_recreation).
    pub stalled_by_recreation: Arc<AtomicBool>,
    pub state: Mutex<State>,
    /// The first rewind distance when the broker skips past a resume point.
    pub resume_window: i64,
}

/// The mutable part of a consumer (see "Threads and locks" in [`super`]).
pub(super) struct State {
    /// What was read and not stored yet, in the sink's shape.
    pub buffer: Box<dyn Buffer>,
    /// The flush being written, if any.
    pub flushing: Option<Flush>,
    /// Per assigned partition: where it resumes (see [`resume`](crate::kafka::resume)).
    pub resume: BTreeMap<i32, Resume>,
    /// Per partition paused behind a dead letter: that dead letter.
    pub dead_letters: BTreeMap<i32, PendingDeadLetter>,
    /// The topic's id when this consumer last checked (its positions belong to it), if known.
    pub incarnation: Option<TopicId>,
    /// The connection to the broker failed since the last check, or the probe saw the topic
    /// created again: check the topic's id before taking another message.
    pub verify: bool,
    /// [`Shared::recreations`] as last seen.
    pub recreations_seen: u64,
}

impl State {
    pub fn new(buffer: Box<dyn Buffer>) -> State {
        State {
            buffer,
            flushing: None,
            resume: BTreeMap::new(),
            dead_letters: BTreeMap::new(),
            incarnation: None,
            verify: false,
            recreations_seen: 0,
        }
    }
}

/// A flush being written by the sink.
pub(super) struct Flush {
    pub flushing: Flushing,
    /// The topic's id its offsets belong to (committed with them).
    pub incarnation: Option<TopicId>,
}

impl Shared {
    pub fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().expect("consumer state lock")
    }

    /// Buffers one message, or dead-letters it if it is not a valid record.
    pub fn take(&self, consumer: &BaseConsumer<GroupContext>, message: &BorrowedMessage<'_>) {
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
        if let Err((first, err)) = state.buffer.prepare(partition, offset) {
            tracing::error!(error = %err, partition, offset = first, "cannot read what the sink decided; reading the partition again from here after a pause");
            state
                .resume
                .insert(partition, Resume::at(first, self.resume_window));
            drop(state);
            self.seek(consumer, partition, first);
            std::thread::sleep(RETRY_BACKOFF);
            return;
        }
        let keyed = KeyedRecord::of(message);
        if let Some(record) = &keyed
            && state.buffer.is_copy(record, partition, offset)
        {
            // Produced again by a retry of its batch: consumed, not stored twice.
            state.buffer.copy_dropped(partition, offset);
            self.metrics.kafka_consumed_messages.inc();
            self.metrics.idempotency_duplicates_dropped.inc();
            return;
        }
        let value = message.payload().unwrap_or_default();
        // The site is the producer's (`site_header`): a header naming no site is dead-lettered.
        let stored = site_header::site_of(message).and_then(|site| {
            let batch = state.buffer.batch(partition, site.as_ref());
            ingest::append_record(value, &self.limits, batch).map_err(|err| err.describe())
        });
        match stored {
            Ok(()) => {
                let produced = message
                    .timestamp()
                    .to_millis()
                    .unwrap_or_else(|| chrono::Utc::now().timestamp_millis());
                state.buffer.taken(partition, offset, produced, keyed);
                self.metrics.kafka_consumed_messages.inc();
            }
            Err(err) => self.hold_for_dead_letters(state, consumer, message, err),
        }
    }

    /// Sends `message` to the dead-letter topic with `why`. Its offset counts as consumed only
    /// once the topic has it; until then its partition is paused, and the others go on.
    fn hold_for_dead_letters(
        &self,
        mut state: MutexGuard<'_, State>,
        consumer: &BaseConsumer<GroupContext>,
        message: &BorrowedMessage<'_>,
        why: String,
    ) {
        let partition = message.partition();
        let letter = Arc::new(DeadLetter::of(message, why));
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

    /// After this process was paused, if the buffer's writes wait for it (see
    /// [`Buffer::unconfirmed`]): confirms that the group still holds this consumer's assignment.
    /// Two requests through librdkafka's main thread, one after the other: that thread serves
    /// its queue, then checks the group session (`rd_kafka_cgrp_serve`, which lets the
    /// assignment go when no heartbeat was answered for `session.timeout.ms`), so by the second
    /// answer that check has run since the pause.
    pub fn confirm_lease(&self, consumer: &BaseConsumer<GroupContext>) {
        let Some(pauses) = self.state().buffer.unconfirmed() else {
            return;
        };
        for _ in 0..2 {
            if let Err(err) = consumer.assignment() {
                tracing::warn!(error = %err, consumer = self.index, "cannot ask librdkafka for the assignment; writes wait");
                return;
            }
        }
        if consumer.assignment_lost() {
            // The revocation that follows lets the partitions go.
            return;
        }
        self.state().buffer.confirm(pauses);
        tracing::info!(
            consumer = self.index,
            "the assignment stands after the pause; writing again"
        );
    }

    /// Pauses (or resumes) one partition of the topic.
    pub fn pause(&self, consumer: &BaseConsumer<GroupContext>, partition: i32, pause: bool) {
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
    pub fn report_stalled(&self, state: &State) {
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

    pub fn seek(&self, consumer: &BaseConsumer<GroupContext>, partition: i32, offset: i64) {
        if let Err(err) = consumer.seek(
            &self.topic,
            partition,
            Offset::Offset(offset),
            BROKER_TIMEOUT,
        ) {
            tracing::error!(error = %err, partition, offset, "seek failed");
        }
    }
}
