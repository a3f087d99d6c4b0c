//! Broker-side set-up and health: the topics exist, and the broker answers.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::producer::Producer;
use rdkafka::types::RDKafkaErrorCode;

use super::base_config;
use super::producer::KafkaSink;
use crate::config::Config;

/// How often `/ready` re-checks that the broker answers.
const PROBE_INTERVAL: Duration = Duration::from_secs(1);
/// How long one probe may wait for the broker.
const PROBE_TIMEOUT: Duration = Duration::from_secs(2);

/// Creates the topic (`kafka.partitions` partitions) and the dead-letter topic if they are missing.
pub async fn ensure_topics(config: &Config) -> anyhow::Result<()> {
    let admin: AdminClient<DefaultClientContext> = base_config(config).create()?;
    let topics = [
        NewTopic::new(
            &config.kafka.topic,
            config.kafka.partitions as i32,
            TopicReplication::Fixed(1),
        ),
        NewTopic::new(
            &config.kafka.dead_letter_topic,
            1,
            TopicReplication::Fixed(1),
        ),
    ];
    let options = AdminOptions::new().operation_timeout(Some(Duration::from_secs(10)));
    let results = tokio::time::timeout(
        Duration::from_secs(15),
        admin.create_topics(&topics, &options),
    )
    .await
    .map_err(|_| {
        anyhow::anyhow!(
            "the Kafka brokers {:?} did not answer within 15s",
            config.kafka.brokers
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

/// Keeps a flag saying whether the broker answered the last metadata request, and creates the
/// topics once the broker answers if that failed at start-up.
pub fn spawn_probe(
    config: Config,
    sink: KafkaSink,
    ready: Arc<AtomicBool>,
    topics_exist: bool,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut topics_exist = topics_exist;
        loop {
            if !topics_exist {
                match ensure_topics(&config).await {
                    Ok(()) => topics_exist = true,
                    Err(err) => {
                        tracing::warn!(error = %err, "Kafka topics not created yet; retrying")
                    }
                }
            }
            let producer = sink.producer();
            let topic = sink.topic().to_owned();
            let answered = tokio::task::spawn_blocking(move || {
                producer
                    .client()
                    .fetch_metadata(Some(&topic), PROBE_TIMEOUT)
                    .map(|metadata| {
                        metadata
                            .topics()
                            .iter()
                            .any(|t| t.error().is_none() && !t.partitions().is_empty())
                    })
                    .unwrap_or(false)
            })
            .await
            .unwrap_or(false);
            if answered != ready.swap(answered, Ordering::Relaxed) {
                if answered {
                    tracing::info!("Kafka broker reachable again");
                } else {
                    tracing::warn!("Kafka broker unreachable; /ready reports 503");
                }
            }
            tokio::time::sleep(PROBE_INTERVAL).await;
        }
    })
}
