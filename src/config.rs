//! The typed configuration tree: every setting the service reads, its YAML key, unit and default;
//! how the YAML file, environment variables and flags combine; and the validation that runs once
//! at start-up, before anything is bound or opened.
//!
//! Precedence, highest first: command-line flag, environment variable (both parsed by
//! [`crate::cli::Cli`]), the YAML file named by `--config`, the defaults documented on each field.
//!
//! The YAML keys are the Go service's, so its config files load unchanged; keys it did not have
//! are additions with defaults. Every section and key is optional. An unknown key is an error (a
//! typo such as `groupId` for `groupID` would otherwise silently fall back to a default).
//! Durations are Go-style strings with a unit: `500ms`, `30s`, `1m30s`, `2h`.
//!
//! Every error names the dotted key (`kafka.brokers: required when version is 2`), and validation
//! reports all problems at once so a file is fixed in one round.
//!
//! - [`ranges`]: the range of every number and duration, one table that validation, the README
//!   and the tests read.
//! - [`Config::prepare_directories`] (in `directories`): the directories a serving run writes,
//!   checked (and created when missing) at start-up, before anything is bound.

use std::fmt;
use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::{Deserialize, Deserializer};

use crate::cli::{self, Cli};

mod directories;
pub mod ranges;

/// The whole configuration. YAML: the top-level mapping.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Config {
    /// `version`: which pipeline runs, `1` (batches written straight to hourly files) or `2`
    /// (batches produced to Kafka, a consumer writes the files). Default `1`.
    /// Env `PIPELINE_VERSION`, flag `--pipeline-version`.
    pub version: PipelineVersion,
    /// `server`: the HTTP listener and its limits.
    pub server: ServerConfig,
    /// `storage`: where and how durably records are written.
    pub storage: StorageConfig,
    /// `aggregation`: the hourly analytics.
    pub aggregation: AggregationConfig,
    /// `ingestion`: limits on incoming batches and, for v2, the in-flight queue.
    pub ingestion: IngestionConfig,
    /// `consumer`: v2 only, the Kafka consumer that writes the hourly files.
    pub consumer: ConsumerConfig,
    /// `kafka`: v2 only, brokers, topics and producer settings.
    pub kafka: KafkaConfig,
    /// `auth`: bearer tokens, and which routes need one.
    pub auth: AuthConfig,
    /// `profiling`: CPU, heap and task profiles; off unless asked for.
    pub profiling: ProfilingConfig,
    /// `idempotency`: how long and how many `Idempotency-Key`s are kept.
    pub idempotency: IdempotencyConfig,
}

/// Which pipeline runs. YAML, env and flag value: the integer `1` or `2`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub enum PipelineVersion {
    /// Batches are written straight to the hourly files by this process.
    #[default]
    V1,
    /// Batches are produced to Kafka; a consumer group writes the hourly files.
    V2,
}

impl PipelineVersion {
    /// The number operators write: `1` or `2`.
    pub fn as_u8(self) -> u8 {
        match self {
            PipelineVersion::V1 => 1,
            PipelineVersion::V2 => 2,
        }
    }

    fn from_number(number: i64) -> Result<Self, String> {
        match number {
            1 => Ok(PipelineVersion::V1),
            2 => Ok(PipelineVersion::V2),
            other => Err(format!("must be 1 or 2, got {other}")),
        }
    }
}

// As the number it is written as, so that the tests' walk of the serialized tree sees a number.
#[cfg(test)]
impl serde::Serialize for PipelineVersion {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_u8(self.as_u8())
    }
}

impl fmt::Display for PipelineVersion {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.as_u8())
    }
}

// Hand-written because the YAML value is a number, not a variant name, and the error should say
// which numbers are allowed.
impl<'de> Deserialize<'de> for PipelineVersion {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        let number = i64::deserialize(deserializer)?;
        PipelineVersion::from_number(number).map_err(serde::de::Error::custom)
    }
}

/// When appended records are fsynced to disk. YAML: `always`, `interval` or `never`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Before a batch is acknowledged: an acknowledged batch survives a power loss.
    #[default]
    Always,
    /// Every `storage.fsyncInterval`: a power loss can lose up to that much acknowledged data.
    Interval,
    /// Left to the operating system: fastest, a power loss can lose recent data.
    Never,
}

impl FsyncPolicy {
    /// The YAML spelling, for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Interval => "interval",
            FsyncPolicy::Never => "never",
        }
    }
}

/// Compression of produced Kafka batches. YAML: `none`, `gzip`, `snappy`, `lz4` or `zstd`.
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

/// `server`: the HTTP listener and its limits.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct ServerConfig {
    /// `server.addr`: listen address, `host:port`, `[v6]:port`, or Go-style `:port` for all
    /// interfaces. Default `":8082"`. Env `HTTP_ADDR`, flag `--addr`.
    pub addr: String,
    /// `server.maxBodyBytes`: largest accepted request body in bytes, measured after
    /// decompression; larger bodies get 413. Default 16777216 (16 MiB).
    pub max_body_bytes: usize,
    /// `server.readHeaderTimeout`: time a client has to send the request headers; also how long
    /// an idle keep-alive connection is kept. Default `10s`.
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub read_header_timeout: Duration,
    /// `server.readBodyTimeout`: time a client has to send the whole request body. Default `30s`.
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub read_body_timeout: Duration,
    /// `server.minBodyRate`: bytes per second a request body must keep arriving at, measured
    /// over each 5 s while it is read; a slower body gets 408 `body_too_slow` and gives back what
    /// it held. Default 500 (Apache `mod_reqtimeout`'s `MinRate`).
    pub min_body_rate: usize,
    /// `server.requestTimeout`: time for a whole request, including storing the batch; past it
    /// the client gets 503. Default `60s`.
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub request_timeout: Duration,
    /// `server.shutdownTimeout`: on SIGTERM/SIGINT, how long in-flight requests may finish
    /// before they are cut off. Default `30s`.
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub shutdown_timeout: Duration,
    /// `server.maxConnections`: most open connections. At the cap a new connection takes the
    /// place of the one idle longest (no request in flight); when every one has a request in
    /// flight, it gets 503 and is closed at once. Lowered at start-up to what the open-file limit
    /// allows (logged). Default 10000.
    pub max_connections: usize,
    /// `server.maxInflightBytes`: most bytes of request bodies being received and decoded at
    /// once, across all requests; a body takes its share as its bytes arrive. A request whose
    /// next bytes would exceed it gets 503 `overloaded` (with `Retry-After`), before its body is
    /// read when its `Content-Length` is already more than is free. Default 67108864 (64 MiB).
    pub max_inflight_bytes: usize,
}

impl Default for ServerConfig {
    fn default() -> Self {
        ServerConfig {
            addr: ":8082".to_owned(),
            max_body_bytes: 16 * 1024 * 1024,
            read_header_timeout: Duration::from_secs(10),
            read_body_timeout: Duration::from_secs(30),
            min_body_rate: 500,
            request_timeout: Duration::from_secs(60),
            shutdown_timeout: Duration::from_secs(30),
            max_connections: 10_000,
            max_inflight_bytes: 64 * 1024 * 1024,
        }
    }
}

/// `storage`: where and how durably records are written.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct StorageConfig {
    /// `storage.logsDir`: directory of the hourly NDJSON log files, relative to the working
    /// directory unless absolute. Default `./logs`. Env `LOGS_DIR`, flag `--logs-dir`.
    pub logs_dir: PathBuf,
    /// `storage.analyticsDir`: directory of the hourly analytics files. Default `./analytics`.
    /// Env `ANALYTICS_DIR`, flag `--analytics-dir`.
    pub analytics_dir: PathBuf,
    /// `storage.fsync`: when written records are fsynced: `always` (before acknowledging),
    /// `interval` (every `fsyncInterval`) or `never` (left to the OS). Default `always`.
    pub fsync: FsyncPolicy,
    /// `storage.fsyncInterval`: how often to fsync when `fsync` is `interval`; the most
    /// acknowledged data a power loss can take. Default `1s`.
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub fsync_interval: Duration,
    /// `storage.maxPendingBytes`: bytes of encoded batches allowed to wait for the writer;
    /// beyond this, requests get 503 so clients back off instead of memory growing.
    /// Default 67108864 (64 MiB).
    pub max_pending_bytes: usize,
    /// `storage.idleFileTimeout`: an hour file not written for this long is closed (it is
    /// reopened if a late record arrives). Default `60s`.
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub idle_file_timeout: Duration,
    /// `storage.writeTimeout`: how long a batch the writer has started writing may take before
    /// its client is told the outcome is unknown (500 `outcome_unknown`; the write still
    /// completes or rolls back). A batch still waiting for the writer when its request runs out
    /// of `server.requestTimeout` is withdrawn instead (503 `timeout`, nothing stored).
    /// Default `30s`.
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub write_timeout: Duration,
    /// `storage.backend`: where v2's consumers write: `local` (the hour files of `logsDir`) or
    /// `s3` (objects in the bucket of `storage.s3`, shared by every instance). Default `local`.
    pub backend: StorageBackend,
    /// `storage.s3`: the bucket of `backend: s3`.
    pub s3: S3Config,
}

/// Where v2's consumers write. YAML: `local` or `s3`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// The hour files of `storage.logsDir`, on this machine.
    #[default]
    Local,
    /// Objects in an S3-compatible bucket, named by their topic, partition and offsets.
    S3,
}

impl StorageBackend {
    /// The YAML spelling, for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            StorageBackend::Local => "local",
            StorageBackend::S3 => "s3",
        }
    }
}

/// `storage.s3`: the bucket, and how big its objects grow. An empty string leaves a setting to
/// the usual environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), then to the AWS defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct S3Config {
    /// `storage.s3.endpoint`: the S3 API's URL, e.g. `http://127.0.0.1:3900` (path-style
    /// requests; `http://` is allowed). Empty: AWS.
    pub endpoint: String,
    /// `storage.s3.bucket`: required with `backend: s3`.
    pub bucket: String,
    /// `storage.s3.prefix`: prepended to every object name, e.g. `prod/`. Default empty.
    pub prefix: String,
    /// `storage.s3.region`. Empty: `AWS_REGION`, else `us-east-1`.
    pub region: String,
    /// `storage.s3.accessKeyID`. Empty: `AWS_ACCESS_KEY_ID`.
    #[serde(rename = "accessKeyID")]
    pub access_key_id: String,
    /// `storage.s3.secretAccessKey`. Empty: `AWS_SECRET_ACCESS_KEY`.
    pub secret_access_key: String,
    /// `storage.s3.maxObjectRecords`: an object is closed at this many records. Default 100000.
    pub max_object_records: usize,
    /// `storage.s3.maxObjectBytes`: ... or at this many bytes. Default 16777216 (16 MiB).
    pub max_object_bytes: usize,
    /// `storage.s3.maxObjectAge`: ... or once its first record has waited this long; this bounds
    /// both the delay before records are visible and the objects per hour of a quiet partition
    /// (3600 s / maxObjectAge). Default `5s`.
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub max_object_age: Duration,
    /// `storage.s3.requestTimeout`: one request to the bucket; a request that times out is
    /// retried. Default `30s`.
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub request_timeout: Duration,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            bucket: String::new(),
            prefix: String::new(),
            region: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            max_object_records: 100_000,
            max_object_bytes: 16 * 1024 * 1024,
            max_object_age: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            logs_dir: PathBuf::from("./logs"),
            analytics_dir: PathBuf::from("./analytics"),
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_secs(1),
            max_pending_bytes: 64 * 1024 * 1024,
            idle_file_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            backend: StorageBackend::Local,
            s3: S3Config::default(),
        }
    }
}

/// `aggregation`: the hourly analytics.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct AggregationConfig {
    /// `aggregation.interval`: how often the hourly analytics are recomputed and written.
    /// Default `30s`. Env `AGGREGATION_INTERVAL`, flag `--aggregation-interval`.
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub interval: Duration,
    /// `aggregation.maxKeysPerHour`: most distinct keys kept per hour in each analytics map;
    /// bounds memory when a client sends many distinct values. Default 100000.
    pub max_keys_per_hour: usize,
    /// `aggregation.maxSummaryBytes`: largest an hour's summary file may grow (its three maps
    /// together; keys beyond it are counted under `(other)` and the summary says
    /// `"truncated": true`). It is also the most a query reads per hour and merges per range, so
    /// the analytics' memory is a small multiple of it (README "Analytics"). Default 16777216
    /// (16 MiB); at least 65536.
    pub max_summary_bytes: usize,
}

/// The smallest `aggregation.maxSummaryBytes`: room for a few hundred keys of any length up to
/// `ingestion.maxFieldBytes`'s default.
pub const MIN_SUMMARY_BYTES: usize = 64 << 10;

impl Default for AggregationConfig {
    fn default() -> Self {
        AggregationConfig {
            interval: Duration::from_secs(30),
            max_keys_per_hour: 100_000,
            max_summary_bytes: 16 << 20,
        }
    }
}

/// `ingestion`: limits on incoming batches and, for v2, the in-flight queue.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct IngestionConfig {
    /// `ingestion.queueBufferSize` (original's key): v2, most batches in flight to Kafka at
    /// once. Default 10000.
    pub queue_buffer_size: usize,
    /// `ingestion.producerWorkers` (original's key): accepted so the original's files load;
    /// the producer needs no worker pool. Default 10.
    pub producer_workers: usize,
    /// `ingestion.producerWriteTimeout` (original's key): accepted so the original's files load;
    /// it has no effect. In the original it bounded the wait for a place in its in-memory queue;
    /// here a batch that does not fit the in-flight limits is refused at once (503 `overloaded`)
    /// and the wait for the broker is bounded by `kafka.produceTimeout`. Default `10s`.
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub producer_write_timeout: Duration,
    /// `ingestion.queueHighWaterPercent` (original's key): v2, the fraction of
    /// `queueBufferSize` in flight beyond which new batches get 503; a fraction despite the
    /// name, in (0, 1]: `0.9` means 90 %. Default 0.9.
    pub queue_high_water_percent: f64,
    /// `ingestion.maxRecords`: most records in one batch; larger batches get 413.
    /// Default 100000.
    pub max_records: usize,
    /// `ingestion.maxFieldBytes`: longest accepted field value in bytes; longer ones reject the
    /// batch with 400. Default 8192 (8 KiB).
    pub max_field_bytes: usize,
    /// `ingestion.maxHoursPerBatch`: most distinct event hours in one batch (each is a file the
    /// store writes and fsyncs for it); larger batches get 413 `too_many_hours`. At most 1024.
    /// Default 168 (a week).
    pub max_hours_per_batch: usize,
}

impl IngestionConfig {
    /// v2: most batches waiting for the broker at once, `queueBufferSize × queueHighWaterPercent`
    /// (at least 1).
    pub fn max_batches_in_flight(&self) -> usize {
        ((self.queue_buffer_size as f64) * self.queue_high_water_percent)
            .floor()
            .max(1.0) as usize
    }
}

impl Default for IngestionConfig {
    fn default() -> Self {
        IngestionConfig {
            queue_buffer_size: 10_000,
            producer_workers: 10,
            producer_write_timeout: Duration::from_secs(10),
            queue_high_water_percent: 0.9,
            max_records: 100_000,
            max_field_bytes: 8 * 1024,
            max_hours_per_batch: 168,
        }
    }
}

/// `idempotency`: how long and how many `Idempotency-Key`s are kept (see the README's
/// "Idempotent retries").
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct IdempotencyConfig {
    /// `idempotency.retention`: how long after its batch was stored a key is remembered; a key
    /// sent again later is a new key. Default `24h`.
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub retention: Duration,
    /// `idempotency.maxKeys`: most keys remembered; beyond it the oldest are forgotten first.
    /// Default 1000000.
    pub max_keys: usize,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            retention: Duration::from_secs(24 * 3600),
            max_keys: 1_000_000,
        }
    }
}

/// `consumer`: v2 only, the Kafka consumer that writes the hourly files.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct ConsumerConfig {
    /// `consumer.flushSize`: records buffered before they are written and offsets committed.
    /// Default 512.
    pub flush_size: usize,
    /// `consumer.flushInterval`: longest a consumed record waits in the buffer before it is
    /// written. Default `500ms`.
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub flush_interval: Duration,
    /// `consumer.persistTimeout` (original's key): accepted so the original's files load; it has
    /// no effect. A flush is never abandoned half-way to be retried (the retry could write its
    /// lines twice): it completes or fails as a whole in the store, and a failed flush is read
    /// from Kafka again. Default `5s`.
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub persist_timeout: Duration,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            flush_size: 512,
            flush_interval: Duration::from_millis(500),
            persist_timeout: Duration::from_secs(5),
        }
    }
}

/// `kafka`: v2 only, brokers, topics and producer settings. Validated in v1 as well so that a
/// file stays valid when its `version` is flipped.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct KafkaConfig {
    /// `kafka.brokers`: bootstrap brokers as `host:port`; required (non-empty) when `version`
    /// is 2. Default empty. Env `KAFKA_BROKERS`, flag `--kafka-brokers` (comma-separated).
    pub brokers: Vec<String>,
    /// `kafka.topic`: topic the batches' records are produced to and consumed from.
    /// Default `"logs"`.
    pub topic: String,
    /// `kafka.groupID`: consumer group of the consumers that write the files.
    /// Default `"logs-consumer-group"`.
    // The original spells the key with a capital "ID", which camelCase renaming cannot produce.
    #[serde(rename = "groupID")]
    pub group_id: String,
    /// `kafka.batchSize`: most messages in one produce batch (librdkafka `batch.num.messages`).
    /// Default 10000. (The original's example files say 100, tuned for its Go client.)
    pub batch_size: usize,
    /// `kafka.batchTimeout`: longest a message waits for its batch to fill before it is sent
    /// (librdkafka `linger.ms`). Every acknowledged request can wait this long, so keep it
    /// small. Default `5ms`. (The original's example files say `1s`.)
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub batch_timeout: Duration,
    /// `kafka.batchBytes`: largest produce batch in bytes; `0` keeps librdkafka's default.
    /// Default 0.
    pub batch_bytes: usize,
    /// `kafka.compression`: `none`, `gzip`, `snappy`, `lz4` or `zstd`. Default `lz4`.
    pub compression: Compression,
    /// `kafka.async` (original's key): when true, a request is answered once its batch is
    /// queued in the producer rather than acknowledged by Kafka; faster, but a crash can lose
    /// batches the client was told were accepted. Default false.
    #[serde(rename = "async")]
    pub async_ack: bool,
    /// `kafka.consumers`: consumer tasks in this process's group member, at least 1; more than
    /// the topic's partitions leaves some idle. Default 1.
    pub consumers: usize,
    /// `kafka.requireAllAcks` (original's key): accepted so the original's files load; the
    /// producer always waits for all in-sync replicas (`acks=all`). Default false.
    pub require_all_acks: bool,
    /// `kafka.produceTimeout`: how long a produced batch may wait for Kafka's acknowledgement
    /// before the request fails. Default `5s`.
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub produce_timeout: Duration,
    /// `kafka.partitions`: partitions of `topic` and `deadLetterTopic` when they are created
    /// at start-up because they are missing; existing topics are left as they are. Default 3.
    pub partitions: u32,
    /// `kafka.deadLetterTopic`: where consumed messages that cannot be decoded are moved, so
    /// one bad message does not stall its partition. Default `"logs.dlq"`.
    pub dead_letter_topic: String,
    /// `kafka.sessionTimeout`: how long a consumer may go without a heartbeat answer before the
    /// group gives its partitions to another member (librdkafka `session.timeout.ms`). Shorter
    /// moves the partitions of a crashed process sooner; it must stay above the longest broker
    /// pause you want to ride out (a member that times out during a pause rejoins after it; with
    /// tansu 0.6 the group then stays closed to every member, see README). Default `45s`.
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub session_timeout: Duration,
    /// `kafka.fetchMaxBytes`: most bytes (compressed) a consumer asks the broker for in one
    /// fetch (librdkafka `fetch.max.bytes`; `max.partition.fetch.bytes` is the smaller of it and
    /// 8 MiB). Fetched messages and their decompressed copies are most of v2's memory: larger
    /// reads faster and takes more. From 1 MiB to 64 MiB. Default 4 MiB (see README, Benchmarks).
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

/// `auth`: bearer tokens, and which routes need one.
#[derive(Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct AuthConfig {
    /// `auth.tokens`: bearer tokens accepted (`Authorization: Bearer <token>`); empty turns auth
    /// off everywhere. Each must be one a client can send ([`check_token`]: printable ASCII,
    /// spaces and tabs, none at either end). Default empty. Env `LOG_PIPELINE_TOKENS`, flag
    /// `--tokens` (comma-separated).
    pub tokens: Vec<String>,
    /// `auth.protect`: which routes need a token when tokens are set: `ingest` (`POST /logs`,
    /// always protected, listing it changes nothing), `analytics` (`/analytics*`: top paths can
    /// carry tokens and personal data in URLs) and `metrics` (`/metrics`). Probes (`/health`,
    /// `/ready`) never need one. Default `[ingest, analytics]`.
    pub protect: Vec<Protected>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            tokens: Vec::new(),
            protect: vec![Protected::Ingest, Protected::Analytics],
        }
    }
}

impl AuthConfig {
    /// Whether requests to `routes` need a token.
    pub fn protects(&self, routes: Protected) -> bool {
        !self.tokens.is_empty() && (routes == Protected::Ingest || self.protect.contains(&routes))
    }
}

/// A group of routes `auth.protect` can name. YAML: `ingest`, `analytics`, `metrics`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum Protected {
    /// `POST /logs`.
    Ingest,
    /// `/analytics`, `/analytics/hours` and what the dashboard reads.
    Analytics,
    /// `/metrics`.
    Metrics,
}

// Hand-written so that logging the config (`{:?}`) cannot leak the secrets.
impl fmt::Debug for AuthConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AuthConfig")
            .field("tokens", &format_args!("<{} redacted>", self.tokens.len()))
            .field("protect", &self.protect)
            .finish()
    }
}

/// `profiling`: CPU, heap and task ("goroutine") profiles, off unless asked for. The original
/// service read these from the environment only; its variables still work.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct ProfilingConfig {
    /// `profiling.capture`: profile the whole run and write `cpu_<name>.prof`, `heap_<name>.prof`
    /// and `goroutine_<name>.prof` to `dir` at graceful shutdown. Default false.
    /// Env `PROFILE_CAPTURE` (`1`/`0`, `true`/`false`, `yes`/`no`, `on`/`off`), flag
    /// `--profile-capture`.
    pub capture: bool,
    /// `profiling.name`: the `<name>` of the captured files (letters, digits, `.`, `_`, `-`);
    /// empty means `v<version>`. Default empty. Env `PROFILE_NAME`, flag `--profile-name`.
    pub name: String,
    /// `profiling.dir`: where captured profiles are written, created at start-up. Default
    /// `profiles`. Env `PROFILE_DIR`, flag `--profile-dir`.
    pub dir: PathBuf,
    /// `profiling.enabled`: serve `/debug/pprof/` on `addr`, a listener of its own. Default
    /// false. Env `PROFILE_ENABLED`, flag `--profile-enabled`.
    pub enabled: bool,
    /// `profiling.addr`: the `/debug/pprof/` listener's address, spelled like `server.addr`. The
    /// profiles are unauthenticated, so the default listens on loopback only; `:6060` (all
    /// interfaces, the original's default) must be asked for. Default `"127.0.0.1:6060"`.
    /// Env `PROFILE_ADDR`, flag `--profile-addr`.
    pub addr: String,
}

impl Default for ProfilingConfig {
    fn default() -> Self {
        ProfilingConfig {
            capture: false,
            name: String::new(),
            dir: PathBuf::from("profiles"),
            enabled: false,
            addr: "127.0.0.1:6060".to_owned(),
        }
    }
}

impl ProfilingConfig {
    /// The `<name>` of the captured files: `name`, or `v<version>` when empty.
    pub fn file_name_part(&self, version: PipelineVersion) -> String {
        if self.name.is_empty() {
            format!("v{version}")
        } else {
            self.name.clone()
        }
    }
}

/// A configuration that cannot be used. `Display` is the whole message for the operator: every
/// problem, each naming its key (and the flag/env var or file it came from), joined by `"; "`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}", .problems.join("; "))]
pub struct ConfigError {
    problems: Vec<String>,
}

impl ConfigError {
    /// Each problem on its own, e.g. to print one per line.
    pub fn problems(&self) -> &[String] {
        &self.problems
    }

    fn one(message: String) -> Self {
        ConfigError {
            problems: vec![message],
        }
    }

    fn within_file(self, path: &Path) -> Self {
        let prefix = format!("config file {}", path.display());
        ConfigError {
            problems: self
                .problems
                .into_iter()
                .map(|problem| format!("{prefix}: {problem}"))
                .collect(),
        }
    }
}

/// One validation finding, kept apart from its key so `load` can say which override set it.
struct Problem {
    key: &'static str,
    message: String,
}

impl Config {
    /// Defaults, then the YAML file (if `cli.config` is `Some`), then env/flag overrides from
    /// `cli`, then validate.
    pub fn load(cli: &Cli) -> Result<Config, ConfigError> {
        let mut config = match &cli.config {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|err| {
                    ConfigError::one(format!(
                        "config file {}: cannot read: {err}",
                        path.display()
                    ))
                })?;
                parse_yaml(&text).map_err(|err| err.within_file(path))?
            }
            None => Config::default(),
        };

        let mut problems = Vec::new();
        let overridden = config.apply_overrides(cli, &mut problems);
        problems.extend(attributed(config.problems(), &overridden));
        if problems.is_empty() {
            Ok(config)
        } else {
            Err(ConfigError { problems })
        }
    }

    /// Parse YAML text (no overrides), validate.
    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigError> {
        let config = parse_yaml(text)?;
        config.validate()?;
        Ok(config)
    }

    /// Apply validation rules, naming every problem (collect all problems, join with "; ").
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems: Vec<String> = self
            .problems()
            .into_iter()
            .map(|problem| format!("{}: {}", problem.key, problem.message))
            .collect();
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    /// The socket address to bind: Go-style `":8082"` means all interfaces (`0.0.0.0:8082`);
    /// `"host:port"`, `"127.0.0.1:0"`, `"[::1]:9000"`, `"localhost:8082"` are accepted (a host
    /// name is resolved and its first address used).
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        resolve_listen_addr(&self.server.addr)
            .map_err(|message| ConfigError::one(format!("server.addr: {message}")))
    }

    /// The profiling listener's address (`profiling.addr`), parsed like `server.addr`.
    pub fn profiling_addr(&self) -> Result<SocketAddr, ConfigError> {
        resolve_listen_addr(&self.profiling.addr)
            .map_err(|message| ConfigError::one(format!("profiling.addr: {message}")))
    }

    /// Applies the env/flag overrides. Unparseable values are pushed to `problems` naming the
    /// flag, env var and key; returns the keys that were overridden and by what, so validation
    /// findings on them can name the override too.
    fn apply_overrides(
        &mut self,
        cli: &Cli,
        problems: &mut Vec<String>,
    ) -> Vec<(&'static str, &'static str)> {
        let mut overridden = Vec::new();

        if let Some(number) = cli.pipeline_version {
            match PipelineVersion::from_number(i64::from(number)) {
                Ok(version) => self.version = version,
                Err(message) => problems.push(format!(
                    "{}: {message} (overrides version)",
                    cli::source::PIPELINE_VERSION
                )),
            }
            overridden.push(("version", cli::source::PIPELINE_VERSION));
        }
        // Blank strings count as unset: `HTTP_ADDR=` left in an env file must not
        // replace the file's address with an empty one.
        if let Some(addr) = non_blank(cli.addr.as_deref()) {
            self.server.addr = addr.to_owned();
            overridden.push(("server.addr", cli::source::ADDR));
        }
        if let Some(dir) = non_empty_path(&cli.logs_dir) {
            self.storage.logs_dir = dir.clone();
            overridden.push(("storage.logsDir", cli::source::LOGS_DIR));
        }
        if let Some(dir) = non_empty_path(&cli.analytics_dir) {
            self.storage.analytics_dir = dir.clone();
            overridden.push(("storage.analyticsDir", cli::source::ANALYTICS_DIR));
        }
        if let Some(text) = non_blank(cli.aggregation_interval.as_deref()) {
            match parse_duration(text) {
                Ok(interval) => self.aggregation.interval = interval,
                Err(message) => problems.push(format!(
                    "{}: {message} (overrides aggregation.interval)",
                    cli::source::AGGREGATION_INTERVAL
                )),
            }
            overridden.push(("aggregation.interval", cli::source::AGGREGATION_INTERVAL));
        }
        if let Some(brokers) = cli.kafka_broker_list() {
            self.kafka.brokers = brokers;
            overridden.push(("kafka.brokers", cli::source::KAFKA_BROKERS));
        }
        if let Some(tokens) = cli.token_list() {
            self.auth.tokens = tokens;
            overridden.push(("auth.tokens", cli::source::TOKENS));
        }
        let flags = [
            (
                cli.profile_capture.as_deref(),
                &mut self.profiling.capture,
                "profiling.capture",
                cli::source::PROFILE_CAPTURE,
            ),
            (
                cli.profile_enabled.as_deref(),
                &mut self.profiling.enabled,
                "profiling.enabled",
                cli::source::PROFILE_ENABLED,
            ),
        ];
        for (text, value, key, source) in flags {
            if let Some(text) = non_blank(text) {
                match parse_flag(text) {
                    Ok(flag) => *value = flag,
                    Err(message) => problems.push(format!("{source}: {message} (overrides {key})")),
                }
                overridden.push((key, source));
            }
        }
        if let Some(name) = non_blank(cli.profile_name.as_deref()) {
            self.profiling.name = name.to_owned();
            overridden.push(("profiling.name", cli::source::PROFILE_NAME));
        }
        if let Some(dir) = non_empty_path(&cli.profile_dir) {
            self.profiling.dir = dir.clone();
            overridden.push(("profiling.dir", cli::source::PROFILE_DIR));
        }
        if let Some(addr) = non_blank(cli.profile_addr.as_deref()) {
            self.profiling.addr = addr.to_owned();
            overridden.push(("profiling.addr", cli::source::PROFILE_ADDR));
        }
        overridden
    }

    /// Every validation finding, in key order.
    fn problems(&self) -> Vec<Problem> {
        let mut found = Vec::new();
        let mut problem = |key: &'static str, message: String| {
            found.push(Problem { key, message });
        };

        if let Err(message) = resolve_listen_addr(&self.server.addr) {
            problem("server.addr", message);
        }

        for ranged in ranges::RANGES {
            if let Err(message) = ranged.check(self) {
                problem(ranged.key, message);
            }
        }
        if let Err(message) = ranges::check_produce_timeout(self) {
            problem("kafka.produceTimeout", message);
        }

        if self.storage.logs_dir.as_os_str().is_empty() {
            problem("storage.logsDir", "must not be empty".to_owned());
        }
        if self.storage.analytics_dir.as_os_str().is_empty() {
            problem("storage.analyticsDir", "must not be empty".to_owned());
        }

        if self.storage.backend == StorageBackend::S3 {
            if self.version != PipelineVersion::V2 {
                problem(
                    "storage.backend",
                    "s3 needs version 2 (v1 writes the hour files of storage.logsDir)".to_owned(),
                );
            }
            if self.storage.s3.bucket.trim().is_empty() {
                problem(
                    "storage.s3.bucket",
                    "required when storage.backend is s3".to_owned(),
                );
            }
            let endpoint = &self.storage.s3.endpoint;
            let scheme = endpoint.starts_with("http://") || endpoint.starts_with("https://");
            if !endpoint.is_empty() && !scheme {
                problem(
                    "storage.s3.endpoint",
                    format!("must start with http:// or https://, got {endpoint:?}"),
                );
            }
        }

        if self.version == PipelineVersion::V2 && self.kafka.brokers.is_empty() {
            problem("kafka.brokers", "required when version is 2".to_owned());
        }
        for (index, broker) in self.kafka.brokers.iter().enumerate() {
            if broker.trim().is_empty() || broker.chars().any(char::is_whitespace) {
                problem(
                    "kafka.brokers",
                    format!("entry {index} ({broker:?}) must be a host:port without spaces"),
                );
            }
        }
        if let Err(message) = check_topic_name(&self.kafka.topic) {
            problem("kafka.topic", message);
        }
        if let Err(message) = check_topic_name(&self.kafka.dead_letter_topic) {
            problem("kafka.deadLetterTopic", message);
        }
        // Dead letters written back to the topic they came from would be consumed again forever.
        if self.kafka.dead_letter_topic == self.kafka.topic {
            problem(
                "kafka.deadLetterTopic",
                "must differ from kafka.topic".to_owned(),
            );
        }
        if self.kafka.group_id.trim().is_empty() {
            problem("kafka.groupID", "must not be empty".to_owned());
        }

        for (index, token) in self.auth.tokens.iter().enumerate() {
            // Named by position: the token itself is a secret, never echoed.
            if let Err(message) = check_token(token) {
                problem("auth.tokens", format!("entry {index} {message}"));
            }
        }

        // The profiling keys matter only when the mode that uses them is on.
        if self.profiling.capture {
            let name = &self.profiling.name;
            let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
            if name.starts_with('.') || !name.chars().all(allowed) {
                problem(
                    "profiling.name",
                    format!(
                        "{name:?} cannot be part of a file name: use ASCII letters, digits, '.', \
                         '_' and '-', not starting with '.'"
                    ),
                );
            }
            if self.profiling.dir.as_os_str().is_empty() {
                problem("profiling.dir", "must not be empty".to_owned());
            }
        }
        if self.profiling.enabled
            && let Err(message) = resolve_listen_addr(&self.profiling.addr)
        {
            problem("profiling.addr", message);
        }

        found
    }
}

/// Each problem as `key: message`, saying which flag or environment variable set the key when one
/// of `overridden` did: a value from the environment is invisible in the file.
fn attributed(problems: Vec<Problem>, overridden: &[(&'static str, &'static str)]) -> Vec<String> {
    problems
        .into_iter()
        .map(|Problem { key, message }| {
            match overridden.iter().find(|(overridden, _)| *overridden == key) {
                Some((_, source)) => format!("{key}: {message} (from {source})"),
                None => format!("{key}: {message}"),
            }
        })
        .collect()
}

/// Whether a client can present `token` in `Authorization: Bearer <token>` and have it match, as
/// `crate::http`'s auth middleware reads the header (its test checks the two agree): the header
/// must be visible ASCII text, so only printable ASCII, spaces and tabs travel; and the
/// middleware trims the presented token, so it cannot begin or end with whitespace. The error
/// never quotes the token: it is a secret.
pub fn check_token(token: &str) -> Result<(), &'static str> {
    if token.trim().is_empty() {
        Err("is empty, remove it (an empty list turns auth off)")
    } else if !token
        .chars()
        .all(|c| c == '\t' || c == ' ' || c.is_ascii_graphic())
    {
        Err(
            "holds a character no client can send in an Authorization header \
             (only printable ASCII, spaces and tabs)",
        )
    } else if token.trim() != token {
        Err("has leading or trailing whitespace")
    } else {
        Ok(())
    }
}

/// `1`/`true`/`yes`/`on` or `0`/`false`/`no`/`off`, any case: how the original's `PROFILE_*`
/// switches are written.
fn parse_flag(text: &str) -> Result<bool, String> {
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(format!("expected 1 or 0 (or true/false), got {text:?}")),
    }
}

/// The one serde helper for every duration field: a Go-style duration string with a unit
/// (`500ms`, `30s`, `1m30s`, `2h`). A bare number is rejected, as the Go service's YAML decoder
/// does, because its unit would be a guess.
mod go_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|err| format!("invalid duration {text:?}: {err}"))
}

fn non_blank(value: Option<&str>) -> Option<&str> {
    value.map(str::trim).filter(|value| !value.is_empty())
}

fn non_empty_path(value: &Option<PathBuf>) -> Option<&PathBuf> {
    value.as_ref().filter(|path| !path.as_os_str().is_empty())
}

/// Parses YAML into the tree without validating. Errors name the dotted key (tracked by
/// `serde_path_to_error`, since the YAML error alone only has a line and column) and the location.
fn parse_yaml(text: &str) -> Result<Config, ConfigError> {
    let mut track = serde_path_to_error::Track::new();
    // One line per problem: the multi-line source snippet does not fit log lines.
    let options = serde_saphyr::options! { with_snippet: false };
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        Config::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
    });
    parsed.map_err(|err| {
        let key = dotted_key(&track.path());
        // The parser's advice to the programmer is noise to an operator: the fix is in the file.
        let message = err
            .to_string()
            .replace(", set DuplicateKeyPolicy in Options if acceptable", "");
        if key.is_empty() {
            ConfigError::one(message)
        } else {
            ConfigError::one(format!("{key}: {message}"))
        }
    })
}

/// `server.addr`, `kafka.brokers[0]`; stops at a segment the tracker could not name (e.g. a
/// duplicate key), whose parent is still the useful part.
fn dotted_key(path: &serde_path_to_error::Path) -> String {
    use serde_path_to_error::Segment;

    let mut key = String::new();
    for segment in path {
        match segment {
            Segment::Seq { index } => key.push_str(&format!("[{index}]")),
            Segment::Map { key: name } | Segment::Enum { variant: name } => {
                if !key.is_empty() {
                    key.push('.');
                }
                key.push_str(name);
            }
            Segment::Unknown => break,
        }
    }
    key
}

fn resolve_listen_addr(addr: &str) -> Result<SocketAddr, String> {
    if addr.is_empty() {
        return Err("must not be empty (\":8082\" listens on port 8082 of all interfaces)".into());
    }
    if let Ok(socket) = addr.parse::<SocketAddr>() {
        return Ok(socket);
    }
    // Go's net.Listen reads an empty host as "all interfaces"; std has no such spelling.
    if let Some(port) = addr.strip_prefix(':') {
        return port
            .parse::<u16>()
            .map(|port| SocketAddr::from((Ipv4Addr::UNSPECIFIED, port)))
            .map_err(|_| {
                format!(
                    "invalid listen address {addr:?}: the port must be a number from 0 to 65535"
                )
            });
    }
    match addr.to_socket_addrs() {
        Ok(mut resolved) => resolved
            .next()
            .ok_or_else(|| format!("invalid listen address {addr:?}: the host has no address")),
        Err(err) => Err(format!(
            "invalid listen address {addr:?} ({err}), expected \"host:port\" or \":port\""
        )),
    }
}

/// Kafka's own rule for topic names, checked here so a bad name fails at start-up with its key
/// rather than at topic creation.
fn check_topic_name(name: &str) -> Result<(), String> {
    if name.is_empty() {
        Err("must not be empty".to_owned())
    } else if name == "." || name == ".." {
        Err(format!("{name:?} is not a valid topic name"))
    } else if name.len() > 249 {
        Err("must be at most 249 characters".to_owned())
    } else if !name
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-'))
    {
        Err(format!(
            "{name:?} is not a valid topic name: use only ASCII letters, digits, '.', '_' and '-'"
        ))
    } else {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::Ipv6Addr;

    const ORIGINAL: &str = r#"
version: 2
server: { addr: ":8083" }
storage: { logsDir: "logs", analyticsDir: "analytics" }
aggregation: { interval: "30s" }
ingestion: { queueBufferSize: 10000, producerWorkers: 10, producerWriteTimeout: 10s, queueHighWaterPercent: 0.9 }
consumer: { flushSize: 512, flushInterval: 500ms, persistTimeout: 5s }
kafka:
  brokers: ["localhost:19092"]
  topic: logs
  groupID: logs-consumer-group
  batchSize: 100
  batchTimeout: 1s
  batchBytes: 0
  compression: none
  async: false
  consumers: 1
  requireAllAcks: false
"#;

    fn yaml_err(text: &str) -> String {
        Config::from_yaml_str(text)
            .expect_err("config must be rejected")
            .to_string()
    }

    fn assert_contains(haystack: &str, needle: &str) {
        assert!(
            haystack.contains(needle),
            "expected {needle:?} in:\n{haystack}"
        );
    }

    fn write_file(text: &str) -> tempfile::NamedTempFile {
        use std::io::Write;
        let mut file = tempfile::NamedTempFile::new().expect("temp file");
        file.write_all(text.as_bytes()).expect("write temp file");
        file
    }

    #[test]
    fn defaults_are_the_documented_ones() {
        let c = Config::default();
        assert_eq!(c.version, PipelineVersion::V1);
        assert_eq!(c.server.addr, ":8082");
        assert_eq!(c.server.max_body_bytes, 16 * 1024 * 1024);
        assert_eq!(c.server.read_header_timeout, Duration::from_secs(10));
        assert_eq!(c.server.read_body_timeout, Duration::from_secs(30));
        assert_eq!(c.server.request_timeout, Duration::from_secs(60));
        assert_eq!(c.server.shutdown_timeout, Duration::from_secs(30));
        assert_eq!(c.server.max_connections, 10_000);
        assert_eq!(c.server.max_inflight_bytes, 64 * 1024 * 1024);
        assert_eq!(c.storage.logs_dir, PathBuf::from("./logs"));
        assert_eq!(c.storage.analytics_dir, PathBuf::from("./analytics"));
        assert_eq!(c.storage.fsync, FsyncPolicy::Always);
        assert_eq!(c.storage.fsync_interval, Duration::from_secs(1));
        assert_eq!(c.storage.max_pending_bytes, 64 * 1024 * 1024);
        assert_eq!(c.storage.idle_file_timeout, Duration::from_secs(60));
        assert_eq!(c.storage.write_timeout, Duration::from_secs(30));
        assert_eq!(c.aggregation.interval, Duration::from_secs(30));
        assert_eq!(c.aggregation.max_keys_per_hour, 100_000);
        assert_eq!(c.aggregation.max_summary_bytes, 16 << 20);
        assert_eq!(c.ingestion.queue_buffer_size, 10_000);
        assert_eq!(c.ingestion.producer_workers, 10);
        assert_eq!(c.ingestion.producer_write_timeout, Duration::from_secs(10));
        assert_eq!(c.ingestion.queue_high_water_percent, 0.9);
        assert_eq!(c.ingestion.max_records, 100_000);
        assert_eq!(c.ingestion.max_field_bytes, 8192);
        assert_eq!(c.ingestion.max_hours_per_batch, 168);
        assert_eq!(c.consumer.flush_size, 512);
        assert_eq!(c.consumer.flush_interval, Duration::from_millis(500));
        assert_eq!(c.consumer.persist_timeout, Duration::from_secs(5));
        assert!(c.kafka.brokers.is_empty());
        assert_eq!(c.kafka.topic, "logs");
        assert_eq!(c.kafka.group_id, "logs-consumer-group");
        assert_eq!(c.kafka.batch_size, 10_000);
        assert_eq!(c.kafka.batch_timeout, Duration::from_millis(5));
        assert_eq!(c.kafka.batch_bytes, 0);
        assert_eq!(c.kafka.compression, Compression::Lz4);
        assert!(!c.kafka.async_ack);
        assert_eq!(c.kafka.consumers, 1);
        assert!(!c.kafka.require_all_acks);
        assert_eq!(c.kafka.produce_timeout, Duration::from_secs(5));
        assert_eq!(c.kafka.partitions, 3);
        assert_eq!(c.kafka.dead_letter_topic, "logs.dlq");
        assert_eq!(c.kafka.session_timeout, Duration::from_secs(45));
        assert!(c.auth.tokens.is_empty());
        assert_eq!(c.auth.protect, [Protected::Ingest, Protected::Analytics]);
        assert_eq!(c.profiling, ProfilingConfig::default());
        assert!(!c.profiling.capture && !c.profiling.enabled);
        assert_eq!(c.profiling.name, "");
        assert_eq!(c.profiling.dir, PathBuf::from("profiles"));
        assert_eq!(c.profiling.addr, "127.0.0.1:6060");

        c.validate().expect("defaults are valid");
        assert_eq!(
            c.listen_addr().expect("default address"),
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8082))
        );
    }

    #[test]
    fn empty_or_partial_files_take_defaults() {
        for text in ["", "# nothing here\n", "{}", "server: {}\nkafka: {}\n"] {
            assert_eq!(
                Config::from_yaml_str(text).expect("valid"),
                Config::default(),
                "{text:?}"
            );
        }
        let c = Config::from_yaml_str("server:\n  maxBodyBytes: 1024\n").expect("valid");
        assert_eq!(c.server.max_body_bytes, 1024);
        assert_eq!(c.server.addr, ":8082");
        assert_eq!(c.storage, StorageConfig::default());
    }

    #[test]
    fn original_go_config_loads() {
        let c = Config::from_yaml_str(ORIGINAL).expect("the Go service's config loads");
        assert_eq!(c.version, PipelineVersion::V2);
        assert_eq!(c.server.addr, ":8083");
        assert_eq!(c.storage.logs_dir, PathBuf::from("logs"));
        assert_eq!(c.storage.analytics_dir, PathBuf::from("analytics"));
        assert_eq!(c.aggregation.interval, Duration::from_secs(30));
        assert_eq!(c.ingestion.queue_buffer_size, 10_000);
        assert_eq!(c.ingestion.producer_workers, 10);
        assert_eq!(c.ingestion.producer_write_timeout, Duration::from_secs(10));
        assert_eq!(c.ingestion.queue_high_water_percent, 0.9);
        assert_eq!(c.consumer.flush_size, 512);
        assert_eq!(c.consumer.flush_interval, Duration::from_millis(500));
        assert_eq!(c.consumer.persist_timeout, Duration::from_secs(5));
        assert_eq!(c.kafka.brokers, vec!["localhost:19092".to_owned()]);
        assert_eq!(c.kafka.topic, "logs");
        assert_eq!(c.kafka.group_id, "logs-consumer-group");
        assert_eq!(c.kafka.batch_size, 100);
        assert_eq!(c.kafka.batch_timeout, Duration::from_secs(1));
        assert_eq!(c.kafka.batch_bytes, 0);
        assert_eq!(c.kafka.compression, Compression::None);
        assert!(!c.kafka.async_ack);
        assert_eq!(c.kafka.consumers, 1);
        assert!(!c.kafka.require_all_acks);
        // Keys the original did not have keep their defaults.
        assert_eq!(c.kafka.dead_letter_topic, "logs.dlq");
        assert_eq!(c.server.max_body_bytes, 16 * 1024 * 1024);
        assert_eq!(
            c.listen_addr().expect("address"),
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8083))
        );
    }

    #[test]
    fn every_key_is_parsed() {
        let c = Config::from_yaml_str(
            r#"
version: 2
server:
  addr: "127.0.0.1:9000"
  maxBodyBytes: 1048576
  readHeaderTimeout: 2s
  readBodyTimeout: 3s
  requestTimeout: 1m30s
  shutdownTimeout: 2h
  maxConnections: 77
  maxInflightBytes: 4096
storage:
  logsDir: /data/logs
  analyticsDir: /data/analytics
  fsync: interval
  fsyncInterval: 250ms
  maxPendingBytes: 1000
  idleFileTimeout: 5m
  writeTimeout: 11s
  backend: s3
  s3:
    endpoint: "http://127.0.0.1:3900"
    bucket: logs
    prefix: team-a/
    region: garage
    accessKeyID: GK1
    secretAccessKey: s3cr3t
    maxObjectRecords: 5000
    maxObjectBytes: 1048576
    maxObjectAge: 2s
    requestTimeout: 7s
aggregation:
  interval: 1m
  maxKeysPerHour: 50
  maxSummaryBytes: 1048576
ingestion:
  queueBufferSize: 20
  producerWorkers: 4
  producerWriteTimeout: 7s
  queueHighWaterPercent: 1
  maxRecords: 30
  maxFieldBytes: 40
  maxHoursPerBatch: 50
consumer:
  flushSize: 60
  flushInterval: 70ms
  persistTimeout: 8s
kafka:
  brokers: ["k1:9092", "k2:9092"]
  topic: events
  groupID: writers
  batchSize: 90
  batchTimeout: 10ms
  batchBytes: 1048576
  compression: zstd
  async: true
  consumers: 4
  requireAllAcks: true
  produceTimeout: 9s
  partitions: 12
  deadLetterTopic: events.dead
  sessionTimeout: 10s
  fetchMaxBytes: 16777216
auth:
  tokens: [alpha, beta]
  protect: [metrics]
profiling:
  capture: true
  name: nightly
  dir: /data/profiles
  enabled: true
  addr: "127.0.0.1:6061"
"#,
        )
        .expect("valid");
        assert_eq!(c.version, PipelineVersion::V2);
        assert_eq!(
            c.server,
            ServerConfig {
                addr: "127.0.0.1:9000".to_owned(),
                max_body_bytes: 1_048_576,
                read_header_timeout: Duration::from_secs(2),
                read_body_timeout: Duration::from_secs(3),
                min_body_rate: 500,
                request_timeout: Duration::from_secs(90),
                shutdown_timeout: Duration::from_secs(7200),
                max_connections: 77,
                max_inflight_bytes: 4096,
            }
        );
        assert_eq!(
            c.storage,
            StorageConfig {
                logs_dir: PathBuf::from("/data/logs"),
                analytics_dir: PathBuf::from("/data/analytics"),
                fsync: FsyncPolicy::Interval,
                fsync_interval: Duration::from_millis(250),
                max_pending_bytes: 1000,
                idle_file_timeout: Duration::from_secs(300),
                write_timeout: Duration::from_secs(11),
                backend: StorageBackend::S3,
                s3: S3Config {
                    endpoint: "http://127.0.0.1:3900".to_owned(),
                    bucket: "logs".to_owned(),
                    prefix: "team-a/".to_owned(),
                    region: "garage".to_owned(),
                    access_key_id: "GK1".to_owned(),
                    secret_access_key: "s3cr3t".to_owned(),
                    max_object_records: 5000,
                    max_object_bytes: 1_048_576,
                    max_object_age: Duration::from_secs(2),
                    request_timeout: Duration::from_secs(7),
                },
            }
        );
        assert_eq!(
            c.aggregation,
            AggregationConfig {
                interval: Duration::from_secs(60),
                max_keys_per_hour: 50,
                max_summary_bytes: 1 << 20,
            }
        );
        assert_eq!(
            c.ingestion,
            IngestionConfig {
                queue_buffer_size: 20,
                producer_workers: 4,
                producer_write_timeout: Duration::from_secs(7),
                queue_high_water_percent: 1.0,
                max_records: 30,
                max_field_bytes: 40,
                max_hours_per_batch: 50,
            }
        );
        assert_eq!(
            c.consumer,
            ConsumerConfig {
                flush_size: 60,
                flush_interval: Duration::from_millis(70),
                persist_timeout: Duration::from_secs(8),
            }
        );
        assert_eq!(
            c.kafka,
            KafkaConfig {
                brokers: vec!["k1:9092".to_owned(), "k2:9092".to_owned()],
                topic: "events".to_owned(),
                group_id: "writers".to_owned(),
                batch_size: 90,
                batch_timeout: Duration::from_millis(10),
                batch_bytes: 1_048_576,
                compression: Compression::Zstd,
                async_ack: true,
                consumers: 4,
                require_all_acks: true,
                produce_timeout: Duration::from_secs(9),
                partitions: 12,
                dead_letter_topic: "events.dead".to_owned(),
                session_timeout: Duration::from_secs(10),
                fetch_max_bytes: 16 << 20,
            }
        );
        assert_eq!(c.auth.tokens, vec!["alpha".to_owned(), "beta".to_owned()]);
        assert_eq!(c.auth.protect, [Protected::Metrics]);
        assert!(
            c.auth.protects(Protected::Ingest),
            "ingest is always protected"
        );
        assert!(c.auth.protects(Protected::Metrics));
        assert!(!c.auth.protects(Protected::Analytics));
        assert_eq!(
            c.profiling,
            ProfilingConfig {
                capture: true,
                name: "nightly".to_owned(),
                dir: PathBuf::from("/data/profiles"),
                enabled: true,
                addr: "127.0.0.1:6061".to_owned(),
            }
        );
    }

    #[test]
    fn enum_spellings() {
        for (text, policy) in [
            ("always", FsyncPolicy::Always),
            ("interval", FsyncPolicy::Interval),
            ("never", FsyncPolicy::Never),
        ] {
            let c = Config::from_yaml_str(&format!("storage: {{ fsync: {text} }}")).expect(text);
            assert_eq!(c.storage.fsync, policy);
            assert_eq!(policy.as_str(), text);
        }
        for (text, compression) in [
            ("none", Compression::None),
            ("gzip", Compression::Gzip),
            ("snappy", Compression::Snappy),
            ("lz4", Compression::Lz4),
            ("zstd", Compression::Zstd),
        ] {
            let c =
                Config::from_yaml_str(&format!("kafka: {{ compression: {text} }}")).expect(text);
            assert_eq!(c.kafka.compression, compression);
            assert_eq!(compression.as_str(), text);
        }
        let err = yaml_err("kafka: { compression: brotli }");
        assert_contains(&err, "kafka.compression");
        assert_contains(&err, "brotli");
        assert_eq!(PipelineVersion::V2.to_string(), "2");
    }

    #[test]
    fn unknown_keys_are_named() {
        let top = yaml_err("version: 1\nbogus: true\n");
        assert_contains(&top, "bogus: unknown field `bogus`");
        assert_contains(&top, "line 2");

        // The likeliest typo: camelCase where the original has "groupID".
        let nested = yaml_err("kafka:\n  groupId: writers\n");
        assert_contains(&nested, "kafka.groupId: unknown field `groupId`");
        assert_contains(&nested, "groupID");

        let deep = yaml_err("server: { addr: \":1\", maxBodyByte: 5 }");
        assert_contains(&deep, "server.maxBodyByte");
    }

    #[test]
    fn bad_durations_are_named() {
        let err = yaml_err("aggregation:\n  interval: 30 parsecs\n");
        assert_contains(
            &err,
            "aggregation.interval: invalid duration \"30 parsecs\"",
        );
        assert_contains(&err, "line 2");

        // A bare number has no unit: rejected, as by the Go service.
        let err = yaml_err("consumer: { flushInterval: 500 }");
        assert_contains(&err, "consumer.flushInterval: invalid duration \"500\"");

        let err = yaml_err("kafka: { produceTimeout: -5s }");
        assert_contains(&err, "kafka.produceTimeout: invalid duration");
    }

    #[test]
    fn type_and_syntax_errors_name_key_and_location() {
        let err = yaml_err("server:\n  maxBodyBytes: lots\n");
        assert_contains(&err, "server.maxBodyBytes: ");
        assert_contains(&err, "line 2, column 17");

        let err = yaml_err("kafka:\n  brokers: [\"a:1\", [nested]]\n");
        assert_contains(&err, "kafka.brokers[1]");

        let err = yaml_err("server:\n  addr: \":1\"\n addr: broken indentation\n");
        assert_contains(&err, "line");

        let err = yaml_err("server: \"unterminated\n");
        assert_contains(&err, "line");

        let err = yaml_err("server:\n  addr: \":1\"\n  addr: \":2\"\n");
        assert_contains(&err, "server: duplicate mapping key: addr at line 3");
    }

    #[test]
    fn version_must_be_1_or_2() {
        assert_contains(&yaml_err("version: 3\n"), "version: must be 1 or 2, got 3");
        assert_contains(&yaml_err("version: 0\n"), "version: must be 1 or 2, got 0");
        assert_contains(&yaml_err("version: two\n"), "version: ");
    }

    #[test]
    fn version_2_requires_brokers() {
        assert_eq!(
            yaml_err("version: 2\n"),
            "kafka.brokers: required when version is 2"
        );
        Config::from_yaml_str("version: 2\nkafka: { brokers: [\"k:9092\"] }\n").expect("valid");
    }

    #[test]
    fn every_rule_names_its_key() {
        let cases = [
            (
                "server: { maxBodyBytes: 0 }",
                "server.maxBodyBytes: must be from 1 to 2147483648 (2 GiB: held in memory whole",
            ),
            (
                "storage: { maxPendingBytes: 0 }",
                "storage.maxPendingBytes: must be",
            ),
            (
                "storage: { backend: s3, s3: { bucket: b } }",
                "storage.backend: s3 needs version 2",
            ),
            (
                "{ version: 2, kafka: { brokers: [k:9092] }, storage: { backend: s3 } }",
                "storage.s3.bucket: required when storage.backend is s3",
            ),
            (
                "{ version: 2, kafka: { brokers: [k:9092] }, storage: { backend: s3, s3: { bucket: b, endpoint: \"127.0.0.1:3900\" } } }",
                "storage.s3.endpoint: must start with http:// or https://",
            ),
            (
                "storage: { s3: { maxObjectAge: 0s } }",
                "storage.s3.maxObjectAge: must be from 1ms to 7days",
            ),
            (
                "storage: { s3: { maxObjectRecords: 0 } }",
                "storage.s3.maxObjectRecords: must be from 1 to 100000000",
            ),
            (
                "aggregation: { maxKeysPerHour: 0 }",
                "aggregation.maxKeysPerHour: must be",
            ),
            (
                "aggregation: { maxSummaryBytes: 65535 }",
                "aggregation.maxSummaryBytes: must be from 65536 to 2147483648",
            ),
            (
                "ingestion: { queueBufferSize: 0 }",
                "ingestion.queueBufferSize: must be",
            ),
            (
                "ingestion: { maxRecords: 0 }",
                "ingestion.maxRecords: must be",
            ),
            (
                "ingestion: { maxFieldBytes: 0 }",
                "ingestion.maxFieldBytes: must be",
            ),
            (
                "ingestion: { maxHoursPerBatch: 0 }",
                "ingestion.maxHoursPerBatch: must be from 1 to 1024",
            ),
            (
                "ingestion: { maxHoursPerBatch: 1025 }",
                "ingestion.maxHoursPerBatch: must be from 1 to 1024 (each hour is an open file",
            ),
            ("consumer: { flushSize: 0 }", "consumer.flushSize: must be"),
            ("kafka: { batchSize: 0 }", "kafka.batchSize: must be"),
            ("kafka: { consumers: 0 }", "kafka.consumers: must be"),
            ("kafka: { partitions: 0 }", "kafka.partitions: must be"),
            (
                "kafka: { fetchMaxBytes: 1000000 }",
                "kafka.fetchMaxBytes: must be from 1048576 to 67108864",
            ),
            (
                "server: { readHeaderTimeout: 0s }",
                "server.readHeaderTimeout: must be from 1ms to 7days",
            ),
            (
                "server: { readBodyTimeout: 0s }",
                "server.readBodyTimeout: must be",
            ),
            (
                "server: { requestTimeout: 0s }",
                "server.requestTimeout: must be",
            ),
            (
                "server: { shutdownTimeout: 0ms }",
                "server.shutdownTimeout: must be",
            ),
            (
                "storage: { fsyncInterval: 0s }",
                "storage.fsyncInterval: must be",
            ),
            (
                "storage: { idleFileTimeout: 0s }",
                "storage.idleFileTimeout: must be",
            ),
            (
                "aggregation: { interval: 0s }",
                "aggregation.interval: must be",
            ),
            (
                "ingestion: { producerWriteTimeout: 0s }",
                "ingestion.producerWriteTimeout: must be",
            ),
            (
                "consumer: { flushInterval: 0s }",
                "consumer.flushInterval: must be",
            ),
            (
                "consumer: { persistTimeout: 0s }",
                "consumer.persistTimeout: must be",
            ),
            ("kafka: { batchTimeout: 0s }", "kafka.batchTimeout: must be"),
            (
                "kafka: { produceTimeout: 0s }",
                "kafka.produceTimeout: must be",
            ),
            (
                "ingestion: { queueHighWaterPercent: 0 }",
                "ingestion.queueHighWaterPercent: must be in (0, 1]",
            ),
            (
                "ingestion: { queueHighWaterPercent: 90 }",
                "ingestion.queueHighWaterPercent: must be in (0, 1]",
            ),
            (
                "ingestion: { queueHighWaterPercent: .nan }",
                "ingestion.queueHighWaterPercent: must be in (0, 1]",
            ),
            (
                "auth: { tokens: [\"ok\", \"\"] }",
                "auth.tokens: entry 1 is empty",
            ),
            (
                "auth: { tokens: [\" padded\"] }",
                "auth.tokens: entry 0 has leading or trailing whitespace",
            ),
            (
                "server: { addr: nonsense }",
                "server.addr: invalid listen address \"nonsense\"",
            ),
            (
                "server: { addr: \"localhost\" }",
                "server.addr: invalid listen address",
            ),
            (
                "server: { addr: \":99999\" }",
                "server.addr: invalid listen address",
            ),
            ("server: { addr: \"\" }", "server.addr: must not be empty"),
            (
                "storage: { logsDir: \"\" }",
                "storage.logsDir: must not be empty",
            ),
            (
                "storage: { analyticsDir: \"\" }",
                "storage.analyticsDir: must not be empty",
            ),
            ("kafka: { topic: \"\" }", "kafka.topic: must not be empty"),
            (
                "kafka: { topic: \"has space\" }",
                "kafka.topic: \"has space\" is not a valid topic name",
            ),
            (
                "kafka: { deadLetterTopic: \"\" }",
                "kafka.deadLetterTopic: must not be empty",
            ),
            (
                "kafka: { deadLetterTopic: logs }",
                "kafka.deadLetterTopic: must differ from kafka.topic",
            ),
            (
                "kafka: { groupID: \"\" }",
                "kafka.groupID: must not be empty",
            ),
            ("kafka: { brokers: [\"\"] }", "kafka.brokers: entry 0"),
            // Values at their type's extremes, which would fail at run time if accepted.
            (
                "server: { maxBodyBytes: 18446744073709551615 }",
                "server.maxBodyBytes: must be from 1 to 2147483648",
            ),
            (
                "server: { requestTimeout: 9223372036854775807s }",
                "server.requestTimeout: must be from 1ms to 7days",
            ),
            (
                "server: { readBodyTimeout: 9223372036854775807s }",
                "server.readBodyTimeout: must be from 1ms to 7days",
            ),
            (
                "kafka: { partitions: 4294967295 }",
                "kafka.partitions: must be from 1 to 10000",
            ),
            (
                "kafka: { sessionTimeout: 10m }",
                "kafka.sessionTimeout: must be from 6s to 5m",
            ),
            (
                "kafka: { batchTimeout: 10s }",
                "kafka.produceTimeout: must be longer than kafka.batchTimeout (10s)",
            ),
            (
                "ingestion: { queueBufferSize: 18446744073709551615 }",
                "ingestion.queueBufferSize: must be from 1 to 10000000",
            ),
            (
                "auth: { tokens: [ok, \"tökén-1\"] }",
                "auth.tokens: entry 1 holds a character no client can send",
            ),
            (
                "auth: { tokens: [\"del\\x7Fin-it\"] }",
                "auth.tokens: entry 0 holds a character no client can send",
            ),
        ];
        for (text, expected) in cases {
            assert_contains(&yaml_err(text), expected);
        }
    }

    #[test]
    fn all_problems_are_reported_together() {
        let err = Config::from_yaml_str(
            r#"
version: 2
server: { addr: nonsense }
ingestion: { maxRecords: 0, queueHighWaterPercent: 1.5 }
auth: { tokens: [""] }
"#,
        )
        .expect_err("invalid");
        assert_eq!(err.problems().len(), 5, "{err}");
        let text = err.to_string();
        for key in [
            "server.addr: ",
            "ingestion.maxRecords: ",
            "ingestion.queueHighWaterPercent: ",
            "kafka.brokers: required when version is 2",
            "auth.tokens: ",
        ] {
            assert_contains(&text, key);
        }
        assert_eq!(text.matches("; ").count(), 4, "{text}");
    }

    #[test]
    fn tokens_stay_out_of_debug_and_errors() {
        let c = Config::from_yaml_str("auth: { tokens: [s3cret, \" t0psecret\", \"sécret\"] }");
        let err = c.expect_err("padded and non-ASCII tokens").to_string();
        assert_eq!(err.matches("auth.tokens: entry").count(), 2, "{err}");
        assert!(!err.contains("t0psecret") && !err.contains("cret"), "{err}");

        let mut c = Config::default();
        c.auth.tokens = vec!["s3cret".to_owned()];
        let debug = format!("{c:?}");
        assert!(!debug.contains("s3cret"), "{debug}");
        assert_contains(&debug, "<1 redacted>");
    }

    #[test]
    fn listen_addr_forms() {
        let with_addr = |addr: &str| Config {
            server: ServerConfig {
                addr: addr.to_owned(),
                ..ServerConfig::default()
            },
            ..Config::default()
        };
        assert_eq!(
            with_addr(":8082").listen_addr().expect("go style"),
            SocketAddr::from((Ipv4Addr::UNSPECIFIED, 8082))
        );
        assert_eq!(
            with_addr("127.0.0.1:0").listen_addr().expect("ipv4"),
            SocketAddr::from((Ipv4Addr::LOCALHOST, 0))
        );
        assert_eq!(
            with_addr("[::1]:9000").listen_addr().expect("ipv6"),
            SocketAddr::from((Ipv6Addr::LOCALHOST, 9000))
        );
        let local = with_addr("localhost:8082")
            .listen_addr()
            .expect("host name");
        assert!(local.ip().is_loopback(), "{local}");
        assert_eq!(local.port(), 8082);

        for bad in ["nonsense", "localhost", ":http", ":", "127.0.0.1:70000", ""] {
            let err = with_addr(bad).listen_addr().expect_err(bad).to_string();
            assert!(err.starts_with("server.addr: "), "{err}");
        }
    }

    #[test]
    fn overrides_beat_file_which_beats_defaults() {
        let file = write_file(
            "server: { addr: \":9001\" }\nstorage: { logsDir: /file/logs, analyticsDir: /file/analytics }\naggregation: { interval: 10s }\nauth: { tokens: [file-token] }\n",
        );

        // File over defaults; keys the file lacks keep their defaults.
        let from_file = Config::load(&Cli {
            config: Some(file.path().to_owned()),
            ..Default::default()
        })
        .expect("file loads");
        assert_eq!(from_file.server.addr, ":9001");
        assert_eq!(from_file.storage.logs_dir, PathBuf::from("/file/logs"));
        assert_eq!(from_file.aggregation.interval, Duration::from_secs(10));
        assert_eq!(from_file.auth.tokens, vec!["file-token".to_owned()]);
        assert_eq!(from_file.version, PipelineVersion::V1);
        assert_eq!(from_file.kafka.topic, "logs");

        // Flags/env over the file; keys not overridden keep the file's value.
        let overridden = Config::load(&Cli {
            command: None,
            config: Some(file.path().to_owned()),
            pipeline_version: Some(2),
            addr: Some("127.0.0.1:0".into()),
            logs_dir: Some("/env/logs".into()),
            analytics_dir: None,
            aggregation_interval: Some("2m".into()),
            kafka_brokers: Some("k1:9092, ,k2:9092,".into()),
            tokens: Some(" a , b ".into()),
            profile_capture: Some("yes".into()),
            profile_name: Some("env-name".into()),
            profile_dir: Some("/env/profiles".into()),
            profile_enabled: Some("ON".into()),
            profile_addr: Some("127.0.0.1:6099".into()),
        })
        .expect("overrides apply");
        assert_eq!(
            overridden.profiling,
            ProfilingConfig {
                capture: true,
                name: "env-name".to_owned(),
                dir: PathBuf::from("/env/profiles"),
                enabled: true,
                addr: "127.0.0.1:6099".to_owned(),
            }
        );
        assert_eq!(overridden.version, PipelineVersion::V2);
        assert_eq!(overridden.server.addr, "127.0.0.1:0");
        assert_eq!(overridden.storage.logs_dir, PathBuf::from("/env/logs"));
        assert_eq!(
            overridden.storage.analytics_dir,
            PathBuf::from("/file/analytics")
        );
        assert_eq!(overridden.aggregation.interval, Duration::from_secs(120));
        assert_eq!(
            overridden.kafka.brokers,
            vec!["k1:9092".to_owned(), "k2:9092".to_owned()]
        );
        assert_eq!(overridden.auth.tokens, vec!["a".to_owned(), "b".to_owned()]);

        // Overrides without a file apply over the defaults.
        let no_file = Config::load(&Cli {
            addr: Some(":7000".into()),
            ..Default::default()
        })
        .expect("defaults plus override");
        assert_eq!(no_file.server.addr, ":7000");
        assert_eq!(no_file.storage, StorageConfig::default());
        assert_eq!(
            Config::load(&Cli::default()).expect("defaults"),
            Config::default()
        );
    }

    #[test]
    fn blank_overrides_are_ignored() {
        let file = write_file("server: { addr: \":9001\" }\nauth: { tokens: [t] }\n");
        let c = Config::load(&Cli {
            config: Some(file.path().to_owned()),
            addr: Some("  ".into()),
            logs_dir: Some(PathBuf::new()),
            aggregation_interval: Some(String::new()),
            kafka_brokers: Some(",".into()),
            tokens: Some(String::new()),
            ..Default::default()
        })
        .expect("blank overrides are no overrides");
        assert_eq!(c.server.addr, ":9001");
        assert_eq!(c.storage.logs_dir, PathBuf::from("./logs"));
        assert_eq!(c.aggregation.interval, Duration::from_secs(30));
        assert_eq!(c.auth.tokens, vec!["t".to_owned()]);
    }

    #[test]
    fn bad_overrides_name_flag_env_and_key() {
        let err = Config::load(&Cli {
            pipeline_version: Some(7),
            aggregation_interval: Some("abc".into()),
            addr: Some("nonsense".into()),
            ..Default::default()
        })
        .expect_err("bad overrides")
        .to_string();
        assert_contains(
            &err,
            "--pipeline-version/PIPELINE_VERSION: must be 1 or 2, got 7 (overrides version)",
        );
        assert_contains(
            &err,
            "--aggregation-interval/AGGREGATION_INTERVAL: invalid duration \"abc\": ",
        );
        assert_contains(&err, "(overrides aggregation.interval)");
        assert_contains(&err, "server.addr: invalid listen address \"nonsense\"");
        assert_contains(&err, "(from --addr/HTTP_ADDR)");

        // A problem on a key no override touched is reported as from the file alone.
        let err = Config::load(&Cli {
            pipeline_version: Some(2),
            ..Default::default()
        })
        .expect_err("no brokers")
        .to_string();
        assert_eq!(err, "kafka.brokers: required when version is 2");
    }

    #[test]
    fn written_directories_are_checked_before_any_is_created() {
        let root = tempfile::tempdir().expect("temporary directory");
        let file = root.path().join("a-file");
        std::fs::write(&file, "").expect("write a file");
        let (logs, analytics) = (root.path().join("new/logs"), root.path().join("analytics"));
        let cli = Cli {
            analytics_dir: Some(file.join("below-a-file")),
            ..Default::default()
        };
        let mut config = Config::load(&cli).expect("valid");
        config.storage.logs_dir = logs.clone();
        let err = config
            .prepare_directories(&cli)
            .expect_err("refused")
            .to_string();
        assert_eq!(
            err,
            format!(
                "storage.analyticsDir: cannot create {0}/below-a-file: {0} is not a directory \
                 (from --analytics-dir/ANALYTICS_DIR)",
                file.display()
            )
        );
        assert!(!logs.exists(), "nothing is created when one is refused");

        config.storage.analytics_dir = file.clone();
        let err = config
            .prepare_directories(&Cli::default())
            .expect_err("refused");
        assert_eq!(
            err.to_string(),
            format!(
                "storage.analyticsDir: {} is not a directory",
                file.display()
            )
        );

        config.storage.analytics_dir = analytics.clone();
        config.profiling.capture = true;
        config.profiling.dir = file.clone();
        let err = config
            .prepare_directories(&Cli::default())
            .expect_err("refused");
        assert!(err.to_string().starts_with("profiling.dir: "), "{err}");

        config.profiling.dir = root.path().join("profiles");
        config
            .prepare_directories(&Cli::default())
            .expect("all can be created");
        for dir in [&logs, &analytics, &config.profiling.dir] {
            assert!(dir.is_dir(), "{} created", dir.display());
        }
        config
            .prepare_directories(&Cli::default())
            .expect("and used again");
    }

    #[test]
    fn file_errors_name_the_file() {
        let missing = Config::load(&Cli {
            config: Some("/nonexistent/log-pipeline.yaml".into()),
            ..Default::default()
        })
        .expect_err("missing file")
        .to_string();
        assert_contains(
            &missing,
            "config file /nonexistent/log-pipeline.yaml: cannot read: ",
        );

        let file = write_file("kafka:\n  groupId: x\n");
        let err = Config::load(&Cli {
            config: Some(file.path().to_owned()),
            ..Default::default()
        })
        .expect_err("bad key")
        .to_string();
        assert_contains(
            &err,
            &format!("config file {}: kafka.groupId: ", file.path().display()),
        );
    }

    #[test]
    fn example_files_load() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("config/examples");
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&dir).expect("config/examples exists") {
            let path = entry.expect("directory entry").path();
            let text = std::fs::read_to_string(&path).expect("readable example");
            let config = Config::from_yaml_str(&text)
                .unwrap_or_else(|err| panic!("{}: {err}", path.display()));
            let name = path
                .file_name()
                .and_then(|name| name.to_str())
                .unwrap_or_default()
                .to_owned();
            let expected = if name.contains(".v2.") {
                PipelineVersion::V2
            } else {
                PipelineVersion::V1
            };
            assert_eq!(config.version, expected, "{name}");
            names.push(name);
        }
        names.sort();
        assert_eq!(
            names,
            [
                "config.v1.docker.yaml",
                "config.v1.local.yaml",
                "config.v2.docker.yaml",
                "config.v2.local.yaml",
                "config.v2.s3.docker.yaml",
            ]
        );
    }
}
