//! One hour's summary: the counts, their on-disk JSON form (the original's schema plus additions),
//! and the scan state that lets the next pass read only appended bytes.
//!
//! The file is the original's `{"hour", "requestsPerPath", "requestsPerUserAgent"}` with 2-space
//! indentation and sorted keys, plus `source` (how much of the hour file it covers),
//! `totalRequests`, and the bot/human split ([`BotCounts`]: `botList`, `botRequests`,
//! `humanRequests`, `requestsPerBotUserAgent`). The state lives inside the summary so that the two
//! can never disagree: the file is replaced atomically (temp file + rename), counts and state
//! together. Older summaries (the original's, or ours before the split) still parse; they have no
//! split until their hour is classified again.

use std::fs::{self, File};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::Path;

use hashbrown::HashMap;
use serde::{Deserialize, Serialize};

use crate::layout;
use crate::record::Hour;

/// The key under which counts beyond `aggregation.maxKeysPerHour` distinct keys, or beyond
/// `aggregation.maxSummaryBytes`, are added up.
pub const OVERFLOW_KEY: &str = "(other)";

/// What one entry of a map costs in a summary file: its line `    "<key>": <count>,\n`, with the
/// key as JSON escapes it and room for the largest count. Summing it over every key held bounds
/// the file's size (plus [`SUMMARY_FIXED_BYTES`]) and, near enough, the memory the maps take.
pub fn entry_bytes(key: &str) -> usize {
    const LINE: usize = "    \"\": ,\n".len() + "18446744073709551615".len();
    let escapes: usize = key
        .bytes()
        .map(|b| match b {
            b'"' | b'\\' | b'\n' | b'\r' | b'\t' | 0x08 | 0x0c => 1,
            0..0x20 => 5,
            _ => 0,
        })
        .sum();
    key.len() + escapes + LINE
}

/// The most a summary file holds beyond its maps' entries ([`entry_bytes`]): the hour, the bot
/// list's name, the totals, `source` and `truncated`, with their indentation.
pub const SUMMARY_FIXED_BYTES: usize = 1024;

/// Counts per distinct key, with at most `cap` distinct keys; the rest go to [`OVERFLOW_KEY`].
/// A key is also sent there when its entry would not fit the room its caller gives (the byte
/// budget of the summary or answer the map belongs to, shared with the other maps).
#[derive(Debug, Clone, Default)]
pub struct Counts {
    map: HashMap<Box<str>, u64>,
    overflow: u64,
    cap: usize,
    /// [`entry_bytes`] of the keys held.
    bytes: usize,
    /// Some key's count went to the overflow bucket because a bound was reached.
    folded: bool,
}

/// Equal when they count the same (how they got there, e.g. whether a bound was reached, is not
/// compared: a summary file keeps it for the whole summary, not per map).
impl PartialEq for Counts {
    fn eq(&self, other: &Counts) -> bool {
        self.map == other.map && self.overflow == other.overflow && self.cap == other.cap
    }
}

impl Eq for Counts {}

impl Counts {
    /// Empty counts keeping at most `cap` distinct keys.
    pub fn new(cap: usize) -> Counts {
        Counts {
            cap,
            ..Counts::default()
        }
    }

    /// Counts parsed from a summary's map, keeping at most `cap` distinct keys in `room` bytes
    /// (which shrinks by what they take). The map is kept as it is when it fits (no copy of its
    /// keys); otherwise the keys with the most requests are kept.
    fn from_map(map: HashMap<Box<str>, u64>, cap: usize, room: &mut usize) -> Counts {
        let bytes: usize = map.keys().map(|k| entry_bytes(k)).sum();
        if map.len() <= cap && bytes <= *room && !map.contains_key(OVERFLOW_KEY) {
            *room -= bytes;
            return Counts {
                map,
                cap,
                bytes,
                ..Counts::default()
            };
        }
        let mut entries: Vec<(Box<str>, u64)> = map.into_iter().collect();
        entries.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(&b.0)));
        let mut counts = Counts::new(cap);
        for (key, n) in entries {
            counts.add(&key, n, room);
        }
        counts
    }

    /// Adds `n` to `key`, or to the overflow bucket when the key is new and a bound is reached:
    /// `cap` keys, or an entry that does not fit `room` (which shrinks by what a new key takes).
    /// Whether the count went to the key's own entry (not to the overflow bucket, which also
    /// takes a key that is literally [`OVERFLOW_KEY`]).
    pub fn add(&mut self, key: &str, n: u64, room: &mut usize) -> bool {
        if key == OVERFLOW_KEY {
            self.overflow += n;
            return false;
        }
        if let Some(count) = self.map.get_mut(key) {
            *count += n;
            return true;
        }
        let cost = entry_bytes(key);
        if self.map.len() < self.cap && cost <= *room {
            *room -= cost;
            self.bytes += cost;
            self.map.insert(key.into(), n);
            true
        } else {
            self.overflow += n;
            self.folded = true;
            false
        }
    }

    /// Adds every count of `other`, new keys taking from `room`.
    pub fn merge(&mut self, other: &Counts, room: &mut usize) {
        for (key, n) in &other.map {
            self.add(key, *n, room);
        }
        self.overflow += other.overflow;
        self.folded |= other.folded;
    }

    /// Every key with its count, the overflow bucket included when non-zero.
    pub fn iter(&self) -> impl Iterator<Item = (&str, u64)> {
        self.map
            .iter()
            .map(|(k, v)| (k.as_ref(), *v))
            .chain((self.overflow > 0).then_some((OVERFLOW_KEY, self.overflow)))
    }

    /// Every key with its count, without the overflow bucket.
    pub fn entries(&self) -> impl Iterator<Item = (&str, u64)> {
        self.map.iter().map(|(k, v)| (k.as_ref(), *v))
    }

    /// Whether some counts went to the overflow bucket (their keys are unknown).
    pub fn overflowed(&self) -> bool {
        self.overflow > 0
    }

    /// Whether a bound (keys or bytes) sent some key's counts to the overflow bucket.
    pub fn folded(&self) -> bool {
        self.folded
    }

    /// [`entry_bytes`] of the keys held.
    pub fn bytes(&self) -> usize {
        self.bytes
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

/// How much a summary's maps may hold: `aggregation.maxKeysPerHour` distinct keys in each map,
/// and `aggregation.maxSummaryBytes` of entries ([`entry_bytes`]) in all of them together.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Bounds {
    pub max_keys: usize,
    pub max_bytes: usize,
}

impl Bounds {
    /// No bound (a summary read for a query, whose file size was checked first).
    pub const NONE: Bounds = Bounds {
        max_keys: usize::MAX,
        max_bytes: usize::MAX,
    };

    /// The largest summary file these bounds let an aggregator write.
    pub fn max_file_bytes(&self) -> u64 {
        self.max_bytes.saturating_add(SUMMARY_FIXED_BYTES) as u64
    }
}

/// One hour's counts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourSummary {
    pub hour: Hour,
    pub paths: Counts,
    pub agents: Counts,
    pub total: u64,
    pub source: SourceState,
    pub bots: BotCounts,
    /// The bytes its maps may hold together.
    max_bytes: usize,
    /// Read from a file that said so (`"truncated": true`); see [`HourSummary::truncated`].
    was_truncated: bool,
}

/// An hour's requests split into bots and humans by user agent (see `analytics::bots`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BotCounts {
    /// The id of the bot list the split was made with (`BotClassifier::id`); `None` for a summary
    /// written before the split existed, which has none yet.
    pub list: Option<String>,
    pub bot_requests: u64,
    pub human_requests: u64,
    /// Requests per user agent classified as a bot.
    pub per_agent: Counts,
}

impl BotCounts {
    /// No requests yet, split with the list `list`.
    pub fn new(list: &str, cap: usize) -> BotCounts {
        BotCounts {
            list: Some(list.to_owned()),
            bot_requests: 0,
            human_requests: 0,
            per_agent: Counts::new(cap),
        }
    }

    /// No split: the summary predates it.
    fn unclassified(cap: usize) -> BotCounts {
        BotCounts {
            list: None,
            ..BotCounts::new("", cap)
        }
    }

    /// Counts `n` requests of `agent` (a new bot user agent taking from `room`).
    pub fn add(&mut self, agent: &str, bot: bool, n: u64, room: &mut usize) {
        if bot {
            self.bot_requests += n;
            self.per_agent.add(agent, n, room);
        } else {
            self.human_requests += n;
        }
    }

    /// Adds `other`, which covers other requests of the same hour and was split with the same list.
    pub fn merge(&mut self, other: &BotCounts, room: &mut usize) {
        self.bot_requests += other.bot_requests;
        self.human_requests += other.human_requests;
        self.per_agent.merge(&other.per_agent, room);
    }
}

/// The JSON form. Field order is alphabetical, so the output has sorted keys like the original.
#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct SummaryFile<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    bot_list: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bot_requests: Option<u64>,
    hour: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    human_requests: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    requests_per_bot_user_agent: Option<std::collections::BTreeMap<&'a str, u64>>,
    requests_per_path: std::collections::BTreeMap<&'a str, u64>,
    requests_per_user_agent: std::collections::BTreeMap<&'a str, u64>,
    source: SourceState,
    total_requests: u64,
    /// Only in summaries whose maps reached a bound (keys counted under `(other)`), so that every
    /// other summary is written exactly as before the bound existed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    truncated: bool,
}

/// The maps are parsed straight into the maps [`Counts`] keeps, so a summary is held once.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SummaryFileIn {
    hour: String,
    requests_per_path: HashMap<Box<str>, u64>,
    requests_per_user_agent: HashMap<Box<str>, u64>,
    source: Option<SourceState>,
    bot_list: Option<String>,
    #[serde(default)]
    bot_requests: u64,
    #[serde(default)]
    human_requests: u64,
    #[serde(default)]
    requests_per_bot_user_agent: HashMap<Box<str>, u64>,
    #[serde(default)]
    truncated: bool,
}

impl HourSummary {
    /// An empty summary of `hour` within `bounds`, split into bots and humans with the bot list
    /// `bot_list`.
    pub fn new(hour: Hour, bounds: Bounds, bot_list: &str) -> HourSummary {
        HourSummary {
            hour,
            paths: Counts::new(bounds.max_keys),
            agents: Counts::new(bounds.max_keys),
            total: 0,
            source: SourceState::default(),
            bots: BotCounts::new(bot_list, bounds.max_keys),
            max_bytes: bounds.max_bytes,
            was_truncated: false,
        }
    }

    /// The bytes its maps may still take.
    fn room(&self) -> usize {
        self.max_bytes.saturating_sub(self.bytes())
    }

    /// [`entry_bytes`] of every key its maps hold: what it costs in memory, near enough, and
    /// what its file holds beyond [`SUMMARY_FIXED_BYTES`].
    pub fn bytes(&self) -> usize {
        self.paths.bytes() + self.agents.bytes() + self.bots.per_agent.bytes()
    }

    /// Whether some keys are counted under `(other)` because a bound was reached (the file says
    /// `"truncated": true`); the totals are exact all the same.
    pub fn truncated(&self) -> bool {
        self.was_truncated
            || self.paths.folded()
            || self.agents.folded()
            || self.bots.per_agent.folded()
    }

    /// Counts one record.
    pub fn add(&mut self, path: &str, agent: &str, bot: bool) {
        let mut room = self.room();
        self.paths.add(path, 1, &mut room);
        self.agents.add(agent, 1, &mut room);
        self.bots.add(agent, bot, 1, &mut room);
        self.total += 1;
    }

    /// Adds the counts of `records` more records of the same hour, split with the same list.
    pub fn add_counts(&mut self, paths: &Counts, agents: &Counts, bots: &BotCounts, records: u64) {
        let mut room = self.room();
        self.paths.merge(paths, &mut room);
        self.agents.merge(agents, &mut room);
        self.bots.merge(bots, &mut room);
        self.total += records;
    }

    /// [`HourSummary::add_counts`] of maps made within the same bounds, taken as they are when
    /// this summary has counted nothing yet (no copy of their keys).
    pub fn absorb(&mut self, paths: Counts, agents: Counts, bots: BotCounts, records: u64) {
        let nothing_yet = self.total == 0
            && self.bytes() == 0
            && !self.paths.overflowed()
            && !self.agents.overflowed()
            && !self.bots.per_agent.overflowed();
        let fits = paths.cap == self.paths.cap
            && agents.cap == self.agents.cap
            && bots.per_agent.cap == self.bots.per_agent.cap
            && paths.bytes() + agents.bytes() + bots.per_agent.bytes() <= self.max_bytes
            && bots.list == self.bots.list
            && self.bots.bot_requests + self.bots.human_requests == 0;
        if nothing_yet && fits {
            (self.paths, self.agents, self.bots) = (paths, agents, bots);
            self.total = records;
        } else {
            self.add_counts(&paths, &agents, &bots, records);
        }
    }

    /// Adds every count of `other` (same hour, same bot list).
    pub fn merge(&mut self, other: &HourSummary) {
        self.add_counts(&other.paths, &other.agents, &other.bots, other.total);
        self.was_truncated |= other.was_truncated;
    }

    /// Splits the requests into bots and humans again from the user-agent counts, with the list
    /// `bot_list` and its test `is_bot`. Impossible (`false`, nothing changed) when some user
    /// agents went to the overflow bucket: their requests can only be classified from the hour
    /// file.
    pub fn reclassify(&mut self, bot_list: &str, is_bot: impl Fn(&str) -> bool) -> bool {
        if self.agents.overflowed() {
            return false;
        }
        let mut bots = BotCounts::new(bot_list, self.bots.per_agent.cap);
        let mut room = self.room() + self.bots.per_agent.bytes();
        for (agent, n) in self.agents.iter() {
            bots.add(agent, is_bot(agent), n, &mut room);
        }
        self.bots = bots;
        true
    }

    /// The summary as the file holds it: pretty JSON, 2-space indent, sorted keys.
    pub fn to_json(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.write_json(&mut out)
            .expect("a summary always serializes into memory");
        out
    }

    /// [`HourSummary::to_json`] written to `out` as it is made, not held whole in memory.
    pub fn write_json(&self, mut out: impl Write) -> io::Result<()> {
        let classified = self.bots.list.is_some();
        let file = SummaryFile {
            bot_list: self.bots.list.as_deref(),
            bot_requests: classified.then_some(self.bots.bot_requests),
            human_requests: classified.then_some(self.bots.human_requests),
            requests_per_bot_user_agent: classified.then(|| self.bots.per_agent.sorted()),
            hour: self.hour.to_string(),
            requests_per_path: self.paths.sorted(),
            requests_per_user_agent: self.agents.sorted(),
            source: self.source,
            total_requests: self.total,
            truncated: self.truncated(),
        };
        serde_json::to_writer_pretty(&mut out, &file)?;
        out.write_all(b"\n")
    }

    /// Parses a summary file, keeping its maps within `bounds` (a summary written with larger
    /// bounds keeps its most requested keys and counts the rest under `(other)`). A summary
    /// without `source` (e.g. written by the original service) parses with a zero state, so the
    /// hour is rebuilt from the start; one without `botList` parses without a bot/human split
    /// (`bots.list` is `None`).
    pub fn from_json(bytes: &[u8], bounds: Bounds) -> Result<HourSummary, serde_json::Error> {
        let file: SummaryFileIn = serde_json::from_slice(bytes)?;
        let hour = chrono::DateTime::parse_from_rfc3339(&file.hour)
            .map(|ts| Hour::of(&ts.to_utc()))
            .map_err(serde::de::Error::custom)?;
        let cap = bounds.max_keys;
        let mut room = bounds.max_bytes;
        let mut summary = HourSummary::new(hour, bounds, "");
        summary.paths = Counts::from_map(file.requests_per_path, cap, &mut room);
        summary.agents = Counts::from_map(file.requests_per_user_agent, cap, &mut room);
        summary.total = summary.paths.iter().map(|(_, n)| n).sum();
        summary.source = file.source.unwrap_or_default();
        summary.bots = match file.bot_list {
            None => BotCounts::unclassified(cap),
            Some(list) => BotCounts {
                list: Some(list),
                bot_requests: file.bot_requests,
                human_requests: file.human_requests,
                per_agent: Counts::from_map(file.requests_per_bot_user_agent, cap, &mut room),
            },
        };
        summary.was_truncated = file.truncated;
        Ok(summary)
    }
}

/// Writes a summary atomically: temp file in the same directory, then rename, so a reader sees the
/// old summary or the new one, never half of one.
///
/// Not fsynced: a summary is derived data, and every way a crash can leave it is caught up. An
/// old summary (the rename was lost) covers fewer bytes and is brought up to date incrementally;
/// an empty or partly written one (the rename outlived the data) does not parse and its hour is
/// rebuilt from the hour file; one covering more than the hour file kept (its own unsynced tail
/// lost) is rebuilt too (`source.bytes`, `tailCrc32`). An fsync per summary made a query that
/// catches up 24 hours ~10 times slower (24 fsyncs: 180 ms instead of 16 ms here).
pub fn write_summary(analytics_dir: &Path, summary: &HourSummary) -> io::Result<()> {
    let path = analytics_dir.join(layout::summary_file(summary.hour));
    let dir = path.parent().expect("a summary path has a parent");
    fs::create_dir_all(dir)?;
    let temp = path.with_extension("json.tmp");
    let mut file = io::BufWriter::new(File::create(&temp)?);
    summary.write_json(&mut file)?;
    file.flush()?;
    drop(file);
    fs::rename(&temp, &path)
}

/// What a summary says about itself, read from its first and last bytes only, so that a restart
/// (and `GET /analytics/hours`) learns what every hour covers without parsing every map.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SummaryHead {
    pub source: SourceState,
    pub total: u64,
    /// `botList`, `botRequests`, `humanRequests`; `None` for a summary without the split.
    pub bots: Option<(String, u64, u64)>,
}

/// How many bytes at each end of a summary [`read_head`] looks at.
const END_BYTES: u64 = 1024;

/// The [`SummaryHead`] of the summary at `path`; `None` if there is no summary or it has no
/// `source` (the original's).
pub fn read_head(path: &Path) -> io::Result<Option<SummaryHead>> {
    let mut file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let length = file.metadata()?.len();
    let mut head = vec![0u8; length.min(END_BYTES) as usize];
    file.read_exact(&mut head)?;
    file.seek(SeekFrom::Start(length.saturating_sub(END_BYTES)))?;
    let mut tail = Vec::new();
    file.read_to_end(&mut tail)?;
    Ok(parse_ends(&head, &tail))
}

/// The value of the top-level key `key` (as the pretty printer writes it: two spaces of indent),
/// searched from the start (`first`) or from the end of `text`.
fn top_level<T: serde::de::DeserializeOwned>(text: &[u8], key: &str, first: bool) -> Option<T> {
    let needle = format!("\n  \"{key}\": ");
    let at = if first {
        memchr::memmem::find(text, needle.as_bytes())?
    } else {
        memchr::memmem::rfind(text, needle.as_bytes())?
    } + needle.len();
    serde_json::Deserializer::from_slice(&text[at..])
        .into_iter()
        .next()?
        .ok()
}

fn parse_ends(head: &[u8], tail: &[u8]) -> Option<SummaryHead> {
    let source = top_level(tail, "source", false)?;
    let total = top_level(tail, "totalRequests", false)?;
    let bots = top_level::<String>(head, "botList", true).and_then(|list| {
        Some((
            list,
            top_level(head, "botRequests", true)?,
            top_level(head, "humanRequests", true)?,
        ))
    });
    Some(SummaryHead {
        source,
        total,
        bots,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hour() -> Hour {
        layout::parse_hour_file("2025-11-22/14.log.json").unwrap()
    }

    const LIST: &str = "isbot@5.2.3#0000abcd";

    /// At most `n` keys per map, no byte budget.
    fn keys(n: usize) -> Bounds {
        Bounds {
            max_keys: n,
            max_bytes: usize::MAX,
        }
    }

    #[test]
    fn json_matches_the_original_layout_plus_the_bot_split() {
        let mut summary = HourSummary::new(hour(), keys(10), LIST);
        summary.add("/login", "curl/7.68.0", true);
        summary.add("/home", "Mozilla/5.0 (X11; Linux x86_64)", false);
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
  "botList": "isbot@5.2.3#0000abcd",
  "botRequests": 1,
  "hour": "2025-11-22T14:00:00Z",
  "humanRequests": 1,
  "requestsPerBotUserAgent": {
    "curl/7.68.0": 1
  },
  "requestsPerPath": {
    "/home": 1,
    "/login": 1
  },
  "requestsPerUserAgent": {
    "Mozilla/5.0 (X11; Linux x86_64)": 1,
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
        let parsed = HourSummary::from_json(text.as_bytes(), keys(10)).unwrap();
        assert_eq!(parsed, summary);
        assert_eq!(
            parse_ends(text.as_bytes(), text.as_bytes()),
            Some(SummaryHead {
                source: summary.source,
                total: 2,
                bots: Some((LIST.to_owned(), 1, 1)),
            })
        );
    }

    #[test]
    fn empty_maps_print_as_braces() {
        let text = String::from_utf8(HourSummary::new(hour(), keys(10), LIST).to_json()).unwrap();
        assert!(text.contains("\"requestsPerPath\": {},"), "{text}");
        assert!(text.contains("\"requestsPerBotUserAgent\": {},"), "{text}");
    }

    #[test]
    fn keys_beyond_the_cap_go_to_the_overflow_bucket_and_totals_stay_right() {
        let mut summary = HourSummary::new(hour(), keys(2), LIST);
        for path in ["/a", "/b", "/c", "/a", "/d"] {
            summary.add(path, "ua", false);
        }
        let counts: Vec<(&str, u64)> = summary.paths.sorted().into_iter().collect();
        assert_eq!(counts, [("(other)", 2), ("/a", 2), ("/b", 1)]);
        assert_eq!(summary.total, 5);
        let reparsed = HourSummary::from_json(&summary.to_json(), keys(2)).unwrap();
        assert_eq!(reparsed.paths, summary.paths);
        assert_eq!(reparsed.total, 5);
    }

    #[test]
    fn entry_bytes_is_the_line_of_the_key_in_the_file() {
        for key in ["/a", "/quote\"d", "tab\there", "bell\u{7}", "caf\u{e9}"] {
            let mut summary = HourSummary::new(hour(), keys(10), LIST);
            summary.add(key, "ua", false);
            let text = String::from_utf8(summary.to_json()).unwrap();
            let escaped = serde_json::to_string(key).unwrap();
            let line = format!("    {escaped}: 1\n");
            assert!(text.contains(&line), "{text}");
            // The entry's cost is that line with room for the largest count and a comma.
            assert_eq!(entry_bytes(key), line.len() - 1 + 20 + 1, "{key:?}");
        }
    }

    #[test]
    fn a_byte_budget_shared_by_the_maps_sends_further_keys_to_the_overflow_bucket() {
        let budget = entry_bytes("/abc") + entry_bytes("ua") + entry_bytes("/d") - 1;
        let bounds = Bounds {
            max_keys: 100,
            max_bytes: budget,
        };
        let mut summary = HourSummary::new(hour(), bounds, LIST);
        summary.add("/abc", "ua", false);
        assert!(!summary.truncated());
        summary.add("/d", "ua", false);
        summary.add("/abc", "bot", true);
        let paths: Vec<(&str, u64)> = summary.paths.sorted().into_iter().collect();
        assert_eq!(paths, [("(other)", 1), ("/abc", 2)]);
        let agents: Vec<(&str, u64)> = summary.agents.sorted().into_iter().collect();
        assert_eq!(agents, [("(other)", 1), ("ua", 2)]);
        assert_eq!(summary.bots.per_agent.sorted().get("(other)"), Some(&1));
        assert_eq!((summary.total, summary.bots.bot_requests), (3, 1));
        assert!(summary.truncated());
        assert_eq!(summary.bytes(), entry_bytes("/abc") + entry_bytes("ua"));
        let text = String::from_utf8(summary.to_json()).unwrap();
        assert!(
            text.ends_with("  \"totalRequests\": 3,\n  \"truncated\": true\n}\n"),
            "{text}"
        );
        let reparsed = HourSummary::from_json(text.as_bytes(), bounds).unwrap();
        assert_eq!(reparsed, {
            let mut expected = summary.clone();
            expected.was_truncated = true;
            expected
        });
        assert!(reparsed.truncated());
        assert_eq!(
            parse_ends(text.as_bytes(), text.as_bytes()).map(|head| head.total),
            Some(3),
            "the marker after the totals leaves the head readable"
        );
    }

    #[test]
    fn a_summary_file_stays_within_its_entries_and_the_fixed_part() {
        let bounds = Bounds {
            max_keys: usize::MAX,
            max_bytes: 4096,
        };
        let mut summary = HourSummary::new(hour(), bounds, "isbot@99.99.99#4294967295");
        for i in 0..200 {
            summary.add(
                &format!("/p\"{i}\n"),
                &format!("agent {i}\u{1}"),
                i % 2 == 0,
            );
        }
        summary.total = u64::MAX;
        summary.bots.bot_requests = u64::MAX;
        summary.bots.human_requests = u64::MAX;
        summary.source = SourceState {
            bytes: u64::MAX,
            lines: u64::MAX,
            skipped_lines: u64::MAX,
            tail_crc32: u32::MAX,
        };
        assert!(summary.truncated() && summary.bytes() <= 4096);
        let file = summary.to_json().len();
        assert!(file <= summary.bytes() + SUMMARY_FIXED_BYTES, "{file}");
        assert!(file as u64 <= bounds.max_file_bytes());
    }

    #[test]
    fn a_summary_read_with_smaller_bounds_keeps_its_most_requested_keys() {
        let mut summary = HourSummary::new(hour(), keys(10), LIST);
        for (path, n) in [("/rare", 1), ("/top", 5), ("/mid", 3)] {
            for _ in 0..n {
                summary.add(path, "ua", false);
            }
        }
        let text = summary.to_json();
        assert!(
            !String::from_utf8(text.clone())
                .unwrap()
                .contains("truncated")
        );
        let smaller = Bounds {
            max_keys: 10,
            max_bytes: entry_bytes("/top") + entry_bytes("/mid") + entry_bytes("ua"),
        };
        let reparsed = HourSummary::from_json(&text, smaller).unwrap();
        let paths: Vec<(&str, u64)> = reparsed.paths.sorted().into_iter().collect();
        assert_eq!(paths, [("(other)", 1), ("/mid", 3), ("/top", 5)]);
        assert_eq!(reparsed.total, 9);
        assert!(reparsed.truncated());
    }

    #[test]
    fn merge_adds_counts() {
        let mut a = HourSummary::new(hour(), keys(10), LIST);
        a.add("/a", "x", false);
        let mut b = HourSummary::new(hour(), keys(10), LIST);
        b.add("/a", "y", true);
        b.add("/b", "y", true);
        a.merge(&b);
        assert_eq!(a.total, 3);
        assert_eq!(a.paths.sorted().get("/a"), Some(&2));
        assert_eq!(a.agents.sorted().get("y"), Some(&2));
        assert_eq!((a.bots.bot_requests, a.bots.human_requests), (2, 1));
        assert_eq!(a.bots.per_agent.sorted().get("y"), Some(&2));
    }

    #[test]
    fn original_summaries_without_state_parse_with_zero_state() {
        let original = br#"{"hour":"2025-11-22T14:00:00Z","requestsPerPath":{"/a":3},"requestsPerUserAgent":{"x":3}}"#;
        let summary = HourSummary::from_json(original, keys(10)).unwrap();
        assert_eq!(summary.total, 3);
        assert_eq!(summary.source, SourceState::default());
        assert_eq!(summary.bots.list, None);
        assert_eq!(parse_ends(original, original), None);
    }

    #[test]
    fn summaries_without_the_split_parse_and_can_be_reclassified() {
        let old = "{\n  \"hour\": \"2025-11-22T14:00:00Z\",\n  \"requestsPerPath\": {\n    \"/a\": 3\n  },\n  \"requestsPerUserAgent\": {\n    \"bot-x\": 2,\n    \"human\": 1\n  },\n  \"source\": {\n    \"bytes\": 10,\n    \"lines\": 3,\n    \"skippedLines\": 0,\n    \"tailCrc32\": 1\n  },\n  \"totalRequests\": 3\n}\n";
        let mut summary = HourSummary::from_json(old.as_bytes(), keys(10)).unwrap();
        assert_eq!(summary.bots.list, None);
        let head = parse_ends(old.as_bytes(), old.as_bytes()).unwrap();
        assert_eq!((head.total, head.bots), (3, None));
        assert!(summary.reclassify(LIST, |agent| agent.starts_with("bot")));
        assert_eq!(summary.bots.list.as_deref(), Some(LIST));
        assert_eq!(
            (summary.bots.bot_requests, summary.bots.human_requests),
            (2, 1)
        );
        // Hidden user agents cannot be classified from the summary.
        let mut overflowed = HourSummary::new(hour(), keys(1), "old");
        overflowed.add("/a", "x", false);
        overflowed.add("/a", "y", false);
        assert!(!overflowed.reclassify(LIST, |_| true));
        assert_eq!(overflowed.bots.list.as_deref(), Some("old"));
    }
}
