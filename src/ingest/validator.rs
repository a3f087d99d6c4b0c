//! The [`Validator`] every format decoder streams records into: it checks every field,
//! collects every invalid record (the list is capped, the total is not) and encodes valid
//! records into per-hour NDJSON buffers, handed out only when no record failed.

use std::borrow::Cow;

use chrono::{DateTime, Datelike, Timelike, Utc};

use super::{DecodeError, Limits, MAX_REPORTED_ERRORS, RecordError, canonical_hour, json};
use crate::record::{CanonicalHours, EncodedBatch, Hour};

/// A field value as found in the body, before validation.
#[derive(Debug, Default)]
pub(super) enum Field<'a> {
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
pub(super) fn utf8(bytes: &[u8]) -> Option<&str> {
    simdutf8::basic::from_utf8(bytes).ok()
}

/// `text.trim()`, without its scan when `text` starts and ends with printable ASCII (which no
/// whitespace, ASCII or not, can be): most fields.
pub(super) fn trim(text: &str) -> &str {
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
pub(super) struct Position {
    pub(super) index: usize,
    pub(super) line: Option<usize>,
}

/// A valid timestamp: its text when that already is its canonical form (which encoding the
/// record then copies, with the hour read from it), else its instant.
pub(super) enum Timestamp<'v> {
    Canonical(Hour, Cow<'v, str>),
    Other(DateTime<Utc>),
}

/// Checks records one by one, encodes the valid ones and collects the errors.
pub(super) struct Validator<'l> {
    pub(super) limits: &'l Limits,
    pub(super) batch: EncodedBatch,
    pub(super) records: usize,
    pub(super) errors: Vec<RecordError>,
    pub(super) total_errors: usize,
    /// Capacity reserved for the first hour's buffer, so a typical one-hour batch is encoded
    /// without reallocating.
    pub(super) expected_output: usize,
    /// The records span more hours than the limit allows.
    pub(super) too_many_hours: bool,
    pub(super) hours: CanonicalHours,
}

impl<'l> Validator<'l> {
    pub(super) fn new(limits: &'l Limits, expected_output: usize) -> Self {
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
    pub(super) fn admit(&mut self) -> Result<usize, DecodeError> {
        if self.records == self.limits.max_records {
            return Err(DecodeError::TooManyRecords {
                max: self.limits.max_records,
            });
        }
        self.records += 1;
        Ok(self.records - 1)
    }

    /// Validates one record's fields and, while the batch is still clean, encodes it.
    pub(super) fn record(
        &mut self,
        at: Position,
        timestamp: Field<'_>,
        path: Field<'_>,
        agent: Field<'_>,
    ) {
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
    pub(super) fn plain_record(&mut self, timestamp: &str, path: &str, agent: &str) -> bool {
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
    pub(super) fn stored_form(&mut self, at: Position, record: json::StoredRecord<'_>) {
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
    pub(super) fn encode(&mut self, hour: Hour, push: impl FnOnce(&mut EncodedBatch)) {
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
    pub(super) fn reject(
        &mut self,
        at: Position,
        column: Option<usize>,
        field: &'static str,
        reason: String,
    ) {
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

    pub(super) fn timestamp<'v>(
        &mut self,
        at: Position,
        value: Field<'v>,
    ) -> Option<Timestamp<'v>> {
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
    pub(super) fn text<'v>(
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

    pub(super) fn present<'v>(
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

    pub(super) fn finish(self) -> Result<EncodedBatch, DecodeError> {
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
