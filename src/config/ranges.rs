//! The range of every numeric and duration key, in one table, [`RANGES`], that validation
//! ([`super::Config::validate`]), the README's list of ranges and the tests all read. A number or
//! duration field added to the configuration without a row here fails a test
//! (`every_number_and_duration_has_a_range`), so no key can be left unbounded.
//!
//! The bounds are what a value can mean here, not what its Rust type can hold:
//!
//! - byte sizes at most 2 GiB: a body or a batch is held in memory whole, and a batch's share of
//!   a budget is counted in 32-bit units;
//! - counts of records and keys held in memory at most 100,000,000 (beyond that the memory is
//!   the limit, not the count; stored record counts are 32-bit);
//! - timeouts and periods from 1 ms (the timers' resolution; Kafka's settings are whole
//!   milliseconds) to 7 days;
//! - the Kafka settings within what librdkafka accepts for the properties they set.
//!
//! Within them, the arithmetic done with the values cannot overflow: `now + timeout` deadlines,
//! `limit + 1`, 32-bit semaphore permits, milliseconds as librdkafka's 32-bit integers.

use std::collections::BTreeMap;
use std::fmt;
use std::time::Duration;

use super::Config;

/// What a key may hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// A whole number (a count, or bytes) from `min` to `max`.
    Number { min: u64, max: u64 },
    /// A duration from `min` to `max`.
    Duration { min: Duration, max: Duration },
    /// A fraction greater than 0 and at most 1.
    Fraction,
}

/// A key's value, as [`Ranged::value`] reads it from a [`Config`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Value {
    Number(u64),
    Duration(Duration),
    Fraction(f64),
}

/// One numeric or duration key and its range.
pub struct Ranged {
    /// The dotted YAML key, e.g. `server.maxBodyBytes`.
    pub key: &'static str,
    pub range: Range,
    /// Why the bounds are where they are; errors and the README show it. Never holds `"; "`,
    /// which separates the problems of a [`super::ConfigError`].
    pub why: &'static str,
    value: Read,
}

/// How a row reads its field, by the field's type.
enum Read {
    Number(fn(&Config) -> u64),
    Size(fn(&Config) -> usize),
    Duration(fn(&Config) -> Duration),
    Fraction(fn(&Config) -> f64),
}

const MILLISECOND: Duration = Duration::from_millis(1);
const GIB: u64 = 1 << 30;
const MIB: u64 = 1 << 20;

const BYTES: Range = Range::Number {
    min: 1,
    max: 2 * GIB,
};
const BYTES_WHY: &str = "2 GiB: held in memory whole, and counted in 32-bit units by the budgets";
const COUNT: Range = Range::Number {
    min: 1,
    max: 100_000_000,
};
const COUNT_WHY: &str = "held in memory: beyond 10^8 the memory is the limit, not the count";
const PERIOD: Range = Range::Duration {
    min: MILLISECOND,
    max: Duration::from_secs(7 * 24 * 3600),
};
const PERIOD_WHY: &str = "the timers count milliseconds, and longer than a week means never";

/// Every numeric and duration key, in the order of the configuration's sections.
pub const RANGES: &[Ranged] = &[
    Ranged {
        key: "version",
        range: Range::Number { min: 1, max: 2 },
        why: "1 writes the hour files, 2 goes through Kafka",
        value: Read::Number(|c| c.version.as_u8().into()),
    },
    bytes("server.maxBodyBytes", |c| c.server.max_body_bytes),
    period("server.readHeaderTimeout", |c| c.server.read_header_timeout),
    period("server.readBodyTimeout", |c| c.server.read_body_timeout),
    period("server.requestTimeout", |c| c.server.request_timeout),
    period("server.shutdownTimeout", |c| c.server.shutdown_timeout),
    Ranged {
        key: "server.maxConnections",
        range: Range::Number {
            min: 1,
            max: 1 << 20,
        },
        why: "Linux's default ceiling on a process's open files (fs.nr_open)",
        value: Read::Size(|c| c.server.max_connections),
    },
    bytes("server.maxInflightBytes", |c| c.server.max_inflight_bytes),
    Ranged {
        key: "server.minBodyRate",
        range: Range::Number {
            min: 1,
            max: 1 << 31,
        },
        why: "bytes per second: 2 GiB/s is beyond any client's link, so every body would be too slow",
        value: Read::Size(|c| c.server.min_body_rate),
    },
    period("storage.fsyncInterval", |c| c.storage.fsync_interval),
    bytes("storage.maxPendingBytes", |c| c.storage.max_pending_bytes),
    period("storage.idleFileTimeout", |c| c.storage.idle_file_timeout),
    period("storage.writeTimeout", |c| c.storage.write_timeout),
    count("storage.s3.maxObjectRecords", |c| {
        c.storage.s3.max_object_records
    }),
    bytes("storage.s3.maxObjectBytes", |c| {
        c.storage.s3.max_object_bytes
    }),
    period("storage.s3.maxObjectAge", |c| c.storage.s3.max_object_age),
    period("storage.s3.requestTimeout", |c| {
        c.storage.s3.request_timeout
    }),
    period("aggregation.interval", |c| c.aggregation.interval),
    count("aggregation.maxKeysPerHour", |c| {
        c.aggregation.max_keys_per_hour
    }),
    Ranged {
        key: "aggregation.maxSummaryBytes",
        range: Range::Number {
            min: crate::config::MIN_SUMMARY_BYTES as u64,
            max: 1 << 31,
        },
        why: "room for a few hundred keys of any length, and at most 2 GiB held in memory while an hour is counted",
        value: Read::Size(|c| c.aggregation.max_summary_bytes),
    },
    Ranged {
        key: "ingestion.queueBufferSize",
        range: Range::Number {
            min: 1,
            max: 10_000_000,
        },
        why: "the Kafka client's queue holds at most 10000000 messages",
        value: Read::Size(|c| c.ingestion.queue_buffer_size),
    },
    Ranged {
        key: "ingestion.producerWorkers",
        range: Range::Number {
            min: 0,
            max: u64::MAX,
        },
        why: "accepted for compatibility and ignored",
        value: Read::Size(|c| c.ingestion.producer_workers),
    },
    period("ingestion.producerWriteTimeout", |c| {
        c.ingestion.producer_write_timeout
    }),
    Ranged {
        key: "ingestion.queueHighWaterPercent",
        range: Range::Fraction,
        why: "a fraction: 0.9 means 90%",
        value: Read::Fraction(|c| c.ingestion.queue_high_water_percent),
    },
    count("ingestion.maxRecords", |c| c.ingestion.max_records),
    bytes("ingestion.maxFieldBytes", |c| c.ingestion.max_field_bytes),
    Ranged {
        key: "ingestion.maxHoursPerBatch",
        range: Range::Number { min: 1, max: 1024 },
        why: "each hour is an open file while its batch is written",
        value: Read::Size(|c| c.ingestion.max_hours_per_batch),
    },
    Ranged {
        key: "idempotency.retention",
        range: Range::Duration {
            min: MILLISECOND,
            max: Duration::from_secs(30 * 24 * 3600),
        },
        why: "clients retry within days, and maxKeys bounds the memory",
        value: Read::Duration(|c| c.idempotency.retention),
    },
    count("idempotency.maxKeys", |c| c.idempotency.max_keys),
    count("consumer.flushSize", |c| c.consumer.flush_size),
    period("consumer.flushInterval", |c| c.consumer.flush_interval),
    period("consumer.persistTimeout", |c| c.consumer.persist_timeout),
    Ranged {
        key: "kafka.batchSize",
        range: Range::Number {
            min: 1,
            max: 1_000_000,
        },
        why: "librdkafka's batch.num.messages",
        value: Read::Size(|c| c.kafka.batch_size),
    },
    Ranged {
        key: "kafka.batchTimeout",
        range: Range::Duration {
            min: MILLISECOND,
            max: Duration::from_secs(15 * 60),
        },
        why: "librdkafka's linger.ms",
        value: Read::Duration(|c| c.kafka.batch_timeout),
    },
    Ranged {
        key: "kafka.batchBytes",
        range: Range::Number {
            min: 0,
            max: i32::MAX as u64,
        },
        why: "librdkafka's batch.size, 0 keeps its default",
        value: Read::Size(|c| c.kafka.batch_bytes),
    },
    Ranged {
        key: "kafka.consumers",
        range: Range::Number { min: 1, max: 64 },
        why: "each is a thread and a Kafka client with fetch buffers of its own",
        value: Read::Size(|c| c.kafka.consumers),
    },
    Ranged {
        key: "kafka.produceTimeout",
        range: PERIOD,
        why: "librdkafka's message.timeout.ms, and longer than kafka.batchTimeout",
        value: Read::Duration(|c| c.kafka.produce_timeout),
    },
    Ranged {
        key: "kafka.partitions",
        range: Range::Number {
            min: 1,
            max: 10_000,
        },
        why: "partitions a missing topic is created with",
        value: Read::Number(|c| c.kafka.partitions.into()),
    },
    Ranged {
        key: "kafka.sessionTimeout",
        range: Range::Duration {
            min: Duration::from_secs(6),
            max: Duration::from_secs(5 * 60),
        },
        why: "brokers refuse shorter sessions by default (group.min.session.timeout.ms), and \
              librdkafka longer ones than its max.poll.interval.ms",
        value: Read::Duration(|c| c.kafka.session_timeout),
    },
    Ranged {
        key: "kafka.fetchMaxBytes",
        range: Range::Number {
            min: MIB,
            max: 64 * MIB,
        },
        why: "librdkafka needs at least message.max.bytes (1 MB) and less than \
              receive.message.max.bytes (100 MB)",
        value: Read::Size(|c| c.kafka.fetch_max_bytes),
    },
];

const fn bytes(key: &'static str, read: fn(&Config) -> usize) -> Ranged {
    Ranged {
        key,
        range: BYTES,
        why: BYTES_WHY,
        value: Read::Size(read),
    }
}

const fn count(key: &'static str, read: fn(&Config) -> usize) -> Ranged {
    Ranged {
        key,
        range: COUNT,
        why: COUNT_WHY,
        value: Read::Size(read),
    }
}

const fn period(key: &'static str, read: fn(&Config) -> Duration) -> Ranged {
    Ranged {
        key,
        range: PERIOD,
        why: PERIOD_WHY,
        value: Read::Duration(read),
    }
}

impl Ranged {
    /// The key's value in `config`.
    pub fn value(&self, config: &Config) -> Value {
        match self.value {
            Read::Number(read) => Value::Number(read(config)),
            // Lossless on the 64-bit targets this service is built for.
            Read::Size(read) => Value::Number(read(config) as u64),
            Read::Duration(read) => Value::Duration(read(config)),
            Read::Fraction(read) => Value::Fraction(read(config)),
        }
    }

    /// `Ok` when the key's value in `config` is in range; else the problem, in one line.
    pub fn check(&self, config: &Config) -> Result<(), String> {
        let value = self.value(config);
        let within = match (self.range, value) {
            (Range::Number { min, max }, Value::Number(number)) => (min..=max).contains(&number),
            (Range::Duration { min, max }, Value::Duration(duration)) => {
                (min..=max).contains(&duration)
            }
            // Written so that NaN is out of range too.
            (Range::Fraction, Value::Fraction(fraction)) => fraction > 0.0 && fraction <= 1.0,
            (range, value) => unreachable!("{}: a {value:?} for a {range:?}", self.key),
        };
        if within {
            Ok(())
        } else {
            Err(format!(
                "must be {} ({}), got {value}",
                self.range, self.why
            ))
        }
    }

    /// The largest value the key accepts, as it is written in YAML.
    pub fn largest(&self) -> String {
        match self.range {
            Range::Number { max, .. } => max.to_string(),
            Range::Duration { max, .. } => humantime::format_duration(max).to_string(),
            Range::Fraction => "1".to_owned(),
        }
    }
}

/// How errors and the README write a range: `from 1 to 1024`, `from 1ms to 7days`, `in (0, 1]`.
impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Range::Number { min, max } => write!(f, "from {min} to {max}"),
            Range::Duration { min, max } => write!(
                f,
                "from {} to {}",
                humantime::format_duration(*min),
                humantime::format_duration(*max)
            ),
            Range::Fraction => write!(f, "in (0, 1]"),
        }
    }
}

impl fmt::Display for Value {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Value::Number(number) => write!(f, "{number}"),
            Value::Duration(duration) => write!(f, "{}", humantime::format_duration(*duration)),
            Value::Fraction(fraction) => write!(f, "{fraction}"),
        }
    }
}

/// `kafka.produceTimeout` must be longer than `kafka.batchTimeout` in whole milliseconds, as
/// librdkafka compares `message.timeout.ms` with `linger.ms` (it refuses to create the producer
/// otherwise).
pub(super) fn check_produce_timeout(config: &Config) -> Result<(), String> {
    let kafka = &config.kafka;
    if kafka.produce_timeout.as_millis().max(1) > kafka.batch_timeout.as_millis() {
        Ok(())
    } else {
        Err(format!(
            "must be longer than kafka.batchTimeout ({}) in whole milliseconds, got {}",
            humantime::format_duration(kafka.batch_timeout),
            humantime::format_duration(kafka.produce_timeout)
        ))
    }
}

/// A YAML document that sets each dotted key to its value, the value written as in YAML
/// (`7days`, `2147483648`, `.nan`, `[a, b]`): `[("server.maxBodyBytes", "1024")]` is
/// `{ server: { maxBodyBytes: 1024 } }`; a later setting of a key replaces an earlier one. How
/// the tests set keys by the names of [`RANGES`].
pub fn yaml_document(settings: &[(&str, impl AsRef<str>)]) -> String {
    #[derive(Default)]
    struct Section<'a>(BTreeMap<&'a str, Node<'a>>);
    enum Node<'a> {
        Value(&'a str),
        Section(Section<'a>),
    }
    fn write(section: &Section<'_>, out: &mut String) {
        out.push('{');
        for (index, (name, node)) in section.0.iter().enumerate() {
            out.push_str(if index == 0 { " " } else { ", " });
            out.push_str(name);
            out.push_str(": ");
            match node {
                Node::Value(value) => out.push_str(value),
                Node::Section(inner) => write(inner, out),
            }
        }
        out.push_str(" }");
    }
    let mut root = Section::default();
    for (key, value) in settings {
        let (path, last) = key
            .rsplit_once('.')
            .map_or((None, *key), |(p, l)| (Some(p), l));
        let mut section = &mut root;
        for name in path.into_iter().flat_map(|path| path.split('.')) {
            let node = section
                .0
                .entry(name)
                .or_insert_with(|| Node::Section(Section::default()));
            section = match node {
                Node::Section(inner) => inner,
                Node::Value(_) => panic!("{key}: {name} is set to a value"),
            };
        }
        section.0.insert(last, Node::Value(value.as_ref()));
    }
    let mut out = String::new();
    write(&root, &mut out);
    out
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use serde_json::Value as Json;

    use super::*;

    #[test]
    fn yaml_documents_nest_dotted_keys() {
        let settings = [
            ("version", "2"),
            ("kafka.brokers", "[k:1]"),
            ("kafka.topic", "t"),
        ];
        assert_eq!(
            yaml_document(&settings),
            "{ kafka: { brokers: [k:1], topic: t }, version: 2 }"
        );
        assert_eq!(yaml_document(&[] as &[(&str, &str)]), "{ }");
    }

    /// The dotted keys of every number and duration in `tree` (a duration serializes as
    /// `{"secs": .., "nanos": ..}`).
    fn numbers_and_durations(tree: &Json, prefix: &str, found: &mut BTreeSet<String>) {
        let Json::Object(fields) = tree else { return };
        for (name, value) in fields {
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            match value {
                Json::Number(_) => {
                    found.insert(key);
                }
                Json::Object(inner)
                    if inner.contains_key("secs") && inner.contains_key("nanos") =>
                {
                    found.insert(key);
                }
                Json::Object(_) => numbers_and_durations(value, &key, found),
                _ => {}
            }
        }
    }

    #[test]
    fn every_number_and_duration_has_a_range() {
        let tree = serde_json::to_value(Config::default()).expect("the config serializes");
        let mut fields = BTreeSet::new();
        numbers_and_durations(&tree, "", &mut fields);
        let rows: BTreeSet<String> = RANGES.iter().map(|r| r.key.to_owned()).collect();
        assert_eq!(rows.len(), RANGES.len(), "a key has two rows");
        assert_eq!(
            fields, rows,
            "every number and duration of the configuration needs one row in RANGES"
        );
    }

    #[test]
    fn each_row_reads_the_field_its_key_names() {
        for ranged in RANGES {
            // Values in range that differ from the default, set through the key's YAML path;
            // one of them may be refused by a rule across keys (kafka.batchTimeout at its
            // largest is longer than the default kafka.produceTimeout), not both.
            let default = ranged.value(&Config::default());
            let candidates = match ranged.range {
                Range::Number { min, max } => [min, max]
                    .map(|n| (n.to_string(), Value::Number(n)))
                    .to_vec(),
                Range::Duration { min, max } => [min, max]
                    .map(|d| {
                        (
                            humantime::format_duration(d).to_string(),
                            Value::Duration(d),
                        )
                    })
                    .to_vec(),
                Range::Fraction => vec![("0.25".to_owned(), Value::Fraction(0.25))],
            };
            let mut read = 0;
            for (written, expected) in candidates.into_iter().filter(|(_, v)| *v != default) {
                // Brokers, for version 2.
                let yaml = yaml_document(&[("kafka.brokers", "[k:9092]"), (ranged.key, &written)]);
                if let Ok(config) = Config::from_yaml_str(&yaml) {
                    assert_eq!(ranged.value(&config), expected, "{}: {yaml}", ranged.key);
                    read += 1;
                }
            }
            assert!(
                read > 0,
                "{}: no value other than the default was accepted",
                ranged.key
            );
            assert!(
                !ranged.why.contains("; "),
                "{}: \"; \" separates problems",
                ranged.key
            );
        }
    }

    /// The README's table of ranges, as the code has them.
    fn readme_rows() -> Vec<String> {
        RANGES
            .iter()
            .map(|r| format!("| `{}` | {} | {} |", r.key, r.range, r.why))
            .collect()
    }

    #[test]
    fn readme_lists_every_range() {
        let readme = include_str!("../../README.md");
        let section = readme
            .split("\n### Ranges\n")
            .nth(1)
            .expect("README has a \"### Ranges\" section");
        let section = section.split("\n#").next().unwrap_or(section);
        let listed: Vec<&str> = section
            .lines()
            .filter(|line| line.starts_with("| `"))
            .collect();
        let expected = readme_rows();
        assert_eq!(
            listed,
            expected,
            "README's ranges differ from src/config/ranges.rs; its rows should be:\n{}",
            expected.join("\n")
        );
    }
}
