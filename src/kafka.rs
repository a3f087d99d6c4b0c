//! Kafka mode (v2): HTTP → Kafka → consumer group → the same hour files as v1.
//!
//! - [`producer`]: the v2 sink. One message per record (the record's stored line without the
//!   newline), idempotent producer with `acks=all`; a batch is answered 202 only once the broker
//!   acknowledged every record (unless `kafka.async`).
//! - [`consumer`]: `kafka.consumers` consumer threads in one group. They validate messages, send
//!   invalid ones to the dead-letter topic, write valid ones through the [`crate::store::Store`]
//!   together with a checkpoint of their partitions' next offsets, and only then commit offsets.
//! - [`broker`]: topic creation at start-up and the reachability check behind `/ready`.

pub mod broker;
pub mod consumer;
pub mod producer;

use rdkafka::ClientConfig;

use crate::config::Config;

/// The settings every client of ours shares.
fn base_config(config: &Config) -> ClientConfig {
    let mut client = ClientConfig::new();
    client
        .set("bootstrap.servers", config.kafka.brokers.join(","))
        .set("client.id", "log-pipeline")
        // librdkafka logs through its own callback; keep only warnings and errors.
        .set("log_level", "4");
    client
}

/// The checkpoint key of a partition: `topic/partition`.
pub fn checkpoint_key(topic: &str, partition: i32) -> String {
    format!("{topic}/{partition}")
}
