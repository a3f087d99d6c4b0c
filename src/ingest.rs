//! Decoding and validation of `POST /logs` bodies into an [`EncodedBatch`].
//!
//! Everything here is a pure function of the media type, the (already decompressed) body and the
//! limits: no I/O, no HTTP types. Each format decoder streams records straight into a
//! [`Validator`], which checks every field, collects every invalid record (the list is capped, the
//! total is not) and encodes valid records into per-hour NDJSON buffers. A batch is all-or-nothing:
//! one invalid record rejects it, so the buffers are only handed out when no record failed.

mod csv;
mod json;

use std::borrow::Cow;

use chrono::{DateTime, Datelike, Timelike, Utc};
use serde::Serialize;

use crate::config::IngestionConfig;
use crate::record::{CanonicalHours, EncodedBatch, Hour};

/// How many invalid records an error body lists; the total is always reported.
pub const MAX_REPORTED_ERRORS: usize = 100;

/// The media types `POST /logs` accepts, as listed in 415 responses.
pub const SUPPORTED_MEDIA_TYPES: &[&str] = &[
    "application/json",
    "text/csv",
    "application/x-ndjson",
    "application/jsonl",
];

/// Per-batch limits from `ingestion.*`.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// At most this many records per batch (`ingestion.maxRecords`).
    pub max_records: usize,
    /// At most this many bytes per field after trimming (`ingestion.maxFieldBytes`).
    pub max_field_bytes: usize,
    /// At most this many distinct event hours per batch (`ingestion.maxHoursPerBatch`).
    pub max_hours: usize,
}

impl Limits {
    /// The limits `ingestion.*` sets.
    pub fn from_config(ingestion: &IngestionConfig) -> Limits {
        Limits {
            max_records: ingestion.max_records,
            max_field_bytes: ingestion.max_field_bytes,
            max_hours: ingestion.max_hours_per_batch,
        }
    }
}

/// A request body format, chosen by `Content-Type`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON array of record objects.
    JsonArray,
    /// RFC 4180 CSV: `timestamp,path,userAgent`, optional header row.
    Csv,
    /// One JSON record object per line.
    Ndjson,
}

impl Format {
    /// Picks the format from a `Content-Type` value, as raw header bytes: type and subtype are
    /// case-insensitive and parameters (`charset=utf-8`, whatever their bytes) are ignored. A value
    /// that is refused is quoted back with bytes outside printable ASCII escaped (`\xff`).
    pub fn from_content_type(value: Option<&[u8]>) -> Result<Format, DecodeError> {
        let Some(value) = value else {
            return Err(DecodeError::UnsupportedMediaType("none".to_owned()));
        };
        let essence = value.split(|&b| b == b';').next().unwrap_or_default();
        match essence.trim_ascii().to_ascii_lowercase().as_slice() {
            b"application/json" => Ok(Format::JsonArray),
            b"text/csv" => Ok(Format::Csv),
            b"application/x-ndjson" | b"application/jsonl" => Ok(Format::Ndjson),
            _ => {
                let shown = value.escape_ascii().to_string();
                Err(DecodeError::UnsupportedMediaType(
                    shown.chars().take(200).collect(),
                ))
            }
        }
    }
}

/// Why a body was refused. Every variant is the client's fault (4xx).
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    /// The `Content-Type` is missing or not one of [`SUPPORTED_MEDIA_TYPES`] (415).
    #[error("unsupported Content-Type: {0}")]
    UnsupportedMediaType(String),
    /// The body holds no records (`[]`, `null`, an empty body or a header-only CSV) (400).
    #[error("no log records provided")]
    Empty,
    /// More records than `ingestion.maxRecords` (413).
    #[error("batch has more than {max} records")]
    TooManyRecords { max: usize },
    /// Records in more distinct event hours than `ingestion.maxHoursPerBatch` (413).
    #[error("batch spans more than {max} hours")]
    TooManyHours { max: usize },
    /// The body cannot be read as the declared format at all (400).
    #[error("malformed {format} at line {line}, column {column}: {message}")]
    Malformed {
        format: &'static str,
        line: usize,
        column: usize,
        message: String,
    },
    /// One or more records are invalid (400); `errors` holds the first
    /// [`MAX_REPORTED_ERRORS`], `total` counts them all.
    #[error("{total} invalid record(s)")]
    Invalid {
        total: usize,
        errors: Vec<RecordError>,
    },
}

/// One invalid record: which one, which field, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RecordError {
    /// 0-based position of the record in the batch (CSV: not counting a header row).
    pub index: usize,
    /// 1-based line of the body where the record starts (CSV and NDJSON).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
    /// 1-based column, for NDJSON lines that are not valid JSON.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<usize>,
    /// `timestamp`, `path`, `userAgent`, or `record` when the record as a whole is wrong.
    pub field: &'static str,
    pub reason: String,
}

/// Decodes and validates `body` (already decompressed) as `format`.
///
/// Two fast paths give the same result with less work: JSON records laid out as the store writes
/// them are read without a JSON parser and, when already in their encoded form, copied as they are
/// (see `json::decode_array`); CSV bodies whose quoted fields hold no doubled quote are split
/// without `csv_core` (see `csv::decode`).
pub fn decode(format: Format, body: &[u8], limits: &Limits) -> Result<EncodedBatch, DecodeError> {
    decode_with(format, body, limits, true)
}

/// [`decode`] without its fast paths: every JSON record goes through serde_json and is encoded
/// again, every CSV body through `csv_core`. The property tests check that both give the same
/// answer on any body.
#[doc(hidden)]
pub fn decode_in_full(
    format: Format,
    body: &[u8],
    limits: &Limits,
) -> Result<EncodedBatch, DecodeError> {
    decode_with(format, body, limits, false)
}

fn decode_with(
    format: Format,
    body: &[u8],
    limits: &Limits,
    fast_paths: bool,
) -> Result<EncodedBatch, DecodeError> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    if body.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    let expected_output = expected_output(format, body.len());
    let mut validator = Validator::new(limits, expected_output);
    match format {
        Format::JsonArray => json::decode_array(body, &mut validator, fast_paths)?,
        Format::Ndjson => json::decode_lines(body, &mut validator, fast_paths)?,
        Format::Csv => csv::decode(body, &mut validator, fast_paths)?,
    }
    validator.finish()
}

/// About how many bytes decoding a body of `body_bytes` in `format` produces: encoded lines are
/// about as long as JSON input and longer than CSV input (keys are added).
pub fn expected_output(format: Format, body_bytes: usize) -> usize {
    match format {
        Format::Csv => body_bytes + body_bytes / 2,
        Format::JsonArray | Format::Ndjson => body_bytes + 64,
    }
}

/// The largest body of `format` whose decoding fits `budget` bytes with its batch (a body and its
/// batch are held at once: [`expected_output`]).
pub fn largest_body(format: Format, budget: usize) -> usize {
    let fits = |body: usize| {
        body.checked_add(expected_output(format, body))
            .is_some_and(|needed| needed <= budget)
    };
    let (mut low, mut high) = (0, budget);
    while low < high {
        let mid = low + (high - low).div_ceil(2);
        if fits(mid) {
            low = mid;
        } else {
            high = mid - 1;
        }
    }
    if fits(low) { low } else { 0 }
}

/// Validates one record given as a JSON object (a Kafka message value: one stored line without
/// its newline) and appends it to `batch`. On error `batch` is unchanged and the error says why.
///
/// A value that already is a valid line in the stored format (what our producer sends) is
/// appended as it is, after the same checks, without being decoded and encoded again.
pub fn append_record(
    value: &[u8],
    limits: &Limits,
    batch: &mut EncodedBatch,
) -> Result<(), DecodeError> {
    if let Some(hour) = canonical_line_hour(value, limits) {
        batch.push_line(hour, value);
        return Ok(());
    }
    append_decoded_record(value, limits, batch)
}

/// The event hour of `value` if it is a line exactly as [`crate::record::write_line`] would write
/// it for a valid record: valid fields, canonical UTC timestamp, nothing to trim or escape.
fn canonical_line_hour(value: &[u8], limits: &Limits) -> Option<Hour> {
    let fields = crate::record::split_stored_line(value)?;
    canonical_hour(fields, limits, &mut CanonicalHours::default())
}

/// The event hour of a record whose values are valid as they are, with nothing to change before
/// encoding: the path and user agent non-empty, within the size limit, with nothing to trim, and
/// the timestamp canonical. `None` otherwise. For values found in the stored form with no escape
/// ([`crate::record::stored_line_at`], [`json::StoredRecord`]), the line is then exactly what
/// encoding the record would write.
fn canonical_hour(
    (timestamp, path, agent): (&str, &str, &str),
    limits: &Limits,
    hours: &mut CanonicalHours,
) -> Option<Hour> {
    let plain = |field: &str| {
        !field.is_empty()
            && field.len() <= limits.max_field_bytes
            && trim(field).len() == field.len()
    };
    if !plain(path) || !plain(agent) {
        return None;
    }
    hours.hour(timestamp)
}

fn append_decoded_record(
    value: &[u8],
    limits: &Limits,
    batch: &mut EncodedBatch,
) -> Result<(), DecodeError> {
    let limits = Limits {
        max_records: 1,
        ..*limits
    };
    if value.iter().all(u8::is_ascii_whitespace) {
        return Err(DecodeError::Empty);
    }
    let mark = batch.mark();
    let mut validator = Validator::new(&limits, 0);
    validator.batch = std::mem::take(batch);
    let outcome = json::decode_lines(value, &mut validator, false);
    let failed = outcome.is_err() || validator.total_errors > 0;
    let errors = std::mem::take(&mut validator.errors);
    let total = validator.total_errors;
    *batch = std::mem::take(&mut validator.batch);
    if failed {
        batch.truncate(&mark);
    }
    match outcome {
        Err(err) => Err(err),
        Ok(()) if failed => Err(DecodeError::Invalid { total, errors }),
        Ok(()) => Ok(()),
    }
}

impl DecodeError {
    /// One line saying what is wrong, with the first invalid field when there is one.
    pub fn describe(&self) -> String {
        match self {
            DecodeError::Invalid { errors, .. } if !errors.is_empty() => {
                let first = &errors[0];
                format!("{} {}", first.field, first.reason)
            }
            other => other.to_string(),
        }
    }
}

/// A field value as found in the body, before validation.
#[derive(Debug, Default)]
enum Field<'a> {
    #[default]
    Missing,
    Text(Cow<'a, str>),
    /// Present but not a string; holds the JSON type name.
    WrongType(&'static str),
    /// Present but unreadable; holds the reason.
    Unreadable(&'static str),
}

/// `bytes` as text, if it is UTF-8: the decoders' one UTF-8 check (of a whole body in one pass,
/// else of a line or a field), with SIMD (`simdutf8`).
fn utf8(bytes: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(bytes).ok()
}

/// `text.trim()`, without its scan when `text` starts and ends with printable ASCII (which no
/// whitespace, ASCII or not, can be): most fields.
fn trim(text: &str) -> &str {
    let printable = |b: Option<&u8>| b.is_some_and(|b| b.is_ascii_graphic());
    let bytes = text.as_bytes();
    if printable(bytes.first()) && printable(bytes.last()) {
        text
    } else {
        text.trim()
    }
}

/// Where a record sits in the body, for error reports.
#[derive(Debug, Clone, Copy)]
struct Position {
    index: usize,
    line: Option<usize>,
}

/// A valid timestamp: its text when that already is its canonical form (which encoding the
/// record then copies, with the hour read from it), else its instant.
enum Timestamp<'v> {
    Canonical(Hour, Cow<'v, str>),
    Other(DateTime<Utc>),
}

/// Checks records one by one, encodes the valid ones and collects the errors.
struct Validator<'l> {
    limits: &'l Limits,
    batch: EncodedBatch,
    records: usize,
    errors: Vec<RecordError>,
    total_errors: usize,
    /// Capacity reserved for the first hour's buffer, so a typical one-hour batch is encoded
    /// without reallocating.
    expected_output: usize,
    /// The records span more hours than the limit allows.
    too_many_hours: bool,
    hours: CanonicalHours,
}

impl<'l> Validator<'l> {
    fn new(limits: &'l Limits, expected_output: usize) -> Self {
        Validator {
            limits,
            expected_output,
            batch: EncodedBatch::default(),
            records: 0,
            errors: Vec::new(),
            total_errors: 0,
            too_many_hours: false,
            hours: CanonicalHours::default(),
        }
    }

    /// Counts one more record; fails once the batch exceeds `maxRecords`, so an oversized body
    /// is refused before it is decoded in full.
    fn admit(&mut self) -> Result<usize, DecodeError> {
        if self.records == self.limits.max_records {
            return Err(DecodeError::TooManyRecords {
                max: self.limits.max_records,
            });
        }
        self.records += 1;
        Ok(self.records - 1)
    }

    /// Validates one record's fields and, while the batch is still clean, encodes it.
    fn record(&mut self, at: Position, timestamp: Field<'_>, path: Field<'_>, agent: Field<'_>) {
        let timestamp = self.timestamp(at, timestamp);
        let path = self.text(at, "path", path);
        let agent = self.text(at, "userAgent", agent);
        match (timestamp, path, agent) {
            (Some(Timestamp::Canonical(hour, text)), Some(path), Some(agent)) => {
                self.encode(hour, |batch| {
                    batch.push_canonical(hour, &text, &path, &agent)
                });
            }
            (Some(Timestamp::Other(instant)), Some(path), Some(agent)) => {
                self.encode(Hour::of(&instant), |batch| {
                    batch.push(&instant, &path, &agent)
                });
            }
            _ => {}
        }
    }

    /// [`Validator::record`] in fewer steps for a record whose fields are text and valid as they
    /// are ([`canonical_hour`]). `false`, with nothing done, for any other record: the caller then
    /// calls [`Validator::record`], which finds what is wrong.
    fn plain_record(&mut self, timestamp: &str, path: &str, agent: &str) -> bool {
        let fields = (timestamp, path, agent);
        let Some(hour) = canonical_hour(fields, self.limits, &mut self.hours) else {
            return false;
        };
        self.encode(hour, |batch| {
            batch.push_canonical(hour, timestamp, path, agent)
        });
        true
    }

    /// A record found laid out as a stored line: kept as it is when that is exactly its encoding
    /// ([`canonical_hour`]), else validated and encoded like any record.
    fn stored_form(&mut self, at: Position, record: json::StoredRecord<'_>) {
        let fields = (&*record.timestamp, &*record.path, &*record.agent);
        if record.plain
            && let Some(hour) = canonical_hour(fields, self.limits, &mut self.hours)
        {
            self.encode(hour, |batch| batch.push_line(hour, record.line));
            return;
        }
        let json::StoredRecord {
            timestamp,
            path,
            agent,
            ..
        } = record;
        self.record(
            at,
            Field::Text(timestamp),
            Field::Text(path),
            Field::Text(agent),
        );
    }

    /// Adds a valid record of `hour` with `push`, while the batch is still clean.
    fn encode(&mut self, hour: Hour, push: impl FnOnce(&mut EncodedBatch)) {
        if self.total_errors > 0 {
            return;
        }
        if self.batch.chunks.is_empty() {
            let first = self.batch.chunk_for(hour);
            first.lines.reserve(self.expected_output);
        }
        if !self.too_many_hours {
            push(&mut self.batch);
            // The batch is refused as a whole; the rest is still validated, not encoded.
            self.too_many_hours = self.batch.chunks.len() > self.limits.max_hours;
        }
    }

    /// Records an error about the record as a whole (wrong shape, bad syntax on its line).
    fn reject(&mut self, at: Position, column: Option<usize>, field: &'static str, reason: String) {
        self.total_errors += 1;
        if self.errors.len() < MAX_REPORTED_ERRORS {
            self.errors.push(RecordError {
                index: at.index,
                line: at.line,
                column,
                field,
                reason,
            });
        }
    }

    fn timestamp<'v>(&mut self, at: Position, value: Field<'v>) -> Option<Timestamp<'v>> {
        let text = self.present(at, "timestamp", value)?;
        if text.len() > 64 {
            self.reject(
                at,
                None,
                "timestamp",
                format!("is {} bytes long, not an RFC 3339 timestamp", text.len()),
            );
            return None;
        }
        if let Some(hour) = self.hours.hour(&text) {
            return Some(Timestamp::Canonical(hour, text));
        }
        // chrono reads any number of fraction digits and drops those past nanoseconds.
        let fraction_digits = memchr::memchr(b'.', text.as_bytes()).map_or(0, |dot| {
            text.as_bytes()[dot + 1..]
                .iter()
                .take_while(|b| b.is_ascii_digit())
                .count()
        });
        if fraction_digits > 9 {
            self.reject(
                at,
                None,
                "timestamp",
                format!("{text:?} has {fraction_digits} fractional-second digits; at most 9 (nanoseconds)"),
            );
            return None;
        }
        let ts = match DateTime::parse_from_rfc3339(&text) {
            Ok(ts) => ts.with_timezone(&Utc),
            Err(err) => {
                self.reject(
                    at,
                    None,
                    "timestamp",
                    format!("{text:?} is not an RFC 3339 timestamp with offset: {err}"),
                );
                return None;
            }
        };
        if !(0..=9999).contains(&ts.year()) {
            self.reject(
                at,
                None,
                "timestamp",
                format!("{text:?} is outside years 0000-9999 in UTC"),
            );
            return None;
        }
        if ts.nanosecond() >= 1_000_000_000 {
            self.reject(
                at,
                None,
                "timestamp",
                format!("{text:?} is a leap second, which is not supported"),
            );
            return None;
        }
        Some(Timestamp::Other(ts))
    }

    /// Validates a text field: present, a string, non-empty after trimming, within the size limit.
    fn text<'v>(
        &mut self,
        at: Position,
        name: &'static str,
        value: Field<'v>,
    ) -> Option<Cow<'v, str>> {
        let text = self.present(at, name, value)?;
        let trimmed = match text {
            Cow::Borrowed(text) => Cow::Borrowed(trim(text)),
            Cow::Owned(text) if trim(&text).len() == text.len() => Cow::Owned(text),
            Cow::Owned(text) => Cow::Owned(trim(&text).to_owned()),
        };
        if trimmed.is_empty() {
            self.reject(at, None, name, "is empty or only whitespace".to_owned());
            return None;
        }
        if trimmed.len() > self.limits.max_field_bytes {
            self.reject(
                at,
                None,
                name,
                format!(
                    "is {} bytes, more than the limit of {} (ingestion.maxFieldBytes)",
                    trimmed.len(),
                    self.limits.max_field_bytes
                ),
            );
            return None;
        }
        Some(trimmed)
    }

    fn present<'v>(
        &mut self,
        at: Position,
        name: &'static str,
        value: Field<'v>,
    ) -> Option<Cow<'v, str>> {
        match value {
            Field::Text(text) if !text.is_empty() => Some(text),
            Field::Text(_) => {
                self.reject(at, None, name, "is empty or only whitespace".to_owned());
                None
            }
            Field::Missing => {
                self.reject(at, None, name, "is missing".to_owned());
                None
            }
            Field::WrongType(kind) => {
                self.reject(at, None, name, format!("must be a string, got {kind}"));
                None
            }
            Field::Unreadable(reason) => {
                self.reject(at, None, name, reason.to_owned());
                None
            }
        }
    }

    fn finish(self) -> Result<EncodedBatch, DecodeError> {
        if self.too_many_hours {
            return Err(DecodeError::TooManyHours {
                max: self.limits.max_hours,
            });
        }
        if self.total_errors > 0 {
            return Err(DecodeError::Invalid {
                total: self.total_errors,
                errors: self.errors,
            });
        }
        if self.records == 0 {
            return Err(DecodeError::Empty);
        }
        Ok(self.batch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) const LIMITS: Limits = Limits {
        max_records: 1000,
        max_field_bytes: 64,
        max_hours: 168,
    };

    pub(super) fn lines(batch: &EncodedBatch) -> Vec<String> {
        batch
            .chunks
            .iter()
            .flat_map(|c| {
                String::from_utf8(c.lines.clone())
                    .unwrap()
                    .lines()
                    .map(str::to_owned)
                    .collect::<Vec<_>>()
            })
            .collect()
    }

    #[test]
    fn trim_is_str_trim() {
        // Whitespace that is ASCII or not, at either end or both; printable ends; DEL and
        // non-ASCII letters at the ends (not whitespace, but not the short cut's either).
        let ends = [
            "", " ", "\t", "\n", "\r", "\u{b}", "\u{c}", "\u{85}", "\u{a0}", "\u{2003}",
            "\u{3000}", "\u{7f}", "é", "x", "~",
        ];
        for start in ends {
            for middle in ["", "a", "/home b", "\u{a0}", "日本"] {
                for end in ends {
                    let text = format!("{start}{middle}{end}");
                    assert_eq!(trim(&text), text.trim(), "{text:?}");
                }
            }
        }
    }

    #[test]
    fn content_types_are_media_types() {
        let cases = [
            ("application/json", Format::JsonArray),
            ("Application/JSON; charset=utf-8", Format::JsonArray),
            ("text/csv", Format::Csv),
            ("TEXT/CSV;header=present", Format::Csv),
            ("application/x-ndjson", Format::Ndjson),
            ("application/jsonl", Format::Ndjson),
        ];
        for (value, format) in cases {
            assert_eq!(
                Format::from_content_type(Some(value.as_bytes())),
                Ok(format),
                "{value}"
            );
        }
        for value in [
            "text/plain",
            "application/jsonx",
            "json",
            "",
            "application/json-seq",
            "application / json",
        ] {
            assert!(
                matches!(
                    Format::from_content_type(Some(value.as_bytes())),
                    Err(DecodeError::UnsupportedMediaType(_))
                ),
                "{value}"
            );
        }
        assert_eq!(
            Format::from_content_type(None),
            Err(DecodeError::UnsupportedMediaType("none".into()))
        );
        // Header bytes outside visible ASCII: parameters are still ignored, a refused value is
        // quoted back escaped.
        assert_eq!(
            Format::from_content_type(Some(b"application/json; charset=\xe9")),
            Ok(Format::JsonArray)
        );
        assert_eq!(
            Format::from_content_type(Some(b"text/\xffcsv")),
            Err(DecodeError::UnsupportedMediaType("text/\\xffcsv".into()))
        );
    }

    #[test]
    fn every_field_error_is_reported_with_index_and_field() {
        let body = br#"[
            {"timestamp":"2025-11-22T14:00:00Z","path":"/ok","userAgent":"a"},
            {"path":"/x","userAgent":"a"},
            {"timestamp":"yesterday","path":"  ","userAgent":7},
            {"timestamp":"2025-11-22T14:00:00","path":"/x","userAgent":null}
        ]"#;
        let err = decode(Format::JsonArray, body, &LIMITS).unwrap_err();
        let DecodeError::Invalid { total, errors } = err else {
            panic!("expected Invalid, got {err:?}")
        };
        assert_eq!(total, 6);
        let summary: Vec<(usize, &str)> = errors.iter().map(|e| (e.index, e.field)).collect();
        assert_eq!(
            summary,
            [
                (1, "timestamp"),
                (2, "timestamp"),
                (2, "path"),
                (2, "userAgent"),
                (3, "timestamp"),
                (3, "userAgent")
            ]
        );
        assert_eq!(errors[0].reason, "is missing");
        assert!(
            errors[1].reason.contains("not an RFC 3339 timestamp"),
            "{}",
            errors[1].reason
        );
        assert_eq!(errors[2].reason, "is empty or only whitespace");
        assert_eq!(errors[3].reason, "must be a string, got a number");
        assert_eq!(errors[5].reason, "is missing");
    }

    #[test]
    fn limits_on_fields_and_records() {
        let long = "x".repeat(65);
        let body =
            format!(r#"[{{"timestamp":"2025-11-22T14:00:00Z","path":"/{long}","userAgent":"a"}}]"#);
        let err = decode(Format::JsonArray, body.as_bytes(), &LIMITS).unwrap_err();
        let DecodeError::Invalid { errors, .. } = err else {
            panic!()
        };
        assert_eq!(errors[0].field, "path");
        assert_eq!(
            errors[0].reason,
            "is 66 bytes, more than the limit of 64 (ingestion.maxFieldBytes)"
        );

        let one = r#"{"timestamp":"2025-11-22T14:00:00Z","path":"/","userAgent":"a"}"#;
        let limits = Limits {
            max_records: 2,
            ..LIMITS
        };
        let body = format!("[{one},{one},{one}]");
        assert_eq!(
            decode(Format::JsonArray, body.as_bytes(), &limits),
            Err(DecodeError::TooManyRecords { max: 2 })
        );
        let body = format!("{one}\n{one}\n{one}\n");
        assert_eq!(
            decode(Format::Ndjson, body.as_bytes(), &limits),
            Err(DecodeError::TooManyRecords { max: 2 })
        );
        let body = "2025-11-22T14:00:00Z,/,a\n".repeat(3);
        assert_eq!(
            decode(Format::Csv, body.as_bytes(), &limits),
            Err(DecodeError::TooManyRecords { max: 2 })
        );
        let body = format!("[{one},{one}]");
        assert_eq!(
            decode(Format::JsonArray, body.as_bytes(), &limits)
                .unwrap()
                .records(),
            2
        );
    }

    #[test]
    fn error_list_is_capped_but_total_is_exact() {
        let body = format!("[{}]", vec![r#"{"path":"/"}"#; 250].join(","));
        let err = decode(Format::JsonArray, body.as_bytes(), &LIMITS).unwrap_err();
        let DecodeError::Invalid { total, errors } = err else {
            panic!()
        };
        assert_eq!(total, 500);
        assert_eq!(errors.len(), MAX_REPORTED_ERRORS);
    }

    #[test]
    fn timestamps_out_of_range_and_leap_seconds_are_rejected() {
        for ts in [
            "0000-01-01T00:30:00+01:00",
            "2016-12-31T23:59:60Z",
            "2025-11-22T14:00:00.1234567891Z",
        ] {
            let body = format!(r#"[{{"timestamp":"{ts}","path":"/","userAgent":"a"}}]"#);
            let err = decode(Format::JsonArray, body.as_bytes(), &LIMITS).unwrap_err();
            assert!(
                matches!(err, DecodeError::Invalid { total: 1, .. }),
                "{ts}: {err:?}"
            );
        }
        // Nine digits are nanoseconds, kept.
        let body =
            br#"[{"timestamp":"2025-11-22T14:00:00.123456789Z","path":"/","userAgent":"a"}]"#;
        let batch = decode(Format::JsonArray, body, &LIMITS).unwrap();
        assert!(lines(&batch)[0].contains("14:00:00.123456789Z"));
    }

    #[test]
    fn one_record_messages_are_appended_or_refused_whole() {
        let mut batch = EncodedBatch::default();
        let good = br#"{"timestamp":"2025-11-22T14:00:00Z","path":"/a","userAgent":"u"}"#;
        append_record(good, &LIMITS, &mut batch).unwrap();
        append_record(good, &LIMITS, &mut batch).unwrap();
        assert_eq!(batch.records(), 2);
        let err = append_record(
            br#"{"timestamp":"2025-11-22T14:00:00Z","path":" ","userAgent":"u"}"#,
            &LIMITS,
            &mut batch,
        )
        .unwrap_err();
        assert_eq!(err.describe(), "path is empty or only whitespace");
        assert_eq!(
            append_record(b"not json", &LIMITS, &mut batch)
                .unwrap_err()
                .describe()
                .split(':')
                .next(),
            Some("record invalid JSON")
        );
        let two = [&good[..], b"\n", &good[..]].concat();
        assert_eq!(
            append_record(&two, &LIMITS, &mut batch),
            Err(DecodeError::TooManyRecords { max: 1 })
        );
        assert_eq!(
            append_record(b"", &LIMITS, &mut batch),
            Err(DecodeError::Empty)
        );
        let trailing = [&good[..], b" x"].concat();
        assert!(append_record(&trailing, &LIMITS, &mut batch).is_err());
        // Lines that look stored but are not canonical take the full path and come out canonical.
        for (value, stored) in [
            (
                r#"{"timestamp":"2025-11-22T16:00:00+02:00","path":"/a","userAgent":"u"}"#,
                r#"{"timestamp":"2025-11-22T14:00:00Z","path":"/a","userAgent":"u"}"#,
            ),
            (
                r#"{"timestamp":"2025-11-22T14:00:00.500Z","path":" /a","userAgent":"u"}"#,
                r#"{"timestamp":"2025-11-22T14:00:00.5Z","path":"/a","userAgent":"u"}"#,
            ),
        ] {
            let mut one = EncodedBatch::default();
            append_record(value.as_bytes(), &LIMITS, &mut one).unwrap();
            assert_eq!(lines(&one), [stored]);
        }
        let long = format!(
            r#"{{"timestamp":"2025-11-22T14:00:00Z","path":"/{}","userAgent":"u"}}"#,
            "x".repeat(64)
        );
        assert!(append_record(long.as_bytes(), &LIMITS, &mut batch).is_err());
        assert!(
            append_record(
                br#"{"timestamp":"2025-11-22T14:00:60Z","path":"/a","userAgent":"u"}"#,
                &LIMITS,
                &mut batch
            )
            .is_err()
        );
        assert_eq!(
            batch.records(),
            2,
            "refused messages leave the batch as it was"
        );
        assert_eq!(lines(&batch).len(), 2);
    }

    #[test]
    fn byte_order_mark_is_ignored() {
        let body = b"\xEF\xBB\xBF2025-11-22T14:00:00Z,/,a\n";
        assert_eq!(decode(Format::Csv, body, &LIMITS).unwrap().records(), 1);
    }
}
