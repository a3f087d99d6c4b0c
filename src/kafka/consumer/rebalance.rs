//! Rebalances and statistics: librdkafka's callbacks of one consumer. An assigned partition
//! starts after what the sink kept on this machine, else at its committed offset (in the topic's
//! current incarnation); a revoked one is flushed and committed before it is let go.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer, ConsumerContext};
use rdkafka::error::KafkaResult;
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaRespErr;
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use super::super::resume::{self, Resume, Start};
use super::super::topic_id::{self, Described};
use super::BROKER_TIMEOUT;
use super::incarnation::same_incarnation;
use super::shared::Shared;
use super::sink::AfterRecreation;

impl Shared {
    /// Positions each newly assigned partition after what is already stored here
    /// ([`resume::start_position`]) and records its resume point.
    fn assign(&self, consumer: &BaseConsumer<GroupContext>, assigned: &mut TopicPartitionList) {
        let checkpoint = self.state().buffer.checkpoint();
        let committed = consumer
            .committed_offsets(assigned.clone(), BROKER_TIMEOUT)
            .ok();
        let partitions: Vec<i32> = assigned.elements().iter().map(|e| e.partition()).collect();
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
        if recreated && self.sink.after_recreation() == AfterRecreation::Stop {
            // See `restart_incarnation`: nothing of the new topic is read.
            drop(state);
            tracing::error!(
                consumer = self.index,
                "the Kafka topic was created again; its offsets would name what is stored already, so this consumer does not read it (see docs: the broker lost its storage)"
            );
            self.stalled_by_recreation.store(true, Ordering::Relaxed);
            let _ = consumer.pause(assigned);
            return;
        }
        for &partition in &partitions {
            let saved = checkpoint.get(&partition).copied().filter(|_| !recreated);
            let element = committed
                .as_ref()
                .and_then(|c| c.find_partition(&self.topic, partition));
            let voided = element
                .as_ref()
                .is_some_and(|e| !same_incarnation(e.metadata(), current));
            let committed = element.filter(|_| !voided).and_then(|e| match e.offset() {
                Offset::Offset(offset) => Some(offset),
                _ => None,
            });
            let start = self.start_of(consumer, partition, saved, committed);
            let at = match start {
                Start::At(offset) => Some(offset),
                _ => None,
            };
            state.buffer.assigned(partition, at);
            if start == Start::Beginning && voided {
                // Explicitly: left unset, the client would start at the committed offset of the
                // old incarnation.
                let _ = assigned.set_partition_offset(&self.topic, partition, Offset::Beginning);
            }
            if let Some(offset) = at {
                let _ =
                    assigned.set_partition_offset(&self.topic, partition, Offset::Offset(offset));
                state
                    .resume
                    .insert(partition, Resume::at(offset, self.resume_window));
            }
        }
        state.buffer.hold(&partitions);
        drop(state);
        let mut owned = self.owned.lock().expect("owned lock");
        owned.extend(partitions.iter().copied());
        drop(owned);
        self.assigned.fetch_add(1, Ordering::Relaxed);
        self.report_assignment(assigned.count() as i64);
    }

    /// Where an assigned `partition` starts, given what is stored here (`saved`) and the
    /// group's `committed` offset (see [`resume::start_position`]).
    fn start_of(
        &self,
        consumer: &BaseConsumer<GroupContext>,
        partition: i32,
        saved: Option<i64>,
        committed: Option<i64>,
    ) -> Start {
        let high_watermark = || {
            consumer
                .fetch_watermarks(&self.topic, partition, BROKER_TIMEOUT)
                .ok()
                .map(|(_, high)| high)
        };
        let (start, ignored) =
            resume::start_position(saved, committed, high_watermark, self.resume_window);
        if ignored {
            tracing::warn!(
                topic = %self.topic,
                partition,
                checkpoint = saved,
                "checkpoint is beyond the end of the partition and the group has no committed offset: \
                 the topic was recreated; starting from its beginning"
            );
        }
        tracing::info!(topic = %self.topic, partition, checkpoint = ?saved, ?committed, ?start, consumer = self.index, "partition assigned");
        start
    }

    /// Lets go of revoked partitions, after what was read from them is stored and committed.
    fn revoke(&self, consumer: &BaseConsumer<GroupContext>, revoked: &TopicPartitionList) {
        let partitions: Vec<i32> = revoked.elements().iter().map(|e| e.partition()).collect();
        if consumer.assignment_lost() {
            // Another consumer owns them already (this one was too slow to poll).
            self.state().buffer.lost(&partitions);
        }
        self.flush_all(consumer, CommitMode::Sync);
        let mut state = self.state();
        state.buffer.let_go(&partitions);
        for partition in &partitions {
            let _ = self
                .metrics
                .kafka_consumer_lag
                .remove_label_values(&[&partition.to_string()]);
            state.resume.remove(partition);
            // Not consumed: the next owner reads (and dead-letters) it again.
            state.dead_letters.remove(partition);
        }
        self.report_stalled(&state);
        drop(state);
        let mut owned = self.owned.lock().expect("owned lock");
        for partition in &partitions {
            owned.remove(partition);
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
pub(super) struct GroupContext {
    pub shared: Arc<Shared>,
}

impl ClientContext for GroupContext {
    /// Consumer lag per partition: the partition's high watermark minus the next offset that is
    /// durably stored here (the checkpoint), for the partitions this consumer owns.
    fn stats(&self, statistics: Statistics) {
        let Some(topic) = statistics.topics.get(&self.shared.topic) else {
            return;
        };
        let stored_now = self.shared.sink.stored(&self.shared.topic);
        // Statistics gathered before a revocation may arrive after it: a partition let go
        // since gets no series again.
        let owned = self.shared.owned.lock().expect("owned lock").clone();
        for (partition, stats) in &topic.partitions {
            if *partition < 0 || !stats.desired || stats.hi_offset < 0 || !owned.contains(partition)
            {
                continue;
            }
            let stored =
                (stored_now.get(partition).copied()).unwrap_or(stats.committed_offset.max(0));
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

fn log_result(what: &str, result: KafkaResult<()>) {
    if let Err(err) = result {
        tracing::error!(error = %err, "{what} failed");
    }
}
