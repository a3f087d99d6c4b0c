//! Decoding and validation of `POST /logs` bodies into an [`EncodedBatch`].
//!
//! Everything here is a pure function of the media type, the (already decompressed) body and the
//! limits: no I/O, no HTTP types. Each format decoder streams records straight into a
//! [`Validator`], which checks every field, collects every invalid record (the list is capped, the
//! total is not) and encodes valid records into per-hour NDJSON buffers. A batch is all-or-nothing:
//! one invalid record rejects it, so the buffers are only handed out when no record failed.

mod csv;
mod json;
mod validator;

use serde::Serialize;

use crate::config::IngestionConfig;
use crate::record::{CanonicalHours, EncodedBatch, Hour};
use validator::{Field, Position, Validator, trim, utf8};

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
