//! The [`Source`] of `storage.backend: local`: the hour files of a logs directory, one
//! summary per hour file, kept up to date incrementally.
//!
//! Per hour file it compares the file's length with the bytes its summary covers
//! (`source.bytes`, stored inside the summary): equal costs a `stat`; longer reads only the
//! appended bytes; shorter, or a summary that cannot be read, or a file whose bytes before the
//! covered end changed (checked by a CRC of the last 64 of them), rebuilds the hour from scratch.
//! Only complete lines are counted, so a summary always equals a prefix of complete lines of its
//! hour file, and a line appended during a pass is picked up by the next one (no mtimes involved).
//! The file's length is read only once the lock is held: an updater that read it earlier and
//! waited for the lock would take a summary covering more for a file that shrank, rebuild the
//! hour and write a summary covering less than the one it replaced. So a summary is never
//! replaced by one covering less (unless the file really shrank), and a query that reads the
//! summary after its own update, outside the lock, reads one that covers at least what it saw.
//!
//! The parsed summaries kept in memory take at most one summary's budget
//! (`aggregation.maxSummaryBytes`); a summary file larger than the bounds allow is not read, its hour is
//! rebuilt within them.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use hashbrown::HashMap;

use super::source::{Source, Summaries};
use super::summary::{HourSummary, SourceState, TAIL_BYTES, read_head, write_summary};
use super::{HourOutcome, scan};
use crate::layout;
use crate::record::Hour;

/// How many recently updated summaries stay parsed in memory (the current hour and late data),
/// so the hour being appended to is not re-read from disk every pass; together they take at most
/// the bytes of one summary (`aggregation.maxSummaryBytes`).
const CACHED_SUMMARIES: usize = 4;

/// The hour files under `storage.logsDir`.
pub struct FilesSource {
    logs_dir: PathBuf,
    /// Taken for one hour at a time: whoever holds it is the only writer of summaries.
    state: Mutex<FileStates>,
}

/// What the source remembers between hours and passes.
#[derive(Default)]
struct FileStates {
    /// What each hour's summary covers, and whether its bot split is this binary's, as last
    /// written or read.
    covered: HashMap<Hour, Covered>,
    /// Recently written summaries, most recent last.
    cache: Vec<HourSummary>,
}

#[derive(Debug, Clone, Copy)]
struct Covered {
    source: SourceState,
    /// Split into bots and humans with this binary's bot list.
    classified: bool,
}

impl FilesSource {
    pub fn new(logs_dir: PathBuf) -> FilesSource {
        FilesSource {
            logs_dir,
            state: Mutex::default(),
        }
    }
}

impl Source for FilesSource {
    fn name(&self) -> String {
        self.logs_dir.display().to_string()
    }

    fn hours(&self, _summaries: &Summaries) -> io::Result<Vec<Hour>> {
        Ok(layout::hour_files(&self.logs_dir)?
            .into_iter()
            .map(|(hour, _)| hour)
            .collect())
    }

    fn update_hour(&self, summaries: &Summaries, hour: Hour) -> io::Result<HourOutcome> {
        let path = self.logs_dir.join(layout::hour_file(hour));
        update(&self.state, summaries, hour, &path)
    }

    fn remote(&self) -> bool {
        false
    }
}

/// Brings `hour`'s summary up to date with its hour file at `path`, under `state`'s lock.
fn update(
    state: &Mutex<FileStates>,
    summaries: &Summaries,
    hour: Hour,
    path: &Path,
) -> io::Result<HourOutcome> {
    let mut state = state.lock().expect("files source lock");
    // Opened and measured under the lock: see the module's documentation.
    let file = File::open(path)?;
    let length = file.metadata()?.len();
    let covered = covered(&state, summaries, hour);
    if let Some(covered) = covered
        && covered.source.bytes == length
        && covered.classified
    {
        state.covered.insert(hour, covered);
        return Ok(HourOutcome::Unchanged);
    }
    let (base, reclassified) = base_summary(summaries, &mut state, hour, &file, length, covered)?;
    let rebuilt = base.is_none();
    if rebuilt && covered.is_some() {
        tracing::info!(file = %path.display(), "hour file changed under its summary, or its bot split cannot be redone from it; rebuilding the hour");
    }
    let mut summary =
        base.unwrap_or_else(|| HourSummary::new(hour, summaries.bounds, summaries.classifier.id()));
    let start = summary.source.bytes;
    let outcome = scan::scan(
        &file,
        start,
        length,
        summaries.bounds,
        summaries.threads,
        summaries.classifier,
    )?;
    if !rebuilt && !reclassified && outcome.end == start {
        // Only a partial line was appended so far; nothing to count yet.
        state.covered.insert(hour, covered.expect("not rebuilt"));
        remember(&mut state.cache, summary, summaries.bounds.max_bytes);
        return Ok(HourOutcome::Unchanged);
    }
    log_skips(path, summary.source.lines, &outcome);
    let scan::ScanOutcome {
        paths,
        agents,
        bots,
        records,
        lines,
        skipped,
        end,
        ..
    } = outcome;
    let split = (bots.bot_requests, bots.human_requests);
    // Taken, not copied, by a summary rebuilt from nothing: one hour's maps in memory.
    summary.absorb(paths, agents, bots, records);
    summary.source = SourceState {
        bytes: end,
        lines: summary.source.lines + lines,
        skipped_lines: summary.source.skipped_lines + skipped,
        tail_crc32: tail_crc32(&file, end)?,
    };
    write_summary(&summaries.analytics_dir, &summary)?;
    summaries.count_requests(split);
    state.covered.insert(
        hour,
        Covered {
            source: summary.source,
            classified: true,
        },
    );
    remember(&mut state.cache, summary, summaries.bounds.max_bytes);
    Ok(HourOutcome::Updated {
        rebuilt,
        reclassified,
        records,
        skipped,
        bytes: end - start,
    })
}

/// What `hour`'s summary covers: as last written or read, else as its file's head says.
fn covered(state: &FileStates, summaries: &Summaries, hour: Hour) -> Option<Covered> {
    match state.covered.get(&hour) {
        Some(covered) => Some(*covered),
        None => read_head(&summaries.analytics_dir.join(layout::summary_file(hour)))
            .unwrap_or(None)
            .map(|head| Covered {
                source: head.source,
                classified: head
                    .bots
                    .is_some_and(|(list, _, _)| list == summaries.classifier.id()),
            }),
    }
}

/// The summary `hour`'s update starts from, split with this binary's bot list, and whether
/// it was split again for that; `None` if the hour must be rebuilt from the start of its
/// file (`length` bytes now): no usable summary, or the file no longer begins with what the
/// summary covers.
fn base_summary(
    summaries: &Summaries,
    state: &mut FileStates,
    hour: Hour,
    file: &File,
    length: u64,
    covered: Option<Covered>,
) -> io::Result<(Option<HourSummary>, bool)> {
    let Some(covered) = covered else {
        return Ok((None, false));
    };
    if covered.source.bytes > length
        || tail_crc32(file, covered.source.bytes)? != covered.source.tail_crc32
    {
        return Ok((None, false));
    }
    let Some(mut summary) = load_summary(summaries, state, hour, covered.source) else {
        return Ok((None, false));
    };
    if covered.classified {
        return Ok((Some(summary), false));
    }
    // Split with another list, or before the split existed.
    let reclassified = summary.reclassify(summaries.classifier.id(), |agent| {
        summaries.classifier.is_bot(agent)
    });
    Ok((reclassified.then_some(summary), reclassified))
}

/// The summary covering exactly `source`, from memory or disk; `None` if it cannot be had.
fn load_summary(
    summaries: &Summaries,
    state: &mut FileStates,
    hour: Hour,
    source: SourceState,
) -> Option<HourSummary> {
    if let Some(position) = state.cache.iter().position(|cached| cached.hour == hour) {
        let cached = state.cache.remove(position);
        if cached.source == source {
            return Some(cached);
        }
    }
    let path = summaries.analytics_dir.join(layout::summary_file(hour));
    let file = File::open(&path).ok()?;
    let size = file.metadata().ok()?.len();
    if size > summaries.bounds.max_file_bytes() {
        // Written with larger bounds (or by an older version): rebuilt within these.
        tracing::info!(summary = %path.display(), bytes = size, limit = summaries.bounds.max_file_bytes(), "summary larger than aggregation.maxSummaryBytes allows; rebuilding the hour within it");
        return None;
    }
    let mut bytes = Vec::with_capacity(size as usize);
    io::Read::read_to_end(&mut io::Read::take(file, size), &mut bytes).ok()?;
    HourSummary::from_json(&bytes, summaries.bounds)
        .ok()
        .filter(|summary| summary.source == source)
}

/// Logs the first lines `outcome` skipped (`lines_before` lines of the file precede its range).
fn log_skips(path: &Path, lines_before: u64, outcome: &scan::ScanOutcome) {
    for skip in &outcome.first_skips {
        tracing::warn!(
            file = %path.display(),
            line = lines_before + skip.line + 1,
            reason = skip.reason,
            "skipping a line that is not a valid record"
        );
    }
    if outcome.skipped > outcome.first_skips.len() as u64 {
        tracing::warn!(file = %path.display(), skipped = outcome.skipped, "more invalid lines skipped than logged");
    }
}

/// Keeps `summary` parsed, most recent last: at most [`CACHED_SUMMARIES`], and no more than
/// `max_bytes` of them together (the oldest go first; one summary always stays).
fn remember(cache: &mut Vec<HourSummary>, summary: HourSummary, max_bytes: usize) {
    cache.retain(|cached| cached.hour != summary.hour);
    let mut held: usize = summary.bytes() + cache.iter().map(HourSummary::bytes).sum::<usize>();
    while !cache.is_empty() && (cache.len() >= CACHED_SUMMARIES || held > max_bytes) {
        held -= cache.remove(0).bytes();
    }
    cache.push(summary);
}

/// CRC-32 of the (up to) [`TAIL_BYTES`] bytes of `file` before offset `end`.
fn tail_crc32(file: &File, end: u64) -> io::Result<u32> {
    let start = end.saturating_sub(TAIL_BYTES);
    let mut tail = vec![0u8; (end - start) as usize];
    file.read_exact_at(&mut tail, start)?;
    Ok(crc32fast::hash(&tail))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::Write;

    use crate::analytics::summary::{self, Bounds};
    use crate::analytics::{Aggregator, CancelFlag, Cancelled};
    use crate::metrics::Metrics;

    const LINE_A: &str =
        "{\"timestamp\":\"2025-11-22T14:00:00Z\",\"path\":\"/a\",\"userAgent\":\"x\"}\n";
    const LINE_B: &str =
        "{\"timestamp\":\"2025-11-22T14:30:00Z\",\"path\":\"/b\",\"userAgent\":\"y\"}\n";

    /// At most `n` keys per map, no byte budget.
    fn keys(n: usize) -> Bounds {
        Bounds {
            max_keys: n,
            max_bytes: usize::MAX,
        }
    }

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
        HourSummary::from_json(&fs::read(path).unwrap(), keys(100)).unwrap()
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
            keys(100),
            Metrics::new(),
        )
    }

    const H14: &str = "2025-11-22/14.log.json";

    #[test]
    fn appended_lines_are_read_incrementally() {
        let dirs = dirs();
        append(&dirs, H14, &LINE_A.repeat(3));
        let agg = aggregator(&dirs);
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
        let agg = aggregator(&dirs);
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
        let agg = aggregator(&dirs);
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
        let agg = Aggregator::new(
            dirs.logs.clone(),
            dirs.analytics.clone(),
            keys(100),
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
        Aggregator::new(
            dirs.logs.clone(),
            dirs.analytics.clone(),
            keys(4),
            Metrics::new(),
        )
        .run_pass();
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

    const GOOGLEBOT: &str = "{\"timestamp\":\"2025-11-22T14:00:00Z\",\"path\":\"/a\",\"userAgent\":\"Mozilla/5.0 (compatible; Googlebot/2.1; +http://www.google.com/bot.html)\"}\n";
    const FIREFOX: &str = "{\"timestamp\":\"2025-11-22T14:00:00Z\",\"path\":\"/a\",\"userAgent\":\"Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0\"}\n";

    fn split(summary: &HourSummary) -> (Option<&str>, u64, u64) {
        (
            summary.bots.list.as_deref(),
            summary.bots.bot_requests,
            summary.bots.human_requests,
        )
    }

    #[test]
    fn records_are_split_into_bots_and_humans() {
        let dirs = dirs();
        append(&dirs, H14, &format!("{GOOGLEBOT}{FIREFOX}{FIREFOX}"));
        let agg = aggregator(&dirs);
        agg.run_pass();
        let id = agg.classifier().id();
        assert_eq!(split(&summary(&dirs, H14)), (Some(id), 1, 2));
        append(&dirs, H14, GOOGLEBOT);
        agg.run_pass();
        let s = summary(&dirs, H14);
        assert_eq!(split(&s), (Some(id), 2, 2));
        assert_eq!(s.bots.per_agent.len(), 1);
    }

    /// A summary written before the split (or by the original service) is split once, from its own
    /// counts when it can be, else from its hour file; either way nothing is counted twice.
    #[test]
    fn summaries_without_the_split_are_split_once() {
        let dirs = dirs();
        append(&dirs, H14, &format!("{GOOGLEBOT}{FIREFOX}"));
        aggregator(&dirs).run_pass();
        let path = dirs
            .analytics
            .join(layout::summary_file(layout::parse_hour_file(H14).unwrap()));
        // As written before the split existed: the same summary without its four keys.
        let mut old = summary(&dirs, H14);
        old.bots.list = None;
        fs::write(&path, old.to_json()).unwrap();
        assert!(
            !String::from_utf8(fs::read(&path).unwrap())
                .unwrap()
                .contains("botList")
        );
        let report = aggregator(&dirs).run_pass();
        assert_eq!(
            (
                report.updated,
                report.reclassified,
                report.rebuilt,
                report.bytes_read
            ),
            (1, 1, 0, 0),
            "split from the summary's own user-agent counts"
        );
        let s = summary(&dirs, H14);
        assert_eq!((s.total, split(&s).1, split(&s).2), (2, 1, 1));

        // With hidden user agents (cap 1: one went to "(other)") the hour is rebuilt instead.
        let dirs = dirs_with_cap_summary(1);
        let report = Aggregator::new(
            dirs.logs.clone(),
            dirs.analytics.clone(),
            keys(1),
            Metrics::new(),
        )
        .run_pass();
        assert_eq!((report.reclassified, report.rebuilt), (0, 1));
        let s = summary(&dirs, H14);
        assert_eq!((s.total, split(&s).1, split(&s).2), (2, 1, 1));
    }

    fn dirs_with_cap_summary(cap: usize) -> Dirs {
        let dirs = dirs();
        append(&dirs, H14, &format!("{GOOGLEBOT}{FIREFOX}"));
        Aggregator::new(
            dirs.logs.clone(),
            dirs.analytics.clone(),
            keys(cap),
            Metrics::new(),
        )
        .run_pass();
        let path = dirs
            .analytics
            .join(layout::summary_file(layout::parse_hour_file(H14).unwrap()));
        let mut old = HourSummary::from_json(&fs::read(&path).unwrap(), keys(cap)).unwrap();
        old.bots.list = None;
        fs::write(&path, old.to_json()).unwrap();
        dirs
    }

    #[test]
    fn a_query_updates_only_its_hours_and_stops_when_cancelled() {
        let dirs = dirs();
        append(&dirs, H14, LINE_A);
        append(&dirs, "2025-11-22/15.log.json", LINE_B);
        let agg = aggregator(&dirs);
        let h14 = layout::parse_hour_file(H14).unwrap();
        let report = agg
            .update_hours([h14, Hour::from_index(h14.index() + 5)], &CancelFlag::new())
            .unwrap();
        assert_eq!((report.hours, report.updated, report.records), (1, 1, 1));
        assert_eq!(summary(&dirs, H14).total, 1);
        let h15 = dirs.analytics.join(layout::summary_file(
            layout::parse_hour_file("2025-11-22/15.log.json").unwrap(),
        ));
        assert!(!h15.exists(), "hour 15 was not asked for");
        append(&dirs, H14, LINE_B);
        let cancelled = CancelFlag::new();
        drop(cancelled.cancel_on_drop());
        assert_eq!(agg.update_hours([h14], &cancelled), Err(Cancelled));
        assert_eq!(summary(&dirs, H14).total, 1, "nothing done once cancelled");
    }
}
