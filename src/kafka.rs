//! Kafka mode (v2): HTTP → Kafka → consumer group → the same hour files as v1.
//! [`KafkaPipeline`] owns every part, from start-up to shutdown:
//!
//! - [`producer`]: the API's producer. One message per record (the record's stored line without
//!   the newline), idempotent with `acks=all`; a batch is answered 202 only once the broker
//!   acknowledged every record (unless `kafka.async`). Also the replacement of a producer the
//!   broker fenced off, shared with the dead-letter producer.
//! - [`consumer`]: `kafka.consumers` consumer threads in one group. They validate messages, send
//!   invalid ones to the dead-letter topic ([`dead_letter`]), write valid ones through the
//!   [`Sink`] chosen at start-up (the hour files with a checkpoint of their partitions' next
//!   offsets, or the bucket in the offset ranges of [`ranges`]), and only then commit. Where a
//!   partition resumes is decided by the pure state machine in [`resume`].
//! - [`broker`]: topic creation at start-up and the probe behind `/ready`.
//! - [`keyed`]: how the records of a batch sent with an `Idempotency-Key` carry it (message key
//!   and headers), so that the consumers store them once however often the batch was produced.
//! - [`site_header`]: how each record's site travels (the `site` header; the site id as the
//!   key of unkeyed messages), and what a consumer does with a header that names no site.
//! - [`lease`]: whether a consumer writing to the bucket may still write its partitions (not
//!   after a pause longer than its session could last, until the group confirms it).
//!
//! # Shutdown order
//!
//! [`KafkaPipeline::shutdown`] runs once the HTTP server has stopped taking requests:
//!
//! 1. the probe stops;
//! 2. the producer waits, at most `kafka.produceTimeout`, for the acknowledgements of what it
//!    still holds (batches answered early with `kafka.async: true`);
//! 3. the consumers store and checkpoint what they buffered, commit, and leave the group;
//! 4. the sink releases what it holds (the files: synced and closed, the logs directory
//!    released).
//!
//! What the consumers have not read yet stays in Kafka and is read after the next start.

pub mod broker;
pub mod consumer;
pub mod dead_letter;
pub mod keyed;
pub mod lease;
pub mod producer;
pub mod ranges;
pub mod resume;
pub mod site_header;
pub mod topic_id;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::ClientConfig;

use crate::config::{Config, KafkaConfig};
use crate::idempotency::Update;
use crate::metrics::Metrics;
use crate::record::EncodedBatch;
use crate::site::SiteId;
use broker::{Broker, Probe, ProbeEvents};
pub use consumer::Sink;
use consumer::{ConsumerGroup, Recreations};
use producer::IngestProducer;
pub use producer::{ProduceError, ProducerLimits};

/// Everything v2 is built from: its own config sections plus the limits it shares with v1.
#[derive(Debug, Clone)]
pub struct KafkaSettings {
    pub kafka: KafkaConfig,
    pub limits: ProducerLimits,
    /// `ingestion.maxFieldBytes`: consumed messages are validated like API records.
    pub max_field_bytes: usize,
}

impl KafkaSettings {
    /// The settings `config` gives.
    pub fn from_config(config: &Config) -> KafkaSettings {
        KafkaSettings {
            kafka: config.kafka.clone(),
            limits: ProducerLimits {
                max_pending_bytes: config.storage.max_pending_bytes,
                max_batches: config.ingestion.max_batches_in_flight(),
            },
            max_field_bytes: config.ingestion.max_field_bytes,
        }
    }
}

/// v2, running: the producer, the consumer group, the broker probe and the sink the consumers
/// write through.
pub struct KafkaPipeline {
    producer: IngestProducer,
    /// Taken by the first [`KafkaPipeline::shutdown`].
    consumers: Mutex<Option<ConsumerGroup>>,
    probe: Probe,
    /// Where the consumers write.
    sink: Arc<dyn Sink>,
    produce_timeout: Duration,
    topic: String,
    metrics: Metrics,
}

/// How often [`KafkaPipeline::settle`] looks at what the sink stored.
const SETTLE_POLL: Duration = Duration::from_millis(5);

impl KafkaPipeline {
    /// Checks the broker (creating the topics if it answers without them; the probe goes on
    /// trying while it does not answer), creates the producer and the consumer group, which
    /// writes through `sink`.
    pub async fn start(
        settings: KafkaSettings,
        sink: Arc<dyn Sink>,
        metrics: Metrics,
    ) -> anyhow::Result<KafkaPipeline> {
        let kafka = &settings.kafka;
        if !kafka.async_ack && kafka.batch_timeout > Duration::from_millis(100) {
            tracing::warn!(
                batch_timeout = ?kafka.batch_timeout,
                "kafka.batchTimeout is librdkafka's linger: every acknowledged request may wait this long; consider 5ms"
            );
        }
        let broker = Broker::new(kafka)?;
        let ready = broker.ready().await;
        if !ready {
            tracing::warn!(
                "the Kafka broker does not answer with the topics yet; /ready stays 503 until it does"
            );
        }
        let id = broker.topic_id().await;
        let producer = IngestProducer::new(kafka, settings.limits, metrics.clone())?;
        let consumers = ConsumerGroup::start(&settings, sink.clone(), metrics.clone())?;
        let events = Renewals {
            producer: producer.clone(),
            recreations: consumers.recreations(),
        };
        let probe = Probe::spawn(broker, ready, id, events);
        Ok(KafkaPipeline {
            producer,
            consumers: Mutex::new(Some(consumers)),
            probe,
            sink,
            produce_timeout: kafka.produce_timeout,
            topic: kafka.topic.clone(),
            metrics,
        })
    }

    /// Produces every record of `batch` and waits for the broker (see [`IngestProducer::submit`]).
    /// While the probe finds the broker silent, batches are refused at once, before any record is
    /// sent: the client hears 503 "nothing stored" instead of waiting `kafka.produceTimeout` for
    /// an answer that could only be "outcome unknown".
    /// A batch sent with an idempotency key travels with `keyed` (see [`keyed`]), a site's with
    /// its `site` (see [`site_header`]).
    pub async fn submit(
        &self,
        site: Option<&SiteId>,
        batch: EncodedBatch,
        keyed: Option<&Update>,
    ) -> Result<(), ProduceError> {
        if !self.probe.broker_answers() {
            self.metrics.ingest_errors.inc();
            return Err(ProduceError::Unavailable {
                reason: "the Kafka broker does not answer".to_owned(),
            });
        }
        self.producer.submit(site, batch, keyed).await
    }

    /// Waits, at most `timeout`, until everything this process's producer had acknowledged when
    /// called is stored (in the hour files or the bucket), for the partitions this process's consumers own
    /// (another process stores the others, in its own logs directory). Whether it got there.
    pub async fn settle(&self, timeout: Duration) -> bool {
        let acknowledged = self.producer.acknowledged();
        let settled = || {
            let owned = match &*self.consumers.lock().expect("consumers lock") {
                // Before the consumers joined, or while they rebalance, any partition may become
                // ours: nothing acknowledged is settled yet.
                Some(consumers) => match consumers.owned_partitions() {
                    Some(owned) => owned,
                    None => return acknowledged.is_empty(),
                },
                None => return true,
            };
            let stored = self.sink.stored(&self.topic);
            acknowledged.iter().all(|(partition, next)| {
                !owned.contains(partition)
                    || (stored.get(partition)).is_some_and(|stored| stored >= next)
            })
        };
        let deadline = tokio::time::Instant::now() + timeout;
        while !settled() {
            if tokio::time::Instant::now() >= deadline {
                return false;
            }
            tokio::time::sleep(SETTLE_POLL).await;
        }
        true
    }

    /// Ready when a produce can succeed now (the broker answers with the topic, every partition
    /// has a leader, and the broker gave the producer its id), the sink can take the consumers'
    /// writes, and no partition is stalled behind a dead letter that cannot be delivered.
    pub fn readiness(&self) -> Result<(), &'static str> {
        if !self.probe.broker_answers() {
            return Err(
                "the Kafka broker does not answer with the topic and its partition leaders",
            );
        }
        if !self.producer.can_deliver() {
            return Err(
                "the Kafka producer is not connected, or has no producer id from the broker yet",
            );
        }
        let (stalled, recreated) = match &*self.consumers.lock().expect("consumers lock") {
            Some(consumers) => (
                consumers.stalled_partitions(),
                consumers.stalled_by_recreation(),
            ),
            None => (0, false),
        };
        if stalled > 0 {
            return Err("a partition waits for a dead letter that cannot be delivered yet");
        }
        if recreated {
            return Err(
                "the Kafka topic was created again; the consumers do not write its offsets over the bucket's objects",
            );
        }
        self.sink.readiness()
    }

    /// Stops everything in the order documented at the top of this module. Idempotent.
    pub async fn shutdown(&self) {
        self.probe.stop();
        self.producer.flush(self.produce_timeout).await;
        let consumers = self.consumers.lock().expect("consumers lock").take();
        if let Some(consumers) = consumers {
            consumers.shutdown().await;
        }
        self.sink.shutdown().await;
    }
}

/// What the broker probe does about what it sees: a producer that failed for good is replaced
/// every round; a topic created again replaces the producers (the broker does not know their
/// producer ids) and has every consumer check which topic it reads.
struct Renewals {
    producer: IngestProducer,
    recreations: Recreations,
}

impl ProbeEvents for Renewals {
    fn recreated(&self, _before: topic_id::TopicId, _now: topic_id::TopicId) {
        self.producer.renew_now("the topic was created again");
        self.recreations.signal();
    }

    fn each_round(&self) {
        self.producer.renew_if_failed();
    }
}

/// The settings every client of ours shares.
fn base_config(kafka: &KafkaConfig) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", kafka.brokers.join(","))
        .set("client.id", "log-pipeline")
        // librdkafka logs through its own callback; keep only warnings and errors.
        .set("log_level", "4");
    client
}
