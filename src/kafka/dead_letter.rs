//! The dead-letter topic (`kafka.deadLetterTopic`): where the consumers move messages that are
//! not valid records, so that nothing is skipped silently and a poison message never stalls its
//! partition. Each dead letter keeps the original value and key, with headers saying why
//! (`error`) and where it came from (`source.topic`, `source.partition`, `source.offset`); a
//! value too long to be delivered is cut, with a `truncated.from` header.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::Message;
use rdkafka::error::KafkaResult;
use rdkafka::message::{BorrowedMessage, Header, OwnedHeaders};
use rdkafka::producer::BaseRecord;

use super::producer::{RenewingProducer, Tracker, producer_config};
use crate::config::KafkaConfig;

/// The dead-letter producer of one consumer group (its own client, apart from the API's).
pub struct DeadLetters {
    producer: RenewingProducer,
    topic: String,
    timeout: Duration,
}

impl DeadLetters {
    /// Creates the producer (it connects lazily).
    pub fn new(kafka: &KafkaConfig) -> KafkaResult<DeadLetters> {
        Ok(DeadLetters {
            producer: RenewingProducer::new(producer_config(kafka), "dead letters")?,
            topic: kafka.dead_letter_topic.clone(),
            timeout: kafka.produce_timeout,
        })
    }

    /// Replaces the producer now (the topic was created again; see
    /// `RenewingProducer::renew_now`).
    pub fn renew_now(&self, reason: &str) {
        self.producer.renew_now(reason);
    }

    /// The topic dead letters go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends `letter` and waits for the broker's acknowledgement.
    pub async fn send(&self, letter: &DeadLetter) -> Result<(), String> {
        let partition = letter.partition.to_string();
        let offset = letter.offset.to_string();
        let mut headers = OwnedHeaders::new()
            .insert(Header {
                key: "error",
                value: Some(letter.reason.as_str()),
            })
            .insert(Header {
                key: "source.topic",
                value: Some(letter.topic.as_str()),
            })
            .insert(Header {
                key: "source.partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "source.offset",
                value: Some(offset.as_str()),
            });
        let original = letter.original_bytes.to_string();
        if letter.truncated() {
            headers = headers.insert(Header {
                key: "truncated.from",
                value: Some(original.as_str()),
            });
        }
        let tracker = Tracker::new();
        let mut record =
            BaseRecord::<[u8], [u8], Arc<Tracker>>::with_opaque_to(&self.topic, tracker.clone())
                .payload(&letter.payload)
                .headers(headers);
        if let Some(key) = &letter.key {
            record = record.key(key);
        }
        let generation = self.producer.generation();
        let refused = self.producer.send_record(record, &tracker);
        tracker.sent_all(refused.as_ref());
        let reported = tracker.reported(self.timeout * 2).await;
        let outcome = tracker.outcome(1, reported);
        if outcome.is_err() {
            self.producer.renew_if_failed();
            if tracker.persisted() == 0 {
                self.producer
                    .renew_after_failure(generation, "a dead letter it sent was not delivered");
            }
        }
        outcome.map_err(|err| err.to_string())
    }
}

/// A consumed message that is not a valid record, as it goes to the dead-letter topic.
#[derive(Debug, Clone)]
pub struct DeadLetter {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
    pub key: Option<Vec<u8>>,
    /// The message's value, cut to [`MAX_PAYLOAD_BYTES`].
    pub payload: Vec<u8>,
    /// The value's length before it was cut.
    pub original_bytes: usize,
    /// Why it is not a valid record (the `error` header).
    pub reason: String,
}

/// The longest dead-letter value: with its headers it stays under librdkafka's default
/// `message.max.bytes` (1,000,000). A longer value is cut, and a `truncated.from` header gives
/// its length: a dead letter too large to be delivered would stall its partition for good.
pub const MAX_PAYLOAD_BYTES: usize = 900_000;

impl DeadLetter {
    /// The dead letter of `message`, refused for `reason`.
    pub fn of(message: &BorrowedMessage<'_>, reason: String) -> DeadLetter {
        let value = message.payload().unwrap_or_default();
        DeadLetter {
            topic: message.topic().to_owned(),
            partition: message.partition(),
            offset: message.offset(),
            key: message.key().map(<[u8]>::to_vec),
            payload: value[..value.len().min(MAX_PAYLOAD_BYTES)].to_vec(),
            original_bytes: value.len(),
            reason,
        }
    }

    /// Whether the value was cut.
    pub fn truncated(&self) -> bool {
        self.original_bytes > self.payload.len()
    }
}
