//! Broker-side set-up and health: the topics exist, and the broker answers.
//!
//! [`Broker`] has its own admin client, used to create the topics and to ask for the topic's
//! metadata; [`Probe`] asks every second and keeps the answer for `/ready`, and creates the
//! topics once the broker answers if that failed at start-up.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::error::KafkaResult;
use rdkafka::types::RDKafkaErrorCode;
use tokio::task::JoinHandle;

use super::base_config;
use crate::config::KafkaConfig;

/// How often the probe asks the broker.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long one probe may wait for the broker.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);
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
        Ok(Broker {
            admin: Arc::new(base_config(kafka).create()?),
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

    /// Whether the broker describes the topic, with partitions, within [`PROBE_TIMEOUT`].
    pub async fn answers(&self) -> bool {
        let broker = self.clone();
        tokio::task::spawn_blocking(move || {
            broker
                .admin
                .inner()
                .fetch_metadata(Some(&broker.topic), PROBE_TIMEOUT)
                .is_ok_and(|metadata| {
                    metadata
                        .topics()
                        .iter()
                        .any(|t| t.error().is_none() && !t.partitions().is_empty())
                })
        })
        .await
        .unwrap_or(false)
    }
}

/// The periodic broker check behind `/ready`.
pub struct Probe {
    answers: Arc<AtomicBool>,
    task: JoinHandle<()>,
}

impl Probe {
    /// Starts asking `broker` every [`PROBE_INTERVAL`]; `topics_exist` true means the broker
    /// just answered (and created the topics), false that they still have to be created.
    /// `each_round` runs after every check (the pipeline renews a producer that failed for good
    /// there, so recovery needs no failed request first).
    pub fn spawn(
        broker: Broker,
        topics_exist: bool,
        each_round: impl Fn() + Send + 'static,
    ) -> Probe {
        let answers = Arc::new(AtomicBool::new(topics_exist));
        let flag = answers.clone();
        let task = tokio::spawn(async move {
            let mut topics_exist = topics_exist;
            loop {
                if !topics_exist {
                    match broker.ensure_topics().await {
                        Ok(()) => topics_exist = true,
                        Err(err) => {
                            tracing::warn!(error = %err, "Kafka topics not created yet; retrying")
                        }
                    }
                }
                let answered = broker.answers().await;
                if answered != flag.swap(answered, Ordering::Relaxed) {
                    if answered {
                        tracing::info!("Kafka broker reachable again");
                    } else {
                        tracing::warn!("Kafka broker unreachable; /ready reports 503");
                    }
                }
                each_round();
                tokio::time::sleep(PROBE_INTERVAL).await;
            }
        });
        Probe { answers, task }
    }

    /// Whether the broker answered the last check.
    pub fn broker_answers(&self) -> bool {
        self.answers.load(Ordering::Relaxed)
    }

    /// Stops the checks.
    pub fn stop(&self) {
        self.task.abort();
    }
}
