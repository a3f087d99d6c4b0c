//! `idempotency`: how long and how many `Idempotency-Key`s are kept (see docs/api.md,
//! "Idempotent retries").

use std::time::Duration;

use serde::Deserialize;

use crate::config::key::{Field, Key, lens};
use crate::config::load::go_duration;
use crate::config::ranges::{Bounds, COUNT, DAY, MILLISECOND};

/// `idempotency`: each field's YAML key is its camelCase name; its meaning and range are its
/// row in [`KEYS`], its default the `Default` impl below.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct IdempotencyConfig {
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub retention: Duration,
    pub max_keys: usize,
}

impl Default for IdempotencyConfig {
    fn default() -> Self {
        IdempotencyConfig {
            retention: DAY,
            max_keys: 1_000_000,
        }
    }
}

pub const KEYS: &[Key] = &[
    Key::new(
        "idempotency.retention",
        Field::Duration(lens!(idempotency.retention)),
        "How long after its batch was stored an `Idempotency-Key` is remembered; a key sent \
         again later is a new key.",
    )
    .range(Bounds::duration(
        MILLISECOND,
        Duration::from_secs(30 * 24 * 3600),
        "clients retry within days, and maxKeys bounds the memory",
    )),
    Key::new(
        "idempotency.maxKeys",
        Field::Size(lens!(idempotency.max_keys)),
        "Most keys remembered; beyond it the oldest are forgotten first.",
    )
    .range(COUNT),
];
