//! Broker-side set-up and health: the topics exist, every partition has a leader, the broker
//! answers, and which incarnation of the topic it holds.
//!
//! [`Broker`] has its own admin client, used to ask for the topic's metadata and id and to
//! create the topics when the broker answers without them; [`Probe`] asks every second and keeps
//! the answer for `/ready` (and for the producer, which refuses batches at once while the broker
//! is silent). When the topic's id changes (the topic was deleted and created again, or lost with
//! the broker's storage), the probe says so at once (see [`super::topic_id`]): the pipeline
//! replaces its producer, whose idempotence state the new topic's broker does not know.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaErrorCode;
use tokio::task::JoinHandle;

use super::base_config;
use super::topic_id::{self, Described, TopicId};
use crate::config::KafkaConfig;

/// How often the probe asks the broker.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long one probe may wait for the broker.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
/// The broker is taken for silent after this many checks in a row went unanswered: one late
/// answer on a busy machine must not refuse batches. Answering again counts at once.
const SILENT_AFTER_MISSES: u32 = 2;
/// How long topic creation may take.
const CREATE_TIMEOUT: Duration = Duration::from_secs(15);

/// The broker as seen by an admin client of our own; cheap to clone.
#[derive(Clone)]
pub struct Broker {
    admin: Arc<AdminClient<DefaultClientContext>>,
    brokers: Vec<String>,
    topic: String,
    dead_letter_topic: String,
    partitions: i32,
}

impl Broker {
    /// Creates the admin client (it connects lazily).
    pub fn new(kafka: &KafkaConfig) -> KafkaResult<Broker> {
        let mut client = base_config(kafka);
        // A metadata request must not create the topic with the broker's defaults: it is created
        // here, with `kafka.partitions`.
        client.set("allow.auto.create.topics", "false");
        Ok(Broker {
            admin: Arc::new(client.create()?),
            brokers: kafka.brokers.clone(),
            topic: kafka.topic.clone(),
            dead_letter_topic: kafka.dead_letter_topic.clone(),
            partitions: kafka.partitions as i32,
        })
    }

    /// Creates the topic (`kafka.partitions` partitions) and the dead-letter topic if missing.
    pub async fn ensure_topics(&self) -> anyhow::Result<()> {
        let topics = [
            NewTopic::new(&self.topic, self.partitions, TopicReplication::Fixed(1)),
            NewTopic::new(&self.dead_letter_topic, 1, TopicReplication::Fixed(1)),
        ];
        let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
        let results =
            tokio::time::timeout(CREATE_TIMEOUT, self.admin.create_topics(&topics, &options))
                .await
                .map_err(|_| {
                    anyhow::anyhow!(
                        "the Kafka brokers {:?} did not answer within {CREATE_TIMEOUT:?}",
                        self.brokers
                    )
                })??;
        for result in results {
            match result {
                Ok(topic) => tracing::info!(%topic, "created Kafka topic"),
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => {}
                Err((topic, code)) => anyhow::bail!("cannot create Kafka topic {topic}: {code}"),
            }
        }
        Ok(())
    }

    /// What the broker says of the topic within [`PROBE_TIMEOUT`].
    pub async fn check(&self) -> Health {
        let broker = self.clone();
        tokio::task::spawn_blocking(move || {
            match broker
                .admin
                .inner()
                .fetch_metadata(Some(&broker.topic), PROBE_TIMEOUT)
            {
                Err(_) => Health::Silent,
                Ok(metadata) => {
                    // A partition without a leader (just created, or its broker gone) cannot
                    // take a produce yet.
                    let ready = metadata.topics().iter().any(|t| {
                        t.error().is_none()
                            && !t.partitions().is_empty()
                            && t.partitions()
                                .iter()
                                .all(|p| p.error().is_none() && p.leader() >= 0)
                    });
                    if ready {
                        Health::Ready
                    } else {
                        Health::TopicMissing
                    }
                }
            }
        })
        .await
        .unwrap_or(Health::Silent)
    }

    /// The topic's id (see [`topic_id`]), within [`PROBE_TIMEOUT`]; `None` when the broker did
    /// not answer or reports none.
    pub async fn topic_id(&self) -> Option<TopicId> {
        let broker = self.clone();
        tokio::task::spawn_blocking(move || {
            match topic_id::describe(broker.admin.inner(), &broker.topic, PROBE_TIMEOUT) {
                Ok(Described::Id(id)) => Some(id),
                Ok(Described::NoId) | Err(_) => None,
            }
        })
        .await
        .ok()
        .flatten()
    }

    /// Checks the broker and, if it answers without the topic, creates the topics. Whether the
    /// broker answers with the topic in the end.
    pub async fn ready(&self) -> bool {
        match self.check().await {
            Health::Ready => true,
            Health::Silent => false,
            Health::TopicMissing => match self.ensure_topics().await {
                Ok(()) => self.check().await == Health::Ready,
                Err(err) => {
                    tracing::warn!(error = %err, "Kafka topics not created yet; retrying");
                    false
                }
            },
        }
    }
}

/// What the broker says of the topic.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Health {
    /// It describes the topic, with partitions, each with a leader.
    Ready,
    /// It answers, without the topic.
    TopicMissing,
    /// It does not answer.
    Silent,
}

/// The periodic broker check behind `/ready`.
pub struct Probe {
    answers: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

/// What the probe tells its owner after a check.
pub trait ProbeEvents: Send + 'static {
    /// The topic's id changed from `before` to `now`: it was created again.
    fn recreated(&self, before: TopicId, now: TopicId);
    /// Runs after every check (the pipeline renews a producer that failed for good there, so
    /// recovery never needs a failed request first).
    fn each_round(&self);
}

impl Probe {
    /// Starts asking `broker` every [`PROBE_INTERVAL`] (creating the topics when it answers
    /// without them), taking it for silent after [`SILENT_AFTER_MISSES`] unanswered checks in a
    /// row; `ready` is what the last check at start-up found, `id` the topic's id then.
    pub fn spawn(
        broker: Broker,
        ready: bool,
        id: Option<TopicId>,
        events: impl ProbeEvents,
    ) -> Probe {
        let answers = Arc::new(AtomicBool::new(ready));
        let flag = answers.clone();
        let task = tokio::spawn(async move {
            let mut misses = 0;
            let mut known = id;
            loop {
                tokio::time::sleep(PROBE_INTERVAL).await;
                let ready = broker.ready().await;
                misses = if ready { 0 } else { misses + 1 };
                if ready && let Some(now) = broker.topic_id().await {
                    if let Some(before) = known
                        && before != now
                    {
                        tracing::warn!(
                            topic = %broker.topic,
                            %before,
                            %now,
                            "the Kafka topic was created again (its id changed): its offsets start again from 0"
                        );
                        events.recreated(before, now);
                    }
                    known = Some(now);
                }
                let answered =
                    misses == 0 || (misses < SILENT_AFTER_MISSES && flag.load(Ordering::Relaxed));
                if answered != flag.swap(answered, Ordering::Relaxed) {
                    if answered {
                        tracing::info!("Kafka broker reachable again");
                    } else {
                        tracing::warn!("Kafka broker unreachable; /ready reports 503");
                    }
                }
                events.each_round();
            }
        });
        Probe { answers, task }
    }

    /// Whether the broker answered the last check with the topic ready.
    pub fn broker_answers(&self) -> bool {
        self.answers.load(Ordering::Relaxed)
    }

    /// Stops the checks.
    pub fn stop(&self) {
        self.task.abort();
    }
}
