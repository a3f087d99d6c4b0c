//! `ingestion`: limits on incoming batches and, for v2, the in-flight queue.

use std::time::Duration;

use serde::Deserialize;

use crate::config::key::{Field, Key, lens};
use crate::config::load::go_duration;
use crate::config::ranges::{BYTES, Bounds, COUNT, FRACTION, PERIOD};

/// `ingestion`: each field's YAML key is its camelCase name; its meaning, range, flag and
/// environment variable are its row in [`KEYS`], its default the `Default` impl below.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct IngestionConfig {
    pub queue_buffer_size: usize,
    pub producer_workers: usize,
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub producer_write_timeout: Duration,
    pub queue_high_water_percent: f64,
    pub max_records: usize,
    pub max_field_bytes: usize,
    pub max_hours_per_batch: usize,
}

impl Default for IngestionConfig {
    fn default() -> Self {
        IngestionConfig {
            queue_buffer_size: 10_000,
            producer_workers: 10,
            producer_write_timeout: Duration::from_secs(10),
            queue_high_water_percent: 0.9,
            max_records: 100_000,
            max_field_bytes: 8 << 10,
            max_hours_per_batch: 168,
        }
    }
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

pub const KEYS: &[Key] = &[
    Key::new(
        "ingestion.maxRecords",
        Field::Size(lens!(ingestion.max_records)),
        "Most records in one batch; larger batches get 413.",
    )
    .range(COUNT),
    Key::new(
        "ingestion.maxFieldBytes",
        Field::Size(lens!(ingestion.max_field_bytes)),
        "Longest accepted field value in bytes; a longer one rejects its batch with 400.",
    )
    .range(BYTES),
    Key::new(
        "ingestion.maxHoursPerBatch",
        Field::Size(lens!(ingestion.max_hours_per_batch)),
        "Most distinct event hours in one batch (each is a file the store writes and fsyncs \
         for it); larger batches get 413 `too_many_hours`. The default is a week.",
    )
    .range(Bounds::number(
        1,
        1024,
        "each hour is an open file while its batch is written",
    )),
    Key::new(
        "ingestion.queueBufferSize",
        Field::Size(lens!(ingestion.queue_buffer_size)),
        "v2 (the original's key): most batches in flight to Kafka at once.",
    )
    .range(Bounds::number(
        1,
        10_000_000,
        "the Kafka client's queue holds at most 10000000 messages",
    )),
    Key::new(
        "ingestion.queueHighWaterPercent",
        Field::Fraction(lens!(ingestion.queue_high_water_percent)),
        "v2 (the original's key): the fraction of `ingestion.queueBufferSize` in flight beyond \
         which new batches get 503; a fraction despite the name: `0.9` means 90 %.",
    )
    .range(FRACTION),
    Key::new(
        "ingestion.producerWorkers",
        Field::Size(lens!(ingestion.producer_workers)),
        "The original's worker pool; the producer here needs none.",
    )
    .range(Bounds::number(
        0,
        u64::MAX,
        "accepted for compatibility and ignored",
    ))
    .ignored(),
    Key::new(
        "ingestion.producerWriteTimeout",
        Field::Duration(lens!(ingestion.producer_write_timeout)),
        "In the original, the wait for a place in its in-memory queue. Here a batch that does \
         not fit the in-flight limits is refused at once (503 `overloaded`), and the wait for \
         the broker is `kafka.produceTimeout`.",
    )
    .range(PERIOD)
    .ignored(),
];
