//! What the store's unit tests share: options, batches, reading the files back, keyed batches.

use std::fs;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};

use super::StoreOptions;
use crate::config::FsyncPolicy;
use crate::idempotency::{
    Claim, ClaimGuard, Fingerprint, Key, KeyIndex, Retention, Update, now_ms,
};
use crate::record::EncodedBatch;

pub(super) fn options(dir: &Path) -> StoreOptions {
    StoreOptions {
        logs_dir: dir.to_owned(),
        fsync: FsyncPolicy::Always,
        fsync_interval: Duration::from_secs(1),
        max_pending_bytes: 1 << 20,
        idle_file_timeout: Duration::from_secs(60),
        write_timeout: Duration::from_secs(30),
        keys: Retention {
            retention: Duration::from_secs(3600),
            max_keys: 1000,
        },
    }
}

pub(super) fn batch(records: &[(&str, &str)]) -> EncodedBatch {
    let mut batch = EncodedBatch::default();
    for (ts, path) in records {
        let ts: DateTime<Utc> = DateTime::parse_from_rfc3339(ts).unwrap().into();
        batch.push(&ts, path, "test-agent");
    }
    batch
}

pub(super) fn read(dir: &Path, name: &str) -> String {
    fs::read_to_string(dir.join(name)).unwrap_or_default()
}

pub(super) fn paths(text: &str) -> Vec<String> {
    text.lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["path"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect()
}

pub(super) fn keyed(key: &str, batch: &EncodedBatch) -> (Update, Key) {
    let key = Key::parse(key.as_bytes()).unwrap();
    let update = Update::whole(
        key,
        Fingerprint::of(batch),
        batch.records() as u32,
        now_ms(),
    );
    (update, key)
}

pub(super) fn claim(index: &Arc<KeyIndex>, key: Key) -> ClaimGuard {
    match index.claim(key, Fingerprint(0), now_ms()) {
        Claim::Fresh(guard) => guard,
        other => panic!("{other:?}"),
    }
}
