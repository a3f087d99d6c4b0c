//! CSV decoder: RFC 4180 rows of `timestamp,path,userAgent`.
//!
//! A first row that names a `timestamp` column is a header; it must then name `path` and
//! `userAgent` too (case, `_`, `-` and spaces ignored) and may order the columns any way, with extra
//! columns ignored. Without a header, columns are positional and extra columns are ignored. Every row
//! must have as many fields as the first one (the original refused ragged rows).
//!
//! Quoting is strict, as in RFC 4180 and the original (Go's `encoding/csv`): a quote inside an
//! unquoted field, text after a closing quote, or a quoted field never closed makes the whole body
//! malformed. `csv_core` reads all three leniently (an unclosed quote swallows every row after
//! it into one field), so [`check_quotes`] scans the body first.

use std::borrow::Cow;
use std::cell::Cell;
use std::ops::Range;

use super::{DecodeError, Field, Position, Validator};

/// Column positions of the three record fields.
#[derive(Debug, Clone, Copy)]
struct Columns {
    timestamp: usize,
    path: usize,
    agent: usize,
}

impl Columns {
    const POSITIONAL: Columns = Columns {
        timestamp: 0,
        path: 1,
        agent: 2,
    };

    fn needed(self) -> usize {
        self.timestamp.max(self.path).max(self.agent) + 1
    }
}

/// Decodes a CSV body; with `fast`, a body whose quoted fields hold no doubled quote is split by
/// [`SimpleRows`] instead of `csv_core` (same rows, fewer steps per byte).
pub(super) fn decode(
    body: &[u8],
    validator: &mut Validator<'_>,
    fast: bool,
) -> Result<(), DecodeError> {
    match check_quotes(body)? {
        Quoting::Simple if fast => read_rows(body, SimpleRows::new(body), validator),
        _ => read_rows(body, Rows::new(body), validator),
    }
}

fn read_rows(
    body: &[u8],
    mut rows: impl RowSource,
    validator: &mut Validator<'_>,
) -> Result<(), DecodeError> {
    let mut columns = Columns::POSITIONAL;
    let mut width = None;
    // Line numbers are counted only for the rows an error report names.
    let mut lines = Lines::default();
    while let Some(row) = rows.next_row() {
        if width.is_none() {
            width = Some(row.len());
            match header(&row) {
                Ok(Some(header)) => {
                    columns = header;
                    continue;
                }
                Ok(None) => {}
                Err(missing) => {
                    return Err(DecodeError::Malformed {
                        format: "CSV",
                        line: lines.at(body, row.start),
                        column: 1,
                        message: format!("header row has no {missing} column"),
                    });
                }
            }
        }
        let at = Position {
            index: validator.admit()?,
            line: None,
        };
        let reported = validator.errors.len();
        let width = width.expect("set by the first row");
        read_row(&row, at, width, columns, validator);
        for error in &mut validator.errors[reported..] {
            error.line = Some(lines.at(body, row.start));
        }
    }
    Ok(())
}

/// Validates one record's row, which must be `width` fields wide like the first row.
fn read_row(
    row: &Row<'_>,
    at: Position,
    width: usize,
    columns: Columns,
    validator: &mut Validator<'_>,
) {
    if row.len() != width {
        let reason = format!(
            "row has {} fields, expected {width} like the first row",
            row.len()
        );
        validator.reject(at, None, "record", reason);
        return;
    }
    if row.len() < columns.needed() {
        let reason = format!(
            "row has {} fields, needs {} (timestamp,path,userAgent)",
            row.len(),
            columns.needed()
        );
        validator.reject(at, None, "record", reason);
        return;
    }
    if let (Some(timestamp), Some(path), Some(agent)) = (
        known_text(row, columns.timestamp),
        known_text(row, columns.path),
        known_text(row, columns.agent),
    ) && validator.plain_record(timestamp, path, agent)
    {
        return;
    }
    validator.record(
        at,
        cell(row, columns.timestamp),
        cell(row, columns.path),
        cell(row, columns.agent),
    );
}

/// Where rows come from: `csv_core` ([`Rows`]) or, for simply quoted bodies, [`SimpleRows`].
trait RowSource {
    fn next_row(&mut self) -> Option<Row<'_>>;
}

/// One row: its fields, as spans of `text`, and where its first byte is in the body.
struct Row<'r> {
    start: usize,
    text: &'r [u8],
    /// `text` as a `str`, when it is known to be UTF-8 as a whole (checked once per body, not once
    /// per field).
    utf8: Option<&'r str>,
    spans: &'r [Range<usize>],
}

/// Line numbers of positions in a body, counted forwards: 1 plus the line feeds before the
/// position (so a lone CR ends a row, not a line). (`csv_core`'s own count misses the LF of a
/// CRLF until the next row is read.)
#[derive(Default)]
struct Lines {
    counted_to: usize,
    feeds: usize,
}

impl Lines {
    /// The line of `at`; positions must come in order.
    fn at(&mut self, body: &[u8], at: usize) -> usize {
        self.feeds += memchr::memchr_iter(b'\n', &body[self.counted_to..at]).count();
        self.counted_to = at;
        self.feeds + 1
    }
}

/// Where the row that `csv_core` reads from `at` starts: blank lines (any run of CR and LF) are
/// skipped. `None` at the end of the body.
fn row_start(body: &[u8], at: usize) -> Option<usize> {
    let skipped = body[at..]
        .iter()
        .position(|b| !matches!(b, b'\r' | b'\n'))?;
    Some(at + skipped)
}

thread_local! {
    /// A parser kept per thread and reset for each body: building one computes its state
    /// machine, which costs more than reading a 100-row body. (It cannot be copied from a
    /// template instead: csv-core 0.1.13's `Clone` of a built parser loses most of its machine.)
    static PARSER: Cell<Option<csv_core::Reader>> = const { Cell::new(None) };
}

/// The rows of a body, read by `csv_core` straight from it (RFC 4180 with its defaults: `,`,
/// `"` doubled inside quotes, CR, LF or CRLF ending a row, blank lines skipped). `csv_core`
/// never fails: it prefers a parse, so [`check_quotes`] refuses what RFC 4180 does not allow.
struct Rows<'b> {
    /// Given back to [`PARSER`] on drop.
    parser: Option<csv_core::Reader>,
    body: &'b [u8],
    rest: &'b [u8],
    /// The current row's fields, unescaped, one after the other...
    fields: Vec<u8>,
    /// ... where each ends in `fields`...
    ends: Vec<usize>,
    /// ... and their spans.
    spans: Vec<Range<usize>>,
}

impl<'b> Rows<'b> {
    fn new(body: &'b [u8]) -> Rows<'b> {
        // Not `unwrap_or_default`: a default `csv_core::Reader` has no state machine built.
        #[allow(clippy::unwrap_or_default)]
        let mut parser = PARSER.take().unwrap_or_else(csv_core::Reader::new);
        parser.reset();
        Rows {
            parser: Some(parser),
            body,
            rest: body,
            fields: vec![0; 1024],
            ends: vec![0; 8],
            spans: Vec::new(),
        }
    }
}

impl RowSource for Rows<'_> {
    fn next_row(&mut self) -> Option<Row<'_>> {
        use csv_core::ReadRecordResult;
        let parser = self.parser.as_mut().expect("the parser is held until drop");
        let consumed = self.body.len() - self.rest.len();
        let row_start = row_start(self.body, consumed);
        let (mut written, mut ended) = (0, 0);
        loop {
            let (result, read, wrote, ends) = parser.read_record(
                self.rest,
                &mut self.fields[written..],
                &mut self.ends[ended..],
            );
            self.rest = &self.rest[read..];
            written += wrote;
            ended += ends;
            match result {
                // The rest is then empty, which tells the parser that the body ended.
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => self.fields.resize(self.fields.len() * 2, 0),
                ReadRecordResult::OutputEndsFull => self.ends.resize(self.ends.len() * 2, 0),
                ReadRecordResult::Record => {
                    self.spans.clear();
                    let mut start = 0;
                    for &end in &self.ends[..ended] {
                        self.spans.push(start..end);
                        start = end;
                    }
                    return Some(Row {
                        start: row_start.expect("a row has a first byte"),
                        text: &self.fields[..written],
                        utf8: None,
                        spans: &self.spans,
                    });
                }
                ReadRecordResult::End => return None,
            }
        }
    }
}

impl Drop for Rows<'_> {
    fn drop(&mut self) {
        PARSER.set(self.parser.take());
    }
}

/// The rows of a body that [`check_quotes`] found [`Quoting::Simple`], split with `memchr`: a
/// quoted field runs to the next quote, any other to the next comma or line break. Each field is
/// a span of the body, as `csv_core` would have written it.
struct SimpleRows<'b> {
    body: &'b [u8],
    /// The body as a `str`, if it is UTF-8.
    utf8: Option<&'b str>,
    at: usize,
    spans: Vec<Range<usize>>,
}

impl<'b> SimpleRows<'b> {
    fn new(body: &'b [u8]) -> SimpleRows<'b> {
        SimpleRows {
            body,
            utf8: super::utf8(body),
            at: 0,
            spans: Vec::with_capacity(8),
        }
    }
}

impl RowSource for SimpleRows<'_> {
    // Inlined into `read_rows`, the row stays in registers instead of being written to the stack
    // and read back (4% of CSV 100's decoding time, `cargo bench --bench decode`).
    #[inline(always)]
    fn next_row(&mut self) -> Option<Row<'_>> {
        let body = self.body;
        let start = row_start(body, self.at)?;
        self.spans.clear();
        let mut at = start;
        loop {
            let (span, after) = if body.get(at) == Some(&b'"') {
                let close = memchr::memchr(b'"', &body[at + 1..])
                    .expect("check_quotes found every quoted field closed");
                (at + 1..at + 1 + close, at + close + 2)
            } else {
                let end = memchr::memchr3(b',', b'\r', b'\n', &body[at..]);
                let end = end.map_or(body.len(), |end| at + end);
                (at..end, end)
            };
            self.spans.push(span);
            // After a field: a comma, a line break or the end (check_quotes saw to it).
            if body.get(after) == Some(&b',') {
                at = after + 1;
            } else {
                self.at = after;
                return Some(Row {
                    start,
                    text: body,
                    utf8: self.utf8,
                    spans: &self.spans,
                });
            }
        }
    }
}

impl<'r> Row<'r> {
    fn len(&self) -> usize {
        self.spans.len()
    }

    fn get(&self, column: usize) -> &'r [u8] {
        &self.text[self.spans[column].clone()]
    }

    fn iter(&self) -> impl Iterator<Item = &'r [u8]> + '_ {
        (0..self.len()).map(|column| self.get(column))
    }
}

/// How a body that RFC 4180 allows quotes its fields.
#[derive(Debug, PartialEq, Eq)]
enum Quoting {
    /// No quoted field holds a doubled quote: [`SimpleRows`] can split it.
    Simple,
    /// Some do: `csv_core` must read it.
    Escaped,
}

/// Refuses quoting that RFC 4180 does not allow (see the module docs), naming its line and column
/// (1-based, in bytes), and tells how the body quotes. Jumps from quote to quote: a quote outside
/// a quoted field must open one, so it must start its field; a quoted field runs to a quote not
/// doubled, which must end the field. A body without quotes is one `memchr` pass.
fn check_quotes(body: &[u8]) -> Result<Quoting, DecodeError> {
    let malformed = |at: usize, message: &str| {
        let line_start = memchr::memrchr(b'\n', &body[..at]).map_or(0, |i| i + 1);
        DecodeError::Malformed {
            format: "CSV",
            line: Lines::default().at(body, at),
            column: at - line_start + 1,
            message: message.to_owned(),
        }
    };
    let mut quoting = Quoting::Simple;
    let mut at = 0;
    while let Some(found) = memchr::memchr(b'"', &body[at..]) {
        let opened = at + found;
        // A lone CR ends a row too, as `csv_core` reads it.
        if opened > 0 && !matches!(body[opened - 1], b',' | b'\n' | b'\r') {
            return Err(malformed(opened, "quote inside an unquoted field"));
        }
        at = opened + 1;
        loop {
            let Some(quote) = memchr::memchr(b'"', &body[at..]) else {
                return Err(malformed(opened, "quoted field is never closed"));
            };
            at += quote + 1;
            if body.get(at) == Some(&b'"') {
                quoting = Quoting::Escaped;
                at += 1;
            } else {
                break;
            }
        }
        if !matches!(body.get(at), None | Some(b',' | b'\n' | b'\r')) {
            return Err(malformed(at, "unexpected text after a closing quote"));
        }
    }
    Ok(quoting)
}

/// The field at `column` as text, when the row's text is known to be UTF-8 as a whole.
fn known_text<'r>(row: &Row<'r>, column: usize) -> Option<&'r str> {
    // A field ends at ASCII (a quote, a comma, a line break), so its span is a character
    // boundary of a UTF-8 body.
    row.utf8?.get(row.spans[column].clone())
}

fn cell<'r>(row: &Row<'r>, column: usize) -> Field<'r> {
    match known_text(row, column).or_else(|| super::utf8(row.get(column))) {
        Some(text) => Field::Text(Cow::Borrowed(text)),
        None => Field::Unreadable("is not valid UTF-8"),
    }
}

/// Reads `row` as a header if it names a `timestamp` column; `Err` names a record field it has
/// no column for.
fn header(row: &Row<'_>) -> Result<Option<Columns>, &'static str> {
    // Compared character by character, so a record row (the first row of a body without a
    // header) is told apart at its first characters, not lowercased in full.
    let names = |cell: &[u8], name: &str| {
        String::from_utf8_lossy(cell)
            .chars()
            .filter(|c| !matches!(c, '_' | '-' | ' ' | '\t'))
            .flat_map(char::to_lowercase)
            .eq(name.chars())
    };
    let find = |name: &str| row.iter().position(|cell| names(cell, name));
    let Some(timestamp) = find("timestamp") else {
        return Ok(None);
    };
    Ok(Some(Columns {
        timestamp,
        path: find("path").ok_or("path")?,
        agent: find("useragent").ok_or("userAgent")?,
    }))
}

#[cfg(test)]
mod tests {
    use super::super::tests::{LIMITS, lines};
    use super::super::{DecodeError, Format, decode};

    const LINE: &str = r#"{"timestamp":"2025-11-22T14:23:00Z","path":"/home","userAgent":"Mozilla/5.0 (X11, Linux)"}"#;

    #[test]
    fn positional_rows_with_quotes() {
        let body = "2025-11-22T16:23:00+02:00,/home,\"Mozilla/5.0 (X11, Linux)\"\n";
        assert_eq!(
            lines(&decode(Format::Csv, body.as_bytes(), &LIMITS).unwrap()),
            [LINE]
        );
    }

    #[test]
    fn header_may_reorder_columns_and_extra_columns_are_ignored() {
        let body = "User_Agent,extra,PATH,timestamp\r\n\"Mozilla/5.0 (X11, Linux)\",x, /home ,2025-11-22T14:23:00Z\r\n";
        assert_eq!(
            lines(&decode(Format::Csv, body.as_bytes(), &LIMITS).unwrap()),
            [LINE]
        );
        let body = "timestamp,path,userAgent,extra\n2025-11-22T14:23:00Z,/home,\"Mozilla/5.0 (X11, Linux)\",1\n";
        assert_eq!(
            lines(&decode(Format::Csv, body.as_bytes(), &LIMITS).unwrap()),
            [LINE]
        );
    }

    #[test]
    fn header_must_name_every_field() {
        let err = decode(
            Format::Csv,
            b"timestamp,path\n2025-11-22T14:23:00Z,/\n",
            &LIMITS,
        )
        .unwrap_err();
        assert_eq!(
            err,
            DecodeError::Malformed {
                format: "CSV",
                line: 1,
                column: 1,
                message: "header row has no userAgent column".into()
            }
        );
    }

    #[test]
    fn header_only_or_empty_is_empty() {
        assert_eq!(
            decode(Format::Csv, b"timestamp,path,userAgent\n", &LIMITS),
            Err(DecodeError::Empty)
        );
        assert_eq!(decode(Format::Csv, b"", &LIMITS), Err(DecodeError::Empty));
    }

    #[test]
    fn ragged_short_and_invalid_rows_are_reported_with_lines() {
        let body = b"timestamp,path,userAgent\n\
            2025-11-22T14:23:00Z,/a,u\n\
            2025-11-22T14:23:00Z,/a\n\
            nope,/a,u\n\
            2025-11-22T14:23:00Z,/a,\xff\n";
        let DecodeError::Invalid { total, errors } =
            decode(Format::Csv, body, &LIMITS).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(total, 3);
        assert_eq!(
            (errors[0].index, errors[0].line, errors[0].field),
            (1, Some(3), "record")
        );
        assert_eq!(
            errors[0].reason,
            "row has 2 fields, expected 3 like the first row"
        );
        assert_eq!(
            (errors[1].index, errors[1].line, errors[1].field),
            (2, Some(4), "timestamp")
        );
        assert_eq!((errors[2].index, errors[2].field), (3, "userAgent"));
        assert_eq!(errors[2].reason, "is not valid UTF-8");

        let DecodeError::Invalid { errors, .. } =
            decode(Format::Csv, b"a,b\nc,d\n", &LIMITS).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(
            errors[0].reason,
            "row has 2 fields, needs 3 (timestamp,path,userAgent)"
        );
    }

    #[test]
    fn errors_name_the_line_a_row_starts_on_whatever_ends_the_lines() {
        for ending in ["\n", "\r\n", "\r"] {
            // Two blank lines, and a quoted field over two lines, before the bad rows.
            let body = [
                "2025-11-22T14:23:00Z,/a,u",
                "",
                "",
                "2025-11-22T14:23:00Z,/b,\"x",
                "y\"",
                "nope,/c,u",
                "2025-11-22T14:23:00Z,/d",
            ]
            .join(ending);
            let DecodeError::Invalid { errors, .. } =
                decode(Format::Csv, body.as_bytes(), &LIMITS).unwrap_err()
            else {
                panic!()
            };
            // A lone CR ends a row but not a line: line numbers count line feeds.
            let lines = match ending {
                "\r" => [Some(1), Some(1)],
                _ => [Some(6), Some(7)],
            };
            let found: Vec<_> = errors.iter().map(|e| (e.index, e.line)).collect();
            assert_eq!(found, [(2, lines[0]), (3, lines[1])], "{ending:?}");
        }
    }

    #[test]
    fn quoting_outside_rfc_4180_is_malformed_with_its_place() {
        let malformed = |body: &[u8]| match decode(Format::Csv, body, &LIMITS) {
            Err(DecodeError::Malformed {
                line,
                column,
                message,
                ..
            }) => (line, column, message),
            other => panic!("{other:?}"),
        };
        assert_eq!(
            malformed(b"t,/a,u\nt,/b,\"curl\nt,/c,u\n"),
            (2, 6, "quoted field is never closed".to_owned())
        );
        assert_eq!(
            malformed(b"t,/a,u\nt,/b,Mozilla \"5.0\"\n"),
            (2, 14, "quote inside an unquoted field".to_owned())
        );
        assert_eq!(
            malformed(b"t,\"/a\"x,u\n"),
            (1, 7, "unexpected text after a closing quote".to_owned())
        );
        // Doubled quotes, quoted commas and newlines, CRLF after a closing quote are fine.
        let body =
            "2025-11-22T14:23:00Z,\"/a,\"\"b\"\"\",\"x\r\ny\"\r\n2025-11-22T14:23:00Z,/c,\"u\"";
        let batch = decode(Format::Csv, body.as_bytes(), &LIMITS).unwrap();
        assert_eq!(
            lines(&batch)[0],
            r#"{"timestamp":"2025-11-22T14:23:00Z","path":"/a,\"b\"","userAgent":"x\r\ny"}"#
        );
        assert_eq!(batch.records(), 2);
    }

    #[test]
    fn plain_looking_rows_are_still_validated_in_full() {
        // A canonical timestamp with plain fields takes the short path; with an empty or too long
        // field the row is refused all the same, by the field that is wrong.
        let long = "/".repeat(LIMITS.max_field_bytes + 1);
        let cases = [
            (
                "2025-11-22T14:23:00Z,,u\n".to_owned(),
                "path",
                "is empty or only whitespace",
            ),
            (
                "2025-11-22T14:23:00Z,/a,\"\"\n".to_owned(),
                "userAgent",
                "is empty or only whitespace",
            ),
            (
                format!("2025-11-22T14:23:00Z,{long},u\n"),
                "path",
                "is 65 bytes, more than",
            ),
        ];
        for (body, field, reason) in cases {
            let Err(DecodeError::Invalid { total: 1, errors }) =
                decode(Format::Csv, body.as_bytes(), &LIMITS)
            else {
                panic!("{body:?} was not refused for one record");
            };
            assert_eq!(errors[0].field, field, "{body:?}");
            assert!(
                errors[0].reason.starts_with(reason),
                "{body:?}: {}",
                errors[0].reason
            );
        }
        let body = "2025-11-22T14:23:00Z,/home,Mozilla/5.0\n2025-11-22T14:23:00.5Z,/b,u\n";
        assert_eq!(
            lines(&decode(Format::Csv, body.as_bytes(), &LIMITS).unwrap()),
            [
                r#"{"timestamp":"2025-11-22T14:23:00Z","path":"/home","userAgent":"Mozilla/5.0"}"#,
                r#"{"timestamp":"2025-11-22T14:23:00.5Z","path":"/b","userAgent":"u"}"#,
            ]
        );
    }

    #[test]
    fn multi_line_quoted_fields_keep_their_newline() {
        let body = "2025-11-22T14:23:00Z,/a,\"line one\nline two\"\n2025-11-22T14:23:00Z,/b,u\n";
        let batch = decode(Format::Csv, body.as_bytes(), &LIMITS).unwrap();
        assert_eq!(
            lines(&batch)[0],
            r#"{"timestamp":"2025-11-22T14:23:00Z","path":"/a","userAgent":"line one\nline two"}"#
        );
        assert_eq!(batch.records(), 2);
    }
}
