//! The API's producer: every record of an accepted batch becomes one Kafka message.
//!
//! Delivery: the producer is idempotent with `acks=all` (librdkafka retries without duplicating).
//! By default a batch is answered only after the broker acknowledged every one of its records;
//! `kafka.async: true` answers once the records are queued in the client (the original's
//! behaviour: a crash can lose them).
//!
//! Backpressure: the bytes and batches in flight are bounded ([`ProducerLimits`], from
//! `storage.maxPendingBytes` and `ingestion.queueBufferSize × queueHighWaterPercent`); a batch
//! that does not fit is refused before any of it is sent, so a batch is never half-queued because
//! the client queue was full. A broker that does not acknowledge within `kafka.produceTimeout`
//! fails the batch.
//!
//! librdkafka settings: `kafka.batchSize` → `batch.num.messages`, `kafka.batchTimeout` →
//! `linger.ms`, `kafka.batchBytes` (when > 0) → `batch.size`, `kafka.compression` →
//! `compression.type`, `kafka.produceTimeout` → `message.timeout.ms`.
//!
//! `producer/delivery.rs` counts a batch's delivery reports and works out its outcome;
//! `producer/renewing.rs` replaces a client the broker fenced off (shared with the dead-letter
//! producer).

mod delivery;
mod renewing;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaResult;
use tokio::sync::Semaphore;

pub(super) use delivery::Tracker;
pub(super) use renewing::RenewingProducer;

use super::base_config;
use crate::config::KafkaConfig;
use crate::idempotency::Update;
use crate::metrics::Metrics;
use crate::record::EncodedBatch;
use crate::site::SiteId;

/// Beyond `kafka.produceTimeout` (librdkafka's `message.timeout.ms`, after which it reports every
/// message), how long we still wait for its reports before calling the outcome unknown.
const REPORT_GRACE: Duration = Duration::from_secs(10);

/// How much the producer may hold in flight.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ProducerLimits {
    /// Bytes of records waiting for the broker (`storage.maxPendingBytes`).
    pub max_pending_bytes: usize,
    /// Batches waiting for the broker (`ingestion.queueBufferSize × queueHighWaterPercent`).
    pub max_batches: usize,
}

/// Why a batch was not (fully) acknowledged by Kafka.
#[derive(Debug, Clone, thiserror::Error)]
pub enum ProduceError {
    /// The in-flight limits are reached; nothing of the batch was sent.
    #[error("too many batches or bytes waiting for the broker")]
    Overloaded,
    /// Nothing of the batch reached Kafka: every record was refused or failed before the broker
    /// could have written it.
    #[error("Kafka did not acknowledge the batch: {reason}")]
    Unavailable { reason: String },
    /// Some records reached Kafka, the others certainly did not: retrying stores those again.
    #[error("{delivered} of {total} records were acknowledged before: {reason}")]
    Partial {
        delivered: usize,
        total: usize,
        reason: String,
    },
    /// Some records may or may not be in Kafka: they were sent, and no answer came (librdkafka's
    /// "possibly persisted"). Nobody can say whether a retry duplicates them.
    #[error(
        "{unknown} of {total} records may or may not have reached Kafka ({delivered} did): {reason}"
    )]
    OutcomeUnknown {
        delivered: usize,
        unknown: usize,
        total: usize,
        reason: String,
    },
}

/// The settings of our producers: idempotent, `acks=all`, and the `kafka.*` batching settings.
pub(super) fn producer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut client = base_config(kafka);
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
        // The idempotence state behind `/ready` ([`RenewingProducer::can_deliver`]).
        .set("statistics.interval.ms", "1000")
        .set("compression.type", kafka.compression.as_str())
        .set("batch.num.messages", kafka.batch_size.to_string())
        .set("linger.ms", kafka.batch_timeout.as_millis().to_string())
        .set(
            "message.timeout.ms",
            kafka.produce_timeout.as_millis().max(1).to_string(),
        );
    if kafka.batch_bytes > 0 {
        client.set("batch.size", kafka.batch_bytes.to_string());
    }
    client
}

/// The settings of the API's producer: [`producer_config`], with a client queue sized from
/// `storage.maxPendingBytes` (`bench/broker.rs` measures the broker through the same settings).
pub fn ingest_producer_config(kafka: &KafkaConfig, max_pending_bytes: usize) -> ClientConfig {
    let mut client = producer_config(kafka);
    client
        // Our own bounds refuse a batch before the client queue can fill half-way through it.
        .set("queue.buffering.max.messages", "10000000")
        .set(
            "queue.buffering.max.kbytes",
            (max_pending_bytes / 1024 * 2)
                .clamp(1024, 2_097_151)
                .to_string(),
        );
    client
}

/// Produces the API's batches to the topic; cheap to clone.
#[derive(Clone)]
pub struct IngestProducer {
    inner: Arc<Inner>,
}

struct Inner {
    producer: RenewingProducer,
    topic: Arc<str>,
    pending_bytes: Arc<Semaphore>,
    max_pending_bytes: usize,
    pending_batches: Arc<Semaphore>,
    async_ack: bool,
    produce_timeout: Duration,
    metrics: Metrics,
}

impl IngestProducer {
    /// Creates the producer (it connects lazily).
    pub fn new(
        kafka: &KafkaConfig,
        limits: ProducerLimits,
        metrics: Metrics,
    ) -> KafkaResult<IngestProducer> {
        let max_pending_bytes = limits.max_pending_bytes.clamp(1, Semaphore::MAX_PERMITS);
        let client = ingest_producer_config(kafka, max_pending_bytes);
        Ok(IngestProducer {
            inner: Arc::new(Inner {
                producer: RenewingProducer::new(client, "ingest")?,
                topic: kafka.topic.as_str().into(),
                pending_bytes: Arc::new(Semaphore::new(max_pending_bytes)),
                max_pending_bytes,
                pending_batches: Arc::new(Semaphore::new(limits.max_batches.max(1))),
                async_ack: kafka.async_ack,
                produce_timeout: kafka.produce_timeout,
                metrics,
            }),
        })
    }

    /// Replaces the producer if it failed for good (see [`RenewingProducer::renew_if_failed`]).
    pub fn renew_if_failed(&self) {
        self.inner.producer.renew_if_failed();
    }

    /// Replaces the producer now (see [`RenewingProducer::renew_now`]).
    pub fn renew_now(&self, reason: &str) {
        self.inner.producer.renew_now(reason);
    }

    /// Whether the producer can deliver now (see [`RenewingProducer::can_deliver`]).
    pub fn can_deliver(&self) -> bool {
        self.inner.producer.can_deliver()
    }

    /// Per partition, the offset after the last record this producer had acknowledged.
    pub fn acknowledged(&self) -> BTreeMap<i32, i64> {
        self.inner.producer.acknowledged()
    }

    /// Sends every record of `batch` and waits for the broker's acknowledgements (or, with
    /// `kafka.async`, only until they are queued). The error says exactly what is known: nothing
    /// stored, part stored, or (records sent without an answer) not known.
    pub async fn submit(
        &self,
        site: Option<&SiteId>,
        batch: EncodedBatch,
        keyed: Option<&Update>,
    ) -> Result<(), ProduceError> {
        let cost = batch.bytes().clamp(1, self.inner.max_pending_bytes) as u32;
        let bytes_permit = self
            .inner
            .pending_bytes
            .clone()
            .try_acquire_many_owned(cost)
            .map_err(|_| ProduceError::Overloaded)?;
        let batch_permit = self
            .inner
            .pending_batches
            .clone()
            .try_acquire_owned()
            .map_err(|_| ProduceError::Overloaded)?;
        // `ingestion_work_queue_depth` in v2: batches waiting for the broker.
        let queued = self.inner.metrics.queued_batch();

        let total = batch.records();
        let tracker = Tracker::new();
        let lines = batch
            .chunks
            .iter()
            .flat_map(|chunk| chunk.lines.split(|b| *b == b'\n'))
            .filter(|line| !line.is_empty());
        let timestamp = chrono::Utc::now().timestamp_millis();
        let generation = self.inner.producer.generation();
        let refused =
            self.inner
                .producer
                .send(&self.inner.topic, lines, timestamp, &tracker, keyed, site);
        drop(batch);
        tracker.sent_all(refused.as_ref());

        if self.inner.async_ack && refused.is_none() {
            // The original's behaviour: answer now, count failures when they are reported.
            let this = self.clone();
            tokio::spawn(async move {
                let _held = (bytes_permit, batch_permit, queued);
                let _ = this.outcome(&tracker, total, generation).await;
            });
            return Ok(());
        }
        let outcome = self.outcome(&tracker, total, generation).await;
        drop((bytes_permit, batch_permit, queued));
        if let Err(err) = &outcome {
            self.inner.metrics.ingest_errors.inc();
            tracing::warn!(error = %err, "batch not fully acknowledged by Kafka");
        }
        outcome
    }

    /// Waits for the reports of a batch of `total` records, sent by client `generation`, and
    /// counts them.
    async fn outcome(
        &self,
        tracker: &Tracker,
        total: usize,
        generation: u64,
    ) -> Result<(), ProduceError> {
        let all_reported = tracker
            .reported(self.inner.produce_timeout + REPORT_GRACE)
            .await;
        let delivered = tracker.persisted();
        self.inner
            .metrics
            .kafka_produced_messages
            .inc_by(delivered as u64);
        self.inner
            .metrics
            .kafka_produce_errors
            .inc_by((total - delivered) as u64);
        let without_offset = tracker.without_offset();
        if without_offset > 0 {
            // Normal after a retried request; named so that a record missing downstream can be
            // traced to the broker's word that an earlier attempt had written it.
            tracing::warn!(
                records = without_offset,
                "the broker acknowledged records as written by an earlier attempt (duplicate sequence number), without their offsets"
            );
        }
        let outcome = tracker.outcome(total, all_reported);
        if outcome.is_err() {
            self.renew_if_failed();
            if delivered == 0 {
                // Sent, and nothing delivered: this client may be one the broker no longer
                // knows (see RenewingProducer::renew_after_failure).
                self.inner
                    .producer
                    .renew_after_failure(generation, "a batch it sent was not delivered at all");
            }
        }
        outcome
    }

    /// Waits, at most `timeout`, until every queued message is acknowledged.
    pub async fn flush(&self, timeout: Duration) {
        self.inner.producer.flush(timeout).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_client_queue_is_twice_the_pending_bytes_within_librdkafka_bounds() {
        let kafka = KafkaConfig::default();
        let kbytes = |pending: usize| {
            ingest_producer_config(&kafka, pending)
                .get("queue.buffering.max.kbytes")
                .unwrap()
                .to_owned()
        };
        assert_eq!(kbytes(64 << 20), (128 << 10).to_string());
        assert_eq!(kbytes(1), "1024");
        assert_eq!(kbytes(usize::MAX), "2097151");
        assert_eq!(producer_config(&kafka).get("batch.size"), None);
        let batched = KafkaConfig {
            batch_bytes: 1 << 20,
            produce_timeout: Duration::ZERO,
            ..KafkaConfig::default()
        };
        let client = producer_config(&batched);
        assert_eq!(client.get("batch.size"), Some("1048576"));
        assert_eq!(client.get("message.timeout.ms"), Some("1"));
        assert_eq!(client.get("enable.idempotence"), Some("true"));
        assert_eq!(client.get("acks"), Some("all"));
    }
}
