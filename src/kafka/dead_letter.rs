//! The dead-letter topic (`kafka.deadLetterTopic`): where the consumers move messages that are
//! not valid records, so that nothing is skipped silently and a poison message never stalls its
//! partition. Each dead letter keeps the original value and key, with headers saying why
//! (`error`) and where it came from (`source.topic`, `source.partition`, `source.offset`).

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

    /// The topic dead letters go to.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// Sends `message` with `reason` and waits for the broker's acknowledgement.
    pub async fn send(&self, message: &BorrowedMessage<'_>, reason: &str) -> Result<(), String> {
        let partition = message.partition().to_string();
        let offset = message.offset().to_string();
        let headers = OwnedHeaders::new()
            .insert(Header {
                key: "error",
                value: Some(reason),
            })
            .insert(Header {
                key: "source.topic",
                value: Some(message.topic()),
            })
            .insert(Header {
                key: "source.partition",
                value: Some(partition.as_str()),
            })
            .insert(Header {
                key: "source.offset",
                value: Some(offset.as_str()),
            });
        let tracker = Tracker::new();
        let mut record =
            BaseRecord::<[u8], [u8], Arc<Tracker>>::with_opaque_to(&self.topic, tracker.clone())
                .payload(message.payload().unwrap_or_default())
                .headers(headers);
        if let Some(key) = message.key() {
            record = record.key(key);
        }
        let refused = self.producer.send_record(record, &tracker);
        tracker.sent_all(refused.as_ref());
        let reported = tracker.reported(self.timeout * 2).await;
        let outcome = tracker.outcome(1, reported);
        if outcome.is_err() {
            self.producer.renew_if_failed();
        }
        outcome.map_err(|err| err.to_string())
    }
}
