//! One hour's summary: the counts, their on-disk JSON form (the original's schema plus additions),
//! and the scan state that lets the next pass read only appended bytes.
//!
//! The file is the original's `{"hour", "requestsPerPath", "requestsPerUserAgent"}` with 2-space
//! indentation and sorted keys, plus `source` (how much of the hour file it covers) and
//! `totalRequests`. The state lives inside the summary so that the two can never disagree: the file
//! is replaced atomically (temp file + rename), counts and state together.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::layout;
use crate::record::Hour;

/// The key under which counts beyond `aggregation.maxKeysPerHour` distinct keys are added up.
pub const OVERFLOW_KEY: &str = "(other)";

/// Counts per distinct key, with at most `cap` distinct keys; the rest go to [`OVERFLOW_KEY`].
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Counts {
    map: HashMap<Box<str>, u64>,
    overflow: u64,
    cap: usize,
}

impl Counts {
    /// Empty counts keeping at most `cap` distinct keys.
    pub fn new(cap: usize) -> Counts {
        Counts {
            map: HashMap::new(),
            overflow: 0,
            cap,
        }
    }

    /// Adds `n` to `key` (or to the overflow bucket when the key is new and the cap is reached).
    pub fn add(&mut self, key: &str, n: u64) {
        if key == OVERFLOW_KEY {
            self.overflow += n;
        } else if let Some(count) = self.map.get_mut(key) {
            *count += n;
        } else if self.map.len() < self.cap {
            self.map.insert(key.into(), n);
        } else {
            self.overflow += n;
        }
    }

    /// Adds every count of `other`.
    pub fn merge(&mut self, other: &Counts) {
        for (key, n) in &other.map {
            self.add(key, *n);
        }
        self.overflow += other.overflow;
    }

    /// Every key with its count, the overflow bucket included when non-zero.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.map
            .iter()
            .map(|(k, v)| (k.as_ref(), *v))
            .chain((self.overflow > 0).then_some((OVERFLOW_KEY, self.overflow)))
    }

    /// Number of distinct keys (the overflow bucket counts as one when used).
    pub fn len(&self) -> usize {
        self.map.len() + usize::from(self.overflow > 0)
    }

    /// Whether nothing was counted.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn sorted(&self) -> std::collections::BTreeMap<&str, u64> {
        self.iter().collect()
    }
}

/// How much of the hour file a summary covers. `bytes` is always the end of a complete line.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SourceState {
    /// Bytes of the hour file summarized (a prefix ending with a newline).
    pub bytes: u64,
    /// Lines in that prefix, valid or not.
    pub lines: u64,
    /// Lines in that prefix that were not valid records.
    pub skipped_lines: u64,
    /// CRC-32 of the (up to) [`TAIL_BYTES`] bytes before `bytes`: detects a file that was
    /// rewritten or rolled back and then grew past the old length again.
    pub tail_crc32: u32,
}

/// How many bytes before the summarized end are fingerprinted.
pub const TAIL_BYTES: u64 = 64;

/// One hour's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourSummary {
    pub hour: Hour,
    pub paths: Counts,
    pub agents: Counts,
    pub total: u64,
    pub source: SourceState,
}

/// The JSON form. Field order is alphabetical, so the output has sorted keys like the original.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SummaryFile<'a> {
    hour: String,
    requests_per_path: std::collections::BTreeMap<&'a str, u64>,
    requests_per_user_agent: std::collections::BTreeMap<&'a str, u64>,
    source: SourceState,
    total_requests: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SummaryFileIn {
    hour: String,
    requests_per_path: std::collections::HashMap<String, u64>,
    requests_per_user_agent: std::collections::HashMap<String, u64>,
    source: Option<SourceState>,
}

impl HourSummary {
    /// An empty summary of `hour`.
    pub fn new(hour: Hour, cap: usize) -> HourSummary {
        HourSummary {
            hour,
            paths: Counts::new(cap),
            agents: Counts::new(cap),
            total: 0,
            source: SourceState::default(),
        }
    }

    /// Counts one record.
    pub fn add(&mut self, path: &str, agent: &str) {
        self.paths.add(path, 1);
        self.agents.add(agent, 1);
        self.total += 1;
    }

    /// Adds every count of `other` (same hour).
    pub fn merge(&mut self, other: &HourSummary) {
        self.paths.merge(&other.paths);
        self.agents.merge(&other.agents);
        self.total += other.total;
    }

    /// The summary as the file holds it: pretty JSON, 2-space indent, sorted keys.
    pub fn to_json(&self) -> Vec<u8> {
        let file = SummaryFile {
            hour: self.hour.to_string(),
            requests_per_path: self.paths.sorted(),
            requests_per_user_agent: self.agents.sorted(),
            source: self.source,
            total_requests: self.total,
        };
        let mut out = serde_json::to_vec_pretty(&file).expect("a summary always serializes");
        out.push(b'\n');
        out
    }

    /// Parses a summary file. A summary without `source` (e.g. written by the original service)
    /// parses with a zero state, so the hour is rebuilt from the start.
    pub fn from_json(bytes: &[u8], cap: usize) -> Result<HourSummary, serde_json::Error> {
        let file: SummaryFileIn = serde_json::from_slice(bytes)?;
        let hour = chrono::DateTime::parse_from_rfc3339(&file.hour)
            .map(|ts| Hour::of(&ts.to_utc()))
            .map_err(serde::de::Error::custom)?;
        let mut summary = HourSummary::new(hour, cap);
        for (key, n) in &file.requests_per_path {
            summary.paths.add(key, *n);
        }
        for (key, n) in &file.requests_per_user_agent {
            summary.agents.add(key, *n);
        }
        summary.total = summary.paths.iter().map(|(_, n)| n).sum();
        summary.source = file.source.unwrap_or_default();
        Ok(summary)
    }
}

/// Writes a summary atomically: temp file in the same directory, fsync, rename.
pub fn write_summary(analytics_dir: &Path, summary: &HourSummary) -> io::Result<()> {
    let path = analytics_dir.join(layout::summary_file(summary.hour));
    let dir = path.parent().expect("a summary path has a parent");
    fs::create_dir_all(dir)?;
    let temp = path.with_extension("json.tmp");
    let mut file = File::create(&temp)?;
    file.write_all(&summary.to_json())?;
    file.sync_data()?;
    fs::rename(&temp, &path)
}

/// The `source` state and `totalRequests` of a summary, read from the end of the file only, so
/// a restart learns what every hour covers without parsing every map.
pub fn read_tail(path: &Path) -> io::Result<Option<(SourceState, u64)>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let length = file.metadata()?.len();
    let start = length.saturating_sub(1024);
    file.seek(SeekFrom::Start(start))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    Ok(parse_tail(&tail))
}

fn parse_tail(tail: &[u8]) -> Option<(SourceState, u64)> {
    const SOURCE: &[u8] = b"\n  \"source\": ";
    const TOTAL: &[u8] = b"\n  \"totalRequests\": ";
    let source_at = memchr::memmem::rfind(tail, SOURCE)? + SOURCE.len();
    let source: SourceState = serde_json::Deserializer::from_slice(&tail[source_at..])
        .into_iter()
        .next()?
        .ok()?;
    let total_at = memchr::memmem::rfind(tail, TOTAL)? + TOTAL.len();
    let total: u64 = serde_json::Deserializer::from_slice(&tail[total_at..])
        .into_iter()
        .next()?
        .ok()?;
    Some((source, total))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour() -> Hour {
        layout::parse_hour_file("2025-11-22/14.log.json").unwrap()
    }

    #[test]
    fn json_matches_the_original_layout() {
        let mut summary = HourSummary::new(hour(), 10);
        summary.add("/login", "curl/7.68.0");
        summary.add("/home", "Mozilla/5.0");
        summary.source = SourceState {
            bytes: 160,
            lines: 2,
            skipped_lines: 0,
            tail_crc32: 7,
        };
        let text = String::from_utf8(summary.to_json()).unwrap();
        assert_eq!(
            text,
            r#"{
  "hour": "2025-11-22T14:00:00Z",
  "requestsPerPath": {
    "/home": 1,
    "/login": 1
  },
  "requestsPerUserAgent": {
    "Mozilla/5.0": 1,
    "curl/7.68.0": 1
  },
  "source": {
    "bytes": 160,
    "lines": 2,
    "skippedLines": 0,
    "tailCrc32": 7
  },
  "totalRequests": 2
}
"#
        );
        let parsed = HourSummary::from_json(text.as_bytes(), 10).unwrap();
        assert_eq!(parsed, summary);
        assert_eq!(parse_tail(text.as_bytes()), Some((summary.source, 2)));
    }

    #[test]
    fn empty_maps_print_as_braces() {
        let text = String::from_utf8(HourSummary::new(hour(), 10).to_json()).unwrap();
        assert!(text.contains("\"requestsPerPath\": {},"), "{text}");
    }

    #[test]
    fn keys_beyond_the_cap_go_to_the_overflow_bucket_and_totals_stay_right() {
        let mut summary = HourSummary::new(hour(), 2);
        for path in ["/a", "/b", "/c", "/a", "/d"] {
            summary.add(path, "ua");
        }
        let counts: Vec<(&str, u64)> = summary.paths.sorted().into_iter().collect();
        assert_eq!(counts, [("(other)", 2), ("/a", 2), ("/b", 1)]);
        assert_eq!(summary.total, 5);
        let reparsed = HourSummary::from_json(&summary.to_json(), 2).unwrap();
        assert_eq!(reparsed.paths, summary.paths);
        assert_eq!(reparsed.total, 5);
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = HourSummary::new(hour(), 10);
        a.add("/a", "x");
        let mut b = HourSummary::new(hour(), 10);
        b.add("/a", "y");
        b.add("/b", "y");
        a.merge(&b);
        assert_eq!(a.total, 3);
        assert_eq!(a.paths.sorted().get("/a"), Some(&2));
        assert_eq!(a.agents.sorted().get("y"), Some(&2));
    }

    #[test]
    fn original_summaries_without_state_parse_with_zero_state() {
        let original = br#"{"hour":"2025-11-22T14:00:00Z","requestsPerPath":{"/a":3},"requestsPerUserAgent":{"x":3}}"#;
        let summary = HourSummary::from_json(original, 10).unwrap();
        assert_eq!(summary.total, 3);
        assert_eq!(summary.source, SourceState::default());
        assert_eq!(parse_tail(original), None);
    }
}
