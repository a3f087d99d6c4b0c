//! Flushes and commits: the buffer is stored through the sink, and only then are its offsets
//! committed; a failed flush rewinds its partitions to read them again.

use std::collections::BTreeMap;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::{Offset, TopicPartitionList};

use super::super::resume::Resume;
use super::rebalance::GroupContext;
use super::shared::{Flush, Shared};

impl Shared {
    /// Hands what is ready to the sink without waiting, unless a flush is already in flight or
    /// nothing is ready.
    pub fn start_flush(&self) {
        let mut state = self.state();
        if state.flushing.is_some() {
            return;
        }
        if let Some(flushing) = state.buffer.start_flush() {
            state.flushing = Some(Flush {
                flushing,
                incarnation: state.incarnation,
            });
        }
    }

    /// Completes the flush in flight if it is done (or, with `wait`, once it is): commits its
    /// offsets. `None` if there was nothing to complete, else whether it was stored. A failed
    /// flush rewinds its partitions (and those of everything buffered after it) to read them again.
    pub fn finish_flush(
        &self,
        consumer: &BaseConsumer<GroupContext>,
        mode: CommitMode,
        wait: bool,
    ) -> Option<bool> {
        let Flush {
            flushing,
            incarnation,
        } = {
            let mut state = self.state();
            if !wait && !state.flushing.as_ref()?.flushing.write.is_finished() {
                return None;
            }
            state.flushing.take()?
        };
        let stored = match self.runtime.block_on(flushing.write) {
            Ok(stored) => stored,
            Err(err) => Err(err.to_string()),
        };
        self.state().buffer.flush_done();
        if let Err(reason) = stored {
            tracing::error!(error = %reason, "cannot store consumed records; rewinding to read them again");
            let mut state = self.state();
            let mut rewind: BTreeMap<i32, i64> = state.buffer.discard();
            rewind.extend(
                flushing
                    .partitions
                    .iter()
                    .map(|(p, (first, _))| (*p, *first)),
            );
            for (partition, first) in rewind {
                state
                    .resume
                    .insert(partition, Resume::at(first, self.resume_window));
                state.buffer.rewound(partition, first);
                self.seek(consumer, partition, first);
            }
            return Some(false);
        }
        let now = chrono::Utc::now().timestamp_millis();
        for produced in flushing.produced_at {
            self.metrics
                .kafka_end_to_end
                .observe((now - produced).max(0) as f64 / 1000.0);
        }
        let mut offsets = TopicPartitionList::new();
        for (partition, (_, next)) in &flushing.partitions {
            let mut element = offsets.add_partition(&self.topic, *partition);
            let _ = element.set_offset(Offset::Offset(*next));
            if let Some(id) = incarnation {
                // Which incarnation of the topic the offset counts in: a committed offset of
                // another one is ignored when the partition is assigned.
                element.set_metadata(id.to_string());
            }
        }
        if let Err(err) = consumer.commit(&offsets, mode) {
            // Not fatal: what the sink stored says where to resume (the files' checkpoint, the
            // bucket's intents).
            tracing::warn!(error = %err, "offset commit failed; what was stored covers it");
        }
        Some(true)
    }

    /// Stores everything read so far and commits it, waiting: before partitions are let go and
    /// at shutdown. Returns whether everything was stored. What the buffer could not seal (see
    /// [`Buffer::drop_open`](super::Buffer::drop_open)) is dropped afterwards.
    pub fn flush_all(&self, consumer: &BaseConsumer<GroupContext>, mode: CommitMode) -> bool {
        if self.finish_flush(consumer, mode, true) == Some(false) {
            return false;
        }
        self.state().buffer.seal_all();
        self.start_flush();
        let stored = self.finish_flush(consumer, mode, true) != Some(false);
        self.state().buffer.drop_open();
        stored
    }
}
