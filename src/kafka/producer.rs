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

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::ToBytes;
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message};
use tokio::sync::{Notify, Semaphore};

use super::{base_config, keyed};
use crate::config::KafkaConfig;
use crate::idempotency::Update;
use crate::metrics::Metrics;
use crate::record::EncodedBatch;

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

/// What librdkafka's delivery report says of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    /// The broker has it. Without an offset when the broker answered DUPLICATE_SEQUENCE_NUMBER
    /// ("an earlier attempt wrote it").
    Persisted { with_offset: bool },
    /// Sent, and no answer came: the broker may or may not have it.
    PossiblyPersisted,
    /// The broker certainly does not have it.
    NotPersisted,
}

/// What became of the records of one batch, filled in by librdkafka's delivery reports.
#[derive(Default)]
pub(super) struct Tracker {
    /// Records sent and not yet reported, plus one while the sender is still sending.
    pending: AtomicUsize,
    persisted: AtomicUsize,
    not_persisted: AtomicUsize,
    possibly_persisted: AtomicUsize,
    /// Of `persisted`: reported without an offset, which is how librdkafka reports a batch the
    /// broker answered with DUPLICATE_SEQUENCE_NUMBER ("an earlier attempt wrote it").
    without_offset: AtomicUsize,
    first_error: Mutex<Option<String>>,
    done: Notify,
}

impl Tracker {
    /// A tracker for a batch about to be sent; [`Tracker::sent_all`] ends the sending.
    pub(super) fn new() -> Arc<Tracker> {
        Arc::new(Tracker {
            pending: AtomicUsize::new(1),
            ..Tracker::default()
        })
    }

    fn sending_one(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    fn report_done(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }

    fn failed(&self, reason: &dyn std::fmt::Display) {
        self.first_error
            .lock()
            .expect("tracker lock")
            .get_or_insert_with(|| reason.to_string());
    }

    /// Counts the delivery report of one sent record (`error`: the report's, if any).
    fn report(&self, delivery: Delivery, error: Option<&dyn std::fmt::Display>) {
        let counter = match delivery {
            Delivery::Persisted { with_offset } => {
                if !with_offset {
                    self.without_offset.fetch_add(1, Ordering::AcqRel);
                }
                &self.persisted
            }
            Delivery::PossiblyPersisted => &self.possibly_persisted,
            Delivery::NotPersisted => &self.not_persisted,
        };
        counter.fetch_add(1, Ordering::AcqRel);
        if let Some(error) = error {
            self.failed(error);
        }
        self.report_done();
    }

    /// The sender sent what it could (`refused`: the error that stopped it, if any).
    pub(super) fn sent_all(&self, refused: Option<&KafkaError>) {
        if let Some(err) = refused {
            self.failed(err);
        }
        self.report_done();
    }

    /// Waits until every sent record was reported, at most `deadline`; whether they all were.
    pub(super) async fn reported(&self, deadline: Duration) -> bool {
        tokio::time::timeout(deadline, async {
            while self.pending.load(Ordering::Acquire) > 0 {
                self.done.notified().await;
            }
        })
        .await
        .is_ok()
    }

    /// Records acknowledged so far.
    pub(super) fn persisted(&self) -> usize {
        self.persisted.load(Ordering::Acquire)
    }

    /// The outcome of a batch of `total` records, once [`Tracker::reported`] returned.
    pub(super) fn outcome(&self, total: usize, all_reported: bool) -> Result<(), ProduceError> {
        let delivered = self.persisted();
        let possibly = self.possibly_persisted.load(Ordering::Acquire);
        let reason = || {
            self.first_error
                .lock()
                .expect("tracker lock")
                .clone()
                .unwrap_or_else(|| "no delivery report within kafka.produceTimeout".to_owned())
        };
        if !all_reported {
            // Whatever was sent and not reported may still arrive.
            let not = self.not_persisted.load(Ordering::Acquire);
            let unknown = total - delivered - not;
            return Err(ProduceError::OutcomeUnknown {
                delivered,
                unknown,
                total,
                reason: reason(),
            });
        }
        if delivered == total {
            Ok(())
        } else if possibly > 0 {
            Err(ProduceError::OutcomeUnknown {
                delivered,
                unknown: possibly,
                total,
                reason: reason(),
            })
        } else if delivered == 0 {
            Err(ProduceError::Unavailable { reason: reason() })
        } else {
            Err(ProduceError::Partial {
                delivered,
                total,
                reason: reason(),
            })
        }
    }
}

/// The callbacks of one producer client: delivery reports go to their batch's [`Tracker`].
pub(super) struct Reports {
    /// Per partition, the offset after the last record acknowledged (see
    /// [`RenewingProducer::acknowledged`]); shared by every generation of the producer.
    acknowledged: Arc<Mutex<BTreeMap<i32, i64>>>,
    /// A report said the broker fenced this producer off.
    fenced: AtomicBool,
    /// The last statistics (at most a second old) said the broker gave this producer its id
    /// (librdkafka's idempotence state `Assigned`) and a connection to a broker is up: it can
    /// deliver. A new client has no id until the broker answers it; a broker that died refuses
    /// connections, which the client sees before any metadata request times out.
    can_deliver: AtomicBool,
}

impl ClientContext for Reports {
    fn stats(&self, statistics: Statistics) {
        let assigned = (statistics.eos.as_ref()).is_some_and(|eos| eos.idemp_state == "Assigned");
        let connected =
            (statistics.brokers.values()).any(|broker| broker.nodeid >= 0 && broker.state == "UP");
        self.can_deliver
            .store(assigned && connected, Ordering::Relaxed);
    }
}

impl ProducerContext for Reports {
    type DeliveryOpaque = Arc<Tracker>;

    fn delivery(&self, result: &DeliveryResult<'_>, tracker: Arc<Tracker>) {
        // What the report changes besides the tracker comes first: the batch's waiter, woken by
        // the tracker, may read it at once (`settle` the offsets, `renew_if_failed` the fence).
        match result {
            Ok(message) => {
                let mut acknowledged = self.acknowledged.lock().expect("acknowledged lock");
                let next = acknowledged.entry(message.partition()).or_default();
                *next = (*next).max(message.offset() + 1);
                drop(acknowledged);
                let with_offset = message.offset() >= 0;
                tracker.report(Delivery::Persisted { with_offset }, None);
            }
            Err((err, message)) => {
                if is_fenced(err) {
                    self.fenced.store(true, Ordering::Relaxed);
                }
                // SAFETY: `message` wraps the report's valid `rd_kafka_message_t` for the
                // duration of this callback, and `rd_kafka_message_status` only reads it.
                let status = unsafe { rdkafka::bindings::rd_kafka_message_status(message.ptr()) };
                let delivery = match status {
                    rdkafka::bindings::rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_PERSISTED => {
                        // An error report for a persisted message does not happen; count it as
                        // the broker has it.
                        Delivery::Persisted { with_offset: true }
                    }
                    rdkafka::bindings::rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_POSSIBLY_PERSISTED => {
                        Delivery::PossiblyPersisted
                    }
                    rdkafka::bindings::rd_kafka_msg_status_t::RD_KAFKA_MSG_STATUS_NOT_PERSISTED => {
                        Delivery::NotPersisted
                    }
                };
                tracker.report(delivery, Some(err));
            }
        }
    }
}

/// Whether `err` means the producer can never deliver again.
fn is_fenced(err: &KafkaError) -> bool {
    matches!(
        err.rdkafka_error_code(),
        Some(
            RDKafkaErrorCode::ProducerFenced
                | RDKafkaErrorCode::InvalidProducerEpoch
                | RDKafkaErrorCode::UnknownProducerId
                | RDKafkaErrorCode::Fatal
        )
    )
}

/// A producer client that is replaced once it can never deliver again. An idempotent producer
/// whose epoch the broker bumped (after a timeout) is fenced off for good, and librdkafka does
/// not recover from its fatal errors: only a new client delivers again.
pub(super) struct RenewingProducer {
    current: RwLock<ThreadedProducer<Reports>>,
    /// How many times the client was replaced: a failure seen on an older client does not
    /// replace a newer one.
    generation: AtomicU64,
    client: ClientConfig,
    acknowledged: Arc<Mutex<BTreeMap<i32, i64>>>,
    /// What this producer is for, in logs.
    role: &'static str,
}

impl RenewingProducer {
    /// Creates the first client (it connects lazily).
    pub(super) fn new(client: ClientConfig, role: &'static str) -> KafkaResult<RenewingProducer> {
        let acknowledged = Arc::new(Mutex::new(BTreeMap::new()));
        Ok(RenewingProducer {
            current: RwLock::new(create(&client, &acknowledged)?),
            generation: AtomicU64::new(0),
            client,
            acknowledged,
            role,
        })
    }

    /// The current client.
    pub(super) fn current(&self) -> ThreadedProducer<Reports> {
        self.current.read().expect("producer lock").clone()
    }

    /// Which client is current (see [`RenewingProducer::renew_after_failure`]).
    pub(super) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the current client can deliver now: the broker gave it a producer id and it is
    /// connected (as its last statistics, at most a second old, said), and it was not fenced off
    /// or failed.
    pub(super) fn can_deliver(&self) -> bool {
        let current = self.current();
        let context = current.context();
        context.can_deliver.load(Ordering::Relaxed)
            && !context.fenced.load(Ordering::Relaxed)
            && current.client().fatal_error().is_none()
    }

    /// Sends `lines` to `topic` as one message each, reporting to `tracker`; stops at the first
    /// record the client refuses (queue full, too large) and returns its error. The lines of a
    /// keyed batch carry its key (see [`super::keyed`]).
    pub(super) fn send<'a>(
        &self,
        topic: &str,
        lines: impl Iterator<Item = &'a [u8]>,
        timestamp: i64,
        tracker: &Arc<Tracker>,
        keyed: Option<&Update>,
    ) -> Option<KafkaError> {
        let producer = self.current();
        let Some(update) = keyed else {
            return lines
                .map(|line| {
                    BaseRecord::<(), [u8], Arc<Tracker>>::with_opaque_to(topic, tracker.clone())
                        .payload(line)
                        .timestamp(timestamp)
                })
                .find_map(|record| send_one(&producer, record, tracker));
        };
        let key = keyed::message_key(update);
        lines
            .zip(0u32..)
            .map(|(line, index)| {
                BaseRecord::<str, [u8], Arc<Tracker>>::with_opaque_to(topic, tracker.clone())
                    .key(key.as_str())
                    .payload(line)
                    .timestamp(timestamp)
                    .headers(keyed::headers(update, index))
            })
            .find_map(|record| send_one(&producer, record, tracker))
    }

    /// Sends one record reporting to `tracker`; the client's error if it refused it.
    pub(super) fn send_record<K: ToBytes + ?Sized>(
        &self,
        record: BaseRecord<'_, K, [u8], Arc<Tracker>>,
        tracker: &Tracker,
    ) -> Option<KafkaError> {
        send_one(&self.current(), record, tracker)
    }

    /// Per partition, the offset after the last record this process's producer had acknowledged.
    pub(super) fn acknowledged(&self) -> BTreeMap<i32, i64> {
        self.acknowledged.lock().expect("acknowledged lock").clone()
    }

    /// Replaces the client if a delivery report said it was fenced off, or librdkafka reports a
    /// fatal error on it: at the first failed request, and periodically (the broker probe), so
    /// that recovery never waits for a request to fail first.
    pub(super) fn renew_if_failed(&self) {
        let generation = self.generation();
        let current = self.current();
        let fenced = current.context().fenced.load(Ordering::Relaxed);
        let fatal = current.client().fatal_error();
        drop(current);
        if fenced || fatal.is_some() {
            let reason = match fatal {
                Some((code, text)) => format!("a fatal error: {code:?} {text}"),
                None => "the broker fenced it off".to_owned(),
            };
            self.renew(generation, &reason);
        }
    }

    /// Replaces the client that sent a batch (`generation`, from [`RenewingProducer::generation`]
    /// before sending) after nothing of it was delivered, unless it was replaced since. A broker
    /// that lost the producer's state (a restart without its storage) refuses every produce of
    /// the old client until it times out, and librdkafka does not ask for a new producer id by
    /// itself; a new client does. Renewing a client that was only slow costs nothing more than
    /// the failure already did: its in-flight records are reported as they stand.
    pub(super) fn renew_after_failure(&self, generation: u64, reason: &str) {
        self.renew(generation, reason);
    }

    /// Replaces the client now, whatever its state (the topic was created again: its partitions
    /// know nothing of the current client's producer id).
    pub(super) fn renew_now(&self, reason: &str) {
        self.renew(self.generation(), reason);
    }

    /// Replaces the client if it is still `generation`.
    fn renew(&self, generation: u64, reason: &str) {
        let mut current = self.current.write().expect("producer lock");
        if self.generation() != generation {
            return; // Another caller renewed it.
        }
        let fresh = match create(&self.client, &self.acknowledged) {
            Ok(fresh) => fresh,
            Err(err) => {
                tracing::error!(role = self.role, error = %err, "cannot create a new Kafka producer");
                return;
            }
        };
        let old = std::mem::replace(&mut *current, fresh);
        self.generation.fetch_add(1, Ordering::AcqRel);
        drop(current);
        tracing::warn!(role = self.role, reason, "replaced the Kafka producer");
        // Dropping a client purges what it still holds (its batches hear their outcome) and
        // waits for that, up to half a second: not on an async worker.
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => drop(runtime.spawn_blocking(move || drop(old))),
            Err(_) => drop(old),
        }
    }

    /// Waits (bounded) until every queued message is reported.
    pub(super) async fn flush(&self, timeout: Duration) {
        let producer = self.current();
        let role = self.role;
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        if let Ok(Err(err)) = flushed {
            tracing::warn!(role, error = %err, "not every queued Kafka message was acknowledged at shutdown");
        }
    }
}

fn send_one<K: ToBytes + ?Sized>(
    producer: &ThreadedProducer<Reports>,
    record: BaseRecord<'_, K, [u8], Arc<Tracker>>,
    tracker: &Tracker,
) -> Option<KafkaError> {
    tracker.sending_one();
    match producer.send(record) {
        Ok(()) => None,
        Err((err, _record)) => {
            // Not sent, so never reported.
            tracker.report_done();
            Some(err)
        }
    }
}

fn create(
    client: &ClientConfig,
    acknowledged: &Arc<Mutex<BTreeMap<i32, i64>>>,
) -> KafkaResult<ThreadedProducer<Reports>> {
    client.create_with_context(Reports {
        acknowledged: acknowledged.clone(),
        fenced: AtomicBool::new(false),
        can_deliver: AtomicBool::new(false),
    })
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
                .send(&self.inner.topic, lines, timestamp, &tracker, keyed);
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
        let without_offset = tracker.without_offset.load(Ordering::Acquire);
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

    /// A tracker of a batch whose `reports` were all sent and reported, in that order.
    fn reported(reports: &[(Delivery, Option<&str>)]) -> Arc<Tracker> {
        let tracker = Tracker::new();
        for _ in reports {
            tracker.sending_one();
        }
        tracker.sent_all(None);
        for (delivery, error) in reports {
            let error = error.as_ref().map(|e| e as &dyn std::fmt::Display);
            tracker.report(*delivery, error);
        }
        tracker
    }

    const ACKED: (Delivery, Option<&str>) = (Delivery::Persisted { with_offset: true }, None);
    const REFUSED: (Delivery, Option<&str>) = (Delivery::NotPersisted, Some("too large"));
    const SILENT: (Delivery, Option<&str>) = (Delivery::PossiblyPersisted, Some("timed out"));

    #[tokio::test]
    async fn a_batch_every_record_of_which_the_broker_has_is_acknowledged() {
        let tracker = reported(&[ACKED, ACKED, ACKED]);
        assert!(tracker.reported(Duration::ZERO).await);
        assert!(tracker.outcome(3, true).is_ok());
    }

    #[tokio::test]
    async fn the_outcome_says_exactly_what_the_broker_has() {
        let tracker = reported(&[REFUSED, REFUSED]);
        assert!(matches!(
            tracker.outcome(2, true),
            Err(ProduceError::Unavailable { reason }) if reason == "too large"
        ));

        let tracker = reported(&[ACKED, REFUSED, REFUSED]);
        assert!(matches!(
            tracker.outcome(3, true),
            Err(ProduceError::Partial {
                delivered: 1,
                total: 3,
                ..
            })
        ));

        // One record without an answer makes the whole outcome unknown, whatever else failed.
        let tracker = reported(&[ACKED, SILENT, REFUSED]);
        assert!(matches!(
            tracker.outcome(3, true),
            Err(ProduceError::OutcomeUnknown { delivered: 1, unknown: 1, total: 3, reason })
                if reason == "timed out"
        ));
    }

    #[tokio::test]
    async fn records_never_reported_are_unknown() {
        let tracker = Tracker::new();
        for _ in 0..4 {
            tracker.sending_one();
        }
        tracker.sent_all(None);
        tracker.report(ACKED.0, None);
        tracker.report(REFUSED.0, None);
        assert!(!tracker.reported(Duration::from_millis(10)).await);
        let outcome = tracker.outcome(4, false);
        assert!(
            matches!(
                &outcome,
                Err(ProduceError::OutcomeUnknown { delivered: 1, unknown: 2, total: 4, reason })
                    if reason == "no delivery report within kafka.produceTimeout"
            ),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_record_the_client_refused_to_send_is_certainly_not_stored() {
        // Two of three records sent and acknowledged; the client refused the third (queue full).
        let tracker = Tracker::new();
        tracker.sending_one();
        tracker.sending_one();
        let queue_full = KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull);
        tracker.sent_all(Some(&queue_full));
        tracker.report(ACKED.0, None);
        tracker.report(ACKED.0, Some(&"later failure"));
        assert!(tracker.reported(Duration::ZERO).await);
        let outcome = tracker.outcome(3, true);
        assert!(
            matches!(
                &outcome,
                Err(ProduceError::Partial { delivered: 2, total: 3, reason })
                    if *reason == queue_full.to_string()
            ),
            "the first error is the reason: {outcome:?}"
        );
    }

    #[tokio::test]
    async fn the_waiter_hears_reports_from_another_thread() {
        let tracker = Tracker::new();
        tracker.sending_one();
        tracker.sent_all(None);
        assert_eq!(tracker.without_offset.load(Ordering::Acquire), 0);
        let reporter = tracker.clone();
        let reporting = std::thread::spawn(move || {
            reporter.report(Delivery::Persisted { with_offset: false }, None);
        });
        assert!(tracker.reported(Duration::from_secs(10)).await);
        reporting.join().unwrap();
        assert!(tracker.outcome(1, true).is_ok());
        assert_eq!(tracker.without_offset.load(Ordering::Acquire), 1);
    }

    #[test]
    fn only_errors_that_end_a_producer_for_good_fence_it() {
        for code in [
            RDKafkaErrorCode::ProducerFenced,
            RDKafkaErrorCode::InvalidProducerEpoch,
            RDKafkaErrorCode::UnknownProducerId,
            RDKafkaErrorCode::Fatal,
        ] {
            assert!(is_fenced(&KafkaError::MessageProduction(code)), "{code:?}");
        }
        for code in [
            RDKafkaErrorCode::MessageTimedOut,
            RDKafkaErrorCode::QueueFull,
            RDKafkaErrorCode::NotLeaderForPartition,
        ] {
            assert!(!is_fenced(&KafkaError::MessageProduction(code)), "{code:?}");
        }
    }

    /// A producer client of a broker that is not there (it connects lazily, to 127.0.0.1).
    fn absent_broker_client() -> ClientConfig {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let kafka = KafkaConfig {
            brokers: vec![format!("127.0.0.1:{port}")],
            ..KafkaConfig::default()
        };
        producer_config(&kafka)
    }

    #[tokio::test]
    async fn a_client_is_renewed_once_per_generation_that_failed() {
        let producer = RenewingProducer::new(absent_broker_client(), "test").unwrap();
        let client = |producer: &RenewingProducer| producer.current().client().native_ptr();
        let first = client(&producer);
        assert_eq!(producer.generation(), 0);
        assert!(!producer.can_deliver(), "no producer id without a broker");

        // Neither fenced nor failed: kept.
        producer.renew_if_failed();
        assert_eq!((producer.generation(), client(&producer)), (0, first));

        producer.renew_after_failure(0, "a batch it sent was not delivered at all");
        let second = client(&producer);
        assert_eq!(producer.generation(), 1);
        assert_ne!(second, first);

        // A failure seen on the replaced client does not replace its successor.
        producer.renew_after_failure(0, "a batch the first client sent");
        assert_eq!((producer.generation(), client(&producer)), (1, second));

        producer.renew_now("the topic was created again");
        assert_eq!(producer.generation(), 2);
        assert_ne!(client(&producer), second);
    }

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
