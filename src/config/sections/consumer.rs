//! `consumer`: v2 only, the Kafka consumers that write the hourly files (or the bucket).

use std::time::Duration;

use serde::Deserialize;

use crate::config::key::{Field, Key, lens};
use crate::config::load::go_duration;
use crate::config::ranges::{COUNT, PERIOD};

/// `consumer`: each field's YAML key is its camelCase name; its meaning and range are its row
/// in [`KEYS`], its default the `Default` impl below.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct ConsumerConfig {
    pub flush_size: usize,
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub flush_interval: Duration,
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

pub const KEYS: &[Key] = &[
    Key::new(
        "consumer.flushSize",
        Field::Size(lens!(consumer.flush_size)),
        "v2: records buffered before they are written and their offsets committed.",
    )
    .range(COUNT),
    Key::new(
        "consumer.flushInterval",
        Field::Duration(lens!(consumer.flush_interval)),
        "v2: longest a consumed record waits in the buffer before it is written.",
    )
    .range(PERIOD),
    Key::new(
        "consumer.persistTimeout",
        Field::Duration(lens!(consumer.persist_timeout)),
        "In the original, a deadline after which a flush was retried. Here a flush is never \
         abandoned half-way (a retry could write its lines twice): it is stored or fails as a \
         whole, and a failed one is read from Kafka again.",
    )
    .range(PERIOD)
    .ignored(),
];
