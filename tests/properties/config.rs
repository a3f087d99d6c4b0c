//! The configuration at its extremes: for every numeric and duration key of
//! the key table with a range (which a unit test keeps complete), any value is either refused with
//! an error naming the key, or accepted, and then safe where the service uses it: read back as
//! written, its deadlines computable, and the Kafka settings it makes accepted by librdkafka.

use std::time::{Duration, Instant};

use log_pipeline::config::Config;
use log_pipeline::config::key::{Key, Value, keys, yaml_document};
use log_pipeline::config::ranges::Range;
use log_pipeline::kafka::consumer::consumer_config;
use log_pipeline::kafka::producer::ingest_producer_config;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::TestRunner;
use rdkafka::consumer::BaseConsumer;
use rdkafka::producer::BaseProducer;

/// The keys whose values reach librdkafka's settings.
fn reaches_librdkafka(key: &str) -> bool {
    key.starts_with("kafka.") || key == "storage.maxPendingBytes"
}

/// Every key with a range: the numbers and durations.
fn ranged() -> Vec<&'static Key> {
    keys().filter(|key| key.range.is_some()).collect()
}

/// The values at the extremes of `ranged`'s type and range, as written in YAML.
fn extremes(ranged: &Key) -> Vec<String> {
    match ranged.range.expect("a ranged key").range {
        Range::Number { min, max } => {
            let mut values: Vec<u64> = vec![0, 1, u64::MAX, u64::MAX - 1, min, max];
            values.extend(min.checked_sub(1));
            values.extend(max.checked_add(1));
            let mut texts: Vec<String> = values.iter().map(u64::to_string).collect();
            // Negative, and just past the 31-, 32- and 64-bit limits.
            texts.extend(
                ["18446744073709551616", "-1", "4294967296", "2147483648"].map(String::from),
            );
            texts
        }
        Range::Duration { min, max } => {
            let mut values = vec![
                Duration::ZERO,
                Duration::from_nanos(1),
                Duration::from_millis(1),
                Duration::from_secs(1),
                Duration::from_secs(i64::MAX as u64),
                Duration::from_secs(u64::MAX),
                Duration::new(u64::MAX, 999_999_999),
                min,
                max,
                max + Duration::from_nanos(1),
            ];
            values.extend(min.checked_sub(Duration::from_nanos(1)));
            let mut texts: Vec<String> = values
                .iter()
                .map(|d| humantime::format_duration(*d).to_string())
                .collect();
            texts.extend(
                [
                    "9223372036854775807s",
                    "18446744073709551616s",
                    "584942417355y",
                    "-1s",
                    "1",
                ]
                .map(String::from),
            );
            texts
        }
        Range::Fraction => [
            "0",
            "1",
            "-1",
            "1.0000001",
            "5e-324",
            "1.7976931348623157e308",
            ".nan",
            ".inf",
        ]
        .map(String::from)
        .to_vec(),
    }
}

/// `value` (YAML text) for `ranged`'s key: refused naming the key, or accepted, read back as
/// written and usable.
fn refused_naming_key_or_safe(ranged: &Key, value: &str) -> Result<(), String> {
    // Brokers, so that version 2 is valid apart from the key under test.
    let yaml = yaml_document(&[("kafka.brokers", "[127.0.0.1:9]"), (ranged.name, value)]);
    let config = match Config::from_yaml_str(&yaml) {
        Err(err) => {
            let text = err.to_string();
            return if text.contains(ranged.name) && !text.contains('\n') {
                Ok(())
            } else {
                Err(format!(
                    "{yaml}: refused without naming {}: {text}",
                    ranged.name
                ))
            };
        }
        Ok(config) => config,
    };
    let read = ranged.value(&config);
    let as_written = match read {
        Value::Number(number) => value.parse::<u64>().ok() == Some(number),
        Value::Duration(duration) => humantime::parse_duration(value).ok() == Some(duration),
        Value::Fraction(fraction) => value.parse::<f64>().ok() == Some(fraction),
        other => return Err(format!("{}: a {other:?} has no range", ranged.name)),
    };
    if !as_written {
        return Err(format!(
            "{yaml}: accepted, but {} reads {read}",
            ranged.name
        ));
    }
    // What the service computes from the values: deadlines `now + timeout` (dead letters wait
    // twice kafka.produceTimeout); 32-bit semaphore permits and record counts, `limit + 1`; the
    // v2 in-flight semaphore.
    match read {
        Value::Duration(duration)
            if Instant::now()
                .checked_add(duration.saturating_mul(2))
                .is_none() =>
        {
            return Err(format!("{yaml}: accepted, but now + 2 × {read} overflows"));
        }
        // A key kept for compatibility (ingestion.producerWorkers) is never used.
        Value::Number(number) if u32::try_from(number).is_err() && !ranged.ignored => {
            return Err(format!(
                "{yaml}: accepted, but {read} does not fit in 32 bits"
            ));
        }
        _ => {}
    }
    if config.ingestion.max_batches_in_flight() > tokio::sync::Semaphore::MAX_PERMITS {
        return Err(format!(
            "{yaml}: accepted, but too many batches in flight for a semaphore"
        ));
    }
    if reaches_librdkafka(ranged.name) {
        kafka_clients_accept(&config).map_err(|err| format!("{yaml}: accepted, but {err}"))?;
    }
    Ok(())
}

/// Whether librdkafka creates the producer and a consumer as the service configures them (it
/// checks every property's range and the rules between them; nothing connects yet).
fn kafka_clients_accept(config: &Config) -> Result<(), String> {
    ingest_producer_config(&config.kafka, config.storage.max_pending_bytes)
        .create::<BaseProducer>()
        .map_err(|err| format!("librdkafka refuses the producer: {err}"))?;
    consumer_config(&config.kafka, 0)
        .create::<BaseConsumer>()
        .map_err(|err| format!("librdkafka refuses the consumer: {err}"))?;
    Ok(())
}

#[test]
fn every_extreme_is_refused_naming_its_key_or_is_safe() {
    let mut failures = Vec::new();
    for ranged in ranged() {
        for value in extremes(ranged) {
            if let Err(failure) = refused_naming_key_or_safe(ranged, &value) {
                failures.push(failure);
            }
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

#[test]
fn any_value_is_refused_naming_its_key_or_is_safe() {
    let values = prop_oneof![
        any::<u64>().prop_map(|n| n.to_string()),
        (0u64..=10_000_000_000).prop_map(|n| n.to_string()),
        (any::<u64>(), 0u32..1_000_000_000)
            .prop_map(
                |(secs, nanos)| humantime::format_duration(Duration::new(secs, nanos)).to_string()
            ),
        (
            0u64..=60_000_000,
            select(vec!["ns", "us", "ms", "s", "m", "h", "d"])
        )
            .prop_map(|(n, unit)| format!("{n}{unit}")),
        any::<f64>().prop_map(|f| f.to_string()),
    ];
    let mut runner = TestRunner::new(proptest::test_runner::Config {
        failure_persistence: None,
        ..Default::default()
    });
    let ranged = ranged();
    let result = runner.run(&(0..ranged.len(), values), |(row, value)| {
        refused_naming_key_or_safe(ranged[row], &value).map_err(TestCaseError::fail)
    });
    if let Err(failure) = result {
        panic!("{failure}");
    }
}

#[test]
fn every_key_at_its_largest_value_at_once_is_accepted_by_librdkafka() {
    let mut settings: Vec<(&str, String)> = keys()
        .filter_map(|key| Some((key.name, key.largest()?)))
        .collect();
    settings.push(("kafka.brokers", "[127.0.0.1:9]".to_owned()));
    let yaml = yaml_document(&settings);
    let config = Config::from_yaml_str(&yaml).unwrap_or_else(|err| panic!("{yaml}: {err}"));
    kafka_clients_accept(&config).unwrap_or_else(|err| panic!("{yaml}: {err}"));
}
