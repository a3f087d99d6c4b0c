//! `aggregation`: the hourly analytics.

use std::time::Duration;

use serde::Deserialize;

use crate::config::key::{Field, Flag, Key, lens};
use crate::config::load::go_duration;
use crate::config::ranges::{Bounds, COUNT, PERIOD};

/// `aggregation`: each field's YAML key is its camelCase name; its meaning, range, flag and
/// environment variable are its row in [`KEYS`], its default the `Default` impl below.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct AggregationConfig {
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub interval: Duration,
    pub max_keys_per_hour: usize,
    pub max_summary_bytes: usize,
}

impl Default for AggregationConfig {
    fn default() -> Self {
        AggregationConfig {
            interval: Duration::from_secs(30),
            max_keys_per_hour: 100_000,
            max_summary_bytes: 16 << 20,
        }
    }
}

/// The smallest `aggregation.maxSummaryBytes`: room for a few hundred keys of any length up to
/// `ingestion.maxFieldBytes`'s default.
pub const MIN_SUMMARY_BYTES: usize = 64 << 10;

pub const KEYS: &[Key] = &[
    Key::new(
        "aggregation.interval",
        Field::Duration(lens!(aggregation.interval)),
        "How often the hourly analytics are recomputed and written.",
    )
    .range(PERIOD)
    .flag(Flag::new(
        "aggregation-interval",
        "AGGREGATION_INTERVAL",
        "DURATION",
    )),
    Key::new(
        "aggregation.maxKeysPerHour",
        Field::Size(lens!(aggregation.max_keys_per_hour)),
        "Most distinct keys kept per hour in each analytics map; bounds memory when a client \
         sends many distinct values.",
    )
    .range(COUNT),
    Key::new(
        "aggregation.maxSummaryBytes",
        Field::Size(lens!(aggregation.max_summary_bytes)),
        "Largest an hour's summary may grow (its three maps together); keys beyond it are \
         counted under `(other)` and the summary says `\"truncated\": true`. It is also the \
         most a query reads per hour and merges per range, so the analytics' memory is a small \
         multiple of it (see docs/design/analytics.md).",
    )
    .range(Bounds::number(
        MIN_SUMMARY_BYTES as u64,
        1 << 31,
        "room for a few hundred keys of any length, and at most 2 GiB held in memory while an \
         hour is counted",
    )),
];
