//! Counting the records in a byte range of an hour file.
//!
//! Only complete lines count: a range's last bytes after its last newline (a write in progress,
//! or a torn line) are left for a later pass, and the returned `end` says where counting stopped.
//! Lines in our own format take a fast path (find the three values, no JSON parser); anything else
//! is parsed as JSON; a line that is not a record is skipped and reported, never fatal. Lines of
//! any length are handled: the buffer grows to hold the longest line. Large ranges are split at
//! line boundaries and counted on several threads.
//!
//! The counts of a scan are bounded like a summary ([`Bounds`]). A range is counted on at most
//! [`MAX_PARTS`] threads, each part within the whole budget (a part of a normal hour holds most of
//! the hour's keys, so a share of the budget would not do), and the parts are merged into the first
//! within the same budget: while a range is read, at most [`MAX_PARTS`] budgets are held. Where the
//! budget is reached, which keys are kept can depend on the number of parts.
//!
//! Each record's user agent is classified as bot or human once per distinct user agent and range
//! part, after counting; a user agent beyond the key cap (counted under the overflow bucket, so
//! its name is not kept) is classified on its line, so the split is exact however many there are.

use std::borrow::Cow;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

use serde::Deserialize;

use super::bots::BotClassifier;
use super::summary::{BotCounts, Bounds, Counts};
use crate::record::split_stored_line;

/// Bytes read per `pread`.
const READ_BYTES: usize = 4 << 20;
/// Ranges at least this large are split across threads.
const PARALLEL_MIN_BYTES: u64 = 32 << 20;
/// The most parts (threads) a range is split into: each may hold a whole budget of keys.
pub const MAX_PARTS: usize = 4;
/// How many skipped lines per scan are kept for logging (all are counted).
pub const MAX_REPORTED_SKIPS: usize = 10;

/// A line that was not a valid record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SkippedLine {
    /// 0-based line index within the scanned range.
    pub line: u64,
    pub reason: &'static str,
}

/// What a scan counted.
#[derive(Debug, Clone)]
pub struct ScanOutcome {
    pub paths: Counts,
    pub agents: Counts,
    /// The records split into bots and humans.
    pub bots: BotCounts,
    /// Valid records counted.
    pub records: u64,
    /// Complete lines seen (valid or not).
    pub lines: u64,
    /// Lines that were not valid records.
    pub skipped: u64,
    /// The first [`MAX_REPORTED_SKIPS`] skipped lines.
    pub first_skips: Vec<SkippedLine>,
    /// File offset just after the last complete line counted.
    pub end: u64,
    /// The bytes the three maps may hold together.
    max_bytes: usize,
}

impl ScanOutcome {
    fn empty(bounds: Bounds, at: u64, classifier: &BotClassifier) -> ScanOutcome {
        ScanOutcome {
            paths: Counts::new(bounds.max_keys),
            agents: Counts::new(bounds.max_keys),
            bots: BotCounts::new(classifier.id(), bounds.max_keys),
            records: 0,
            lines: 0,
            skipped: 0,
            first_skips: Vec::new(),
            end: at,
            max_bytes: bounds.max_bytes,
        }
    }

    /// The bytes its maps may still take.
    fn room(&self) -> usize {
        self.max_bytes
            .saturating_sub(self.paths.bytes() + self.agents.bytes() + self.bots.per_agent.bytes())
    }

    /// Appends `next`, which covers the range right after this one.
    fn append(&mut self, next: ScanOutcome) {
        let mut room = self.room();
        self.paths.merge(&next.paths, &mut room);
        self.agents.merge(&next.agents, &mut room);
        self.bots.merge(&next.bots, &mut room);
        self.records += next.records;
        for skip in next.first_skips {
            if self.first_skips.len() < MAX_REPORTED_SKIPS {
                self.first_skips.push(SkippedLine {
                    line: self.lines + skip.line,
                    reason: skip.reason,
                });
            }
        }
        self.lines += next.lines;
        self.skipped += next.skipped;
        self.end = next.end;
    }
}

/// Counts the complete lines of `file` in `[start, end)` within `bounds`, on up to `threads`
/// threads (at most [`MAX_PARTS`]), splitting them into bots and humans with `classifier`.
pub fn scan(
    file: &File,
    start: u64,
    end: u64,
    bounds: Bounds,
    threads: usize,
    classifier: &BotClassifier,
) -> io::Result<ScanOutcome> {
    let threads = threads.min(MAX_PARTS);
    if threads <= 1 || end - start < PARALLEL_MIN_BYTES {
        return scan_part(file, start, end, bounds, classifier);
    }
    let mut cuts = vec![start];
    for i in 1..threads as u64 {
        let target = start + (end - start) * i / threads as u64;
        let boundary = next_line_start(file, target.max(*cuts.last().expect("non-empty")), end)?;
        if boundary < end {
            cuts.push(boundary);
        }
    }
    cuts.push(end);
    let parts: Vec<io::Result<ScanOutcome>> = std::thread::scope(|scope| {
        let handles: Vec<_> = cuts
            .windows(2)
            .map(|w| {
                let (from, to) = (w[0], w[1]);
                scope.spawn(move || scan_part(file, from, to, bounds, classifier))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| h.join().expect("scan thread panicked"))
            .collect()
    });
    let mut total: Option<ScanOutcome> = None;
    for (part, planned_end) in parts.into_iter().zip(&cuts[1..]) {
        let part = part?;
        // A part that stopped short (torn last line, or the file shrank under us) ends the scan.
        let complete = part.end == *planned_end;
        match &mut total {
            None => total = Some(part),
            Some(total) => total.append(part),
        }
        if !complete {
            break;
        }
    }
    Ok(total.unwrap_or_else(|| ScanOutcome::empty(bounds, start, classifier)))
}

/// The offset just after the first newline at or after `from` (or `end` if there is none).
fn next_line_start(file: &File, from: u64, end: u64) -> io::Result<u64> {
    let mut buffer = vec![0u8; 64 * 1024];
    let mut at = from;
    while at < end {
        let want = buffer.len().min((end - at) as usize);
        let n = file.read_at(&mut buffer[..want], at)?;
        if n == 0 {
            return Ok(end);
        }
        if let Some(newline) = memchr::memchr(b'\n', &buffer[..n]) {
            return Ok(at + newline as u64 + 1);
        }
        at += n as u64;
    }
    Ok(end)
}

/// Counts the complete lines in `[start, end)` on this thread.
fn scan_part(
    file: &File,
    start: u64,
    end: u64,
    bounds: Bounds,
    classifier: &BotClassifier,
) -> io::Result<ScanOutcome> {
    let mut outcome = ScanOutcome::empty(bounds, start, classifier);
    let mut buffer = vec![0u8; READ_BYTES.min((end - start) as usize).max(1)];
    // `buffer[..filled]` holds the file bytes from offset `outcome.end`.
    let mut filled = 0usize;
    loop {
        let offset = outcome.end + filled as u64;
        if offset >= end {
            break;
        }
        if filled == buffer.len() {
            // One line longer than the buffer: grow it, there is no line-length limit.
            buffer.resize(buffer.len() * 2, 0);
        }
        let want = (buffer.len() - filled).min((end - offset) as usize);
        let n = file.read_at(&mut buffer[filled..filled + want], offset)?;
        if n == 0 {
            break; // the file shrank under us; stop at what was read
        }
        filled += n;
        let mut line_start = 0;
        for newline in memchr::memchr_iter(b'\n', &buffer[..filled]) {
            count_line(&buffer[line_start..newline], &mut outcome, classifier);
            line_start = newline + 1;
        }
        buffer.copy_within(line_start..filled, 0);
        filled -= line_start;
        outcome.end += line_start as u64;
    }
    classify(&mut outcome, classifier);
    Ok(outcome)
}

/// Counts the complete lines of `bytes` (a whole object of the bucket) within `bounds`, on this
/// thread.
pub fn scan_bytes(bytes: &[u8], bounds: Bounds, classifier: &BotClassifier) -> ScanOutcome {
    let mut outcome = ScanOutcome::empty(bounds, 0, classifier);
    let mut line_start = 0;
    for newline in memchr::memchr_iter(b'\n', bytes) {
        count_line(&bytes[line_start..newline], &mut outcome, classifier);
        line_start = newline + 1;
    }
    outcome.end = line_start as u64;
    classify(&mut outcome, classifier);
    outcome
}

/// Splits the counted user agents into bots and humans: once per distinct user agent; those in
/// the overflow bucket were classified on their lines.
fn classify(outcome: &mut ScanOutcome, classifier: &BotClassifier) {
    let mut room = outcome.room();
    for (agent, n) in outcome.agents.entries() {
        outcome
            .bots
            .add(agent, classifier.is_bot(agent), n, &mut room);
    }
}

fn count_line(line: &[u8], outcome: &mut ScanOutcome, classifier: &BotClassifier) {
    match parse_line(line) {
        Ok((path, agent)) => {
            let mut room = outcome.room();
            outcome.paths.add(&path, 1, &mut room);
            if !outcome.agents.add(&agent, 1, &mut room) {
                outcome
                    .bots
                    .add(&agent, classifier.is_bot(&agent), 1, &mut room);
            }
            outcome.records += 1;
        }
        Err(reason) => {
            if outcome.first_skips.len() < MAX_REPORTED_SKIPS {
                outcome.first_skips.push(SkippedLine {
                    line: outcome.lines,
                    reason,
                });
            }
            outcome.skipped += 1;
        }
    }
    outcome.lines += 1;
}

/// The `path` and `userAgent` of a stored line.
pub fn parse_line(line: &[u8]) -> Result<(Cow<'_, str>, Cow<'_, str>), &'static str> {
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    if let Some(fields) = parse_own_format(line) {
        return Ok(fields);
    }
    parse_any_json(line)
}

/// The fast path: a line exactly as the store writes it, with no escapes in the values.
/// Anything else returns `None` for the JSON parser to judge.
fn parse_own_format(line: &[u8]) -> Option<(Cow<'_, str>, Cow<'_, str>)> {
    let (_, path, agent) = split_stored_line(line)?;
    Some((Cow::Borrowed(path), Cow::Borrowed(agent)))
}

#[derive(Deserialize)]
struct AnyRecord<'a> {
    #[serde(borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(borrow)]
    path: Option<Cow<'a, str>>,
    #[serde(borrow, rename = "userAgent")]
    user_agent: Option<Cow<'a, str>>,
}

fn parse_any_json(line: &[u8]) -> Result<(Cow<'_, str>, Cow<'_, str>), &'static str> {
    if line.iter().all(u8::is_ascii_whitespace) {
        return Err("empty line");
    }
    let record: AnyRecord<'_> =
        serde_json::from_slice(line).map_err(|_| "not a JSON log record")?;
    match (record.timestamp, record.path, record.user_agent) {
        (Some(ts), Some(path), Some(agent))
            if !ts.is_empty() && !path.is_empty() && !agent.is_empty() =>
        {
            Ok((path, agent))
        }
        _ => Err("missing or empty timestamp, path or userAgent"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Write;

    const A: &str = r#"{"timestamp":"2025-11-22T14:00:00Z","path":"/a","userAgent":"x"}"#;
    const B: &str = r#"{"timestamp":"2025-11-22T14:00:00Z","path":"/b\"q","userAgent":"y"}"#;

    fn file_with(content: &[u8]) -> (tempfile::NamedTempFile, File) {
        let mut temp = tempfile::NamedTempFile::new().unwrap();
        temp.write_all(content).unwrap();
        let file = temp.reopen().unwrap();
        (temp, file)
    }

    /// At most `n` keys per map, no byte budget.
    fn keys(n: usize) -> Bounds {
        Bounds {
            max_keys: n,
            max_bytes: usize::MAX,
        }
    }

    fn classifier() -> &'static BotClassifier {
        BotClassifier::embedded()
    }

    fn count(counts: &Counts, key: &str) -> u64 {
        counts.iter().find(|(k, _)| *k == key).map_or(0, |(_, n)| n)
    }

    #[test]
    fn fast_and_slow_paths_agree() {
        assert_eq!(
            parse_line(A.as_bytes()).unwrap(),
            (Cow::Borrowed("/a"), Cow::Borrowed("x"))
        );
        assert_eq!(parse_line(B.as_bytes()).unwrap().0, "/b\"q");
        let reordered =
            br#"{"userAgent":"x","path":"/a","timestamp":"2025-11-22T14:00:00Z","extra":1}"#;
        assert_eq!(
            parse_line(reordered).unwrap(),
            (Cow::Borrowed("/a"), Cow::Borrowed("x"))
        );
        assert_eq!(parse_line(b"garbage"), Err("not a JSON log record"));
        assert_eq!(
            parse_line(br#"{"path":"/a","userAgent":"x"}"#),
            Err("missing or empty timestamp, path or userAgent")
        );
        assert_eq!(parse_line(b""), Err("empty line"));
    }

    #[test]
    fn counts_complete_lines_and_stops_before_a_torn_one() {
        let content = format!("{A}\n{B}\nnot json\n{A}\n{{\"timestamp\":\"2025");
        let (_keep, file) = file_with(content.as_bytes());
        let outcome = scan(&file, 0, content.len() as u64, keys(100), 1, classifier()).unwrap();
        assert_eq!(outcome.records, 3);
        assert_eq!(outcome.lines, 4);
        assert_eq!(outcome.skipped, 1);
        assert_eq!(
            outcome.first_skips,
            [SkippedLine {
                line: 2,
                reason: "not a JSON log record"
            }]
        );
        assert_eq!(outcome.end as usize, content.rfind('\n').unwrap() + 1);
        assert_eq!(count(&outcome.paths, "/a"), 2);
        assert_eq!(count(&outcome.agents, "y"), 1);
    }

    #[test]
    fn lines_longer_than_the_read_buffer_are_counted() {
        let long_path = format!("/{}", "p".repeat(READ_BYTES * 2 + 17));
        let line = format!(
            r#"{{"timestamp":"2025-11-22T14:00:00Z","path":"{long_path}","userAgent":"x"}}"#
        );
        let content = format!("{A}\n{line}\n{A}\n");
        let (_keep, file) = file_with(content.as_bytes());
        let outcome = scan(&file, 0, content.len() as u64, keys(100), 1, classifier()).unwrap();
        assert_eq!((outcome.records, outcome.skipped), (3, 0));
        assert_eq!(count(&outcome.paths, &long_path), 1);
    }

    #[test]
    fn parallel_scan_equals_sequential_scan() {
        let mut content = String::new();
        let mut i = 0;
        while content.len() < (PARALLEL_MIN_BYTES as usize) + 1000 {
            content.push_str(&format!(
                r#"{{"timestamp":"2025-11-22T14:00:00Z","path":"/p{}","userAgent":"ua{}"}}"#,
                i % 1000,
                i % 7
            ));
            content.push('\n');
            if i % 100_000 == 0 {
                content.push_str("bad line\n");
            }
            i += 1;
        }
        content.push_str("{\"torn");
        let (_keep, file) = file_with(content.as_bytes());
        let unbounded = scan(
            &file,
            0,
            content.len() as u64,
            keys(10_000),
            1,
            classifier(),
        )
        .unwrap();
        // Every part holds every key: a budget the whole range fits is more than a part's share.
        let fits =
            unbounded.paths.bytes() + unbounded.agents.bytes() + unbounded.bots.per_agent.bytes();
        for max_bytes in [usize::MAX, fits, fits / 2] {
            let bounds = Bounds {
                max_keys: 10_000,
                max_bytes,
            };
            let one = scan(&file, 0, content.len() as u64, bounds, 1, classifier()).unwrap();
            let three = scan(&file, 0, content.len() as u64, bounds, 3, classifier()).unwrap();
            assert_eq!(one.records, i);
            assert_eq!(
                (three.records, three.lines, three.skipped, three.end),
                (one.records, one.lines, one.skipped, one.end)
            );
            assert_eq!(three.first_skips, one.first_skips);
            assert_eq!(one.bots.bot_requests + one.bots.human_requests, one.records);
            assert_eq!(
                (three.bots.bot_requests, three.bots.human_requests),
                (one.bots.bot_requests, one.bots.human_requests)
            );
            assert_eq!(one.paths.folded(), max_bytes < fits, "{max_bytes}");
            assert_eq!(three.paths.folded(), max_bytes < fits, "{max_bytes}");
            if max_bytes >= fits {
                // Within the budget the parts keep every key, as one thread does.
                assert_eq!(three.paths, one.paths, "{max_bytes}");
                assert_eq!(three.agents, one.agents);
                assert_eq!(three.bots, one.bots);
            } else {
                // Beyond it, both hold no more than the budget.
                let held =
                    |o: &ScanOutcome| o.paths.bytes() + o.agents.bytes() + o.bots.per_agent.bytes();
                assert!(held(&three) <= max_bytes && held(&one) <= max_bytes);
            }
        }
    }

    #[test]
    fn scans_from_an_offset() {
        let content = format!("{A}\n{B}\n");
        let (_keep, file) = file_with(content.as_bytes());
        let outcome = scan(
            &file,
            (A.len() + 1) as u64,
            content.len() as u64,
            keys(100),
            1,
            classifier(),
        )
        .unwrap();
        assert_eq!(outcome.records, 1);
        assert_eq!(count(&outcome.paths, "/b\"q"), 1);
    }

    fn firefox(version: usize) -> String {
        format!(
            "Mozilla/5.0 (X11; Linux x86_64; rv:12{version}.0) Gecko/20100101 Firefox/12{version}.0"
        )
    }

    #[test]
    fn bots_and_humans_are_split_exactly_also_beyond_the_key_cap() {
        let browser = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";
        let mut content = String::new();
        for i in 0..6 {
            for agent in [browser, &format!("curl/8.{i}.0"), &firefox(i)] {
                content.push_str(&format!(
                    r#"{{"timestamp":"2025-11-22T14:00:00Z","path":"/a","userAgent":"{agent}"}}"#
                ));
                content.push('\n');
            }
        }
        let (_keep, file) = file_with(content.as_bytes());
        // A cap of 2 keys: most user agents are only seen on their lines.
        for cap in [2, 100] {
            let outcome = scan(&file, 0, content.len() as u64, keys(cap), 1, classifier()).unwrap();
            assert_eq!(outcome.records, 18);
            assert!(!classifier().is_bot(&firefox(0)));
            assert_eq!(
                (outcome.bots.bot_requests, outcome.bots.human_requests),
                (6, 12),
                "cap {cap}"
            );
            assert_eq!(outcome.bots.list.as_deref(), Some(classifier().id()));
        }
    }
}
