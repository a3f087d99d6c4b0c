//! Loading: the YAML file parsed into the tree (errors naming the dotted key and the line), the
//! overrides applied over it, then validation; and [`ConfigError`], the one error of the module.

use std::path::Path;
use std::time::Duration;

use super::Config;
use super::overrides::Overrides;

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

    /// `Ok` when there are no `problems`.
    pub(super) fn check(problems: Vec<String>) -> Result<(), ConfigError> {
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError { problems })
        }
    }

    pub(super) fn one(message: String) -> Self {
        ConfigError {
            problems: vec![message],
        }
    }

    fn within_file(self, path: &Path) -> Self {
        self.prefixed(&format!("config file {}", path.display()))
    }

    /// Each problem behind `prefix: `.
    pub(super) fn prefixed(self, prefix: &str) -> Self {
        ConfigError {
            problems: self
                .problems
                .into_iter()
                .map(|problem| format!("{prefix}: {problem}"))
                .collect(),
        }
    }
}

impl Config {
    /// Defaults, then the YAML file at `file` (if any), then `overrides` (from flags and
    /// environment variables), then validation.
    pub fn load(file: Option<&Path>, overrides: &Overrides) -> Result<Config, ConfigError> {
        let mut config = match file {
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

        let mut problems = overrides.apply(&mut config);
        problems.extend(overrides.attribute(config.problems()));
        ConfigError::check(problems)?;
        Ok(config)
    }

    /// Parse YAML text (no overrides), validate.
    pub fn from_yaml_str(text: &str) -> Result<Config, ConfigError> {
        let config = parse_yaml(text)?;
        config.validate()?;
        Ok(config)
    }
}

/// Parses YAML into the tree without validating. Errors name the dotted key (tracked by
/// `serde_path_to_error`, since the YAML error alone only has a line and column) and the location.
pub(super) fn parse_yaml(text: &str) -> Result<Config, ConfigError> {
    parse_yaml_as(text)
}

/// Parses YAML into any tree (the configuration, the sites file), errors as [`parse_yaml`]'s.
pub(super) fn parse_yaml_as<T: serde::de::DeserializeOwned>(text: &str) -> Result<T, ConfigError> {
    let mut track = serde_path_to_error::Track::new();
    // One line per problem: the multi-line source snippet does not fit log lines.
    let options = serde_saphyr::options! { with_snippet: false };
    let parsed = serde_saphyr::with_deserializer_from_str_with_options(text, options, |de| {
        T::deserialize(serde_path_to_error::Deserializer::new(de, &mut track))
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

/// The one serde helper for every duration field: a Go-style duration string with a unit
/// (`500ms`, `30s`, `1m30s`, `2h`). A bare number is rejected, as the Go service's YAML decoder
/// does, because its unit would be a guess.
pub(super) mod go_duration {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer};

    pub(in crate::config) fn deserialize<'de, D: Deserializer<'de>>(
        deserializer: D,
    ) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

/// A Go-style duration, as the file and the overrides write it.
pub(super) fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text.trim())
        .map_err(|err| format!("invalid duration {text:?}: {err}"))
}

#[cfg(test)]
mod tests {
    use std::net::{Ipv4Addr, SocketAddr};
    use std::path::PathBuf;

    use super::*;
    use crate::config::expect::{self, contains, refused};
    use crate::config::*;

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
        let err = refused("kafka: { compression: brotli }");
        contains(&err, "kafka.compression");
        contains(&err, "brotli");
        assert_eq!(PipelineVersion::V2.to_string(), "2");
    }

    #[test]
    fn unknown_keys_are_named() {
        let top = refused("version: 1\nbogus: true\n");
        contains(&top, "bogus: unknown field `bogus`");
        contains(&top, "line 2");

        // The likeliest typo: camelCase where the original has "groupID".
        let nested = refused("kafka:\n  groupId: writers\n");
        contains(&nested, "kafka.groupId: unknown field `groupId`");
        contains(&nested, "groupID");

        let deep = refused("server: { addr: \":1\", maxBodyByte: 5 }");
        contains(&deep, "server.maxBodyByte");
    }

    #[test]
    fn bad_durations_are_named() {
        let err = refused("aggregation:\n  interval: 30 parsecs\n");
        contains(
            &err,
            "aggregation.interval: invalid duration \"30 parsecs\"",
        );
        contains(&err, "line 2");

        // A bare number has no unit: rejected, as by the Go service.
        let err = refused("consumer: { flushInterval: 500 }");
        contains(&err, "consumer.flushInterval: invalid duration \"500\"");

        let err = refused("kafka: { produceTimeout: -5s }");
        contains(&err, "kafka.produceTimeout: invalid duration");
    }

    #[test]
    fn type_and_syntax_errors_name_key_and_location() {
        let err = refused("server:\n  maxBodyBytes: lots\n");
        contains(&err, "server.maxBodyBytes: ");
        contains(&err, "line 2, column 17");

        let err = refused("kafka:\n  brokers: [\"a:1\", [nested]]\n");
        contains(&err, "kafka.brokers[1]");

        let err = refused("server:\n  addr: \":1\"\n addr: broken indentation\n");
        contains(&err, "line");

        let err = refused("server: \"unterminated\n");
        contains(&err, "line");

        let err = refused("server:\n  addr: \":1\"\n  addr: \":2\"\n");
        contains(&err, "server: duplicate mapping key: addr at line 3");
    }

    #[test]
    fn version_must_be_1_or_2() {
        contains(&refused("version: 3\n"), "version: must be 1 or 2, got 3");
        contains(&refused("version: 0\n"), "version: must be 1 or 2, got 0");
        contains(&refused("version: two\n"), "version: ");
    }

    #[test]
    fn file_errors_name_the_file() {
        let missing = Config::load(
            Some(Path::new("/nonexistent/log-pipeline.yaml")),
            &Overrides::default(),
        )
        .expect_err("missing file")
        .to_string();
        contains(
            &missing,
            "config file /nonexistent/log-pipeline.yaml: cannot read: ",
        );

        let file = expect::file("kafka:\n  groupId: x\n");
        let err = Config::load(Some(file.path()), &Overrides::default())
            .expect_err("bad key")
            .to_string();
        contains(
            &err,
            &format!("config file {}: kafka.groupId: ", file.path().display()),
        );
    }
}
