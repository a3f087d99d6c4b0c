//! Validation, run once at start-up before anything is bound or opened: every key's range (from
//! its row in the [`super::key`] table) and the rules that ranges cannot say (addresses, topic
//! names, tokens, keys that need one another). Every problem names its key, from its row, and
//! all are reported at once so that a file is fixed in one round.

use std::net::{Ipv4Addr, SocketAddr, ToSocketAddrs};

use super::key::{Key, keys};
use super::sections::{VERSION, auth, kafka, profiling, server, storage};
use super::{Config, ConfigError, PipelineVersion, StorageBackend, check_token};

/// One validation finding, kept apart from its key so that loading can say which override set
/// the key.
pub(super) struct Problem {
    pub(super) key: &'static str,
    pub(super) message: String,
}

/// The findings so far.
#[derive(Default)]
struct Problems(Vec<Problem>);

impl Problems {
    fn add(&mut self, key: &Key, message: impl Into<String>) {
        self.0.push(Problem {
            key: key.name,
            message: message.into(),
        });
    }

    fn check<E: Into<String>>(&mut self, key: &Key, outcome: Result<(), E>) {
        if let Err(message) = outcome {
            self.add(key, message);
        }
    }
}

impl Config {
    /// Applies every rule, naming every problem (all of them, joined with "; ").
    pub fn validate(&self) -> Result<(), ConfigError> {
        let problems = self
            .problems()
            .into_iter()
            .map(|Problem { key, message }| format!("{key}: {message}"))
            .collect();
        ConfigError::check(problems)
    }

    /// The socket address to bind: Go-style `":8082"` means all interfaces (`0.0.0.0:8082`);
    /// `"host:port"`, `"127.0.0.1:0"`, `"[::1]:9000"`, `"localhost:8082"` are accepted (a host
    /// name is resolved and its first address used).
    pub fn listen_addr(&self) -> Result<SocketAddr, ConfigError> {
        resolve_listen_addr(&self.server.addr)
            .map_err(|message| ConfigError::one(format!("{}: {message}", server::ADDR.name)))
    }

    /// The profiling listener's address (`profiling.addr`), parsed like `server.addr`.
    pub fn profiling_addr(&self) -> Result<SocketAddr, ConfigError> {
        resolve_listen_addr(&self.profiling.addr)
            .map_err(|message| ConfigError::one(format!("{}: {message}", profiling::ADDR.name)))
    }

    /// Every validation finding: the ranges in the table's order, then the other rules.
    pub(super) fn problems(&self) -> Vec<Problem> {
        let mut found = Problems::default();
        for key in keys() {
            found.check(key, key.check_range(self));
        }
        self.check_server(&mut found);
        self.check_storage(&mut found);
        self.check_kafka(&mut found);
        self.check_auth(&mut found);
        self.check_profiling(&mut found);
        found.0
    }

    fn check_server(&self, found: &mut Problems) {
        found.check(
            &server::ADDR,
            resolve_listen_addr(&self.server.addr).map(drop),
        );
    }

    fn check_storage(&self, found: &mut Problems) {
        let directories = [
            (&storage::LOGS_DIR, &self.storage.logs_dir),
            (&storage::ANALYTICS_DIR, &self.storage.analytics_dir),
        ];
        for (key, dir) in directories {
            if dir.as_os_str().is_empty() {
                found.add(key, "must not be empty");
            }
        }
        if self.storage.backend != StorageBackend::S3 {
            return;
        }
        if self.version != PipelineVersion::V2 {
            found.add(
                &storage::BACKEND,
                format!(
                    "s3 needs {} 2 (v1 writes the hour files of {})",
                    VERSION.name,
                    storage::LOGS_DIR.name
                ),
            );
        }
        if self.storage.s3.bucket.trim().is_empty() {
            found.add(
                &storage::S3_BUCKET,
                format!("required when {} is s3", storage::BACKEND.name),
            );
        }
        let endpoint = &self.storage.s3.endpoint;
        let scheme = endpoint.starts_with("http://") || endpoint.starts_with("https://");
        if !endpoint.is_empty() && !scheme {
            found.add(
                &storage::S3_ENDPOINT,
                format!("must start with http:// or https://, got {endpoint:?}"),
            );
        }
    }

    fn check_kafka(&self, found: &mut Problems) {
        let kafka = &self.kafka;
        if self.version == PipelineVersion::V2 && kafka.brokers.is_empty() {
            found.add(
                &kafka::BROKERS,
                format!("required when {} is 2", VERSION.name),
            );
        }
        for (index, broker) in kafka.brokers.iter().enumerate() {
            if broker.trim().is_empty() || broker.chars().any(char::is_whitespace) {
                found.add(
                    &kafka::BROKERS,
                    format!("entry {index} ({broker:?}) must be a host:port without spaces"),
                );
            }
        }
        found.check(&kafka::TOPIC, check_topic_name(&kafka.topic));
        found.check(
            &kafka::DEAD_LETTER_TOPIC,
            check_topic_name(&kafka.dead_letter_topic),
        );
        // Dead letters written back to the topic they came from would be consumed again forever.
        if kafka.dead_letter_topic == kafka.topic {
            found.add(
                &kafka::DEAD_LETTER_TOPIC,
                format!("must differ from {}", kafka::TOPIC.name),
            );
        }
        if kafka.group_id.trim().is_empty() {
            found.add(&kafka::GROUP_ID, "must not be empty");
        }
        // librdkafka compares message.timeout.ms with linger.ms in whole milliseconds, and
        // refuses to create the producer unless the first is longer.
        if kafka.produce_timeout.as_millis().max(1) <= kafka.batch_timeout.as_millis() {
            found.add(
                &kafka::PRODUCE_TIMEOUT,
                format!(
                    "must be longer than {} ({}) in whole milliseconds, got {}",
                    kafka::BATCH_TIMEOUT.name,
                    humantime::format_duration(kafka.batch_timeout),
                    humantime::format_duration(kafka.produce_timeout)
                ),
            );
        }
    }

    fn check_auth(&self, found: &mut Problems) {
        for (index, token) in self.auth.tokens.iter().enumerate() {
            // Named by position: the token itself is a secret, never echoed.
            if let Err(message) = check_token(token) {
                found.add(&auth::TOKENS, format!("entry {index} {message}"));
            }
        }
    }

    /// The profiling keys matter only when the mode that uses them is on.
    fn check_profiling(&self, found: &mut Problems) {
        let name = &self.profiling.name;
        let allowed = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if self.profiling.capture && (name.starts_with('.') || !name.chars().all(allowed)) {
            found.add(
                &profiling::NAME,
                format!(
                    "{name:?} cannot be part of a file name: use ASCII letters, digits, '.', '_' \
                     and '-', not starting with '.'"
                ),
            );
        }
        if self.profiling.capture && self.profiling.dir.as_os_str().is_empty() {
            found.add(&profiling::DIR, "must not be empty");
        }
        if self.profiling.enabled {
            found.check(
                &profiling::ADDR,
                resolve_listen_addr(&self.profiling.addr).map(drop),
            );
        }
    }
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
    use std::net::Ipv6Addr;

    use super::*;
    use crate::config::ServerConfig;
    use crate::config::expect::{contains, refused};

    #[test]
    fn version_2_requires_brokers() {
        assert_eq!(
            refused("version: 2\n"),
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
            contains(&refused(text), expected);
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
            contains(&text, key);
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
        contains(&debug, "<1 redacted>");
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
}
