//! `storage`: where and how durably records are written, and the bucket of `backend: s3`.

use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;

use crate::config::key::{Field, Flag, Key, lens};
use crate::config::load::go_duration;
use crate::config::ranges::{BYTES, COUNT, PERIOD};

/// `storage`: each field's YAML key is its camelCase name (or its `serde(rename)`); its meaning, range, flag and
/// environment variable are its row in [`KEYS`], its default the `Default` impl below.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct StorageConfig {
    pub logs_dir: PathBuf,
    pub analytics_dir: PathBuf,
    pub fsync: FsyncPolicy,
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub fsync_interval: Duration,
    pub max_pending_bytes: usize,
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub idle_file_timeout: Duration,
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub write_timeout: Duration,
    pub backend: StorageBackend,
    pub s3: S3Config,
}

impl Default for StorageConfig {
    fn default() -> Self {
        StorageConfig {
            logs_dir: PathBuf::from("./logs"),
            analytics_dir: PathBuf::from("./analytics"),
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_secs(1),
            max_pending_bytes: 64 << 20,
            idle_file_timeout: Duration::from_secs(60),
            write_timeout: Duration::from_secs(30),
            backend: StorageBackend::Local,
            s3: S3Config::default(),
        }
    }
}

/// When appended records are fsynced to disk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum FsyncPolicy {
    /// Before a batch is acknowledged: an acknowledged batch survives a power loss.
    #[default]
    Always,
    /// Every `storage.fsyncInterval`: a power loss can lose up to that much acknowledged data.
    Interval,
    /// Left to the operating system: fastest, a power loss can lose recent data.
    Never,
}

impl FsyncPolicy {
    /// Every spelling, as serde reads them.
    pub const NAMES: &[&str] = &["always", "interval", "never"];

    /// The YAML spelling, for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            FsyncPolicy::Always => "always",
            FsyncPolicy::Interval => "interval",
            FsyncPolicy::Never => "never",
        }
    }
}

/// Where v2's consumers write.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(rename_all = "lowercase")]
pub enum StorageBackend {
    /// The hour files of `storage.logsDir`, on this machine.
    #[default]
    Local,
    /// Objects in an S3-compatible bucket, named by their topic, partition and offsets.
    S3,
}

impl StorageBackend {
    /// Every spelling, as serde reads them.
    pub const NAMES: &[&str] = &["local", "s3"];

    /// The YAML spelling, for logs.
    pub fn as_str(&self) -> &'static str {
        match self {
            StorageBackend::Local => "local",
            StorageBackend::S3 => "s3",
        }
    }
}

/// `storage.s3`: the bucket, and how big its objects grow. An empty string leaves a setting to
/// the usual environment variables (`AWS_ENDPOINT_URL`, `AWS_REGION`, `AWS_ACCESS_KEY_ID`,
/// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`), then to the AWS defaults.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct S3Config {
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
    pub region: String,
    #[serde(rename = "accessKeyID")]
    pub access_key_id: String,
    pub secret_access_key: String,
    pub max_object_records: usize,
    pub max_object_bytes: usize,
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub max_object_age: Duration,
    #[serde(deserialize_with = "go_duration::deserialize")]
    pub request_timeout: Duration,
}

impl Default for S3Config {
    fn default() -> Self {
        S3Config {
            endpoint: String::new(),
            bucket: String::new(),
            prefix: String::new(),
            region: String::new(),
            access_key_id: String::new(),
            secret_access_key: String::new(),
            max_object_records: 100_000,
            max_object_bytes: 16 << 20,
            max_object_age: Duration::from_secs(5),
            request_timeout: Duration::from_secs(30),
        }
    }
}

/// `storage.logsDir`.
pub const LOGS_DIR: Key = Key::new(
    "storage.logsDir",
    Field::Path(lens!(storage.logs_dir)),
    "Directory of the hourly NDJSON log files, relative to the working directory unless \
     absolute; the store also keeps its lock, checkpoints and idempotency keys there. Not used \
     (not even created) with `backend: s3`.",
)
.flag(Flag::new("logs-dir", "LOGS_DIR", "PATH"));

/// `storage.analyticsDir`.
pub const ANALYTICS_DIR: Key = Key::new(
    "storage.analyticsDir",
    Field::Path(lens!(storage.analytics_dir)),
    "Directory of the hourly analytics summaries (with `backend: s3`, this instance's copy of \
     the bucket's summaries).",
)
.flag(Flag::new("analytics-dir", "ANALYTICS_DIR", "PATH"));

/// `storage.backend`.
pub const BACKEND: Key = Key::new(
    "storage.backend",
    Field::Choice {
        get: |config| config.storage.backend.as_str(),
        values: StorageBackend::NAMES,
    },
    "Where v2's consumers write and the analytics read: `local` (the hour files of \
     `storage.logsDir`) or `s3` (objects in the bucket of `storage.s3`, shared by every \
     instance, whose summaries live in the bucket too). Needs `version` 2.",
);

/// `storage.s3.endpoint`.
pub const S3_ENDPOINT: Key = Key::new(
    "storage.s3.endpoint",
    Field::Text(lens!(storage.s3.endpoint)),
    "The S3 API's URL, e.g. `http://127.0.0.1:3900` (path-style requests; `http://` is \
     allowed). Empty: `AWS_ENDPOINT_URL`, else AWS.",
);

/// `storage.s3.bucket`.
pub const S3_BUCKET: Key = Key::new(
    "storage.s3.bucket",
    Field::Text(lens!(storage.s3.bucket)),
    "The bucket; required with `backend: s3`, and by `log-pipeline ship`.",
);

pub const KEYS: &[Key] = &[
    LOGS_DIR,
    ANALYTICS_DIR,
    Key::new(
        "storage.fsync",
        Field::Choice {
            get: |config| config.storage.fsync.as_str(),
            values: FsyncPolicy::NAMES,
        },
        "When written records are fsynced: `always` (before a batch is acknowledged: it \
         survives a power loss), `interval` (every `storage.fsyncInterval`) or `never` (left \
         to the operating system).",
    ),
    Key::new(
        "storage.fsyncInterval",
        Field::Duration(lens!(storage.fsync_interval)),
        "How often to fsync when `storage.fsync` is `interval`: the most acknowledged data a \
         power loss can take.",
    )
    .range(PERIOD),
    Key::new(
        "storage.maxPendingBytes",
        Field::Size(lens!(storage.max_pending_bytes)),
        "Bytes of encoded batches allowed to wait for the writer; beyond it requests get 503, so \
         that clients back off instead of memory growing.",
    )
    .range(BYTES),
    Key::new(
        "storage.idleFileTimeout",
        Field::Duration(lens!(storage.idle_file_timeout)),
        "An hour file not written for this long is closed (it is reopened if a late record \
         arrives).",
    )
    .range(PERIOD),
    Key::new(
        "storage.writeTimeout",
        Field::Duration(lens!(storage.write_timeout)),
        "How long a batch the writer has started writing may take before its client is told \
         the outcome is unknown (500 `outcome_unknown`; the write still completes or rolls \
         back). A batch still waiting for the writer when its request runs out of \
         `server.requestTimeout` is withdrawn instead (503 `timeout`, nothing stored).",
    )
    .range(PERIOD),
    BACKEND,
    S3_ENDPOINT,
    S3_BUCKET,
    Key::new(
        "storage.s3.prefix",
        Field::Text(lens!(storage.s3.prefix)),
        "Prepended to every object name, e.g. `prod/`.",
    ),
    Key::new(
        "storage.s3.region",
        Field::Text(lens!(storage.s3.region)),
        "The bucket's region. Empty: `AWS_REGION`, else `us-east-1`.",
    ),
    Key::new(
        "storage.s3.accessKeyID",
        Field::Text(lens!(storage.s3.access_key_id)),
        "Empty: `AWS_ACCESS_KEY_ID` (and `AWS_SESSION_TOKEN`).",
    ),
    Key::new(
        "storage.s3.secretAccessKey",
        Field::Text(lens!(storage.s3.secret_access_key)),
        "Empty: `AWS_SECRET_ACCESS_KEY`.",
    ),
    Key::new(
        "storage.s3.maxObjectRecords",
        Field::Size(lens!(storage.s3.max_object_records)),
        "An object's range of offsets is closed at this many records.",
    )
    .range(COUNT),
    Key::new(
        "storage.s3.maxObjectBytes",
        Field::Size(lens!(storage.s3.max_object_bytes)),
        "... or at this many bytes of lines; also the largest object `log-pipeline ship` \
         writes.",
    )
    .range(BYTES),
    Key::new(
        "storage.s3.maxObjectAge",
        Field::Duration(lens!(storage.s3.max_object_age)),
        "... or once its first record has waited this long: the delay before records are in \
         the bucket, and at most 3600 s / maxObjectAge objects per partition and hour when \
         traffic is low.",
    )
    .range(PERIOD),
    Key::new(
        "storage.s3.requestTimeout",
        Field::Duration(lens!(storage.s3.request_timeout)),
        "One request to the bucket; each is tried 3 times, then the flush fails and the range \
         is read from Kafka again after a pause.",
    )
    .range(PERIOD),
];
