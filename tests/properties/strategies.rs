//! What the properties feed the decoders: records a client may send (arbitrary Unicode fields,
//! RFC 3339 timestamps with any offset and fraction in years 0000-9999), encoded as each body
//! format in varied but valid layouts, stored lines, and damage done to any of them.
//!
//! Shared by the tests (`tests/properties/`) and the benchmark (`bench/properties.rs`).

use chrono::{DateTime, Datelike, NaiveDate, TimeDelta, Utc};
use log_pipeline::ingest::Format;
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::sample::{Index, select};

/// A record as a client sends it, with the instant its timestamp denotes.
#[derive(Debug, Clone)]
pub struct ClientRecord {
    /// RFC 3339 with an offset, as sent.
    pub timestamp: String,
    pub instant: DateTime<Utc>,
    /// As sent: may need trimming.
    pub path: String,
    pub user_agent: String,
}

/// How a body lays its records out; every layout is valid for its format.
#[derive(Debug, Clone)]
pub struct Layout {
    /// A UTF-8 byte-order mark first.
    bom: bool,
    /// Which of the six orders the three keys (JSON) or columns (CSV with a header) come in.
    order: usize,
    /// An extra key (JSON) or column (CSV), which is ignored.
    extra: bool,
    /// JSON strings escape every non-ASCII character as `\uXXXX` (surrogate pairs beyond the BMP).
    escape_non_ascii: bool,
    /// Whitespace between JSON tokens.
    spaced: bool,
    /// Lines end in CRLF (NDJSON, CSV).
    crlf: bool,
    /// Blank lines between NDJSON records.
    blank_lines: bool,
    /// A CSV header row (always written when the first row would read as one).
    header: bool,
    /// Which spelling of the CSV header names (case, `_`, `-` are ignored).
    spelling: usize,
    /// Every CSV cell quoted, not only those that need it.
    quote_all: bool,
}

/// A change to a body's bytes.
#[derive(Debug, Clone)]
pub enum Damage {
    Replace(Index, u8),
    Insert(Index, u8),
    Delete(Index),
    Truncate(Index),
}

const KEYS: [&str; 3] = ["timestamp", "path", "userAgent"];
const ORDERS: [[usize; 3]; 6] = [
    [0, 1, 2],
    [0, 2, 1],
    [1, 0, 2],
    [1, 2, 0],
    [2, 0, 1],
    [2, 1, 0],
];
const SPELLINGS: [[&str; 3]; 3] = [
    ["timestamp", "path", "userAgent"],
    ["Timestamp", "PATH", "user_agent"],
    ["TIME-STAMP", "Path", "User-Agent"],
];

/// `.` and 1 to 9 digits (trailing zeros included), or nothing; with the nanoseconds they mean.
fn fraction() -> impl Strategy<Value = (String, u32)> {
    (0..=9u32)
        .prop_flat_map(|digits| (Just(digits), 0..10u32.pow(digits)))
        .prop_map(|(digits, value)| match digits {
            0 => (String::new(), 0),
            _ => (
                format!(".{value:0width$}", width = digits as usize),
                value * 10u32.pow(9 - digits),
            ),
        })
}

/// `Z`, or `+HH:MM` / `-HH:MM` within a day; with the offset in seconds east of UTC.
fn offset() -> impl Strategy<Value = (String, i64)> {
    prop_oneof![
        Just(("Z".to_owned(), 0)),
        (-(23 * 60 + 59)..=(23 * 60 + 59i64), any::<bool>()).prop_map(|(minutes, minus_zero)| {
            let sign = if minutes < 0 || (minutes == 0 && minus_zero) {
                '-'
            } else {
                '+'
            };
            let text = format!("{sign}{:02}:{:02}", minutes.abs() / 60, minutes.abs() % 60);
            (text, minutes * 60)
        }),
    ]
}

/// A valid RFC 3339 timestamp and its instant, whose UTC year is within 0000-9999.
pub fn client_timestamp() -> impl Strategy<Value = (String, DateTime<Utc>)> {
    let year = prop_oneof![Just(0), Just(1970), Just(9999), 0..=9999i32];
    let time = (0..=23u32, 0..=59u32, 0..=59u32);
    (year, 1..=12u32, 1..=31u32, time, fraction(), offset()).prop_filter_map(
        "a real date whose UTC year is within 0000-9999",
        |(year, month, day, (hour, minute, second), (fraction, nanos), (offset, east))| {
            let local = NaiveDate::from_ymd_opt(year, month, day)?
                .and_hms_nano_opt(hour, minute, second, nanos)?;
            let instant = (local - TimeDelta::seconds(east)).and_utc();
            let text = format!(
                "{year:04}-{month:02}-{day:02}T{hour:02}:{minute:02}:{second:02}{fraction}{offset}"
            );
            (0..=9999)
                .contains(&instant.year())
                .then_some((text, instant))
        },
    )
}

/// Any instant from 0000-01-01 to 9999-12-31 UTC, fractions of every length.
pub fn utc_instant() -> impl Strategy<Value = DateTime<Utc>> {
    const FIRST: i64 = -62_167_219_200; // 0000-01-01T00:00:00Z
    const LAST: i64 = 253_402_300_799; // 9999-12-31T23:59:59Z
    let seconds = prop_oneof![Just(FIRST), Just(LAST), Just(0), FIRST..=LAST];
    (seconds, fraction()).prop_map(|(seconds, (_, nanos))| {
        DateTime::from_timestamp(seconds, nanos).expect("within chrono's range")
    })
}

/// A path or user agent: 1 to 31 characters of any kind, weighted towards those that need
/// escaping or quoting (quotes, backslashes, commas, control characters, line breaks, Unicode
/// spaces, emoji); not only whitespace.
pub fn field_text() -> impl Strategy<Value = String> {
    let special = select(vec![
        '"', '\\', ',', '\n', '\r', '\t', ' ', '\0', '\u{1b}', '\u{7f}', '\u{85}', '\u{a0}',
        '\u{2028}', '\u{3000}', '\u{feff}', '\u{fffd}', 'é', '€', '/', '{', '[',
    ]);
    let character = prop_oneof![
        4 => proptest::char::range(' ', '~'),
        2 => special,
        1 => proptest::char::range('\u{1f300}', '\u{1faff}'),
        1 => any::<char>(),
    ];
    vec(character, 1..32)
        .prop_map(String::from_iter)
        .prop_filter("not only whitespace", |text| !text.trim().is_empty())
}

/// A line in the stored shape, `{"timestamp":"…","path":"…","userAgent":"…"}`, with any text put
/// between the quotes as it is (nothing escaped): a canonical timestamp or any other, fields that
/// are plain, padded with whitespace, longer than 256 bytes, empty, or hold a quote, backslash or
/// control character. What the fast path of `append_record` must tell apart.
pub fn stored_shape() -> impl Strategy<Value = Vec<u8>> {
    let timestamp = prop_oneof![
        utc_instant().prop_map(|instant| crate::oracle::go_rfc3339_nano(&instant)),
        client_timestamp().prop_map(|(text, _)| text),
        edge_timestamp(),
    ];
    (timestamp, raw_field(), raw_field()).prop_map(|(timestamp, path, user_agent)| {
        format!(r#"{{"timestamp":"{timestamp}","path":"{path}","userAgent":"{user_agent}"}}"#)
            .into_bytes()
    })
}

/// Text for [`stored_shape`].
fn raw_field() -> impl Strategy<Value = String> {
    let plain_char = prop_oneof![
        4 => proptest::char::range(' ', '~').prop_filter("no quote", |c| !matches!(c, '"' | '\\')),
        1 => select(vec!['é', '€', '\u{fffd}', '\u{1f600}', '\u{1f9ea}']),
    ];
    let plain = vec(plain_char, 1..24).prop_map(String::from_iter);
    let space = select(vec![' ', '\t', '\u{85}', '\u{a0}', '\u{2028}', '\u{3000}']);
    let odd = select(vec!['"', '\\', '\0', '\n', '\u{1f}', '\u{7f}']);
    let escape = select(vec![
        "\\u0026",
        "\\u003c",
        "\\/",
        "\\\"",
        "\\\\",
        "\\t",
        "\\u00e9",
        "\\ud83d\\ude00",
        "\\ud800",
        "\\u0020",
        "\\x",
        "\\u12",
        "\\\\\\",
    ]);
    prop_oneof![
        4 => plain.clone(),
        2 => (plain.clone(), space, any::<bool>()).prop_map(|(text, space, front)| match front {
            true => format!("{space}{text}"),
            false => format!("{text}{space}"),
        }),
        1 => vec(proptest::char::range('a', 'z'), 240..330).prop_map(String::from_iter),
        1 => (plain.clone(), odd, plain.clone()).prop_map(|(a, odd, b)| format!("{a}{odd}{b}")),
        // Escapes JSON allows (Go writes `&` as `\u0026`), and some it does not.
        1 => (plain.clone(), vec(escape, 1..3), plain)
            .prop_map(|(a, escapes, b)| format!("{a}{}{b}", escapes.concat())),
        1 => Just(String::new()),
    ]
}

/// Timestamps at the edges of what is valid: years 0000 and 9999 with offsets that may carry them
/// out of range in UTC, the last second of a minute and leap seconds (`:60`).
pub fn edge_timestamp() -> impl Strategy<Value = String> {
    let date = select(vec![
        "0000-01-01",
        "0000-12-31",
        "9999-01-01",
        "9999-12-31",
        "2016-12-31",
    ]);
    let time = (
        select(vec![0, 23]),
        select(vec![0, 59]),
        select(vec![0, 59, 60]),
    );
    (date, time, fraction(), offset()).prop_map(
        |(date, (hour, minute, second), (fraction, _), (offset, _))| {
            format!("{date}T{hour:02}:{minute:02}:{second:02}{fraction}{offset}")
        },
    )
}

/// A valid record.
pub fn client_record() -> impl Strategy<Value = ClientRecord> {
    (client_timestamp(), field_text(), field_text()).prop_map(
        |((timestamp, instant), path, user_agent)| ClientRecord {
            timestamp,
            instant,
            path,
            user_agent,
        },
    )
}

/// 1 to 12 records.
pub fn client_records() -> impl Strategy<Value = Vec<ClientRecord>> {
    vec(client_record(), 1..=12)
}

prop_compose! {
    /// Any valid layout.
    pub fn layout()(
        bom in any::<bool>(),
        order in 0..ORDERS.len(),
        extra in any::<bool>(),
        escape_non_ascii in any::<bool>(),
        spaced in any::<bool>(),
        crlf in any::<bool>(),
        blank_lines in any::<bool>(),
        header in any::<bool>(),
        spelling in 0..SPELLINGS.len(),
        quote_all in any::<bool>(),
    ) -> Layout {
        Layout {
            bom, order, extra, escape_non_ascii, spaced, crlf, blank_lines, header, spelling,
            quote_all,
        }
    }
}

/// Any body format.
pub fn format() -> impl Strategy<Value = Format> {
    select(vec![Format::JsonArray, Format::Ndjson, Format::Csv])
}

/// Up to `most` changes, each to a byte that matters to some format, or to any byte.
pub fn damage(most: usize) -> impl Strategy<Value = Vec<Damage>> {
    let byte = prop_oneof![
        select(b"\"\\,\n\r \t{}[]:0.Z+-\x00\x7f\xef\xbb\xbf\xff".to_vec()),
        any::<u8>(),
    ];
    let one = prop_oneof![
        (any::<Index>(), byte.clone()).prop_map(|(at, byte)| Damage::Replace(at, byte)),
        (any::<Index>(), byte).prop_map(|(at, byte)| Damage::Insert(at, byte)),
        any::<Index>().prop_map(Damage::Delete),
        any::<Index>().prop_map(Damage::Truncate),
    ];
    vec(one, 0..=most)
}

/// Any body for any format: random bytes, or (three times as often) a valid body whose records
/// may have [`edge_timestamp`]s, with up to three changes.
pub fn any_body() -> impl Strategy<Value = (Format, Vec<u8>)> {
    let edges = vec((any::<Index>(), edge_timestamp()), 0..=2);
    let damaged = (format(), client_records(), edges, layout(), damage(3)).prop_map(
        |(format, mut records, edges, layout, damage)| {
            for (at, timestamp) in edges {
                // The record's `instant` is stale now; only its text is encoded.
                let at = at.index(records.len());
                records[at].timestamp = timestamp;
            }
            let body = encode(format, &records, &layout);
            (format, damaged(body, &damage))
        },
    );
    prop_oneof![1 => (format(), vec(any::<u8>(), 0..256)), 3 => damaged]
}

/// `body` with `damage` done to it, in order.
pub fn damaged(mut body: Vec<u8>, damage: &[Damage]) -> Vec<u8> {
    for change in damage {
        let len = body.len();
        match *change {
            Damage::Replace(at, byte) if len > 0 => body[at.index(len)] = byte,
            Damage::Insert(at, byte) => body.insert(at.index(len + 1), byte),
            Damage::Delete(at) if len > 0 => {
                body.remove(at.index(len));
            }
            Damage::Truncate(at) => body.truncate(at.index(len + 1)),
            Damage::Replace(..) | Damage::Delete(_) => {}
        }
    }
    body
}

/// `records` as a body of `format`, laid out as `layout` says.
pub fn encode(format: Format, records: &[ClientRecord], layout: &Layout) -> Vec<u8> {
    let text = match format {
        Format::JsonArray => {
            let separator = if layout.spaced { ",\n  " } else { "," };
            let objects: Vec<String> = records.iter().map(|r| json_object(r, layout)).collect();
            format!("[{}]", objects.join(separator))
        }
        Format::Ndjson => {
            let end = if layout.crlf { "\r\n" } else { "\n" };
            let blank = if layout.blank_lines { " \t\r\n" } else { "" };
            records
                .iter()
                .map(|r| format!("{}{end}{blank}", json_object(r, layout)))
                .collect()
        }
        Format::Csv => csv_body(records, layout),
    };
    let bom: &[u8] = if layout.bom { b"\xEF\xBB\xBF" } else { b"" };
    [bom, text.as_bytes()].concat()
}

fn json_object(record: &ClientRecord, layout: &Layout) -> String {
    let values = [&record.timestamp, &record.path, &record.user_agent];
    let space = if layout.spaced { " " } else { "" };
    let mut members: Vec<String> = ORDERS[layout.order]
        .iter()
        .map(|&i| {
            let key = json_string(KEYS[i], layout.escape_non_ascii);
            format!(
                "{key}:{space}{}",
                json_string(values[i], layout.escape_non_ascii)
            )
        })
        .collect();
    if layout.extra {
        members.insert(
            1,
            r#""referrer":{"chain":[1,2.5e3,null,true,"x"]}"#.to_owned(),
        );
    }
    format!("{{{space}{}{space}}}", members.join(&format!(",{space}")))
}

/// A JSON string literal as RFC 8259 section 7 describes it.
fn json_string(text: &str, escape_non_ascii: bool) -> String {
    let mut out = String::from('"');
    for c in text.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 || (escape_non_ascii && !c.is_ascii()) => {
                for unit in c.encode_utf16(&mut [0; 2]) {
                    out.push_str(&format!("\\u{unit:04x}"));
                }
            }
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn csv_body(records: &[ClientRecord], layout: &Layout) -> String {
    let cells_of = |r: &ClientRecord| [r.timestamp.clone(), r.path.clone(), r.user_agent.clone()];
    // Without a header the columns are positional, and a first row naming a timestamp column
    // would read as a header.
    let header = layout.header || cells_of(&records[0]).iter().any(|c| names_timestamp(c));
    let order = if header {
        ORDERS[layout.order]
    } else {
        ORDERS[0]
    };
    let end = if layout.crlf { "\r\n" } else { "\n" };
    let mut rows: Vec<Vec<String>> = Vec::new();
    if header {
        rows.push(
            order
                .iter()
                .map(|&i| SPELLINGS[layout.spelling][i].to_owned())
                .collect(),
        );
    }
    for record in records {
        let cells = cells_of(record);
        rows.push(order.iter().map(|&i| cells[i].clone()).collect());
    }
    let mut out = String::new();
    for (number, mut row) in rows.into_iter().enumerate() {
        if layout.extra {
            row.push(
                if header && number == 0 {
                    "referrer"
                } else {
                    "-"
                }
                .to_owned(),
            );
        }
        let cells: Vec<String> = row.iter().map(|c| csv_cell(c, layout.quote_all)).collect();
        out.push_str(&cells.join(","));
        out.push_str(end);
    }
    out
}

/// A CSV field as RFC 4180 section 2 describes it: quoted when asked, or when it holds a comma,
/// quote or line break; quotes inside doubled.
pub fn csv_cell(text: &str, quote: bool) -> String {
    if quote || text.contains([',', '"', '\r', '\n']) {
        format!("\"{}\"", text.replace('"', "\"\""))
    } else {
        text.to_owned()
    }
}

/// Whether a CSV cell names the timestamp column: the rule of docs/api.md (case, `_`, `-`
/// ignored), and spaces and tabs, which the decoder ignores as well.
pub fn names_timestamp(cell: &str) -> bool {
    let name: String = cell
        .chars()
        .filter(|c| !matches!(c, '_' | '-' | ' ' | '\t'))
        .flat_map(char::to_lowercase)
        .collect();
    name == "timestamp"
}
