//! `sites`: where the sites file is, and the limits each site gets unless the file says
//! otherwise. The sites themselves (ids, names, keys) are in the file, read by
//! [`crate::config::sites`], so that adding or revoking a customer is a reload, not a restart.

use std::path::PathBuf;

use serde::Deserialize;

use crate::config::key::{Field, Flag, Key, lens};
use crate::config::ranges::{Bounds, FRACTION};

/// `sites`: each field's YAML key is its camelCase name; its meaning, range, flag and
/// environment variable are its row in [`KEYS`], its default the `Default` impl below.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[cfg_attr(test, derive(serde::Serialize))]
#[serde(deny_unknown_fields, default, rename_all = "camelCase")]
pub struct SitesConfig {
    /// Empty: no sites, the service stores and answers as a single-tenant one.
    pub file: PathBuf,
    pub records_per_second: u32,
    pub burst: u32,
    pub inflight_share: f64,
}

impl Default for SitesConfig {
    fn default() -> Self {
        SitesConfig {
            file: PathBuf::new(),
            records_per_second: 20_000,
            burst: 200_000,
            inflight_share: 0.5,
        }
    }
}

impl SitesConfig {
    /// Whether a sites file is configured.
    pub fn enabled(&self) -> bool {
        !self.file.as_os_str().is_empty()
    }
}

/// `sites.file`.
pub const FILE: Key = Key::new(
    "sites.file",
    Field::Path(lens!(sites.file)),
    "The sites file (YAML): each customer site's id, name, ingest keys, read keys and limits \
     (see docs/sites.md). Empty: no sites, every record is stored and read as one stream, as \
     the original service did. Read at start-up and again on `SIGHUP`.",
)
.flag(Flag::new("sites-file", "LOG_PIPELINE_SITES_FILE", "PATH"));

/// `sites.recordsPerSecond`.
pub const RECORDS_PER_SECOND: Key = Key::new(
    "sites.recordsPerSecond",
    Field::Number32(lens!(sites.records_per_second)),
    "Records per second a site may send, sustained, unless its entry in the sites file sets \
     `limits.recordsPerSecond`; a batch beyond it gets 429 with `Retry-After`.",
)
.range(Bounds::number(
    1,
    100_000_000,
    "a rate of records held in a token bucket",
));

/// `sites.burst`.
pub const BURST: Key = Key::new(
    "sites.burst",
    Field::Number32(lens!(sites.burst)),
    "Records a site may send at once above its rate (the token bucket's size), unless its \
     entry sets `limits.burst`. A batch larger than the burst can never pass: it gets 413.",
)
.range(Bounds::number(
    1,
    100_000_000,
    "a count of records held in a token bucket",
));

/// `sites.inflightShare`.
pub const INFLIGHT_SHARE: Key = Key::new(
    "sites.inflightShare",
    Field::Fraction(lens!(sites.inflight_share)),
    "The share of `server.maxInflightBytes` one site's bodies may hold at once, unless its \
     entry sets `limits.inflightShare`: with 0.5, a flooding site leaves half for the others.",
)
.range(FRACTION);

pub const KEYS: &[Key] = &[FILE, RECORDS_PER_SECOND, BURST, INFLIGHT_SHARE];
