//! Hourly analytics: `<analyticsDir>/YYYY-MM-DD/summary_HH.json` for every hour file, kept up to
//! date incrementally, and the queries behind the analytics API.
//!
//! A pass ([`Aggregator::run_pass`]) runs at start-up, every `aggregation.interval` and once more at
//! shutdown. Per hour file it compares the file's length with the bytes its summary covers
//! (`source.bytes`, stored inside the summary): equal costs a `stat`; longer reads only the
//! appended bytes; shorter, or a summary that cannot be read, or a file whose bytes before the
//! covered end changed (checked by a CRC of the last 64 of them), rebuilds the hour from scratch.
//! Only complete lines are counted, so a summary always equals a prefix of complete lines of its
//! hour file, and a line appended during a pass is picked up by the next one (no mtimes involved).
//!
//! The analytics read what the store wrote; they share no locks with it.

pub mod query;
pub mod scan;
pub mod summary;

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use hashbrown::HashMap;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::layout;
use crate::metrics::Metrics;
use crate::record::Hour;
use summary::{HourSummary, SourceState, TAIL_BYTES, read_tail, write_summary};

/// How many recently updated summaries stay parsed in memory (the current hour and late data),
/// so the hour being appended to is not re-read from disk every pass.
const CACHED_SUMMARIES: usize = 4;

/// What one pass did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Hour files looked at.
    pub hours: usize,
    /// Summaries written.
    pub updated: usize,
    /// Summaries rebuilt from the start of their hour file.
    pub rebuilt: usize,
    /// Records counted in this pass.
    pub records: u64,
    /// Lines skipped in this pass because they were not valid records.
    pub skipped: u64,
    /// Bytes of hour files read.
    pub bytes_read: u64,
    /// Hours that failed (I/O errors); retried next pass.
    pub errors: usize,
}

/// Keeps the summaries of one logs directory up to date.
pub struct Aggregator {
    logs_dir: PathBuf,
    analytics_dir: PathBuf,
    max_keys: usize,
    threads: usize,
    metrics: Metrics,
    /// What each hour's summary covers, as last written or read.
    covered: HashMap<Hour, SourceState>,
    /// Recently written summaries, most recent last.
    cache: Vec<HourSummary>,
}

enum HourOutcome {
    Unchanged,
    Updated {
        rebuilt: bool,
        records: u64,
        skipped: u64,
        bytes: u64,
    },
}

impl Aggregator {
    pub fn new(
        logs_dir: PathBuf,
        analytics_dir: PathBuf,
        max_keys: usize,
        metrics: Metrics,
    ) -> Aggregator {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Aggregator {
            logs_dir,
            analytics_dir,
            max_keys,
            threads,
            metrics,
            covered: HashMap::new(),
            cache: Vec::new(),
        }
    }

    /// Brings every hour's summary up to date with its hour file.
    pub fn run_pass(&mut self) -> PassReport {
        let started = Instant::now();
        let mut report = PassReport::default();
        let files = match layout::hour_files(&self.logs_dir) {
            Ok(files) => files,
            Err(e) => {
                tracing::error!(dir = %self.logs_dir.display(), error = %e, "cannot list hour files");
                report.errors += 1;
                Vec::new()
            }
        };
        for (hour, path) in files {
            report.hours += 1;
            match self.update_hour(hour, &path) {
                Ok(HourOutcome::Unchanged) => {}
                Ok(HourOutcome::Updated {
                    rebuilt,
                    records,
                    skipped,
                    bytes,
                }) => {
                    report.updated += 1;
                    report.rebuilt += usize::from(rebuilt);
                    report.records += records;
                    report.skipped += skipped;
                    report.bytes_read += bytes;
                }
                Err(e) => {
                    report.errors += 1;
                    tracing::error!(file = %path.display(), error = %e, "cannot update the hour's summary; retrying next pass");
                }
            }
        }
        self.metrics.aggregation_runs.inc();
        self.metrics
            .aggregation_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .aggregation_lines
            .inc_by(report.records + report.skipped);
        self.metrics
            .aggregation_skipped_lines
            .inc_by(report.skipped);
        self.metrics.aggregation_errors.inc_by(report.errors as u64);
        if report.updated > 0 || report.errors > 0 {
            tracing::info!(
                hours = report.hours,
                updated = report.updated,
                rebuilt = report.rebuilt,
                records = report.records,
                skipped = report.skipped,
                bytes_read = report.bytes_read,
                errors = report.errors,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "aggregation pass"
            );
        }
        report
    }

    fn update_hour(&mut self, hour: Hour, path: &Path) -> io::Result<HourOutcome> {
        let file = File::open(path)?;
        let length = file.metadata()?.len();
        let covered = match self.covered.get(&hour) {
            Some(state) => Some(*state),
            None => read_tail(&self.analytics_dir.join(layout::summary_file(hour)))
                .unwrap_or(None)
                .map(|(state, _)| state),
        };
        if let Some(state) = covered
            && state.bytes == length
        {
            self.covered.insert(hour, state);
            return Ok(HourOutcome::Unchanged);
        }
        let base = match covered {
            Some(state)
                if state.bytes < length && tail_crc32(&file, state.bytes)? == state.tail_crc32 =>
            {
                self.load_summary(hour, state)
            }
            _ => None,
        };
        let rebuilt = base.is_none();
        if rebuilt && covered.is_some() {
            tracing::info!(file = %path.display(), "hour file changed under its summary; rebuilding the hour");
        }
        let mut summary = base.unwrap_or_else(|| HourSummary::new(hour, self.max_keys));
        let start = summary.source.bytes;
        let outcome = scan::scan(&file, start, length, self.max_keys, self.threads)?;
        if !rebuilt && outcome.end == start {
            // Only a partial line was appended so far; nothing to count yet.
            return Ok(HourOutcome::Unchanged);
        }
        for skip in &outcome.first_skips {
            tracing::warn!(
                file = %path.display(),
                line = summary.source.lines + skip.line + 1,
                reason = skip.reason,
                "skipping a line that is not a valid record"
            );
        }
        if outcome.skipped > outcome.first_skips.len() as u64 {
            tracing::warn!(file = %path.display(), skipped = outcome.skipped, "more invalid lines skipped than logged");
        }
        summary.paths.merge(&outcome.paths);
        summary.agents.merge(&outcome.agents);
        summary.total += outcome.records;
        summary.source = SourceState {
            bytes: outcome.end,
            lines: summary.source.lines + outcome.lines,
            skipped_lines: summary.source.skipped_lines + outcome.skipped,
            tail_crc32: tail_crc32(&file, outcome.end)?,
        };
        write_summary(&self.analytics_dir, &summary)?;
        self.covered.insert(hour, summary.source);
        self.remember(summary);
        Ok(HourOutcome::Updated {
            rebuilt,
            records: outcome.records,
            skipped: outcome.skipped,
            bytes: outcome.end - start,
        })
    }

    /// The summary covering exactly `state`, from memory or disk; `None` if it cannot be had.
    fn load_summary(&mut self, hour: Hour, state: SourceState) -> Option<HourSummary> {
        if let Some(position) = self.cache.iter().position(|s| s.hour == hour) {
            let cached = self.cache.remove(position);
            if cached.source == state {
                return Some(cached);
            }
        }
        let bytes = std::fs::read(self.analytics_dir.join(layout::summary_file(hour))).ok()?;
        HourSummary::from_json(&bytes, self.max_keys)
            .ok()
            .filter(|summary| summary.source == state)
    }

    fn remember(&mut self, summary: HourSummary) {
        self.cache.retain(|s| s.hour != summary.hour);
        if self.cache.len() == CACHED_SUMMARIES {
            self.cache.remove(0);
        }
        self.cache.push(summary);
    }
}

/// CRC-32 of the (up to) [`TAIL_BYTES`] bytes of `file` before offset `end`.
fn tail_crc32(file: &File, end: u64) -> io::Result<u32> {
    let start = end.saturating_sub(TAIL_BYTES);
    let mut tail = vec![0u8; (end - start) as usize];
    file.read_exact_at(&mut tail, start)?;
    Ok(crc32fast::hash(&tail))
}

/// The background task that runs passes: at start, every `interval`, and a last one when stopped.
pub struct AggregationTask {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

impl AggregationTask {
    /// Starts the task; the first pass runs at once.
    pub fn spawn(aggregator: Aggregator, interval: Duration) -> AggregationTask {
        let (stop, mut stopped) = oneshot::channel();
        let handle = tokio::spawn(async move {
            let mut aggregator = aggregator;
            loop {
                aggregator = run_blocking(aggregator).await;
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    _ = &mut stopped => break,
                }
            }
            run_blocking(aggregator).await;
        });
        AggregationTask { stop, handle }
    }

    /// Runs the final pass (call after the store flushed) and waits for it.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        if let Err(e) = self.handle.await {
            tracing::error!(error = %e, "aggregation task failed");
        }
    }
}

async fn run_blocking(mut aggregator: Aggregator) -> Aggregator {
    tokio::task::spawn_blocking(move || {
        aggregator.run_pass();
        aggregator
    })
    .await
    .expect("an aggregation pass does not panic")
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;

    const LINE_A: &str =
        "{\"timestamp\":\"2025-11-22T14:00:00Z\",\"path\":\"/a\",\"userAgent\":\"x\"}\n";
    const LINE_B: &str =
        "{\"timestamp\":\"2025-11-22T14:30:00Z\",\"path\":\"/b\",\"userAgent\":\"y\"}\n";

    struct Dirs {
        _root: tempfile::TempDir,
        logs: PathBuf,
        analytics: PathBuf,
    }

    fn dirs() -> Dirs {
        let root = tempfile::tempdir().unwrap();
        let logs = root.path().join("logs");
        let analytics = root.path().join("analytics");
        fs::create_dir_all(logs.join("2025-11-22")).unwrap();
        Dirs {
            _root: root,
            logs,
            analytics,
        }
    }

    fn append(dirs: &Dirs, name: &str, text: &str) {
        let mut file = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(dirs.logs.join(name))
            .unwrap();
        file.write_all(text.as_bytes()).unwrap();
    }

    fn summary(dirs: &Dirs, hour: &str) -> HourSummary {
        let hour = layout::parse_hour_file(hour).unwrap();
        let path = dirs.analytics.join(layout::summary_file(hour));
        HourSummary::from_json(&fs::read(path).unwrap(), 100).unwrap()
    }

    fn count(summary: &HourSummary, path: &str) -> u64 {
        summary
            .paths
            .iter()
            .find(|(k, _)| *k == path)
            .map_or(0, |(_, n)| n)
    }

    fn aggregator(dirs: &Dirs) -> Aggregator {
        Aggregator::new(
            dirs.logs.clone(),
            dirs.analytics.clone(),
            100,
            Metrics::new(),
        )
    }

    const H14: &str = "2025-11-22/14.log.json";

    #[test]
    fn appended_lines_are_read_incrementally() {
        let dirs = dirs();
        append(&dirs, H14, &LINE_A.repeat(3));
        let mut agg = aggregator(&dirs);
        let first = agg.run_pass();
        assert_eq!((first.updated, first.records, first.rebuilt), (1, 3, 1));
        assert_eq!(agg.run_pass().updated, 0, "an unchanged hour costs a stat");
        append(&dirs, H14, LINE_B);
        let second = agg.run_pass();
        assert_eq!((second.updated, second.records, second.rebuilt), (1, 1, 0));
        assert_eq!(second.bytes_read, LINE_B.len() as u64);
        let s = summary(&dirs, H14);
        assert_eq!((s.total, count(&s, "/a"), count(&s, "/b")), (4, 3, 1));
        assert_eq!(s.source.bytes, (3 * LINE_A.len() + LINE_B.len()) as u64);
    }

    #[test]
    fn a_torn_last_line_waits_for_its_newline() {
        let dirs = dirs();
        append(&dirs, H14, LINE_A);
        append(&dirs, H14, &LINE_B[..20]);
        let mut agg = aggregator(&dirs);
        agg.run_pass();
        assert_eq!(summary(&dirs, H14).total, 1);
        assert_eq!(agg.run_pass().updated, 0);
        append(&dirs, H14, &LINE_B[20..]);
        assert_eq!(agg.run_pass().records, 1);
        let s = summary(&dirs, H14);
        assert_eq!((s.total, count(&s, "/b")), (2, 1));
    }

    #[test]
    fn a_restart_resumes_from_the_saved_state() {
        let dirs = dirs();
        append(&dirs, H14, &LINE_A.repeat(2));
        aggregator(&dirs).run_pass();
        append(&dirs, H14, LINE_B);
        let report = aggregator(&dirs).run_pass();
        assert_eq!(
            (report.records, report.rebuilt, report.bytes_read),
            (1, 0, LINE_B.len() as u64)
        );
        assert_eq!(summary(&dirs, H14).total, 3);
    }

    #[test]
    fn a_shrunk_or_rewritten_file_is_rebuilt() {
        let dirs = dirs();
        append(&dirs, H14, &LINE_A.repeat(3));
        let mut agg = aggregator(&dirs);
        agg.run_pass();
        // Shrunk.
        fs::write(dirs.logs.join(H14), LINE_B).unwrap();
        assert_eq!(agg.run_pass().rebuilt, 1);
        let s = summary(&dirs, H14);
        assert_eq!((s.total, count(&s, "/a"), count(&s, "/b")), (1, 0, 1));
        // Rewritten with different content and grown past the covered length.
        fs::write(dirs.logs.join(H14), LINE_A.repeat(3)).unwrap();
        assert_eq!(agg.run_pass().rebuilt, 1);
        let s = summary(&dirs, H14);
        assert_eq!((s.total, count(&s, "/a"), count(&s, "/b")), (3, 3, 0));
    }

    #[test]
    fn an_unreadable_summary_is_rebuilt() {
        let dirs = dirs();
        append(&dirs, H14, LINE_A);
        aggregator(&dirs).run_pass();
        let path = dirs
            .analytics
            .join(layout::summary_file(layout::parse_hour_file(H14).unwrap()));
        fs::write(&path, "{ corrupt").unwrap();
        append(&dirs, H14, LINE_B);
        let report = aggregator(&dirs).run_pass();
        assert_eq!((report.rebuilt, report.records), (1, 2));
        assert_eq!(summary(&dirs, H14).total, 2);
    }

    #[test]
    fn corrupt_lines_are_skipped_and_counted() {
        let dirs = dirs();
        append(
            &dirs,
            H14,
            &format!("{LINE_A}oops\n{LINE_B}{{\"path\":1}}\n"),
        );
        let metrics = Metrics::new();
        let mut agg = Aggregator::new(
            dirs.logs.clone(),
            dirs.analytics.clone(),
            100,
            metrics.clone(),
        );
        let report = agg.run_pass();
        assert_eq!((report.records, report.skipped), (2, 2));
        let s = summary(&dirs, H14);
        assert_eq!((s.total, s.source.lines, s.source.skipped_lines), (2, 4, 2));
        assert_eq!(metrics.aggregation_skipped_lines.get(), 2);
        assert_eq!(metrics.aggregation_lines.get(), 4);
        assert_eq!(metrics.aggregation_runs.get(), 1);
    }

    #[test]
    fn overflow_bucket_keeps_totals_right() {
        let dirs = dirs();
        let lines: String = (0..10)
            .map(|i| format!("{{\"timestamp\":\"2025-11-22T14:00:00Z\",\"path\":\"/p{i}\",\"userAgent\":\"x\"}}\n"))
            .collect();
        append(&dirs, H14, &lines);
        Aggregator::new(dirs.logs.clone(), dirs.analytics.clone(), 4, Metrics::new()).run_pass();
        let s = summary(&dirs, H14);
        assert_eq!(s.total, 10);
        assert_eq!(count(&s, summary::OVERFLOW_KEY), 6);
        assert_eq!(s.paths.len(), 5);
    }

    #[test]
    fn every_hour_file_gets_a_summary_even_an_empty_one() {
        let dirs = dirs();
        append(&dirs, H14, LINE_A);
        append(&dirs, "2025-11-22/15.log.json", "");
        let report = aggregator(&dirs).run_pass();
        assert_eq!((report.hours, report.updated), (2, 2));
        assert_eq!(summary(&dirs, "2025-11-22/15.log.json").total, 0);
    }
}
