//! The typed configuration tree: every setting the service reads, how the YAML file and the
//! overrides (flags and environment variables) combine, and the validation that runs once at
//! start-up, before anything is bound or opened. Near the bottom of the module graph: it imports only
//! [`crate::site`], and [`crate::cli`] builds the [`Overrides`] it applies.
//!
//! Precedence, highest first: command-line flag, environment variable (both read by
//! [`crate::cli::Cli`] into [`Overrides`]), the YAML file named by `--config`, the defaults.
//!
//! The YAML keys are the Go service's, so its config files load unchanged; keys it did not have
//! are additions with defaults. Every section and key is optional. An unknown key is an error (a
//! typo such as `groupId` for `groupID` would otherwise silently fall back to a default).
//! Durations are Go-style strings with a unit: `500ms`, `30s`, `1m30s`, `2h`. Every error names
//! the dotted key (`kafka.brokers: required when version is 2`), and validation reports all
//! problems at once so a file is fixed in one round.
//!
//! # Layout
//!
//! - [`sections`]: one file per YAML section: its struct, its defaults (the `Default` impl) and
//!   its keys' rows, side by side. Adding or changing a key happens there.
//! - [`key`]: the one table of keys those rows make: each leaf key's name, meaning, field,
//!   range, flag and environment variable, written once; everything below reads it.
//! - [`ranges`]: what numbers and durations may hold, and why.
//! - `load`: the YAML file into the tree, then the overrides, then validation; [`ConfigError`].
//! - `overrides`: [`Overrides`], values for keys from flags and environment variables.
//! - `validate`: the ranges and the rules across keys.
//! - [`sites`]: the sites file (`sites.file`): each customer site's id, name, keys and limits.
//! - `directories`: the directories a serving run writes, checked (and created when missing) at
//!   start-up.
//! - `reference` (tests): `docs/configuration.md`, made from the table and checked against it.

use std::fmt;

use serde::{Deserialize, Deserializer};

mod directories;
#[cfg(test)]
mod examples;
#[cfg(test)]
mod expect;
pub mod key;
mod load;
mod overrides;
pub mod ranges;
#[cfg(test)]
mod reference;
pub mod sections;
pub mod sites;
mod validate;

pub use load::ConfigError;
pub use overrides::{Overrides, split_comma_list};
pub use sections::aggregation::{AggregationConfig, MIN_SUMMARY_BYTES};
pub use sections::auth::{AuthConfig, Protected, check_token};
pub use sections::consumer::ConsumerConfig;
pub use sections::idempotency::IdempotencyConfig;
pub use sections::ingestion::IngestionConfig;
pub use sections::kafka::{Compression, KafkaConfig};
pub use sections::profiling::ProfilingConfig;
pub use sections::server::ServerConfig;
pub use sections::sites::SitesConfig;
pub use sections::storage::{FsyncPolicy, S3Config, StorageBackend, StorageConfig};
pub use sites::{Site, SiteLimits, Sites};

/// The whole configuration: the top-level mapping, one field per section (its YAML key is the
/// field's camelCase name), and `version`.
#[derive(Debug, Clone, PartialEq, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct Config {
    pub version: PipelineVersion,
    pub server: ServerConfig,
    pub storage: StorageConfig,
    pub aggregation: AggregationConfig,
    pub ingestion: IngestionConfig,
    pub idempotency: IdempotencyConfig,
    pub consumer: ConsumerConfig,
    pub kafka: KafkaConfig,
    pub auth: AuthConfig,
    pub sites: SitesConfig,
    pub profiling: ProfilingConfig,
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
