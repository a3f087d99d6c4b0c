//! The hour files the writer has open, and those a failure left damaged. A file is opened when a
//! group needs it (created, with its day directory, if new); at most [`MAX_OPEN_FILES`] stay
//! open, the least recently written closed first but never one the group in progress needs;
//! files are fsynced (several at a time when a group touches many) with the directories just
//! created, and closed once idle. After a failed group its files are cut back to their lengths
//! before it; a file whose fsync or rollback failed is damaged until [`HourFiles::repair`] has
//! made it whole again, and a failed fsync makes the store refuse writes at once.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use super::MAX_OPEN_FILES;
use super::disk::{repair_file, sync_dir, truncate_and_sync};
use crate::layout;
use crate::metrics::Metrics;
use crate::record::SiteHour;

/// A group's files are fsynced in parallel from this many on...
const PARALLEL_SYNC_FROM: usize = 4;
/// ... by at most this many threads.
const SYNC_THREADS: usize = 8;

/// An open hour file owned by the writer.
pub(super) struct HourFile {
    pub(super) file: File,
    /// Length of the file as far as the writer knows (all writes go through it).
    pub(super) length: u64,
    pub(super) last_write: Instant,
    /// Written since its last fsync.
    pub(super) dirty: bool,
    /// Parent directories still to fsync (it, or its day, was just created); each leaves the
    /// list only once its fsync succeeded.
    new_dirs: Vec<PathBuf>,
}

/// Creates the missing directories from `top` (which exists) down to `dir`; returns, top down,
/// each directory that got a new entry (to be synced, so that the new directory survives a crash).
fn create_dirs(top: &Path, dir: &Path) -> io::Result<Vec<PathBuf>> {
    let mut new_dirs = Vec::new();
    let below = dir
        .strip_prefix(top)
        .expect("a site's root is below the logs directory");
    let mut parent = top.to_path_buf();
    for part in below.components() {
        let child = parent.join(part);
        match fs::create_dir(&child) {
            Ok(()) => new_dirs.push(parent.clone()),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
            Err(e) => return Err(e),
        }
        parent = child;
    }
    Ok(new_dirs)
}

/// A file a group is writing, for rollback.
pub(super) struct Touched {
    pub(super) file: SiteHour,
    pub(super) previous_length: u64,
    /// The group wrote to it (or tried to).
    pub(super) written: bool,
}

/// The writer's hour files.
pub(super) struct HourFiles {
    dir: PathBuf,
    by_hour: HashMap<SiteHour, HourFile>,
    /// Hour files a failure left in a state that is not known to be clean (a rollback or an
    /// fsync failed), with the length each must go back to when that is known. Nothing is
    /// appended anywhere until [`HourFiles::repair`] has made every one of them end with a
    /// complete line again on a fresh descriptor.
    damaged: BTreeMap<SiteHour, Option<u64>>,
    /// The store's readiness: cleared here when an fsync fails; set again only by the writer,
    /// once everything is whole.
    healthy: Arc<AtomicBool>,
    metrics: Metrics,
}

impl HourFiles {
    pub(super) fn new(dir: PathBuf, healthy: Arc<AtomicBool>, metrics: Metrics) -> HourFiles {
        HourFiles {
            dir,
            by_hour: HashMap::new(),
            damaged: BTreeMap::new(),
            healthy,
            metrics,
        }
    }

    /// Whether no file is damaged.
    pub(super) fn whole(&self) -> bool {
        self.damaged.is_empty()
    }

    /// The open hour file of `hour` (a site's hour), opening or creating it (and its day
    /// directory, and the site's root) if needed. Beyond [`MAX_OPEN_FILES`] the least recently
    /// written file that `group` does not need is closed first; the group's own files are never
    /// closed before its outcome is known.
    pub(super) fn open(
        &mut self,
        hour: &SiteHour,
        group: &HashSet<SiteHour>,
    ) -> io::Result<&mut HourFile> {
        if !self.by_hour.contains_key(hour) {
            if self.by_hour.len() >= MAX_OPEN_FILES
                && let Some(idle) = self.least_recent(|h| !group.contains(h))
            {
                self.close(&idle);
            }
            let opened = self.open_file(hour)?;
            self.by_hour.insert(hour.clone(), opened);
            self.metrics.store_open_files.set(self.by_hour.len() as i64);
        }
        Ok(self.by_hour.get_mut(hour).expect("inserted above"))
    }

    /// The file of `hour`, which [`HourFiles::open`] opened for the group in progress.
    pub(super) fn opened(&mut self, hour: &SiteHour) -> &mut HourFile {
        self.by_hour.get_mut(hour).expect("opened for the group")
    }

    fn open_file(&self, hour: &SiteHour) -> io::Result<HourFile> {
        let path = self.dir.join(layout::site_hour_file(hour));
        let mut new_dirs = Vec::new();
        let file = match OpenOptions::new().append(true).open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                let root = layout::site_dir(&self.dir, hour.site.as_ref());
                if hour.site.is_some() {
                    // A site's first file: its root (and `sites/`) are new too. Each directory
                    // created is synced with its parent's entry for it, from the top down.
                    new_dirs.extend(create_dirs(&self.dir, &root)?);
                }
                let day = root.join(layout::day_dir(hour.hour));
                match fs::create_dir(&day) {
                    Ok(()) => new_dirs.push(root),
                    Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
                    Err(e) => return Err(e),
                }
                new_dirs.push(day);
                OpenOptions::new().append(true).create(true).open(&path)?
            }
            Err(e) => return Err(e),
        };
        let length = file.metadata()?.len();
        Ok(HourFile {
            file,
            length,
            last_write: Instant::now(),
            dirty: false,
            new_dirs,
        })
    }

    /// fsyncs the data of `hours` that are dirty, several at a time when there are many (a batch
    /// spanning many hours would otherwise hold the writer for one fsync per file in a row), then
    /// their new directories. A file whose fsync fails is dropped (never fsynced again on the
    /// same descriptor) and the error returned.
    pub(super) fn sync(&mut self, hours: &[SiteHour]) -> io::Result<()> {
        let dirty: Vec<(&SiteHour, &File)> = hours
            .iter()
            .filter_map(|hour| Some((hour, self.by_hour.get(hour)?)))
            .filter(|(_, open)| open.dirty)
            .map(|(hour, open)| (hour, &open.file))
            .collect();
        let results: Vec<(&SiteHour, io::Result<()>)> = if dirty.len() < PARALLEL_SYNC_FROM {
            dirty
                .iter()
                .map(|(hour, file)| (*hour, file.sync_data()))
                .collect()
        } else {
            let per_thread = dirty.len().div_ceil(SYNC_THREADS);
            std::thread::scope(|scope| {
                let workers: Vec<_> = dirty
                    .chunks(per_thread)
                    .map(|files| {
                        scope.spawn(move || {
                            files
                                .iter()
                                .map(|(hour, file)| (*hour, file.sync_data()))
                                .collect::<Vec<_>>()
                        })
                    })
                    .collect();
                workers
                    .into_iter()
                    .flat_map(|worker| worker.join().expect("an fsync thread does not panic"))
                    .collect()
            })
        };
        let mut failure = None;
        for (hour, result) in results {
            match result {
                Ok(()) => {
                    self.metrics.store_fsyncs.inc();
                    if let Some(open) = self.by_hour.get_mut(hour) {
                        open.dirty = false;
                    }
                }
                Err(e) => {
                    self.fsync_failed(hour, &e);
                    failure.get_or_insert(e);
                }
            }
        }
        if let Some(e) = failure {
            return Err(e);
        }
        for hour in hours {
            self.sync_new_dirs(hour)?;
        }
        Ok(())
    }

    /// fsyncs the directories created for `hour`'s file; each leaves the list only once synced.
    fn sync_new_dirs(&mut self, hour: &SiteHour) -> io::Result<()> {
        let Some(open) = self.by_hour.get_mut(hour) else {
            return Ok(());
        };
        while let Some(dir) = open.new_dirs.last() {
            sync_dir(dir)?;
            open.new_dirs.pop();
        }
        Ok(())
    }

    /// A failed fsync: the data written since the last good one may be gone, and the descriptor
    /// must not be fsynced again (Linux reports the error once; a retry "succeeds"). The file is
    /// dropped and marked damaged, which makes the store refuse writes until it is repaired.
    fn fsync_failed(&mut self, hour: &SiteHour, error: &io::Error) {
        tracing::error!(file = %layout::site_hour_file(hour), %error, "fsync failed; data written since the last fsync may be lost");
        self.metrics.store_fsync_errors.inc();
        self.by_hour.remove(hour);
        self.metrics.store_open_files.set(self.by_hour.len() as i64);
        self.damaged.entry(hour.clone()).or_insert(None);
        self.healthy.store(false, Ordering::Relaxed);
    }

    /// fsyncs every dirty file (the `interval` policy, idle close, shutdown). Failures are
    /// handled by [`HourFiles::fsync_failed`].
    pub(super) fn sync_all_dirty(&mut self) {
        let hours: Vec<SiteHour> = self.by_hour.keys().cloned().collect();
        if let Err(e) = self.sync(&hours) {
            tracing::error!(error = %e, "periodic fsync failed");
        }
    }

    /// Closes the files not written for `idle` (synced first).
    pub(super) fn close_idle(&mut self, idle: Duration) {
        let idle: Vec<SiteHour> = self
            .by_hour
            .iter()
            .filter(|(_, f)| f.last_write.elapsed() >= idle)
            .map(|(hour, _)| hour.clone())
            .collect();
        for hour in idle {
            self.close(&hour);
        }
    }

    /// The least recently written open file that `eligible` allows.
    fn least_recent(&self, eligible: impl Fn(&SiteHour) -> bool) -> Option<SiteHour> {
        self.by_hour
            .iter()
            .filter(|(hour, _)| eligible(hour))
            .min_by_key(|(_, f)| f.last_write)
            .map(|(h, _)| h.clone())
    }

    /// Closes the least recently written files beyond [`MAX_OPEN_FILES`].
    pub(super) fn enforce_cap(&mut self) {
        while self.by_hour.len() > MAX_OPEN_FILES {
            match self.least_recent(|_| true) {
                Some(hour) => self.close(&hour),
                None => break,
            }
        }
    }

    /// Syncs (if dirty) and closes a file.
    pub(super) fn close(&mut self, hour: &SiteHour) {
        if let Err(e) = self.sync(std::slice::from_ref(hour)) {
            tracing::error!(file = %layout::site_hour_file(hour), error = %e, "fsync before close failed");
        }
        self.by_hour.remove(hour);
        self.metrics.store_open_files.set(self.by_hour.len() as i64);
    }

    /// Rolls every file `touched` wrote to back to its length before the group, each through a
    /// fresh descriptor (after a failed fsync, the old one's next fsync could report success for
    /// data the kernel dropped), and drops the old descriptors. Returns what failed; those files
    /// are damaged until [`HourFiles::repair`] fixes them.
    pub(super) fn roll_back(&mut self, touched: &[Touched]) -> Vec<String> {
        let mut failures = Vec::new();
        for t in touched.iter().filter(|t| t.written) {
            // Closed even if an fsync failure dropped it already: never reused after a failure.
            self.by_hour.remove(&t.file);
            let path = self.dir.join(layout::site_hour_file(&t.file));
            match truncate_and_sync(&path, t.previous_length) {
                Ok(()) => {
                    // Back to its length before the group, synced: whole again.
                    self.damaged.remove(&t.file);
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "rollback failed; unacknowledged lines may remain until the file is repaired");
                    failures.push(e.to_string());
                    self.damaged.insert(t.file.clone(), Some(t.previous_length));
                }
            }
        }
        self.metrics.store_open_files.set(self.by_hour.len() as i64);
        failures
    }

    /// Tries to repair every damaged file: back to its known length if possible, else cut to its
    /// last complete line; then fsync, all on a fresh descriptor. Those it cannot repair stay
    /// damaged.
    pub(super) fn repair(&mut self) {
        let damaged = std::mem::take(&mut self.damaged);
        for (hour, length) in damaged {
            let path = self.dir.join(layout::site_hour_file(&hour));
            match repair_file(&path, length) {
                Ok(removed) => {
                    self.metrics.store_repairs.inc();
                    tracing::warn!(file = %path.display(), removed_bytes = removed, "hour file repaired after a failure");
                }
                Err(e) => {
                    tracing::error!(file = %path.display(), error = %e, "hour file still cannot be repaired; refusing writes");
                    self.damaged.insert(hour, length);
                }
            }
        }
    }

    /// Syncs and closes every file (shutdown).
    pub(super) fn close_all(&mut self) {
        self.sync_all_dirty();
        self.by_hour.clear();
        self.metrics.store_open_files.set(0);
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::path::Path;

    use super::*;
    use crate::record::Hour;
    use crate::store::fixtures::read;

    /// The root's hour `n` from 2025-01-01T00:00Z.
    fn hour(n: i64) -> SiteHour {
        let first = "2025-01-01T00:00:00Z".parse().unwrap();
        SiteHour {
            site: None,
            hour: Hour::from_index(Hour::of(&first).index() + n),
        }
    }

    fn hour_files(dir: &Path) -> (HourFiles, Metrics) {
        let metrics = Metrics::new();
        let healthy = Arc::new(AtomicBool::new(true));
        let files = HourFiles::new(dir.to_owned(), healthy, metrics.clone());
        (files, metrics)
    }

    /// Opens `hour` for a group of its own and appends `text` as the writer does.
    fn append(files: &mut HourFiles, hour: SiteHour, text: &str) {
        let file = files.open(&hour, &HashSet::from([hour.clone()])).unwrap();
        file.file.write_all(text.as_bytes()).unwrap();
        file.length += text.len() as u64;
        file.dirty = true;
        file.last_write = Instant::now();
    }

    #[test]
    fn a_new_hour_file_is_created_with_its_day_directory_and_synced() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, metrics) = hour_files(dir.path());
        append(&mut files, hour(0), "line\n");
        assert_eq!(
            files.by_hour[&hour(0)].new_dirs.len(),
            2,
            "the day and the logs dir"
        );
        files.sync(&[hour(0)]).unwrap();
        assert_eq!(read(dir.path(), "2025-01-01/00.log.json"), "line\n");
        let synced = &files.by_hour[&hour(0)];
        assert!(!synced.dirty && synced.new_dirs.is_empty());
        assert_eq!(metrics.store_fsyncs.get(), 1);
        assert_eq!(metrics.store_open_files.get(), 1);
        // A file already there is opened at its length.
        files.close_all();
        append(&mut files, hour(0), "more\n");
        assert_eq!(files.by_hour[&hour(0)].length, 10);
    }

    #[test]
    fn beyond_the_cap_the_least_recently_written_file_the_group_does_not_need_goes() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, metrics) = hour_files(dir.path());
        let start = Instant::now();
        for n in 0..MAX_OPEN_FILES as i64 {
            append(&mut files, hour(n), "x\n");
            files.by_hour.get_mut(&hour(n)).unwrap().last_write =
                start + Duration::from_millis(n as u64);
        }
        // Hour 0 is the least recently written, but the group needs it: hour 1 goes.
        let group = HashSet::from([hour(0), hour(64)]);
        files.open(&hour(64), &group).unwrap();
        assert_eq!(files.by_hour.len(), MAX_OPEN_FILES);
        assert!(files.by_hour.contains_key(&hour(0)) && !files.by_hour.contains_key(&hour(1)));
        assert_eq!(read(dir.path(), "2025-01-01/01.log.json"), "x\n");
        // A group that needs more files than the cap keeps them all open until it is done.
        let everything: HashSet<SiteHour> = (0..=65).map(hour).collect();
        files.open(&hour(65), &everything).unwrap();
        assert_eq!(files.by_hour.len(), MAX_OPEN_FILES + 1);
        files.enforce_cap();
        assert_eq!(files.by_hour.len(), MAX_OPEN_FILES);
        assert!(
            !files.by_hour.contains_key(&hour(0)),
            "the least recent went"
        );
        assert_eq!(metrics.store_open_files.get(), MAX_OPEN_FILES as i64);
    }

    #[test]
    fn files_idle_for_the_timeout_are_closed() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, metrics) = hour_files(dir.path());
        append(&mut files, hour(0), "old\n");
        append(&mut files, hour(1), "new\n");
        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(120))
            .unwrap();
        files.by_hour.get_mut(&hour(0)).unwrap().last_write = long_ago;
        files.close_idle(Duration::from_secs(60));
        assert!(!files.by_hour.contains_key(&hour(0)) && files.by_hour.contains_key(&hour(1)));
        assert_eq!(metrics.store_fsyncs.get(), 1, "synced before it was closed");
        assert_eq!(metrics.store_open_files.get(), 1);
    }

    #[test]
    fn a_rollback_cuts_each_written_file_back_or_leaves_it_damaged() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, metrics) = hour_files(dir.path());
        append(&mut files, hour(0), "kept\n");
        files.sync(&[hour(0)]).unwrap();
        append(&mut files, hour(0), "lost\n");
        // Hour 1's file cannot be cut back: a directory stands in its place.
        fs::create_dir_all(dir.path().join("2025-01-01/01.log.json")).unwrap();
        let touched = [
            Touched {
                file: hour(0),
                previous_length: 5,
                written: true,
            },
            Touched {
                file: hour(1),
                previous_length: 0,
                written: true,
            },
        ];
        let failures = files.roll_back(&touched);
        assert_eq!(failures.len(), 1, "{failures:?}");
        assert_eq!(read(dir.path(), "2025-01-01/00.log.json"), "kept\n");
        assert!(files.by_hour.is_empty(), "no descriptor is used again");
        assert_eq!(metrics.store_open_files.get(), 0);
        assert!(!files.whole());
        assert_eq!(files.damaged[&hour(1)], Some(0));
    }

    #[test]
    fn a_damaged_file_stays_damaged_until_it_can_be_repaired() {
        let dir = tempfile::tempdir().unwrap();
        let (mut files, metrics) = hour_files(dir.path());
        let day = dir.path().join("2025-01-01");
        fs::create_dir_all(day.join("01.log.json")).unwrap();
        fs::write(day.join("00.log.json"), "one\ntwo\nthr").unwrap();
        files.damaged.insert(hour(0), None);
        files.damaged.insert(hour(1), None);
        files.repair();
        assert_eq!(read(dir.path(), "2025-01-01/00.log.json"), "one\ntwo\n");
        assert!(!files.whole(), "hour 1 cannot be read yet");
        assert_eq!(files.damaged.keys().collect::<Vec<_>>(), [&hour(1)]);
        fs::remove_dir(day.join("01.log.json")).unwrap();
        files.repair();
        assert!(files.whole());
        assert_eq!(metrics.store_repairs.get(), 2);
    }
}
