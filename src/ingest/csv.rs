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

pub(super) fn decode(body: &[u8], validator: &mut Validator<'_>) -> Result<(), DecodeError> {
    check_quotes(body)?;
    let mut rows = Rows::new(body);
    let mut columns = Columns::POSITIONAL;
    let mut width = None;
    while let Some(row) = rows.next_row() {
        let line = row.line;
        if width.is_none() {
            width = Some(row.len());
            if let Some(header) = header(&row)? {
                columns = header;
                continue;
            }
        }
        let at = Position {
            index: validator.admit()?,
            line: Some(line),
        };
        let expected = width.unwrap_or(row.len());
        if row.len() != expected {
            let reason = format!(
                "row has {} fields, expected {expected} like the first row",
                row.len()
            );
            validator.reject(at, None, "record", reason);
            continue;
        }
        if row.len() < columns.needed() {
            let reason = format!(
                "row has {} fields, needs {} (timestamp,path,userAgent)",
                row.len(),
                columns.needed()
            );
            validator.reject(at, None, "record", reason);
            continue;
        }
        validator.record(
            at,
            cell(&row, columns.timestamp),
            cell(&row, columns.path),
            cell(&row, columns.agent),
        );
    }
    Ok(())
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
    rest: &'b [u8],
    /// The current row's fields, unescaped, one after the other...
    fields: Vec<u8>,
    /// ... and where each ends in `fields`.
    ends: Vec<usize>,
}

/// One row: its fields, and the line it starts on (1-based).
struct Row<'r> {
    line: usize,
    fields: &'r [u8],
    ends: &'r [usize],
}

impl<'b> Rows<'b> {
    fn new(body: &'b [u8]) -> Rows<'b> {
        // Not `unwrap_or_default`: a default `csv_core::Reader` has no state machine built.
        #[allow(clippy::unwrap_or_default)]
        let mut parser = PARSER.take().unwrap_or_else(csv_core::Reader::new);
        parser.reset();
        Rows {
            parser: Some(parser),
            rest: body,
            fields: vec![0; 1024],
            ends: vec![0; 8],
        }
    }

    fn next_row(&mut self) -> Option<Row<'_>> {
        use csv_core::ReadRecordResult;
        let parser = self.parser.as_mut().expect("the parser is held until drop");
        let line = parser.line() as usize;
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
                    return Some(Row {
                        line,
                        fields: &self.fields[..written],
                        ends: &self.ends[..ended],
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

impl<'r> Row<'r> {
    fn len(&self) -> usize {
        self.ends.len()
    }

    fn get(&self, column: usize) -> &'r [u8] {
        let start = column.checked_sub(1).map_or(0, |before| self.ends[before]);
        &self.fields[start..self.ends[column]]
    }

    fn iter(&self) -> impl Iterator<Item = &'r [u8]> + '_ {
        (0..self.len()).map(|column| self.get(column))
    }
}

/// Refuses quoting that RFC 4180 does not allow (see the module docs), naming its line and column
/// (1-based, in bytes). Jumps from quote to quote: a quote outside a quoted field must open one,
/// so it must start its field; a quoted field runs to a quote not doubled, which must end the
/// field. A body without quotes is one `memchr` pass.
fn check_quotes(body: &[u8]) -> Result<(), DecodeError> {
    let malformed = |at: usize, message: &str| {
        let line_start = memchr::memrchr(b'\n', &body[..at]).map_or(0, |i| i + 1);
        DecodeError::Malformed {
            format: "CSV",
            line: memchr::memchr_iter(b'\n', &body[..at]).count() + 1,
            column: at - line_start + 1,
            message: message.to_owned(),
        }
    };
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
                at += 1;
            } else {
                break;
            }
        }
        if !matches!(body.get(at), None | Some(b',' | b'\n' | b'\r')) {
            return Err(malformed(at, "unexpected text after a closing quote"));
        }
    }
    Ok(())
}

fn cell<'r>(row: &Row<'r>, column: usize) -> Field<'r> {
    match std::str::from_utf8(row.get(column)) {
        Ok(text) => Field::Text(Cow::Borrowed(text)),
        Err(_) => Field::Unreadable("is not valid UTF-8"),
    }
}

/// Reads `row` as a header if it names a `timestamp` column.
fn header(row: &Row<'_>) -> Result<Option<Columns>, DecodeError> {
    let line = row.line;
    let names: Vec<String> = row
        .iter()
        .map(|cell| {
            String::from_utf8_lossy(cell)
                .chars()
                .filter(|c| !matches!(c, '_' | '-' | ' ' | '\t'))
                .flat_map(char::to_lowercase)
                .collect()
        })
        .collect();
    let find = |name: &str| names.iter().position(|n| n == name);
    let Some(timestamp) = find("timestamp") else {
        return Ok(None);
    };
    let missing = |column: &str| DecodeError::Malformed {
        format: "CSV",
        line,
        column: 1,
        message: format!("header row has no {column} column"),
    };
    Ok(Some(Columns {
        timestamp,
        path: find("path").ok_or_else(|| missing("path"))?,
        agent: find("useragent").ok_or_else(|| missing("userAgent"))?,
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
