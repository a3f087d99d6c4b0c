//! The properties of the decoders (`ingest::decode`, `ingest::append_record`) and of the stored
//! line format (`record::write_line`, `write_timestamp`, `split_stored_line`), each runnable with
//! any number of cases: the tests run proptest's default (256, or `PROPTEST_CASES`), the benchmark
//! many more.
//!
//! Shared by the tests (`tests/properties/`) and the benchmark (`bench/properties.rs`).

use std::fmt::Debug;

use chrono::{DateTime, Utc};
use log_pipeline::ingest::{self, DecodeError, Format, Limits, MAX_REPORTED_ERRORS};
use log_pipeline::record::{self, EncodedBatch};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::select;
use proptest::test_runner::{TestCaseError, TestRunner};

use crate::oracle::{self, HourLines};
use crate::strategies;

/// A named property.
pub struct Property {
    pub name: &'static str,
    /// Runs as many cases as `runner`'s config asks for; the error names the minimal failing input.
    pub check: fn(&mut TestRunner) -> Result<(), String>,
}

pub const ALL: [Property; 8] = [
    Property {
        name: "any_bytes_decode_to_a_batch_or_an_error",
        check: any_bytes_decode_to_a_batch_or_an_error,
    },
    Property {
        name: "valid_records_decode_alike_in_every_format",
        check: valid_records_decode_alike_in_every_format,
    },
    Property {
        name: "timestamps_print_like_go_rfc3339nano",
        check: timestamps_print_like_go_rfc3339nano,
    },
    Property {
        name: "canonical_hours_agree_with_parse_canonical_timestamp",
        check: canonical_hours_agree_with_parse_canonical_timestamp,
    },
    Property {
        name: "stored_lines_append_like_ndjson",
        check: stored_lines_append_like_ndjson,
    },
    Property {
        name: "append_record_agrees_with_ndjson_on_any_line",
        check: append_record_agrees_with_ndjson_on_any_line,
    },
    Property {
        name: "stored_form_bodies_decode_as_in_full",
        check: stored_form_bodies_decode_as_in_full,
    },
    Property {
        name: "csv_bodies_decode_as_in_full",
        check: csv_bodies_decode_as_in_full,
    },
];

/// Limits under which every generated record and batch is valid.
const ROOMY: Limits = Limits {
    max_records: 1000,
    max_field_bytes: 256,
    max_hours: 1024,
};

/// Limits that generated bodies exceed now and then (more records, hours, longer fields).
const TIGHT: Limits = Limits {
    max_records: 10,
    max_field_bytes: 80,
    max_hours: 8,
};

fn run<S>(
    runner: &mut TestRunner,
    strategy: S,
    test: impl Fn(S::Value) -> Result<(), TestCaseError>,
) -> Result<(), String>
where
    S: Strategy,
    S::Value: Debug,
{
    runner.run(&strategy, test).map_err(|err| err.to_string())
}

fn fail(why: impl Into<String>) -> TestCaseError {
    TestCaseError::fail(why.into())
}

/// Any body, of any format, is decoded to a batch or refused with a `DecodeError`, never a panic.
/// A batch holds exactly the records the body holds by the rules of docs/api.md (`POST /logs`):
/// each stored line reads back to the record's instant in canonical UTC, its trimmed path and user
/// agent.
fn any_bytes_decode_to_a_batch_or_an_error(runner: &mut TestRunner) -> Result<(), String> {
    run(
        runner,
        strategies::any_body(),
        |(format, body)| match ingest::decode(format, &body, &TIGHT) {
            Ok(batch) => {
                let sent = oracle::records_in(format, &body)
                    .ok_or_else(|| fail(format!("accepted a body that is not {format:?}")))?;
                let mut valid = Vec::new();
                for fields in &sent {
                    let instant = oracle::validate(fields, &TIGHT)
                        .map_err(|why| fail(format!("accepted an invalid record: {why}")))?;
                    valid.push((instant, fields[1].as_str(), fields[2].as_str()));
                }
                prop_assert!(sent.len() <= TIGHT.max_records);
                let hours = oracle::batch_hours(&batch).map_err(fail)?;
                prop_assert!(hours.len() <= TIGHT.max_hours);
                prop_assert_eq!(&hours, &oracle::expected_hours(valid));
                lines_read_back(&hours)
            }
            Err(DecodeError::Invalid { total, errors }) => {
                prop_assert!(total >= 1);
                prop_assert_eq!(errors.len(), total.min(MAX_REPORTED_ERRORS));
                Ok(())
            }
            Err(DecodeError::TooManyRecords { max }) => {
                prop_assert_eq!(max, TIGHT.max_records);
                Ok(())
            }
            Err(DecodeError::TooManyHours { max }) => {
                prop_assert_eq!(max, TIGHT.max_hours);
                Ok(())
            }
            Err(DecodeError::Empty | DecodeError::Malformed { .. }) => Ok(()),
            Err(err @ DecodeError::UnsupportedMediaType(_)) => Err(fail(format!("{err}"))),
        },
    )
}

/// Valid records sent as a JSON array, NDJSON and CSV, in any valid layout, decode to the same
/// batch: one line per record in request order, grouped by UTC hour in order of first appearance.
fn valid_records_decode_alike_in_every_format(runner: &mut TestRunner) -> Result<(), String> {
    let cases = (strategies::client_records(), strategies::layout());
    run(runner, cases, |(records, layout)| {
        let expected = oracle::expected_batch(&records);
        let mut batches = Vec::new();
        for format in [Format::JsonArray, Format::Ndjson, Format::Csv] {
            let body = strategies::encode(format, &records, &layout);
            let batch = ingest::decode(format, &body, &ROOMY).map_err(|err| {
                fail(format!(
                    "{format:?} refused: {err:?}\n{}",
                    String::from_utf8_lossy(&body)
                ))
            })?;
            let hours = oracle::batch_hours(&batch).map_err(fail)?;
            prop_assert_eq!(&hours, &expected, "{:?}", format);
            batches.push(batch);
        }
        prop_assert_eq!(&batches[0], &batches[1]);
        prop_assert_eq!(&batches[0], &batches[2]);
        let lines = expected.iter().flat_map(|(_, lines)| lines);
        let in_batch_order = oracle::by_hour(&records, |r| r.instant)
            .into_iter()
            .flat_map(|(_, records)| records);
        for (line, record) in lines.zip(in_batch_order) {
            let [timestamp, path, user_agent] = oracle::read_back(line).map_err(fail)?;
            let instant =
                DateTime::parse_from_rfc3339(&timestamp).map_err(|e| fail(e.to_string()))?;
            prop_assert_eq!(instant.to_utc(), record.instant);
            prop_assert_eq!(path, record.path.trim());
            prop_assert_eq!(user_agent, record.user_agent.trim());
        }
        Ok(())
    })
}

/// `record::write_timestamp` prints every instant of years 0000-9999 as chrono's RFC 3339 in UTC
/// with Go's trimming of fractions, and the text reads back to the same instant, through chrono
/// and through `record::parse_canonical_timestamp`.
fn timestamps_print_like_go_rfc3339nano(runner: &mut TestRunner) -> Result<(), String> {
    run(runner, strategies::utc_instant(), |instant| {
        let mut out = Vec::new();
        record::write_timestamp(&mut out, &instant);
        let text = String::from_utf8(out).map_err(|e| fail(e.to_string()))?;
        prop_assert_eq!(&text, &oracle::go_rfc3339_nano(&instant));
        let back = DateTime::parse_from_rfc3339(&text).map_err(|e| fail(e.to_string()))?;
        prop_assert_eq!(back.to_utc(), instant);
        prop_assert_eq!(record::parse_canonical_timestamp(&text), Some(instant));
        Ok(())
    })
}

/// `record::CanonicalHours`, read over a run of timestamps that share dates and hours (as a
/// batch's do) and differ after them, valid or not, gives the hour of exactly those that
/// `record::parse_canonical_timestamp` reads, whatever it read before.
fn canonical_hours_agree_with_parse_canonical_timestamp(
    runner: &mut TestRunner,
) -> Result<(), String> {
    let prefix = prop_oneof![
        3 => strategies::utc_instant().prop_map(|instant| {
            let mut out = Vec::new();
            record::write_timestamp(&mut out, &instant);
            String::from_utf8(out).expect("ASCII")[..13].to_owned()
        }),
        1 => vec(select(b"0123456789-T:".to_vec()), 13).prop_map(|b| String::from_utf8(b).expect("ASCII")),
    ];
    let tail = prop_oneof![
        // Fractions of 0 to 11 digits, trailing zeros included.
        (
            0..=61u32,
            0..=61u32,
            vec(select(b"0123456789".to_vec()), 0..12),
            select(vec!["Z", "z", "+00:00", ""])
        )
            .prop_map(|(m, s, digits, end)| {
                let fraction = String::from_utf8(digits).expect("ASCII");
                let dot = if fraction.is_empty() { "" } else { "." };
                format!(":{m:02}:{s:02}{dot}{fraction}{end}")
            }),
        vec(select(b":0123456789.Zz+-".to_vec()), 0..16)
            .prop_map(|b| String::from_utf8(b).expect("ASCII")),
    ];
    let cases = (vec(prefix, 1..4), vec((0..4usize, tail), 1..24));
    run(runner, cases, |(prefixes, tails)| {
        let mut hours = record::CanonicalHours::default();
        for (which, tail) in tails {
            let text = format!("{}{tail}", prefixes[which % prefixes.len()]);
            let expected = record::parse_canonical_timestamp(&text).map(|ts| record::Hour::of(&ts));
            prop_assert_eq!(hours.hour(&text), expected, "{}", text);
        }
        Ok(())
    })
}

/// A valid record as `record::write_line` stores it.
fn stored_record() -> impl Strategy<Value = (DateTime<Utc>, String, String)> {
    let field = || strategies::field_text().prop_map(|text| text.trim().to_owned());
    (strategies::utc_instant(), field(), field())
}

fn write_lines(records: &[(DateTime<Utc>, String, String)]) -> Vec<Vec<u8>> {
    records
        .iter()
        .map(|(ts, path, user_agent)| {
            let mut line = Vec::new();
            record::write_line(&mut line, ts, path, user_agent);
            line
        })
        .collect()
}

/// Every line `record::write_line` produces is accepted by `ingest::append_record` (the Kafka
/// consumer's path), which builds the same batch as decoding the lines as NDJSON and as pushing
/// the records; each line reads back to its record, through `split_stored_line` too when it has
/// no escapes.
fn stored_lines_append_like_ndjson(runner: &mut TestRunner) -> Result<(), String> {
    run(runner, vec(stored_record(), 1..=12), |records| {
        let lines = write_lines(&records);
        let mut appended = EncodedBatch::default();
        let mut pushed = EncodedBatch::default();
        for (line, (ts, path, user_agent)) in lines.iter().zip(&records) {
            let value = line
                .strip_suffix(b"\n")
                .expect("a line ends with a newline");
            ingest::append_record(value, &ROOMY, &mut appended).map_err(|err| {
                fail(format!(
                    "refused {:?}: {err:?}",
                    String::from_utf8_lossy(value)
                ))
            })?;
            pushed.push(ts, path, user_agent);
            let text = std::str::from_utf8(value).map_err(|e| fail(e.to_string()))?;
            let [timestamp, read_path, read_agent] = oracle::read_back(text).map_err(fail)?;
            prop_assert_eq!(&timestamp, &oracle::go_rfc3339_nano(ts));
            prop_assert_eq!(&read_path, path);
            prop_assert_eq!(&read_agent, user_agent);
            if !text.contains('\\') {
                let split = record::split_stored_line(value);
                let expected = (timestamp.as_str(), read_path.as_str(), read_agent.as_str());
                prop_assert_eq!(split, Some(expected));
            }
        }
        let decoded = ingest::decode(Format::Ndjson, &lines.concat(), &ROOMY)
            .map_err(|err| fail(format!("NDJSON refused: {err:?}")))?;
        prop_assert_eq!(&appended, &decoded);
        prop_assert_eq!(&appended, &pushed);
        let hours: Vec<HourLines> = oracle::expected_hours(
            records
                .iter()
                .map(|(ts, p, u)| (*ts, p.as_str(), u.as_str())),
        );
        prop_assert_eq!(oracle::batch_hours(&appended).map_err(fail)?, hours);
        Ok(())
    })
}

/// On any value (a stored line with up to three changes, a line in the stored shape with any
/// text in it, or random bytes), `append_record`
/// appends exactly when decoding the value as NDJSON yields one record, and appends that record's
/// line; when it refuses, the batch is left as it was.
///
/// Values starting with a byte-order mark are left out: request bodies drop it, Kafka messages
/// keep it.
fn append_record_agrees_with_ndjson_on_any_line(runner: &mut TestRunner) -> Result<(), String> {
    let stored = (stored_record(), strategies::damage(3)).prop_map(|(record, damage)| {
        let line = write_lines(&[record]).concat();
        strategies::damaged(line[..line.len() - 1].to_vec(), &damage)
    });
    let value = prop_oneof![stored, strategies::stored_shape(), vec(any::<u8>(), 0..128)]
        .prop_filter("no byte-order mark", |v| !v.starts_with(b"\xEF\xBB\xBF"));
    let mut before = EncodedBatch::default();
    let earlier = DateTime::from_timestamp(1_763_820_000, 0).expect("an instant");
    before.push(&earlier, "/earlier", "curl/8.5.0");
    run(runner, value, |value| {
        let mut batch = before.clone();
        let appended = ingest::append_record(&value, &ROOMY, &mut batch);
        let decoded = ingest::decode(Format::Ndjson, &value, &ROOMY);
        match (appended, decoded) {
            (Ok(()), Ok(one)) if one.records() == 1 => {
                let mut expected = before.clone();
                let chunk = &one.chunks[0];
                let line = chunk.lines.strip_suffix(b"\n").expect("a line");
                expected.push_line(chunk.hour, line);
                prop_assert_eq!(batch, expected);
            }
            (Err(_), Err(_)) => prop_assert_eq!(batch, before.clone()),
            (Err(DecodeError::TooManyRecords { max: 1 }), Ok(many)) if many.records() > 1 => {
                prop_assert_eq!(batch, before.clone())
            }
            (appended, decoded) => {
                return Err(fail(format!(
                    "append_record: {appended:?}, NDJSON: {:?}",
                    decoded.map(|b| b.records())
                )));
            }
        }
        Ok(())
    })
}

/// Each stored line is JSON with exactly the three keys, its timestamp in canonical UTC.
fn lines_read_back(hours: &[HourLines]) -> Result<(), TestCaseError> {
    for line in hours.iter().flat_map(|(_, lines)| lines) {
        let [timestamp, path, user_agent] = oracle::read_back(line).map_err(fail)?;
        let instant = DateTime::parse_from_rfc3339(&timestamp).map_err(|e| fail(e.to_string()))?;
        prop_assert_eq!(&timestamp, &oracle::go_rfc3339_nano(&instant.to_utc()));
        prop_assert_eq!(path.trim(), &path);
        prop_assert_eq!(user_agent.trim(), &user_agent);
    }
    Ok(())
}

/// A JSON array or NDJSON body of records in (or near) the stored form, which `ingest::decode`
/// copies as they are when it can, gets exactly the answer of decoding every record in full
/// (`ingest::decode_in_full`): the same batch, or the same error. The lines are stored lines
/// (escapes included), or text in the stored shape with any content (see
/// `strategies::stored_shape`), between any JSON whitespace (and now and then a form feed, which
/// is not JSON whitespace), with up to two changes; a third of the bodies are left whole and
/// plain, so that the fast path takes them all.
fn stored_form_bodies_decode_as_in_full(runner: &mut TestRunner) -> Result<(), String> {
    let line = prop_oneof![
        2 => stored_record().prop_map(|record| {
            let line = write_lines(&[record]).concat();
            line[..line.len() - 1].to_vec()
        }),
        1 => strategies::stored_shape(),
    ];
    let gap = select(vec!["", " ", "\n", "\r\n", "\t ", "\x0c"]);
    let mixed = (
        prop_oneof![Just(Format::JsonArray), Just(Format::Ndjson)],
        vec((line, gap), 1..=12),
        strategies::damage(2),
    )
        .prop_map(|(format, lines, damage)| {
            let body = stored_form_body(format, &lines);
            (format, strategies::damaged(body, &damage))
        });
    let plain = (
        prop_oneof![Just(Format::JsonArray), Just(Format::Ndjson)],
        vec(
            (
                strategies::utc_instant(),
                "[ -!#-\\[\\]-~]{1,40}",
                "[ -!#-\\[\\]-~]{1,40}",
            ),
            1..=12,
        ),
    )
        .prop_filter_map(
            "fields with surrounding spaces are not plain",
            |(format, records)| {
                let records: Vec<_> = records
                    .into_iter()
                    .map(|(ts, path, agent)| (ts, path.trim().to_owned(), agent.trim().to_owned()))
                    .collect();
                if records
                    .iter()
                    .any(|(_, path, agent)| path.is_empty() || agent.is_empty())
                {
                    return None;
                }
                let lines: Vec<_> = write_lines(&records)
                    .into_iter()
                    .map(|line| (line[..line.len() - 1].to_vec(), "\n"))
                    .collect();
                Some((format, stored_form_body(format, &lines)))
            },
        );
    run(
        runner,
        prop_oneof![2 => mixed, 1 => plain],
        |(format, body)| {
            for limits in [&ROOMY, &TIGHT] {
                let fast = ingest::decode(format, &body, limits);
                let full = ingest::decode_in_full(format, &body, limits);
                prop_assert_eq!(fast, full, "{:?}", String::from_utf8_lossy(&body));
            }
            Ok(())
        },
    )
}

/// A CSV body gets from `ingest::decode`, which splits simply quoted bodies without `csv_core`,
/// exactly the answer of `ingest::decode_in_full`, which reads every body with `csv_core`: the
/// same batch, or the same error with the same lines. The bodies: a header or not, rows of a
/// timestamp (valid or not; canonical often, as the plain-record path takes only those) and two
/// values (mostly without quotes, commas included; now and then with quotes, doubled in their
/// field, which `csv_core` must read; now and then empty or about as long as the field limit),
/// a column more or less now and then, each row ended by LF, CRLF, a lone CR or blank lines, or
/// not at all for the last; up to two changes.
fn csv_bodies_decode_as_in_full(runner: &mut TestRunner) -> Result<(), String> {
    let text = prop_oneof![
        4 => "[ -!#-~]{0,30}",
        1 => strategies::field_text(),
        1 => Just(String::new()),
        // Around `TIGHT`'s 80-byte field limit.
        1 => "[!#-~]{75,85}",
    ];
    let timestamp = prop_oneof![
        4 => strategies::client_timestamp().prop_map(|(text, _)| text),
        2 => strategies::utc_instant().prop_map(|instant| oracle::go_rfc3339_nano(&instant)),
        1 => strategies::edge_timestamp(),
        1 => "[ -!#-~]{0,12}",
    ];
    let quote_all = any::<bool>();
    let columns = prop_oneof![8 => Just(3usize), 1 => Just(2usize), 1 => Just(4usize)];
    let ending = select(vec!["\n", "\r\n", "\r", "\n\n", "\r\n\r\n", "\n\r", ""]);
    let row = (timestamp, text.clone(), text, columns, quote_all, ending);
    let header = select(vec![
        None,
        Some("timestamp,path,userAgent"),
        Some("userAgent,Time-Stamp,path,extra"),
        Some("timestamp,path"),
    ]);
    let body = (header, select(vec!["\n", "\r\n", "\r"]), vec(row, 1..=12)).prop_map(
        |(header, header_end, rows)| {
            let mut body = header.map_or(String::new(), |h| format!("{h}{header_end}"));
            for (timestamp, path, agent, columns, quote_all, ending) in rows {
                let cells = [timestamp, path, agent, "-".to_owned()];
                let cells: Vec<String> = cells[..columns]
                    .iter()
                    .map(|cell| strategies::csv_cell(cell, quote_all))
                    .collect();
                body.push_str(&cells.join(","));
                body.push_str(ending);
            }
            body.into_bytes()
        },
    );
    run(
        runner,
        (body, strategies::damage(2)).prop_map(|(body, damage)| strategies::damaged(body, &damage)),
        |body| {
            for limits in [&ROOMY, &TIGHT] {
                let fast = ingest::decode(Format::Csv, &body, limits);
                let full = ingest::decode_in_full(Format::Csv, &body, limits);
                prop_assert_eq!(fast, full, "{:?}", String::from_utf8_lossy(&body));
            }
            Ok(())
        },
    )
}

/// `lines` as a JSON array (each gap before a comma) or as NDJSON (each gap after a newline).
fn stored_form_body(format: Format, lines: &[(Vec<u8>, &str)]) -> Vec<u8> {
    let mut body = Vec::new();
    if format == Format::JsonArray {
        body.push(b'[');
    }
    for (i, (line, gap)) in lines.iter().enumerate() {
        if format == Format::JsonArray && i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(line);
        body.extend_from_slice(gap.as_bytes());
        if format == Format::Ndjson {
            body.push(b'\n');
        }
    }
    if format == Format::JsonArray {
        body.push(b']');
    }
    body
}
