//! A producer client that is replaced when it can never deliver again ([`RenewingProducer`]),
//! and its callbacks ([`Reports`]): delivery reports counted into their batch's [`Tracker`], the
//! offsets acknowledged, and whether the broker fenced the client off.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use rdkafka::error::{KafkaError, KafkaResult};
use rdkafka::message::{OwnedHeaders, ToBytes};
use rdkafka::producer::{BaseRecord, DeliveryResult, Producer, ProducerContext, ThreadedProducer};
use rdkafka::statistics::Statistics;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{ClientConfig, ClientContext, Message};

use super::delivery::{Delivery, Tracker};
use crate::idempotency::Update;
use crate::kafka::{keyed, site_header};
use crate::site::SiteId;

/// The callbacks of one producer client: delivery reports go to their batch's [`Tracker`].
pub(in crate::kafka) struct Reports {
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
pub(in crate::kafka) struct RenewingProducer {
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
    pub(in crate::kafka) fn new(
        client: ClientConfig,
        role: &'static str,
    ) -> KafkaResult<RenewingProducer> {
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
    pub(in crate::kafka) fn current(&self) -> ThreadedProducer<Reports> {
        self.current.read().expect("producer lock").clone()
    }

    /// Which client is current (see [`RenewingProducer::renew_after_failure`]).
    pub(in crate::kafka) fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// Whether the current client can deliver now: the broker gave it a producer id and it is
    /// connected (as its last statistics, at most a second old, said), and it was not fenced off
    /// or failed.
    pub(in crate::kafka) fn can_deliver(&self) -> bool {
        let current = self.current();
        let context = current.context();
        context.can_deliver.load(Ordering::Relaxed)
            && !context.fenced.load(Ordering::Relaxed)
            && current.client().fatal_error().is_none()
    }

    /// Sends `lines` to `topic` as one message each, reporting to `tracker`; stops at the first
    /// record the client refuses (queue full, too large) and returns its error. The lines of a
    /// keyed batch carry its key (see [`crate::kafka::keyed`]); those of a site's batch its site
    /// (see [`crate::kafka::site_header`]).
    pub(in crate::kafka) fn send<'a>(
        &self,
        topic: &str,
        lines: impl Iterator<Item = &'a [u8]>,
        timestamp: i64,
        tracker: &Arc<Tracker>,
        keyed: Option<&Update>,
        site: Option<&SiteId>,
    ) -> Option<KafkaError> {
        let producer = self.current();
        let headers = |keyed: Option<OwnedHeaders>| match (keyed, site) {
            (keyed, Some(site)) => Some(site_header::with_site(
                keyed.unwrap_or_else(|| OwnedHeaders::new_with_capacity(1)),
                site,
            )),
            (keyed, None) => keyed,
        };
        let Some(update) = keyed else {
            // A site's batches stay in order on the partition of its id.
            let key = site.map(SiteId::as_str);
            return lines
                .map(|line| message(topic, tracker, timestamp, key, line, headers(None)))
                .find_map(|record| send_one(&producer, record, tracker));
        };
        let key = keyed::message_key(update);
        lines
            .zip(0u32..)
            .map(|(line, index)| {
                let keyed = Some(keyed::headers(update, index));
                message(topic, tracker, timestamp, Some(&key), line, headers(keyed))
            })
            .find_map(|record| send_one(&producer, record, tracker))
    }

    /// Sends one record reporting to `tracker`; the client's error if it refused it.
    pub(in crate::kafka) fn send_record<K: ToBytes + ?Sized>(
        &self,
        record: BaseRecord<'_, K, [u8], Arc<Tracker>>,
        tracker: &Tracker,
    ) -> Option<KafkaError> {
        send_one(&self.current(), record, tracker)
    }

    /// Per partition, the offset after the last record this process's producer had acknowledged.
    pub(in crate::kafka) fn acknowledged(&self) -> BTreeMap<i32, i64> {
        self.acknowledged.lock().expect("acknowledged lock").clone()
    }

    /// Replaces the client if a delivery report said it was fenced off, or librdkafka reports a
    /// fatal error on it: at the first failed request, and periodically (the broker probe), so
    /// that recovery never waits for a request to fail first.
    pub(in crate::kafka) fn renew_if_failed(&self) {
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
    pub(in crate::kafka) fn renew_after_failure(&self, generation: u64, reason: &str) {
        self.renew(generation, reason);
    }

    /// Replaces the client now, whatever its state (the topic was created again: its partitions
    /// know nothing of the current client's producer id).
    pub(in crate::kafka) fn renew_now(&self, reason: &str) {
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
    pub(in crate::kafka) async fn flush(&self, timeout: Duration) {
        let producer = self.current();
        let role = self.role;
        let flushed = tokio::task::spawn_blocking(move || producer.flush(timeout)).await;
        if let Ok(Err(err)) = flushed {
            tracing::warn!(role, error = %err, "not every queued Kafka message was acknowledged at shutdown");
        }
    }
}

/// The message of one record: `line`, with its message key and headers if it has them.
fn message<'r>(
    topic: &'r str,
    tracker: &Arc<Tracker>,
    timestamp: i64,
    key: Option<&'r str>,
    line: &'r [u8],
    headers: Option<OwnedHeaders>,
) -> BaseRecord<'r, str, [u8], Arc<Tracker>> {
    let mut record = BaseRecord::<str, [u8], Arc<Tracker>>::with_opaque_to(topic, tracker.clone())
        .payload(line)
        .timestamp(timestamp);
    if let Some(key) = key {
        record = record.key(key);
    }
    if let Some(headers) = headers {
        record = record.headers(headers);
    }
    record
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::KafkaConfig;
    use crate::kafka::producer::producer_config;

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
}
