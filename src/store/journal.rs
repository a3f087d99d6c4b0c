//! The idempotency journal, `<logsDir>/.idempotency.jsonl`: one JSON [`Update`] per line, the
//! durable form of the [`Ledger`]. Only the store's writer touches it, inside write groups (see
//! the store's docs for how a group makes it durable together with the lines); between groups it
//! is compacted once most of its lines are about expired keys.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use super::disk::sync_dir;
use crate::idempotency::{Ledger, Retention, Update, now_ms};
use crate::layout::KEYS_JOURNAL;

/// A compaction runs once the journal holds more than twice the live entries plus this many
/// lines.
const COMPACT_SLACK: u64 = 10_000;

/// The open journal.
pub(super) struct Journal {
    path: PathBuf,
    file: File,
    /// Its length as far as the writer knows (all writes go through it).
    pub(super) length: u64,
    /// Lines in it.
    lines: u64,
}

impl Journal {
    /// Opens (creating) the journal of `dir` and reads it into a ledger, dropping expired keys.
    /// Run after the store's crash recovery, which has already cut off the updates of a group
    /// that did not complete. A torn last line (a crash while a compaction's file was being
    /// renamed cannot leave one, but a damaged disk can) is cut off too.
    pub(super) fn open(dir: &Path, limits: Retention) -> io::Result<(Journal, Ledger)> {
        let path = dir.join(KEYS_JOURNAL);
        let file = OpenOptions::new()
            .read(true)
            .append(true)
            .create(true)
            .open(&path)?;
        let mut ledger = Ledger::new(limits);
        let mut reader = BufReader::new(&file);
        let (mut good, mut lines) = (0u64, 0u64);
        let mut line = Vec::new();
        loop {
            line.clear();
            let read = reader.read_until(b'\n', &mut line)?;
            if read == 0 {
                break;
            }
            let Some(update) = line
                .strip_suffix(b"\n")
                .and_then(|text| serde_json::from_slice::<Update>(text).ok())
            else {
                tracing::warn!(file = %path.display(), at = good, "idempotency journal ends with a damaged line; cutting it off");
                break;
            };
            ledger.apply(&update);
            good += read as u64;
            lines += 1;
        }
        drop(reader);
        if file.metadata()?.len() > good {
            file.set_len(good)?;
            file.sync_all()?;
        }
        ledger.expire(now_ms());
        Ok((
            Journal {
                path,
                file,
                length: good,
                lines,
            },
            ledger,
        ))
    }

    /// The journal's name inside the logs directory (for the store's pending record).
    pub(super) fn name() -> &'static str {
        KEYS_JOURNAL
    }

    /// Appends `updates`, one line each, without syncing. On failure `length` counts what
    /// reached the file, so that a rollback knows where to cut.
    pub(super) fn append(&mut self, updates: &[&Update]) -> io::Result<()> {
        let mut text = Vec::with_capacity(updates.len() * 128);
        for update in updates {
            serde_json::to_writer(&mut text, update).map_err(io::Error::other)?;
            text.push(b'\n');
        }
        let mut rest = &text[..];
        while !rest.is_empty() {
            match self.file.write(rest) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.length += n as u64;
                    rest = &rest[n..];
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.lines += updates.len() as u64;
        Ok(())
    }

    /// fsyncs what was appended.
    pub(super) fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Cuts the journal back to `length` (a group failed) on a fresh descriptor, and reopens it:
    /// after a failed write or fsync, the old descriptor is never trusted again.
    pub(super) fn roll_back(&mut self, length: u64, lines: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(&self.path)?;
        if file.metadata()?.len() > length {
            file.set_len(length)?;
        }
        file.sync_all()?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        self.length = length;
        self.lines = lines;
        Ok(())
    }

    /// Lines in the journal now (with `length`, what a rollback goes back to).
    pub(super) fn lines(&self) -> u64 {
        self.lines
    }

    /// Whether the journal is mostly about keys no longer held.
    pub(super) fn wants_compaction(&self, live: usize) -> bool {
        self.lines > 2 * live as u64 + COMPACT_SLACK
    }

    /// Rewrites the journal with `updates` (one per live entry of the ledger): a new file,
    /// fsynced, renamed over the old one, the directory fsynced. A failure leaves the old journal
    /// in place.
    pub(super) fn compact(&mut self, updates: &[Update]) -> io::Result<()> {
        let temp = self.path.with_extension("jsonl.tmp");
        let mut text = Vec::new();
        let mut lines = 0;
        for update in updates {
            serde_json::to_writer(&mut text, update).map_err(io::Error::other)?;
            text.push(b'\n');
            lines += 1;
        }
        let mut file = File::create(&temp)?;
        file.write_all(&text)?;
        file.sync_all()?;
        fs::rename(&temp, &self.path)?;
        sync_dir(self.path.parent().expect("the journal is in a directory"))?;
        let before = self.lines;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&self.path)?;
        self.length = text.len() as u64;
        self.lines = lines;
        tracing::info!(before, after = lines, "idempotency journal compacted");
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::idempotency::{Fingerprint, Key, Written};

    fn limits() -> Retention {
        Retention {
            retention: Duration::from_secs(3600),
            max_keys: 100,
        }
    }

    fn update(key: &str, at_ms: u64) -> Update {
        Update::whole(
            Key::parse(key.as_bytes()).unwrap(),
            Fingerprint(7),
            2,
            at_ms,
        )
    }

    #[test]
    fn updates_are_read_back_and_a_damaged_tail_is_cut_off() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let (mut journal, ledger) = Journal::open(dir.path(), limits()).unwrap();
        assert!(ledger.is_empty());
        let (a, b) = (update("a", now), update("b", now));
        journal.append(&[&a, &b]).unwrap();
        journal.sync().unwrap();
        let good = journal.length;
        drop(journal);
        let path = dir.path().join(KEYS_JOURNAL);
        let mut file = OpenOptions::new().append(true).open(&path).unwrap();
        file.write_all(br#"{"k":"00"#).unwrap();
        drop(file);

        let (journal, ledger) = Journal::open(dir.path(), limits()).unwrap();
        assert_eq!(ledger.len(), 2);
        assert_eq!(journal.length, good);
        assert_eq!(fs::metadata(&path).unwrap().len(), good);
        assert_eq!(journal.lines(), 2);
    }

    #[test]
    fn expired_keys_are_dropped_and_compaction_keeps_the_live_ones() {
        let dir = tempfile::tempdir().unwrap();
        let now = now_ms();
        let (mut journal, _) = Journal::open(dir.path(), limits()).unwrap();
        let old = update("old", now - 2 * 3_600_000);
        let mut part = update("live", now);
        part.written = Written::all(1);
        let mut rest = part.clone();
        rest.written = Written::all(2);
        journal.append(&[&old, &part, &rest]).unwrap();
        drop(journal);

        let (mut journal, ledger) = Journal::open(dir.path(), limits()).unwrap();
        assert_eq!(ledger.len(), 1, "the expired key is gone");
        assert!(
            ledger
                .get(&Key::parse(b"live").unwrap())
                .unwrap()
                .complete()
        );
        journal
            .compact(&ledger.updates().collect::<Vec<_>>())
            .unwrap();
        assert_eq!(journal.lines(), 1);
        let text = fs::read_to_string(dir.path().join(KEYS_JOURNAL)).unwrap();
        assert_eq!(text.lines().count(), 1);
        assert_eq!(journal.length, text.len() as u64);
        let (_, reread) = Journal::open(dir.path(), limits()).unwrap();
        assert_eq!(reread.len(), 1);
    }

    #[test]
    fn a_rollback_cuts_back_and_the_journal_goes_on() {
        let dir = tempfile::tempdir().unwrap();
        let (mut journal, _) = Journal::open(dir.path(), limits()).unwrap();
        let now = now_ms();
        journal.append(&[&update("a", now)]).unwrap();
        let (length, lines) = (journal.length, journal.lines());
        journal.append(&[&update("b", now)]).unwrap();
        journal.roll_back(length, lines).unwrap();
        journal.append(&[&update("c", now)]).unwrap();
        drop(journal);
        let (_, ledger) = Journal::open(dir.path(), limits()).unwrap();
        assert!(ledger.get(&Key::parse(b"a").unwrap()).is_some());
        assert!(ledger.get(&Key::parse(b"b").unwrap()).is_none());
        assert!(ledger.get(&Key::parse(b"c").unwrap()).is_some());
    }
}
