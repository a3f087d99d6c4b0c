//! The v2 sink: every record of an accepted batch becomes one Kafka message.
//!
//! Delivery: the producer is idempotent with `acks=all` (librdkafka retries without duplicating).
//! By default a batch is answered only after the broker acknowledged every one of its records;
//! `kafka.async: true` answers once the records are queued in the client (the original's
//! behaviour: a crash can lose them).
//!
//! Backpressure: the bytes and batches in flight are bounded (`storage.maxPendingBytes`,
//! `ingestion.queueBufferSize × queueHighWaterPercent`); a batch that does not fit is refused with
//! 503 before any of it is sent, so a batch is never half-queued because the client queue was full.
//! A broker that does not acknowledge within `kafka.produceTimeout` fails the batch (503).
//!
//! librdkafka settings: `kafka.batchSize` → `batch.num.messages`, `kafka.batchTimeout` →
//! `linger.ms`, `kafka.batchBytes` (when > 0) → `batch.size`, `kafka.compression` →
//! `compression.type`, `kafka.produceTimeout` → `message.timeout.ms`.

use std::sync::{Arc, RwLock};
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::error::KafkaError;
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use rdkafka::types::RDKafkaErrorCode;
use tokio::sync::Semaphore;

use super::base_config;
use crate::config::Config;
use crate::metrics::Metrics;
use crate::record::EncodedBatch;
use crate::sink::SinkError;

/// Extra time beyond `kafka.produceTimeout` before we stop waiting for librdkafka's own report.
const REPORT_GRACE: Duration = Duration::from_secs(2);

/// Produces batches to the topic; cheap to clone.
#[derive(Clone)]
pub struct KafkaSink {
    inner: Arc<Inner>,
}

struct Inner {
    /// The current producer and its generation. A producer the broker fenced off (its
    /// idempotence epoch was bumped after a timeout) never works again, so it is replaced.
    producer: RwLock<(u64, FutureProducer)>,
    client: ClientConfig,
    topic: Arc<str>,
    pending_bytes: Arc<Semaphore>,
    max_pending_bytes: usize,
    pending_batches: Arc<Semaphore>,
    async_ack: bool,
    produce_timeout: Duration,
    metrics: Metrics,
}

/// Decrements the queue-depth gauge when a batch is done, however it ends.
struct InFlight(Metrics);

impl Drop for InFlight {
    fn drop(&mut self) {
        self.0.queue_depth.dec();
    }
}

impl KafkaSink {
    /// Creates the producer (it connects lazily).
    pub fn new(config: &Config, metrics: Metrics) -> Result<KafkaSink, KafkaError> {
        let kafka = &config.kafka;
        let max_pending_bytes = config
            .storage
            .max_pending_bytes
            .clamp(1, Semaphore::MAX_PERMITS);
        let mut client = base_config(config);
        client
            .set("enable.idempotence", "true")
            .set("acks", "all")
            .set("compression.type", kafka.compression.as_str())
            .set("batch.num.messages", kafka.batch_size.to_string())
            .set("linger.ms", kafka.batch_timeout.as_millis().to_string())
            .set(
                "message.timeout.ms",
                kafka.produce_timeout.as_millis().max(1).to_string(),
            )
            // Our own bounds refuse a batch before the client queue can fill half-way through it.
            .set("queue.buffering.max.messages", "10000000")
            .set(
                "queue.buffering.max.kbytes",
                (max_pending_bytes / 1024 * 2)
                    .clamp(1024, 2_097_151)
                    .to_string(),
            );
        if kafka.batch_bytes > 0 {
            client.set("batch.size", kafka.batch_bytes.to_string());
        }
        let max_batches = ((config.ingestion.queue_buffer_size as f64)
            * config.ingestion.queue_high_water_percent)
            .floor()
            .max(1.0) as usize;
        Ok(KafkaSink {
            inner: Arc::new(Inner {
                producer: RwLock::new((0, client.create()?)),
                client,
                topic: kafka.topic.as_str().into(),
                pending_bytes: Arc::new(Semaphore::new(max_pending_bytes)),
                max_pending_bytes,
                pending_batches: Arc::new(Semaphore::new(max_batches)),
                async_ack: kafka.async_ack,
                produce_timeout: kafka.produce_timeout,
                metrics,
            }),
        })
    }

    /// The current producer (the consumers use it for the dead-letter topic).
    pub fn producer(&self) -> FutureProducer {
        self.current().1
    }

    fn current(&self) -> (u64, FutureProducer) {
        self.inner.producer.read().expect("producer lock").clone()
    }

    /// Replaces producer `generation` if `err` means it can never deliver again. Idempotent:
    /// of many requests that saw the same failure, only the first replaces it.
    pub fn renew_if_fenced(&self, generation: u64, err: &KafkaError) {
        let fenced = matches!(
            err.rdkafka_error_code(),
            Some(
                RDKafkaErrorCode::ProducerFenced
                    | RDKafkaErrorCode::InvalidProducerEpoch
                    | RDKafkaErrorCode::UnknownProducerId
                    | RDKafkaErrorCode::Fatal
            )
        );
        let mut current = self.inner.producer.write().expect("producer lock");
        if current.0 != generation || !(fenced || current.1.client().fatal_error().is_some()) {
            return;
        }
        match self.inner.client.create::<FutureProducer>() {
            Ok(fresh) => {
                tracing::warn!(error = %err, generation, "Kafka producer can no longer deliver; replaced it");
                *current = (generation + 1, fresh);
            }
            Err(create_error) => {
                tracing::error!(error = %create_error, "cannot create a new Kafka producer")
            }
        }
    }

    /// The topic batches go to.
    pub fn topic(&self) -> &str {
        &self.inner.topic
    }

    /// Sends every record of `batch` and waits for the broker's acknowledgements (or, with
    /// `kafka.async`, only until they are queued).
    pub async fn submit(&self, batch: EncodedBatch) -> Result<(), SinkError> {
        let cost = batch.bytes().clamp(1, self.inner.max_pending_bytes) as u32;
        let bytes_permit = self
            .inner
            .pending_bytes
            .clone()
            .try_acquire_many_owned(cost)
            .map_err(|_| SinkError::Overloaded)?;
        let batch_permit = self
            .inner
            .pending_batches
            .clone()
            .try_acquire_owned()
            .map_err(|_| SinkError::Overloaded)?;
        self.inner.metrics.queue_depth.inc();
        let in_flight = InFlight(self.inner.metrics.clone());

        let (generation, producer) = self.current();
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
            let sink = self.clone();
            tokio::spawn(async move {
                let _held = (bytes_permit, batch_permit, in_flight);
                let _ = sink.await_deliveries(generation, deliveries).await;
            });
            return Ok(());
        }
        if let Some(err) = &refused {
            self.renew_if_fenced(generation, err);
        }
        let delivered = self.await_deliveries(generation, deliveries).await;
        drop((bytes_permit, batch_permit, in_flight));
        let failure = match (refused, delivered) {
            (None, Ok(_)) => return Ok(()),
            (Some(err), Ok(delivered)) => (err.to_string(), delivered),
            (_, Err((reason, delivered))) => (reason, delivered),
        };
        self.inner.metrics.ingest_errors.inc();
        let (reason, delivered) = failure;
        tracing::warn!(%reason, delivered, total, "batch not fully acknowledged by Kafka");
        if delivered == 0 {
            Err(SinkError::Unavailable(reason))
        } else {
            Err(SinkError::Partial { delivered, total })
        }
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
                            self.renew_if_fenced(generation, &err);
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

    /// Sends one message (the consumers' dead letters) and waits for the broker's acknowledgement.
    pub async fn send_one(&self, record: FutureRecord<'_, [u8], [u8]>) -> Result<(), String> {
        let (generation, producer) = self.current();
        match producer.send(record, self.inner.produce_timeout).await {
            Ok(_) => Ok(()),
            Err((err, _)) => {
                self.renew_if_fenced(generation, &err);
                Err(err.to_string())
            }
        }
    }

    /// Waits (bounded) until every queued message is acknowledged.
    pub fn flush(&self, timeout: Duration) {
        if let Err(err) = self.producer().flush(timeout) {
            tracing::warn!(error = %err, "not every queued Kafka message was acknowledged at shutdown");
        }
    }
}
