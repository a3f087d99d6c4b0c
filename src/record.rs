//! The access-log record and its stored NDJSON line: the compatibility contract with the original
//! service's files.
//!
//! A line is always `{"timestamp":"<RFC 3339 UTC>","path":"...","userAgent":"..."}` with the keys in
//! that order, the timestamp in UTC with `Z` and fractional seconds trimmed of trailing zeros (Go's
//! `RFC3339Nano`). Lines are written straight into per-hour buffers so a batch is encoded once and
//! never held as a vector of owned records.

use std::collections::{BTreeMap, HashMap};
use std::fmt;

use chrono::{DateTime, Datelike, Timelike, Utc};

use crate::site::SiteId;

/// Seconds in one hour.
const HOUR_SECS: i64 = 3600;

/// A UTC event hour, counted in hours since the Unix epoch. It names an hour file and an hourly
/// summary (their names: [`crate::layout`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Hour(i64);

impl Hour {
    /// The hour that contains `ts`.
    pub fn of(ts: &DateTime<Utc>) -> Hour {
        Hour(ts.timestamp().div_euclid(HOUR_SECS))
    }

    /// Hours since the Unix epoch.
    pub fn index(self) -> i64 {
        self.0
    }

    /// The hour with the given index since the epoch.
    pub fn from_index(index: i64) -> Hour {
        Hour(index)
    }

    /// The first instant of the hour.
    pub fn start(self) -> DateTime<Utc> {
        DateTime::from_timestamp(self.0 * HOUR_SECS, 0).expect("hour index within chrono's range")
    }
}

impl fmt::Display for Hour {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.start().format("%Y-%m-%dT%H:00:00Z").to_string())
    }
}

/// Appends `ts` as RFC 3339 in UTC the way Go's `time.RFC3339Nano` prints it: `Z` suffix, and
/// fractional seconds only when non-zero, with trailing zeros trimmed.
///
/// The caller guarantees a four-digit year (validation rejects others).
pub fn write_timestamp(out: &mut Vec<u8>, ts: &DateTime<Utc>) {
    let date = ts.date_naive();
    let time = ts.time();
    let mut buf = [0u8; 30];
    let year = date.year() as u32;
    buf[0] = b'0' + (year / 1000 % 10) as u8;
    buf[1] = b'0' + (year / 100 % 10) as u8;
    buf[2] = b'0' + (year / 10 % 10) as u8;
    buf[3] = b'0' + (year % 10) as u8;
    buf[4] = b'-';
    put2(&mut buf[5..7], date.month());
    buf[7] = b'-';
    put2(&mut buf[8..10], date.day());
    buf[10] = b'T';
    put2(&mut buf[11..13], time.hour());
    buf[13] = b':';
    put2(&mut buf[14..16], time.minute());
    buf[16] = b':';
    put2(&mut buf[17..19], time.second());
    let mut len = 19;
    let mut nanos = time.nanosecond();
    if nanos != 0 {
        buf[len] = b'.';
        len += 1;
        let mut digits = 9;
        while nanos.is_multiple_of(10) {
            nanos /= 10;
            digits -= 1;
        }
        for i in (0..digits).rev() {
            buf[len + i] = b'0' + (nanos % 10) as u8;
            nanos /= 10;
        }
        len += digits;
    }
    buf[len] = b'Z';
    out.extend_from_slice(&buf[..=len]);
}

fn put2(out: &mut [u8], value: u32) {
    out[0] = b'0' + (value / 10) as u8;
    out[1] = b'0' + (value % 10) as u8;
}

/// Appends one NDJSON line (with its trailing newline) for a validated record.
pub fn write_line(out: &mut Vec<u8>, ts: &DateTime<Utc>, path: &str, user_agent: &str) {
    write_line_with(out, |out| write_timestamp(out, ts), path, user_agent);
}

/// [`write_line`], the timestamp written by `timestamp`.
fn write_line_with(
    out: &mut Vec<u8>,
    timestamp: impl FnOnce(&mut Vec<u8>),
    path: &str,
    user_agent: &str,
) {
    out.extend_from_slice(b"{\"timestamp\":\"");
    timestamp(out);
    out.extend_from_slice(b"\",\"path\":");
    write_json_string(out, path);
    out.extend_from_slice(b",\"userAgent\":");
    write_json_string(out, user_agent);
    out.extend_from_slice(b"}\n");
}

/// Splits a line in exactly the stored format, `{"timestamp":"…","path":"…","userAgent":"…"}`
/// (no newline), into its three values, if none of them holds an escape or a control character
/// and none is empty.
/// Lines that are not in that exact form return `None` (a JSON parser must judge them).
pub fn split_stored_line(line: &[u8]) -> Option<(&str, &str, &str)> {
    match stored_line_at(line)? {
        (fields, length) if length == line.len() => Some(fields),
        _ => None,
    }
}

/// [`split_stored_line`] for a line at the start of `bytes` (an element of a JSON array, say):
/// its three values and its length in bytes.
pub fn stored_line_at(bytes: &[u8]) -> Option<((&str, &str, &str), usize)> {
    let layout = stored_layout_at(bytes)?;
    let [timestamp, path, agent] = layout
        .values
        .map(|value| value.is_plain().then(|| std::str::from_utf8(value.text())));
    let fields = (timestamp?.ok()?, path?.ok()?, agent?.ok()?);
    Some((fields, layout.len))
}

/// A line laid out as the store writes one, `{"timestamp":"…","path":"…","userAgent":"…"}` (those
/// keys in that order, no whitespace), found by [`stored_layout_at`]; its values may hold escapes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredLayout<'a> {
    /// The timestamp, path and user agent, in that order.
    pub values: [StoredValue<'a>; 3],
    /// Bytes from the opening brace to the closing one, included.
    pub len: usize,
}

/// One value of a [`StoredLayout`]: a JSON string as it stands in the line.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StoredValue<'a> {
    /// The string with its quotes.
    pub quoted: &'a [u8],
    /// Where its text (after the opening quote) starts in the line.
    pub text_start: usize,
    /// Whether it holds a backslash escape (which is not checked: a JSON parser must read it).
    pub escaped: bool,
}

impl<'a> StoredValue<'a> {
    /// The bytes between the quotes, escapes not undone.
    pub fn text(&self) -> &'a [u8] {
        &self.quoted[1..self.quoted.len() - 1]
    }

    /// [`StoredValue::text`] as a slice of `line`, the line's bytes already known to be UTF-8 (one
    /// check for a whole body costs less than one per value). `None` if `line` is not the text
    /// the layout was found in.
    pub fn text_in<'t>(&self, line: &'t str) -> Option<&'t str> {
        line.get(self.text_start..self.text_start + self.quoted.len() - 2)
    }

    /// No escape and not empty: the text is the value, and may be what encoding it writes.
    pub fn is_plain(&self) -> bool {
        !self.escaped && !self.text().is_empty()
    }
}

/// The line laid out as the store writes one at the start of `bytes`, if there is one: no raw
/// control character in its values (JSON allows none), nothing after its closing brace checked.
pub fn stored_layout_at(bytes: &[u8]) -> Option<StoredLayout<'_>> {
    let at = |rest: &[u8]| bytes.len() - rest.len();
    let rest = bytes.strip_prefix(b"{\"timestamp\":")?;
    let (timestamp, rest) = json_string(rest, at(rest))?;
    let rest = rest.strip_prefix(b",\"path\":")?;
    let (path, rest) = json_string(rest, at(rest))?;
    let rest = rest.strip_prefix(b",\"userAgent\":")?;
    let (agent, rest) = json_string(rest, at(rest))?;
    let rest = rest.strip_prefix(b"}")?;
    Some(StoredLayout {
        values: [timestamp, path, agent],
        len: bytes.len() - rest.len(),
    })
}

/// Reads a timestamp written exactly as [`write_timestamp`] writes it (`2025-11-22T14:23:00Z`,
/// `2025-11-22T14:23:00.5Z`: UTC, no trailing zero in the fraction) in one pass, without the
/// general RFC 3339 parser. `None` for any other text, valid or not, and for dates and times
/// that do not exist (leap seconds included): the caller then asks chrono.
pub fn parse_canonical_timestamp(text: &str) -> Option<DateTime<Utc>> {
    let b = text.as_bytes();
    // `canonical_minute_on` checks everything after the hour, so minutes and seconds are 00-59
    // and the fraction has 1 to 9 digits: no leap second, nothing past nanoseconds.
    if b.len() < 20
        || !(b[4] == b'-' && b[7] == b'-' && b[10] == b'T')
        || !canonical_minute_on(&b[13..])
    {
        return None;
    }
    let digits = |range: std::ops::Range<usize>| -> Option<u32> {
        b[range].iter().try_fold(0u32, |n, &d| {
            d.is_ascii_digit().then(|| n * 10 + u32::from(d - b'0'))
        })
    };
    let fraction = b.len() - 1 - 19;
    let nanos = match fraction {
        0 => 0,
        // `.` and the digits.
        _ => digits(20..b.len() - 1)? * 10u32.pow(10 - fraction as u32),
    };
    let date =
        chrono::NaiveDate::from_ymd_opt(digits(0..4)? as i32, digits(5..7)?, digits(8..10)?)?;
    let (hour, minute, second) = (digits(11..13)?, digits(14..16)?, digits(17..19)?);
    let time = chrono::NaiveTime::from_hms_nano_opt(hour, minute, second, nanos)?;
    Some(date.and_time(time).and_utc())
}

/// Reads the hour of canonical timestamps, as `parse_canonical_timestamp` and [`Hour::of`] would,
/// remembering the last date and hour (`2025-11-22T14`) it read in full: the records of a batch
/// mostly share them, and then only the minutes, seconds and fraction are left to check.
#[derive(Debug, Default)]
pub struct CanonicalHours {
    last: Option<([u8; 13], Hour)>,
}

impl CanonicalHours {
    /// The hour of `text` if [`parse_canonical_timestamp`] reads it, else `None`.
    pub fn hour(&mut self, text: &str) -> Option<Hour> {
        let b = text.as_bytes();
        if let Some((prefix, hour)) = &self.last
            && b.len() >= 20
            && b[..13] == prefix[..]
        {
            return canonical_minute_on(&b[13..]).then_some(*hour);
        }
        let hour = Hour::of(&parse_canonical_timestamp(text)?);
        let prefix = b[..13]
            .try_into()
            .expect("a canonical timestamp is 20 bytes or more");
        self.last = Some((prefix, hour));
        Some(hour)
    }
}

/// Whether `tail` is the rest of a canonical timestamp after its hour: `:MM:SS` (each 00 to 59),
/// then nothing or `.` and 1 to 9 digits not ending in 0, then `Z`. The one definition of that
/// part, for [`parse_canonical_timestamp`] and [`CanonicalHours`].
fn canonical_minute_on(tail: &[u8]) -> bool {
    let two_digits = |at: usize| matches!((tail[at], tail[at + 1]), (b'0'..=b'5', b'0'..=b'9'));
    let [b':', _, _, b':', _, _, fraction @ .., b'Z'] = tail else {
        return false;
    };
    let fraction_ok = match fraction {
        [] => true,
        [b'.', digits @ .., last] => {
            digits.len() < 9 && digits.iter().all(u8::is_ascii_digit) && matches!(last, b'1'..=b'9')
        }
        _ => false,
    };
    two_digits(1) && two_digits(4) && fraction_ok
}

/// Splits off the JSON string at the start of `bytes`, up to its closing quote (the first one not
/// escaped); `None` if there is none, or if the string holds a raw control character. `offset`
/// is where `bytes` starts in the line.
fn json_string(bytes: &[u8], offset: usize) -> Option<(StoredValue<'_>, &[u8])> {
    if bytes.first() != Some(&b'"') {
        return None;
    }
    let mut from = 1;
    let mut escaped = false;
    loop {
        let quote = from + memchr::memchr(b'"', &bytes[from..])?;
        let segment = &bytes[from..quote];
        // No early exit: the scan is vectorised. Most values end here.
        let odd = segment
            .iter()
            .fold(false, |odd, &b| odd | (b < 0x20) | (b == b'\\'));
        // The quote is escaped when an odd run of backslashes comes right before it.
        let backslashes = match odd {
            false => 0,
            true if segment.iter().any(|&b| b < 0x20) => return None,
            // No control character, so a backslash.
            true => {
                escaped = true;
                segment.iter().rev().take_while(|&&b| b == b'\\').count()
            }
        };
        if backslashes % 2 == 0 {
            let value = StoredValue {
                quoted: &bytes[..=quote],
                text_start: offset + 1,
                escaped,
            };
            return Some((value, &bytes[quote + 1..]));
        }
        from = quote + 1;
    }
}

fn write_json_string(out: &mut Vec<u8>, value: &str) {
    // Most values need no escape and are copied whole (the scan has no early exit, so it is
    // vectorised); serde_json writes the others.
    let plain = !value.bytes().fold(false, |escape, b| {
        escape | (b < 0x20) | (b == b'"') | (b == b'\\')
    });
    if plain {
        out.reserve(value.len() + 2);
        out.push(b'"');
        out.extend_from_slice(value.as_bytes());
        out.push(b'"');
        return;
    }
    // Writing a &str into a Vec cannot fail.
    serde_json::to_writer(&mut *out, value).expect("serializing a str into a Vec never fails");
}

/// One hour of one site's records (`site: None`: the root's, without sites): what one hour file
/// (or one hour's objects of a range) holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct SiteHour {
    pub site: Option<SiteId>,
    pub hour: Hour,
}

/// The records of one hour within a batch, as ready-to-append NDJSON lines in request order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HourChunk {
    /// Whose records they are: the site whose key sent them, `None` without sites (the root).
    pub site: Option<SiteId>,
    pub hour: Hour,
    pub lines: Vec<u8>,
    pub records: usize,
}

impl HourChunk {
    /// The site and hour whose file the chunk goes to.
    pub fn site_hour(&self) -> SiteHour {
        SiteHour {
            site: self.site.clone(),
            hour: self.hour,
        }
    }
}

/// A validated batch, encoded: one chunk per event hour, in order of each hour's first record.
///
/// This is what every sink receives; the store appends each chunk contiguously to its site's hour
/// file, and the Kafka sink sends each line as one message.
///
/// A batch is built unsited (its records pushed, each hour's chunk found by hour alone), then
/// handed to its site ([`EncodedBatch::assign_site`]); batches of several sites are combined with
/// [`EncodedBatch::extend`] (a consumer's flush). Nothing is pushed to a batch after either.
#[derive(Debug, Clone, Default)]
pub struct EncodedBatch {
    pub chunks: Vec<HourChunk>,
    /// Where each hour's chunk is, once there are more than [`SCANNED_CHUNKS`]: grouping stays
    /// linear in the number of records however many hours a batch spans.
    index: HashMap<Hour, usize>,
}

/// Up to this many chunks, finding an hour's chunk by a scan from the end beats hashing (records
/// usually come in time order, so the last chunk is the one).
const SCANNED_CHUNKS: usize = 8;

impl PartialEq for EncodedBatch {
    fn eq(&self, other: &Self) -> bool {
        self.chunks == other.chunks
    }
}

impl Eq for EncodedBatch {}

impl EncodedBatch {
    /// Number of records in the batch.
    pub fn records(&self) -> usize {
        self.chunks.iter().map(|c| c.records).sum()
    }

    /// Number of encoded bytes (lines including newlines).
    pub fn bytes(&self) -> usize {
        self.chunks.iter().map(|c| c.lines.len()).sum()
    }

    /// The buffer for `hour`, created at the end on first use.
    pub fn chunk_for(&mut self, hour: Hour) -> &mut HourChunk {
        let found = if self.chunks.len() <= SCANNED_CHUNKS {
            self.chunks.iter().rposition(|c| c.hour == hour)
        } else {
            if self.index.is_empty() {
                self.index = (self.chunks.iter().enumerate())
                    .map(|(position, chunk)| (chunk.hour, position))
                    .collect();
            }
            self.index.get(&hour).copied()
        };
        let position = found.unwrap_or_else(|| {
            self.chunks.push(HourChunk {
                site: None,
                hour,
                lines: Vec::new(),
                records: 0,
            });
            let position = self.chunks.len() - 1;
            if !self.index.is_empty() {
                self.index.insert(hour, position);
            }
            position
        });
        &mut self.chunks[position]
    }

    /// Makes every record of the batch `site`'s: stored in its hour files and objects.
    pub fn assign_site(&mut self, site: Option<&SiteId>) {
        for chunk in &mut self.chunks {
            chunk.site = site.cloned();
        }
    }

    /// Moves `other`'s chunks, each with its site, to the end of this batch: one write of both.
    pub fn extend(&mut self, other: EncodedBatch) {
        // Chunks of one hour may now be there once per site: finding one by hour is over.
        self.index.clear();
        self.chunks.extend(other.chunks);
    }

    /// The current size of every chunk, to undo later appends with [`EncodedBatch::truncate`].
    pub fn mark(&self) -> Vec<(usize, usize)> {
        self.chunks
            .iter()
            .map(|c| (c.lines.len(), c.records))
            .collect()
    }

    /// Undoes every append made since `mark` was taken.
    pub fn truncate(&mut self, mark: &[(usize, usize)]) {
        self.chunks.truncate(mark.len());
        self.index.retain(|_, position| *position < mark.len());
        for (chunk, (bytes, records)) in self.chunks.iter_mut().zip(mark) {
            chunk.lines.truncate(*bytes);
            chunk.records = *records;
        }
    }

    /// Appends a line that is already in the stored format (without its newline) to `hour`'s chunk.
    pub fn push_line(&mut self, hour: Hour, line: &[u8]) {
        let chunk = self.chunk_for(hour);
        chunk.lines.extend_from_slice(line);
        chunk.lines.push(b'\n');
        chunk.records += 1;
    }

    /// Appends one validated record to its hour's chunk.
    pub fn push(&mut self, ts: &DateTime<Utc>, path: &str, user_agent: &str) {
        let chunk = self.chunk_for(Hour::of(ts));
        write_line(&mut chunk.lines, ts, path, user_agent);
        chunk.records += 1;
    }

    /// [`EncodedBatch::push`] for a record of `hour` whose timestamp is given as `canonical`, text
    /// that [`parse_canonical_timestamp`] reads (so exactly what [`write_timestamp`] writes for
    /// it): copied, not formatted again.
    pub fn push_canonical(&mut self, hour: Hour, canonical: &str, path: &str, user_agent: &str) {
        let chunk = self.chunk_for(hour);
        let timestamp = |out: &mut Vec<u8>| out.extend_from_slice(canonical.as_bytes());
        write_line_with(&mut chunk.lines, timestamp, path, user_agent);
        chunk.records += 1;
    }
}

/// A batch being built of the records of several sites (a consumer's buffer, a range of a
/// partition): one [`EncodedBatch`] per site, pushed to as each is, and one batch at the end
/// ([`SiteBatches::into_batch`]) whose chunks each name their site.
#[derive(Debug, Default)]
pub struct SiteBatches {
    by_site: BTreeMap<Option<SiteId>, EncodedBatch>,
}

impl SiteBatches {
    /// Where the next record of `site` is encoded.
    pub fn batch(&mut self, site: Option<&SiteId>) -> &mut EncodedBatch {
        // A site id is an `Arc`: cloning it for the look-up is a reference count.
        self.by_site.entry(site.cloned()).or_default()
    }

    /// Encoded bytes of every site's records.
    pub fn bytes(&self) -> usize {
        self.by_site.values().map(EncodedBatch::bytes).sum()
    }

    /// Records of every site.
    pub fn records(&self) -> usize {
        self.by_site.values().map(EncodedBatch::records).sum()
    }

    /// One batch of every site's records, each chunk assigned its site.
    pub fn into_batch(self) -> EncodedBatch {
        let mut all = EncodedBatch::default();
        for (site, mut batch) in self.by_site {
            batch.assign_site(site.as_ref());
            all.extend(batch);
        }
        all
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn utc(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .unwrap()
            .with_timezone(&Utc)
    }

    fn line(ts: &str, path: &str, ua: &str) -> String {
        let mut out = Vec::new();
        write_line(&mut out, &utc(ts), path, ua);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn line_has_the_original_key_order_and_utc_timestamp() {
        assert_eq!(
            line("2025-11-22T16:23:00+02:00", "/home", "Mozilla/5.0"),
            "{\"timestamp\":\"2025-11-22T14:23:00Z\",\"path\":\"/home\",\"userAgent\":\"Mozilla/5.0\"}\n"
        );
    }

    #[test]
    fn fractions_are_trimmed_like_go_rfc3339nano() {
        let cases = [
            ("2025-11-22T14:23:00.500Z", "2025-11-22T14:23:00.5Z"),
            (
                "2025-11-22T14:23:00.123456789Z",
                "2025-11-22T14:23:00.123456789Z",
            ),
            ("2025-11-22T14:23:00.000Z", "2025-11-22T14:23:00Z"),
            ("2025-11-22T14:23:00.010Z", "2025-11-22T14:23:00.01Z"),
            (
                "0001-01-01T00:00:00.000000001Z",
                "0001-01-01T00:00:00.000000001Z",
            ),
        ];
        for (input, expected) in cases {
            let mut out = Vec::new();
            write_timestamp(&mut out, &utc(input));
            assert_eq!(String::from_utf8(out).unwrap(), expected, "input {input}");
        }
    }

    #[test]
    fn canonical_timestamps_are_read_without_chrono_and_others_are_left_to_it() {
        for text in [
            "2025-11-22T14:23:00Z",
            "2025-11-22T14:23:00.5Z",
            "2025-11-22T14:23:00.123456789Z",
            "0000-01-01T00:00:00Z",
            "2024-02-29T23:59:59.000000001Z",
            "9999-12-31T23:59:59.999999999Z",
        ] {
            assert_eq!(parse_canonical_timestamp(text), Some(utc(text)), "{text}");
        }
        for text in [
            "2025-11-22T14:23:00.500Z",
            "2025-11-22T14:23:00.0Z",
            "2025-11-22T14:23:00.1234567891Z",
            "2025-11-22T14:23:00.Z",
            "2025-11-22T14:23:00+00:00",
            "2025-11-22t14:23:00Z",
            "2025-11-22T14:23:00z",
            "2025-11-22 14:23:00Z",
            "2025-02-29T14:23:00Z",
            "2025-11-22T24:00:00Z",
            "2016-12-31T23:59:60Z",
            "2025-11-22T14:60:00Z",
            "2025-1-22T14:23:00Z",
            "+2025-11-22T14:23:00Z",
            "2025-11-22T14:23:0aZ",
            "",
        ] {
            assert_eq!(parse_canonical_timestamp(text), None, "{text}");
        }
    }

    #[test]
    fn canonical_hours_check_what_follows_a_remembered_hour() {
        let mut hours = CanonicalHours::default();
        let hour = Hour::of(&utc("2025-11-22T14:00:00Z"));
        for (text, expected) in [
            ("2025-11-22T14:23:00Z", Some(hour)),
            ("2025-11-22T14:59:59.5Z", Some(hour)),
            ("2025-11-22T14:59:60Z", None),
            ("2025-11-22T14:60:00Z", None),
            ("2025-11-22T14:23:00.50Z", None),
            ("2025-11-22T14:23:00.1234567891Z", None),
            ("2025-11-22T14:23:00+00:00", None),
            ("2025-11-22T14:23Z", None),
            ("2025-11-22T15:00:00Z", Some(Hour(hour.0 + 1))),
            ("2025-11-22T14:00:00.000000001Z", Some(hour)),
        ] {
            assert_eq!(hours.hour(text), expected, "{text}");
        }
    }

    #[test]
    fn a_stored_line_is_found_at_the_start_of_bytes_without_escapes_or_control_characters() {
        let line = r#"{"timestamp":"2025-11-22T14:00:00Z","path":"/a","userAgent":"curl"}"#;
        let bytes = format!("{line},\n{line}]");
        assert_eq!(
            stored_line_at(bytes.as_bytes()),
            Some((("2025-11-22T14:00:00Z", "/a", "curl"), line.len()))
        );
        assert_eq!(
            split_stored_line(bytes.as_bytes()),
            None,
            "more after the line"
        );
        for odd in [
            r#"{"timestamp":"2025-11-22T14:00:00Z","path":"/a\"b","userAgent":"curl"}"#,
            "{\"timestamp\":\"2025-11-22T14:00:00Z\",\"path\":\"/a\tb\",\"userAgent\":\"curl\"}",
            r#"{"timestamp":"2025-11-22T14:00:00Z","path":"","userAgent":"curl"}"#,
            r#"{"timestamp":"2025-11-22T14:00:00Z", "path":"/a","userAgent":"curl"}"#,
            r#"{"path":"/a","timestamp":"2025-11-22T14:00:00Z","userAgent":"curl"}"#,
        ] {
            assert_eq!(stored_line_at(odd.as_bytes()), None, "{odd}");
        }
    }

    #[test]
    fn a_stored_layout_ends_each_value_at_its_first_quote_not_escaped() {
        let line = r#"{"timestamp":"2025-11-22T14:00:00Z","path":"/a?b=1\u0026c=\"d\\","userAgent":"x\\\"y"}"#;
        let bytes = format!("{line},");
        let layout = stored_layout_at(bytes.as_bytes()).unwrap();
        assert_eq!(layout.len, line.len());
        let texts = layout.values.map(|value| (value.text(), value.escaped));
        assert_eq!(
            texts,
            [
                (&b"2025-11-22T14:00:00Z"[..], false),
                (&br#"/a?b=1\u0026c=\"d\\"#[..], true),
                (&br#"x\\\"y"#[..], true),
            ]
        );
        for odd in [
            // The path's quote is escaped, so the path runs on and the layout breaks.
            r#"{"timestamp":"2025-11-22T14:00:00Z","path":"/a\","userAgent":"curl"}"#,
            "{\"timestamp\":\"2025-11-22T14:00:00Z\",\"path\":\"/a\nb\",\"userAgent\":\"curl\"}",
            r#"{"timestamp":"2025-11-22T14:00:00Z","path":"/a","userAgent":"curl""#,
            r#"{"timestamp":2025,"path":"/a","userAgent":"curl"}"#,
        ] {
            assert_eq!(stored_layout_at(odd.as_bytes()), None, "{odd}");
        }
    }

    #[test]
    fn strings_are_json_escaped() {
        assert_eq!(
            line("2025-11-22T14:00:00Z", "/a\"b\\c", "tab\there"),
            "{\"timestamp\":\"2025-11-22T14:00:00Z\",\"path\":\"/a\\\"b\\\\c\",\"userAgent\":\"tab\\there\"}\n"
        );
    }

    #[test]
    fn hour_is_counted_from_the_epoch_and_prints_its_start() {
        let hour = Hour::of(&utc("2025-11-22T14:59:59.999Z"));
        assert_eq!(hour.to_string(), "2025-11-22T14:00:00Z");
        assert_eq!(Hour::from_index(hour.index()), hour);
        assert_eq!(hour.start(), utc("2025-11-22T14:00:00Z"));
        // Before the epoch, hours round down.
        assert_eq!(
            Hour::of(&utc("1969-12-31T23:30:00Z")).to_string(),
            "1969-12-31T23:00:00Z"
        );
    }

    #[test]
    fn many_hours_group_like_few() {
        let mut batch = EncodedBatch::default();
        // 500 hours, visited round-robin three times: every record lands in its hour's chunk.
        for round in 0..3 {
            for hour in 0..500i64 {
                let ts = DateTime::from_timestamp(hour * 3600 + round, 0).unwrap();
                batch.push(&ts, "/p", "ua");
            }
        }
        assert_eq!(batch.chunks.len(), 500);
        assert!(batch.chunks.iter().all(|c| c.records == 3));
        let hours: Vec<i64> = batch.chunks.iter().map(|c| c.hour.index()).collect();
        assert_eq!(hours, (0..500).collect::<Vec<_>>(), "first-seen order");
        let mark = batch.mark();
        batch.push(
            &DateTime::from_timestamp(1000 * 3600, 0).unwrap(),
            "/p",
            "ua",
        );
        batch.truncate(&mark);
        batch.push(
            &DateTime::from_timestamp(1001 * 3600, 0).unwrap(),
            "/p",
            "ua",
        );
        assert_eq!(batch.chunks.len(), 501);
        assert_eq!(batch.chunks[500].hour.index(), 1001);
        assert_eq!(batch.chunks[500].records, 1);
    }

    #[test]
    fn batch_groups_lines_by_hour_in_first_seen_order() {
        let mut batch = EncodedBatch::default();
        batch.push(&utc("2025-11-22T15:00:00Z"), "/a", "ua");
        batch.push(&utc("2025-11-22T14:10:00Z"), "/b", "ua");
        batch.push(&utc("2025-11-22T15:30:00Z"), "/c", "ua");
        assert_eq!(batch.records(), 3);
        let hours: Vec<String> = batch.chunks.iter().map(|c| c.hour.to_string()).collect();
        assert_eq!(hours, ["2025-11-22T15:00:00Z", "2025-11-22T14:00:00Z"]);
        let first = String::from_utf8(batch.chunks[0].lines.clone()).unwrap();
        assert!(first.contains("\"/a\"") && first.find("\"/a\"") < first.find("\"/c\""));
        assert_eq!(batch.chunks[0].records, 2);
        assert_eq!(
            batch.bytes(),
            3 * line("2025-11-22T15:00:00Z", "/a", "ua").len()
        );
    }
}
