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

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Semaphore;

use super::base_config;
use crate::config::KafkaConfig;
use crate::metrics::Metrics;
use crate::record::EncodedBatch;

/// Extra time beyond `kafka.produceTimeout` before we stop waiting for librdkafka's own report.
const REPORT_GRACE: Duration = Duration::from_secs(2);

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
    /// Nothing of the batch was acknowledged.
    #[error("Kafka did not acknowledge the batch: {reason}")]
    Unavailable { reason: String },
    /// Some records of the batch reached Kafka before a failure: retrying stores those again.
    #[error("{delivered} of {total} records were acknowledged before: {reason}")]
    Partial {
        delivered: usize,
        total: usize,
        reason: String,
    },
}

/// A producer that is replaced once it can never deliver again. An idempotent producer whose
/// epoch the broker bumped (after a timeout) is fenced off for good, and librdkafka does not
/// recover from its fatal errors: only a new client delivers again.
pub(super) struct RenewingProducer {
    /// The current producer and its generation.
    current: RwLock<(u64, FutureProducer)>,
    client: ClientConfig,
    /// What this producer is for, in logs.
    role: &'static str,
}

impl RenewingProducer {
    /// Creates the first producer (it connects lazily).
    pub(super) fn new(client: ClientConfig, role: &'static str) -> KafkaResult<RenewingProducer> {
        Ok(RenewingProducer {
            current: RwLock::new((0, client.create()?)),
            client,
            role,
        })
    }

    /// The current producer and its generation.
    pub(super) fn current(&self) -> (u64, FutureProducer) {
        self.current.read().expect("producer lock").clone()
    }

    /// Replaces producer `generation` if `err` (or its own state) says it can never deliver
    /// again. Of many callers that saw the same failure, only the first replaces it.
    pub(super) fn renew_if_fenced(&self, generation: u64, err: &KafkaError) {
        let fenced = matches!(
            err.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::Fatal
            )
        );
        self.renew(generation, fenced, &err.to_string());
    }

    /// Replaces the current producer if librdkafka reports a fatal error on it; for a periodic
    /// check, so that recovery does not wait for a request to fail first.
    pub(super) fn renew_if_failed(&self) {
        let generation = self.current().0;
        self.renew(generation, false, "fatal producer error");
    }

    fn renew(&self, generation: u64, fenced: bool, reason: &str) {
        let mut current = self.current.write().expect("producer lock");
        let fatal = current.1.client().fatal_error();
        if current.0 != generation || !(fenced || fatal.is_some()) {
            return;
        }
        match self.client.create::<FutureProducer>() {
            Ok(fresh) => {
                tracing::warn!(role = self.role, %reason, ?fatal, generation, "Kafka producer can no longer deliver; replaced it");
                *current = (generation + 1, fresh);
            }
            Err(create_error) => {
                tracing::error!(role = self.role, error = %create_error, "cannot create a new Kafka producer")
            }
        }
    }

    /// Waits (bounded) until every queued message is acknowledged.
    pub(super) async fn flush(&self, timeout: Duration) {
        let producer = self.current().1;
        let role = self.role;
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        if let Ok(Err(err)) = flushed {
            tracing::warn!(role, error = %err, "not every queued Kafka message was acknowledged at shutdown");
        }
    }
}

/// The settings of our producers: idempotent, `acks=all`, and the `kafka.*` batching settings.
pub(super) fn producer_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut client = base_config(kafka);
    client
        .set("enable.idempotence", "true")
        .set("acks", "all")
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

    /// Sends every record of `batch` and waits for the broker's acknowledgements (or, with
    /// `kafka.async`, only until they are queued).
    pub async fn submit(&self, batch: EncodedBatch) -> Result<(), ProduceError> {
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

        let (generation, producer) = self.inner.producer.current();
        let total = batch.records();
        let timestamp = chrono::Utc::now().timestamp_millis();
        let mut deliveries = Vec::with_capacity(total);
        let mut refused = None;
        'records: for chunk in &batch.chunks {
            for line in chunk.lines.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
                let record = FutureRecord::<(), [u8]>::to(&self.inner.topic)
                    .payload(line)
                    .timestamp(timestamp);
                match producer.send_result(record) {
                    Ok(delivery) => deliveries.push(delivery),
                    Err((err, _)) => {
                        refused = Some(err);
                        break 'records;
                    }
                }
            }
        }
        drop(batch);

        if self.inner.async_ack && refused.is_none() {
            // The original's behaviour: answer now, count failures when they are reported.
            let this = self.clone();
            tokio::spawn(async move {
                let _held = (bytes_permit, batch_permit, queued);
                let _ = this.await_deliveries(generation, deliveries).await;
            });
            return Ok(());
        }
        if let Some(err) = &refused {
            self.inner.producer.renew_if_fenced(generation, err);
        }
        let delivered = self.await_deliveries(generation, deliveries).await;
        drop((bytes_permit, batch_permit, queued));
        let (reason, delivered) = match (refused, delivered) {
            (None, Ok(_)) => return Ok(()),
            (Some(err), Ok(delivered)) => (err.to_string(), delivered),
            (_, Err(failure)) => failure,
        };
        self.inner.metrics.ingest_errors.inc();
        tracing::warn!(%reason, delivered, total, "batch not fully acknowledged by Kafka");
        Err(if delivered == 0 {
            ProduceError::Unavailable { reason }
        } else {
            ProduceError::Partial {
                delivered,
                total,
                reason,
            }
        })
    }

    /// Waits for every delivery report. `Ok(n)` if all `n` succeeded, else the first failure's
    /// reason and how many were delivered.
    async fn await_deliveries(
        &self,
        generation: u64,
        deliveries: Vec<DeliveryFuture>,
    ) -> Result<usize, (String, usize)> {
        let deadline = tokio::time::Instant::now() + self.inner.produce_timeout + REPORT_GRACE;
        let expected = deliveries.len();
        let mut delivered = 0;
        let mut failure = None;
        // One deadline for the whole batch (not a timer per record).
        let waited = tokio::time::timeout_at(deadline, async {
            for delivery in deliveries {
                match delivery.await {
                    Ok(Ok(_)) => delivered += 1,
                    Ok(Err((err, _))) => {
                        if failure.is_none() {
                            self.inner.producer.renew_if_fenced(generation, &err);
                            failure = Some(err.to_string());
                        }
                    }
                    Err(_canceled) => {
                        failure.get_or_insert_with(|| "the producer was shut down".to_owned());
                    }
                }
            }
        })
        .await;
        if waited.is_err() {
            failure
                .get_or_insert_with(|| "no acknowledgement within kafka.produceTimeout".to_owned());
        }
        self.inner
            .metrics
            .kafka_produce_errors
            .inc_by((expected - delivered) as u64);
        self.inner
            .metrics
            .kafka_produced_messages
            .inc_by(delivered as u64);
        match failure {
            None => Ok(delivered),
            Some(reason) => Err((reason, delivered)),
        }
    }

    /// Waits, at most `timeout`, until every queued message is acknowledged.
    pub async fn flush(&self, timeout: Duration) {
        self.inner.producer.flush(timeout).await;
    }
}
