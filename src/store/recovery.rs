//! What [`Store::open`](super::Store::open) does before the writer starts, in this order (each
//! step relies on the one before): create and lock the logs directory, roll back a checkpointed
//! group a crash interrupted (its pending record), cut an unterminated last line from every hour
//! file, and read the idempotency journal back into the ledger.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::path::Path;

use super::checkpoint::{read_checkpoint_state, write_checkpoint_state};
use super::disk::complete_prefix;
use super::journal::Journal;
use super::{Checkpoint, StoreError};
use crate::idempotency::{Ledger, Retention};
use crate::layout::{self, LOCK_FILE};

/// What recovery hands to the writer.
pub(super) struct Recovered {
    /// The directory lock, held for the writer's lifetime.
    pub(super) lock: File,
    /// The positions of the last committed checkpointed group.
    pub(super) checkpoint: Checkpoint,
    pub(super) journal: Journal,
    /// The keys the journal holds, expired ones dropped.
    pub(super) ledger: Ledger,
}

/// Opens the logs directory `dir` (creating it if needed) for one writer: locks it, repairs it
/// and reads its idempotency journal, keeping keys as `keys` says.
pub(super) fn recover(dir: &Path, keys: Retention) -> Result<Recovered, StoreError> {
    let open_error = |reason: String| StoreError::Open {
        dir: dir.to_owned(),
        reason,
    };
    fs::create_dir_all(dir).map_err(|e| open_error(e.to_string()))?;
    let lock = lock_dir(dir)?;
    let checkpoint =
        recover_checkpoint(dir).map_err(|e| open_error(format!("checkpoint recovery: {e}")))?;
    repair_torn_lines(dir).map_err(|e| open_error(format!("torn-line repair: {e}")))?;
    let (journal, ledger) =
        Journal::open(dir, keys).map_err(|e| open_error(format!("idempotency journal: {e}")))?;
    Ok(Recovered {
        lock,
        checkpoint,
        journal,
        ledger,
    })
}

/// Takes the exclusive lock on the logs directory and records our PID in the lock file.
fn lock_dir(dir: &Path) -> Result<File, StoreError> {
    let path = dir.join(LOCK_FILE);
    let open_error = |e: io::Error| StoreError::Open {
        dir: dir.to_owned(),
        reason: format!("{}: {e}", path.display()),
    };
    let mut file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(open_error)?;
    match file.try_lock() {
        Ok(()) => {}
        Err(fs::TryLockError::WouldBlock) => {
            let mut holder = String::new();
            let _ = file.read_to_string(&mut holder);
            let holder = match holder.trim() {
                "" => format!("lock file {}", path.display()),
                pid => format!("pid {pid}, lock file {}", path.display()),
            };
            return Err(StoreError::Locked {
                dir: dir.to_owned(),
                holder,
            });
        }
        Err(fs::TryLockError::Error(e)) => return Err(open_error(e)),
    }
    file.set_len(0).map_err(open_error)?;
    file.write_all(format!("{}\n", std::process::id()).as_bytes())
        .map_err(open_error)?;
    Ok(file)
}

/// Rolls back a checkpointed group interrupted by a crash and returns the committed positions.
fn recover_checkpoint(dir: &Path) -> io::Result<Checkpoint> {
    let mut state = read_checkpoint_state(dir)?;
    if let Some(pending) = state.pending.take() {
        for (name, length) in &pending {
            let path = dir.join(name);
            match OpenOptions::new().write(true).open(&path) {
                Ok(file) => {
                    if file.metadata()?.len() > *length {
                        tracing::warn!(file = %path.display(), length, "rolling back lines written after the last checkpoint");
                        file.set_len(*length)?;
                        file.sync_all()?;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => return Err(e),
            }
        }
        write_checkpoint_state(dir, &state)?;
    }
    Ok(state.positions)
}

/// Truncates an unterminated last line from every hour file, the root's and every site's (left
/// by a crash mid-write).
fn repair_torn_lines(dir: &Path) -> io::Result<()> {
    for (_, path) in layout::every_hour_file(dir)? {
        let mut file = OpenOptions::new().read(true).write(true).open(&path)?;
        let length = file.metadata()?.len();
        let keep = complete_prefix(&mut file, length)?;
        if keep < length {
            tracing::warn!(
                file = %path.display(),
                removed_bytes = length - keep,
                "truncating an unterminated last line left by an interrupted write"
            );
            file.set_len(keep)?;
            file.sync_all()?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::fs::OpenOptions;
    use std::io::Write;

    use super::*;
    use crate::idempotency::Fingerprint;
    use crate::idempotency::KeyIndex;
    use crate::layout::KEYS_JOURNAL;
    use crate::metrics::Metrics;
    use crate::record::EncodedBatch;
    use crate::site::SiteId;
    use crate::store::Store;
    use crate::store::checkpoint::{CheckpointState, read_checkpoint_state};
    use crate::store::fixtures::{batch, claim, keyed, options, paths, read};
    use std::time::Duration;

    #[tokio::test]
    async fn torn_last_line_is_truncated_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let complete = String::from_utf8(
            batch(&[("2025-11-22T14:00:00Z", "/ok")]).chunks[0]
                .lines
                .clone(),
        )
        .unwrap();
        fs::create_dir_all(dir.path().join("2025-11-22")).unwrap();
        fs::write(
            dir.path().join("2025-11-22/14.log.json"),
            format!("{complete}{{\"timestamp\":\"2025-11"),
        )
        .unwrap();
        fs::write(
            dir.path().join("2025-11-22/15.log.json"),
            "no newline at all",
        )
        .unwrap();
        fs::write(dir.path().join("2025-11-22/16.log.json"), &complete).unwrap();
        let store = Store::open(options(dir.path()), Metrics::new()).unwrap();
        assert_eq!(read(dir.path(), "2025-11-22/14.log.json"), complete);
        assert_eq!(read(dir.path(), "2025-11-22/15.log.json"), "");
        assert_eq!(read(dir.path(), "2025-11-22/16.log.json"), complete);
        store
            .append(batch(&[("2025-11-22T14:00:00Z", "/next")]))
            .await
            .unwrap();
        assert_eq!(
            paths(&read(dir.path(), "2025-11-22/14.log.json")),
            ["/ok", "/next"]
        );
        store.shutdown().await;
    }

    #[tokio::test]
    async fn second_open_of_the_same_directory_is_refused_until_shutdown() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(options(dir.path()), Metrics::new()).unwrap();
        let Err(err) = Store::open(options(dir.path()), Metrics::new()) else {
            panic!("second open succeeded")
        };
        let message = err.to_string();
        assert!(matches!(err, StoreError::Locked { .. }));
        assert!(
            message.contains(&format!("pid {}", std::process::id())),
            "{message}"
        );
        store.shutdown().await;
        let again = Store::open(options(dir.path()), Metrics::new()).unwrap();
        again.shutdown().await;
    }

    #[tokio::test]
    async fn crash_between_data_and_checkpoint_rolls_the_data_back() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(options(dir.path()), Metrics::new()).unwrap();
        store
            .append_with_checkpoint(
                batch(&[("2025-11-22T14:00:00Z", "/kept")]),
                Checkpoint::from([("logs/0".to_owned(), 1)]),
                Vec::new(),
            )
            .await
            .unwrap();
        store.shutdown().await;
        let hour14 = read(dir.path(), "2025-11-22/14.log.json");
        // Simulate a crash after the data of the next group was written but before its
        // checkpoint: the pending record names the lengths before the group.
        let state = CheckpointState {
            positions: Checkpoint::from([("logs/0".to_owned(), 1)]),
            pending: Some(BTreeMap::from([
                ("2025-11-22/14.log.json".to_owned(), hour14.len() as u64),
                ("2025-11-22/15.log.json".to_owned(), 0),
            ])),
        };
        write_checkpoint_state(dir.path(), &state).unwrap();
        let unacknowledged = batch(&[
            ("2025-11-22T14:00:00Z", "/dup"),
            ("2025-11-22T15:00:00Z", "/dup"),
        ]);
        for chunk in &unacknowledged.chunks {
            let mut file = OpenOptions::new()
                .append(true)
                .create(true)
                .open(dir.path().join(layout::hour_file(chunk.hour)))
                .unwrap();
            file.write_all(&chunk.lines).unwrap();
        }
        let reopened = Store::open(options(dir.path()), Metrics::new()).unwrap();
        assert_eq!(
            reopened.checkpoint(),
            Checkpoint::from([("logs/0".to_owned(), 1)])
        );
        assert_eq!(
            paths(&read(dir.path(), "2025-11-22/14.log.json")),
            ["/kept"]
        );
        assert_eq!(read(dir.path(), "2025-11-22/15.log.json"), "");
        reopened.shutdown().await;
        assert!(read_checkpoint_state(dir.path()).unwrap().pending.is_none());
    }

    #[tokio::test]
    async fn a_crash_inside_a_keyed_group_loses_the_lines_and_the_key_together() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(options(dir.path()), Metrics::new()).unwrap();
        let index = KeyIndex::new(store.ledger().clone());
        let kept = batch(&[("2025-11-22T14:00:00Z", "/kept")]);
        let (update, key) = keyed("kept", &kept);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        store
            .append_keyed_by(kept.clone(), update, claim(&index, key), deadline)
            .await
            .unwrap();
        store.shutdown().await;
        let hour14 = read(dir.path(), "2025-11-22/14.log.json").len() as u64;
        let journal = read(dir.path(), KEYS_JOURNAL).len() as u64;
        // A crash after the next keyed group wrote its lines and its key, before it completed:
        // its pending record names the lengths before it.
        let lost = batch(&[("2025-11-22T14:00:00Z", "/lost")]);
        let (lost_update, lost_key) = keyed("lost", &lost);
        let state = CheckpointState {
            positions: Checkpoint::new(),
            pending: Some(BTreeMap::from([
                ("2025-11-22/14.log.json".to_owned(), hour14),
                (KEYS_JOURNAL.to_owned(), journal),
            ])),
        };
        write_checkpoint_state(dir.path(), &state).unwrap();
        let append = |name: &str, bytes: &[u8]| {
            let mut file = OpenOptions::new()
                .append(true)
                .open(dir.path().join(name))
                .unwrap();
            file.write_all(bytes).unwrap();
        };
        append("2025-11-22/14.log.json", &lost.chunks[0].lines);
        let mut line = serde_json::to_vec(&lost_update).unwrap();
        line.push(b'\n');
        append(KEYS_JOURNAL, &line);

        let reopened = Store::open(options(dir.path()), Metrics::new()).unwrap();
        assert_eq!(
            paths(&read(dir.path(), "2025-11-22/14.log.json")),
            ["/kept"]
        );
        let ledger = reopened.ledger();
        assert!(ledger.holds_record(key, Fingerprint::of(&kept), 0));
        assert!(!ledger.holds_record(lost_key, Fingerprint::of(&lost), 0));
        assert_eq!(ledger.len(), 1, "only the kept key is held");
        reopened.shutdown().await;
    }

    /// `records` of `site`.
    fn sited(site: &str, records: &[(&str, &str)]) -> EncodedBatch {
        let mut sited = batch(records);
        sited.assign_site(Some(&SiteId::parse(site).unwrap()));
        sited
    }

    #[tokio::test]
    async fn a_group_spanning_sites_is_stored_and_rolled_back_in_every_sites_files() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(options(dir.path()), Metrics::new()).unwrap();
        // One write of two sites' records and the root's, as a consumer's flush is.
        let mut flush = sited("acme", &[("2025-11-22T14:00:00Z", "/acme")]);
        flush.extend(sited("bolt", &[("2025-11-22T14:00:00Z", "/bolt")]));
        flush.extend(batch(&[("2025-11-22T14:00:00Z", "/root")]));
        store
            .append_with_checkpoint(flush, Checkpoint::from([("logs/0".to_owned(), 3)]), vec![])
            .await
            .unwrap();
        store.shutdown().await;
        const ACME: &str = "sites/acme/2025-11-22/14.log.json";
        const BOLT: &str = "sites/bolt/2025-11-22/14.log.json";
        assert_eq!(paths(&read(dir.path(), ACME)), ["/acme"]);
        assert_eq!(paths(&read(dir.path(), BOLT)), ["/bolt"]);
        assert_eq!(
            paths(&read(dir.path(), "2025-11-22/14.log.json")),
            ["/root"]
        );

        // A crash after the next group wrote to both sites' files (one line torn), before its
        // checkpoint: its pending record names the sites' files by their paths.
        let (acme, bolt) = (read(dir.path(), ACME).len(), read(dir.path(), BOLT).len());
        let state = CheckpointState {
            positions: Checkpoint::from([("logs/0".to_owned(), 3)]),
            pending: Some(BTreeMap::from([
                (ACME.to_owned(), acme as u64),
                (BOLT.to_owned(), bolt as u64),
            ])),
        };
        write_checkpoint_state(dir.path(), &state).unwrap();
        let append = |name: &str, bytes: &[u8]| {
            let mut file = OpenOptions::new()
                .append(true)
                .open(dir.path().join(name))
                .unwrap();
            file.write_all(bytes).unwrap();
        };
        let dup = batch(&[("2025-11-22T14:00:00Z", "/dup")]);
        append(ACME, &dup.chunks[0].lines);
        append(BOLT, &dup.chunks[0].lines[..10]);
        let reopened = Store::open(options(dir.path()), Metrics::new()).unwrap();
        assert_eq!(paths(&read(dir.path(), ACME)), ["/acme"]);
        assert_eq!(paths(&read(dir.path(), BOLT)), ["/bolt"]);
        reopened.shutdown().await;
    }

    #[tokio::test]
    async fn a_torn_line_in_a_sites_file_is_truncated_at_open() {
        let dir = tempfile::tempdir().unwrap();
        let store = Store::open(options(dir.path()), Metrics::new()).unwrap();
        store
            .append(sited("acme", &[("2025-11-22T14:00:00Z", "/ok")]))
            .await
            .unwrap();
        store.shutdown().await;
        const ACME: &str = "sites/acme/2025-11-22/14.log.json";
        let complete = read(dir.path(), ACME);
        fs::write(
            dir.path().join(ACME),
            format!("{complete}{{\"timestamp\":\"2025-11"),
        )
        .unwrap();
        let reopened = Store::open(options(dir.path()), Metrics::new()).unwrap();
        assert_eq!(read(dir.path(), ACME), complete);
        reopened.shutdown().await;
    }
}
