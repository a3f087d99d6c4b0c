//! The sections of the YAML tree, one file each: the section's struct, its defaults (the
//! `Default` impl) and its keys' rows of the [`super::key`] table, side by side, so that a key
//! is added or changed in one file. The top-level `version` key is here.

use super::key::{Field, Flag, Key, lens};
use super::ranges::Bounds;

pub mod aggregation;
pub mod auth;
pub mod consumer;
pub mod idempotency;
pub mod ingestion;
pub mod kafka;
pub mod profiling;
pub mod server;
pub mod sites;
pub mod storage;

/// One section of the YAML tree and its keys.
pub struct Section {
    /// The mapping's key, e.g. `server`; empty for the top level.
    pub name: &'static str,
    /// What the section is for.
    pub doc: &'static str,
    pub keys: &'static [Key],
}

/// `version`.
pub const VERSION: Key = Key::new(
    "version",
    Field::Version(lens!(version)),
    "Which pipeline runs: `1` writes batches straight to the hourly files; `2` produces them to \
     Kafka, and a consumer group writes the files (or the bucket).",
)
.range(Bounds::number(
    1,
    2,
    "1 writes the hour files, 2 goes through Kafka",
))
.flag(Flag::new("pipeline-version", "PIPELINE_VERSION", "1|2"));

/// Every section, in the order the reference page lists them.
pub const SECTIONS: &[Section] = &[
    Section {
        name: "",
        doc: "Keys outside any section.",
        keys: &[VERSION],
    },
    Section {
        name: "server",
        doc: "The HTTP listener and its limits.",
        keys: server::KEYS,
    },
    Section {
        name: "storage",
        doc: "Where and how durably records are written; `storage.s3` is the bucket of \
              `backend: s3`. An empty `storage.s3` string leaves its setting to the usual \
              `AWS_*` environment variables, then to the AWS defaults.",
        keys: storage::KEYS,
    },
    Section {
        name: "aggregation",
        doc: "The hourly analytics.",
        keys: aggregation::KEYS,
    },
    Section {
        name: "ingestion",
        doc: "Limits on incoming batches and, for v2, the in-flight queue.",
        keys: ingestion::KEYS,
    },
    Section {
        name: "idempotency",
        doc: "How long and how many `Idempotency-Key`s are kept (see docs/api.md, \
              \"Idempotent retries\").",
        keys: idempotency::KEYS,
    },
    Section {
        name: "consumer",
        doc: "v2 only: the Kafka consumers that write the hour files (or the bucket).",
        keys: consumer::KEYS,
    },
    Section {
        name: "kafka",
        doc: "v2 only: brokers, topics, producer and consumer-group settings. Validated in v1 \
              as well, so that a file stays valid when its `version` is flipped.",
        keys: kafka::KEYS,
    },
    Section {
        name: "auth",
        doc: "Bearer tokens, and which routes need one.",
        keys: auth::KEYS,
    },
    Section {
        name: "sites",
        doc: "Customer sites: the file that lists them (read again on `SIGHUP`) and the \
              limits each gets unless its entry says otherwise (see docs/sites.md).",
        keys: sites::KEYS,
    },
    Section {
        name: "profiling",
        doc: "CPU, heap and task profiles, off unless asked for. The original service read \
              these from the environment only; its variables still work.",
        keys: profiling::KEYS,
    },
];
