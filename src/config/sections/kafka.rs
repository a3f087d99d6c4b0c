//! `kafka`: v2 only, brokers, topics, producer and consumer-group settings. Validated in v1 as
//! well, so that a file stays valid when its `version` is flipped.

use std::time::Duration;

use serde::Deserialize;

use crate::config::key::{Field, Flag, Key, lens};
use crate::config::load::go_duration;
use crate::config::ranges::{Bounds, MIB, MILLISECOND, PERIOD};

/// `kafka`: each field's YAML key is its camelCase name (or its `serde(rename)`); its meaning,
/// range, flag and environment variable are its row in [`KEYS`], its default the `Default`
/// impl below.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct KafkaConfig {
    pub brokers: Vec<String>,
    pub topic: String,
    // The original spells the key with a capital "ID", which camelCase renaming cannot produce.
    #[serde(rename = "groupID")]
    pub group_id: String,
    pub batch_size: usize,
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub batch_timeout: Duration,
    pub batch_bytes: usize,
    pub compression: Compression,
    #[serde(rename = "async")]
    pub async_ack: bool,
    pub consumers: usize,
    pub require_all_acks: bool,
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub produce_timeout: Duration,
    pub partitions: u32,
    pub dead_letter_topic: String,
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub session_timeout: Duration,
    pub fetch_max_bytes: usize,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: Vec::new(),
            topic: "logs".to_owned(),
            group_id: "logs-consumer-group".to_owned(),
            batch_size: 10_000,
            batch_timeout: Duration::from_millis(5),
            batch_bytes: 0,
            compression: Compression::Lz4,
            async_ack: false,
            consumers: 1,
            require_all_acks: false,
            produce_timeout: Duration::from_secs(5),
            partitions: 3,
            dead_letter_topic: "logs.dlq".to_owned(),
            session_timeout: Duration::from_secs(45),
            fetch_max_bytes: 4 << 20,
        }
    }
}

/// Compression of produced Kafka batches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum Compression {
    /// No compression.
    None,
    /// gzip: smallest of the classic codecs, most CPU.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4: cheap and effective on log lines; the default.
    #[default]
    Lz4,
    /// Zstandard.
    Zstd,
}

impl Compression {
    /// Every spelling, as serde reads them.
    pub const NAMES: &[&str] = &["none", "gzip", "snappy", "lz4", "zstd"];

    /// The librdkafka `compression.type` value (which is also the YAML spelling).
    pub fn as_str(&self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Gzip => "gzip",
            Compression::Snappy => "snappy",
            Compression::Lz4 => "lz4",
            Compression::Zstd => "zstd",
        }
    }
}

/// `kafka.brokers`.
pub const BROKERS: Key = Key::new(
    "kafka.brokers",
    Field::List(lens!(kafka.brokers)),
    "Bootstrap brokers as `host:port`; required (not empty) when `version` is 2. The flag and \
     variable take them comma-separated.",
)
.flag(Flag::new("kafka-brokers", "KAFKA_BROKERS", "HOST:PORT,..."));

/// `kafka.topic`.
pub const TOPIC: Key = Key::new(
    "kafka.topic",
    Field::Text(lens!(kafka.topic)),
    "Topic the batches' records are produced to and consumed from.",
);

/// `kafka.groupID`.
pub const GROUP_ID: Key = Key::new(
    "kafka.groupID",
    Field::Text(lens!(kafka.group_id)),
    "Consumer group of the consumers that write the files (or the bucket).",
);

/// `kafka.batchTimeout`.
pub const BATCH_TIMEOUT: Key = Key::new(
    "kafka.batchTimeout",
    Field::Duration(lens!(kafka.batch_timeout)),
    "Longest a message waits for its batch to fill before it is sent (librdkafka `linger.ms`). \
     Every acknowledged request can wait this long, so keep it small (the original's example \
     files say `1s`).",
)
.range(Bounds::duration(
    MILLISECOND,
    Duration::from_secs(15 * 60),
    "librdkafka's linger.ms",
));

/// `kafka.produceTimeout`.
pub const PRODUCE_TIMEOUT: Key = Key::new(
    "kafka.produceTimeout",
    Field::Duration(lens!(kafka.produce_timeout)),
    "How long a produced batch may wait for Kafka's acknowledgement before its request fails \
     with 503.",
)
.range(Bounds::new(
    PERIOD.range,
    "librdkafka's message.timeout.ms, and longer than kafka.batchTimeout",
));

/// `kafka.deadLetterTopic`.
pub const DEAD_LETTER_TOPIC: Key = Key::new(
    "kafka.deadLetterTopic",
    Field::Text(lens!(kafka.dead_letter_topic)),
    "Where consumed messages that are not valid records are moved, so that one bad message \
     does not stall its partition.",
);

pub const KEYS: &[Key] = &[
    BROKERS,
    TOPIC,
    GROUP_ID,
    Key::new(
        "kafka.batchSize",
        Field::Size(lens!(kafka.batch_size)),
        "Most messages in one produce batch (librdkafka `batch.num.messages`; the original's \
         example files say 100, tuned for its Go client).",
    )
    .range(Bounds::number(
        1,
        1_000_000,
        "librdkafka's batch.num.messages",
    )),
    BATCH_TIMEOUT,
    Key::new(
        "kafka.batchBytes",
        Field::Size(lens!(kafka.batch_bytes)),
        "Largest produce batch in bytes (librdkafka `batch.size`); `0` keeps librdkafka's \
         default.",
    )
    .range(Bounds::number(
        0,
        i32::MAX as u64,
        "librdkafka's batch.size, 0 keeps its default",
    )),
    Key::new(
        "kafka.compression",
        Field::Choice {
            get: |config| config.kafka.compression.as_str(),
            values: Compression::NAMES,
        },
        "Compression of produced batches (librdkafka `compression.type`).",
    ),
    Key::new(
        "kafka.async",
        Field::Bool(lens!(kafka.async_ack)),
        "The original's key: when true, a request is answered once its batch is queued in the \
         producer rather than acknowledged by Kafka; faster, but a crash can lose batches the \
         client was told were accepted.",
    ),
    Key::new(
        "kafka.consumers",
        Field::Size(lens!(kafka.consumers)),
        "Consumer tasks in this process's group member; more than the topic's partitions leaves \
         some idle.",
    )
    .range(Bounds::number(
        1,
        64,
        "each is a thread and a Kafka client with fetch buffers of its own",
    )),
    Key::new(
        "kafka.requireAllAcks",
        Field::Bool(lens!(kafka.require_all_acks)),
        "The original's choice of acknowledgements; the producer here always waits for all \
         in-sync replicas (`acks=all`).",
    )
    .ignored(),
    PRODUCE_TIMEOUT,
    Key::new(
        "kafka.partitions",
        Field::Number32(lens!(kafka.partitions)),
        "Partitions of `kafka.topic` and `kafka.deadLetterTopic` when they are created at \
         start-up because they are missing; existing topics are left as they are.",
    )
    .range(Bounds::number(
        1,
        10_000,
        "partitions a missing topic is created with",
    )),
    DEAD_LETTER_TOPIC,
    Key::new(
        "kafka.sessionTimeout",
        Field::Duration(lens!(kafka.session_timeout)),
        "How long a consumer may go without a heartbeat answer before the group gives its \
         partitions to another member (librdkafka `session.timeout.ms`). Shorter moves the \
         partitions of a crashed process sooner; it must stay above the longest broker pause \
         you want to ride out (a member that times out during a pause rejoins after it; with \
         tansu 0.6 the group then stays closed to every member, see docs/design/v2-delivery.md).",
    )
    .range(Bounds::duration(
        Duration::from_secs(6),
        Duration::from_secs(5 * 60),
        "brokers refuse shorter sessions by default (group.min.session.timeout.ms), and \
         librdkafka longer ones than its max.poll.interval.ms",
    )),
    Key::new(
        "kafka.fetchMaxBytes",
        Field::Size(lens!(kafka.fetch_max_bytes)),
        "Most bytes (compressed) a consumer asks the broker for in one fetch (librdkafka \
         `fetch.max.bytes`; `max.partition.fetch.bytes` is the smaller of it and 8 MiB). \
         Fetched messages and their decompressed copies are most of v2's memory: larger reads \
         faster and takes more (see docs/benchmarks.md, v2 end to end).",
    )
    .range(Bounds::number(
        MIB,
        64 * MIB,
        "librdkafka needs at least message.max.bytes (1 MB) and less than \
         receive.message.max.bytes (100 MB)",
    )),
];
