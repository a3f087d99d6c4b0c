//! What the decoders and the line format should produce, worked out from the specifications (the
//! `POST /logs` section of docs/api.md and the line format in `src/record.rs`) without the
//! crate's code: Go's `RFC3339Nano` timestamps, the stored line of a record, the batch a list of
//! records becomes, and the records a body holds.
//!
//! Shared by the tests (`tests/properties/`) and the benchmark (`bench/properties.rs`).

use chrono::{DateTime, Datelike, SecondsFormat, Timelike, Utc};
use log_pipeline::ingest::{Format, Limits};
use log_pipeline::record::EncodedBatch;
use serde_json::Value;

use crate::strategies::{ClientRecord, names_timestamp};

/// An hour index (hours since the epoch) and its lines, without newlines, in order.
pub type HourLines = (i64, Vec<String>);

/// A record's three fields as a body holds them, before validation.
pub type SentFields = [String; 3];

/// `ts` as Go's `time.RFC3339Nano` prints it in UTC: chrono's RFC 3339 with `Z`, fractions
/// only when non-zero, trailing zeros trimmed.
pub fn go_rfc3339_nano(ts: &DateTime<Utc>) -> String {
    let text = ts.to_rfc3339_opts(SecondsFormat::AutoSi, true);
    match text.strip_suffix('Z').and_then(|t| t.split_once('.')) {
        Some((whole, fraction)) => match fraction.trim_end_matches('0') {
            "" => format!("{whole}Z"),
            digits => format!("{whole}.{digits}Z"),
        },
        None => text,
    }
}

/// The stored line of a valid record: keys in the original's order, the timestamp in UTC, the
/// strings trimmed and JSON-encoded.
pub fn stored_line(ts: &DateTime<Utc>, path: &str, user_agent: &str) -> String {
    let string = |s: &str| serde_json::to_string(s.trim()).expect("a string serializes");
    format!(
        "{{\"timestamp\":\"{}\",\"path\":{},\"userAgent\":{}}}",
        go_rfc3339_nano(ts),
        string(path),
        string(user_agent)
    )
}

/// `items` grouped by the UTC hour of their instant: hours in order of their first item, items in
/// their order (how a batch files its records).
pub fn by_hour<T>(
    items: impl IntoIterator<Item = T>,
    instant_of: impl Fn(&T) -> DateTime<Utc>,
) -> Vec<(i64, Vec<T>)> {
    let mut hours: Vec<(i64, Vec<T>)> = Vec::new();
    for item in items {
        let hour = instant_of(&item).timestamp().div_euclid(3600);
        match hours.iter_mut().find(|(h, _)| *h == hour) {
            Some((_, items)) => items.push(item),
            None => hours.push((hour, vec![item])),
        }
    }
    hours
}

/// The lines of valid records, [`by_hour`].
pub fn expected_hours<'a>(
    records: impl IntoIterator<Item = (DateTime<Utc>, &'a str, &'a str)>,
) -> Vec<HourLines> {
    by_hour(records, |(ts, _, _)| *ts)
        .into_iter()
        .map(|(hour, records)| {
            let lines = records.iter().map(|(ts, p, u)| stored_line(ts, p, u));
            (hour, lines.collect())
        })
        .collect()
}

/// [`expected_hours`] of records as a client sent them.
pub fn expected_batch(records: &[ClientRecord]) -> Vec<HourLines> {
    expected_hours(
        records
            .iter()
            .map(|r| (r.instant, r.path.as_str(), r.user_agent.as_str())),
    )
}

/// A batch as hour indexes and lines; fails when a chunk's count or newlines are off.
pub fn batch_hours(batch: &EncodedBatch) -> Result<Vec<HourLines>, String> {
    batch
        .chunks
        .iter()
        .map(|chunk| {
            let text = std::str::from_utf8(&chunk.lines).map_err(|e| format!("not UTF-8: {e}"))?;
            let body = text
                .strip_suffix('\n')
                .ok_or_else(|| format!("chunk does not end with a newline: {text:?}"))?;
            let lines: Vec<String> = body.split('\n').map(str::to_owned).collect();
            if lines.len() != chunk.records {
                return Err(format!(
                    "{} lines but records = {}",
                    lines.len(),
                    chunk.records
                ));
            }
            Ok((chunk.hour.index(), lines))
        })
        .collect()
}

/// The records `body` holds as `format` (docs/api.md, `POST /logs`), fields as sent; `None` when
/// the body is not that format, or a record lacks a field or has one that is not text.
///
/// JSON is read after replacing bytes that are not UTF-8 with U+FFFD: the decoders skip the values
/// of other keys ("ignored") without checking their UTF-8, and a record whose own fields are not
/// UTF-8 is refused anyway, so this only matters inside ignored values.
pub fn records_in(format: Format, body: &[u8]) -> Option<Vec<SentFields>> {
    let body = body.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(body);
    let json = |bytes: &[u8]| serde_json::from_str::<Value>(&String::from_utf8_lossy(bytes)).ok();
    match format {
        Format::JsonArray => match json(body)? {
            Value::Array(items) => items.iter().map(json_record).collect(),
            _ => None,
        },
        Format::Ndjson => body
            .split(|&b| b == b'\n')
            .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
            .map(|line| json_record(&json(line)?))
            .collect(),
        Format::Csv => csv_records(body),
    }
}

fn json_record(value: &Value) -> Option<SentFields> {
    let field = |key: &str| value.get(key)?.as_str().map(str::to_owned);
    Some([field("timestamp")?, field("path")?, field("userAgent")?])
}

fn csv_records(body: &[u8]) -> Option<Vec<SentFields>> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .flexible(true)
        .from_reader(body);
    let mut rows = reader.byte_records().collect::<Result<Vec<_>, _>>().ok()?;
    let mut columns = [0, 1, 2];
    let names: Vec<String> = match rows.first() {
        Some(row) => row
            .iter()
            .map(|c| String::from_utf8_lossy(c).into_owned())
            .collect(),
        None => return Some(Vec::new()),
    };
    if names.iter().any(|name| names_timestamp(name)) {
        let normalized = |name: &String| name.replace(['_', '-', ' ', '\t'], "").to_lowercase();
        let find = |wanted: &str| names.iter().position(|n| normalized(n) == wanted);
        columns = [find("timestamp")?, find("path")?, find("useragent")?];
        rows.remove(0);
    }
    rows.iter()
        .map(|row| {
            let cell = |i: usize| Some(std::str::from_utf8(row.get(columns[i])?).ok()?.to_owned());
            Some([cell(0)?, cell(1)?, cell(2)?])
        })
        .collect()
}

/// Why a record sent as `fields` is invalid under `limits` (docs/api.md, `POST /logs`), or its
/// instant when it is valid.
pub fn validate(fields: &SentFields, limits: &Limits) -> Result<DateTime<Utc>, String> {
    let [timestamp, path, user_agent] = fields;
    for (name, text) in [("path", path), ("userAgent", user_agent)] {
        let trimmed = text.trim();
        if trimmed.is_empty() || trimmed.len() > limits.max_field_bytes {
            return Err(format!("{name} {text:?} is empty or too long"));
        }
    }
    let ts = DateTime::parse_from_rfc3339(timestamp)
        .map_err(|e| format!("timestamp {timestamp:?}: {e}"))?
        .to_utc();
    if !(0..=9999).contains(&ts.year()) || ts.nanosecond() >= 1_000_000_000 {
        return Err(format!(
            "timestamp {timestamp:?} is out of range or a leap second"
        ));
    }
    Ok(ts)
}

/// A stored line read back as JSON: its three values, and whether its keys are exactly those three.
pub fn read_back(line: &str) -> Result<SentFields, String> {
    let value: Value = serde_json::from_str(line).map_err(|e| format!("{line:?}: {e}"))?;
    let object = value
        .as_object()
        .ok_or(format!("{line:?} is not an object"))?;
    if object.len() != 3 {
        return Err(format!("{line:?} has other keys"));
    }
    json_record(&value).ok_or(format!("{line:?} lacks a field"))
}
