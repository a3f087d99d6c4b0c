//! Which incarnation of the topic a consumer's positions belong to. A broker that lost its
//! storage creates the topic again, and its offsets restart from 0: before the first message
//! after a failed connection (or after the probe saw the topic created again) a consumer asks the
//! broker for the topic's id ([`topic_id`]), and committed offsets carry the id they count in.

use std::sync::atomic::Ordering;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::message::BorrowedMessage;

use super::super::resume::Resume;
use super::super::topic_id::{self, Described, TopicId};
use super::RETRY_BACKOFF;
use super::rebalance::GroupContext;
use super::shared::Shared;
use super::sink::AfterRecreation;

/// How long the check of the topic's id may take before a message is taken.
const VERIFY_TIMEOUT: Duration = Duration::from_secs(5);

impl Shared {
    /// Whether `message` may be taken: before the first message after a failed connection to the
    /// broker (or after the probe saw the topic created again), asks the broker for the topic's
    /// id (see [`topic_id`]). The same as this consumer's positions, or none reported: yes. Another
    /// one: the topic was created again and its offsets restarted from 0 (see
    /// [`Shared::restart_incarnation`]); no. No answer: no, and the message is read again after a
    /// pause.
    pub fn verify_incarnation(
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
    /// When the sink cannot take the new offsets ([`AfterRecreation::Stop`]: the bucket's ranges
    /// are named by offsets, and the new topic's would land on the objects of the old one), the
    /// consumer stops taking messages instead (and says why on `/ready`), so that nothing stored
    /// is ever replaced.
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
        if self.sink.after_recreation() == AfterRecreation::Stop {
            tracing::error!(
                consumer = self.index,
                %before,
                %now,
                "the Kafka topic was created again; its offsets would name what is stored already, so this consumer stops reading (see docs: the broker lost its storage)"
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
}

/// Whether a committed offset whose metadata is `metadata` counts in the topic whose id is
/// `current`: committed by this version with another id, it does not (the topic was created
/// again since); without an id (an older version, or an unknown id), it is taken as it is.
pub(super) fn same_incarnation(metadata: &str, current: Option<TopicId>) -> bool {
    match (TopicId::parse(metadata), current) {
        (Some(committed), Some(current)) => committed == current,
        _ => true,
    }
}
