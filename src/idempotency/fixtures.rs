//! What the idempotency unit tests share.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::{Ledger, Retention, SharedLedger};
use crate::record::EncodedBatch;

pub(super) const HOUR_MS: u64 = 3_600_000;

/// A batch of records at 14:00 with these paths.
pub(super) fn batch(paths: &[&str]) -> EncodedBatch {
    let mut batch = EncodedBatch::default();
    let ts: DateTime<Utc> = "2025-11-22T14:00:00Z".parse().unwrap();
    for path in paths {
        batch.push(&ts, path, "ua");
    }
    batch
}

/// An empty ledger keeping keys 24 h, at most `max_keys`.
pub(super) fn ledger(max_keys: usize) -> SharedLedger {
    SharedLedger::new(Ledger::new(Retention {
        retention: Duration::from_secs(24 * 3600),
        max_keys,
    }))
}
