//! JSON decoders: a JSON array of records, and NDJSON (one record object per line).
//!
//! Records are visited in place with serde's seed API, so strings without escapes are borrowed
//! from the body and no intermediate `Vec` of records is built. A record that is not an object,
//! or a field that is not a string, is a record error, not a syntax error: the rest of the batch
//! is still checked and reported.

use std::borrow::Cow;
use std::fmt;

use serde::de::{self, DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{DecodeError, Field, Position, Validator};

/// Decodes a JSON array of record objects; with `stored_form`, tries [`stored_array`] first.
pub(super) fn decode_array(
    body: &[u8],
    validator: &mut Validator<'_>,
    stored_form: bool,
) -> Result<(), DecodeError> {
    // A body that is UTF-8 as a whole (one fast pass) is read as text: neither the fast path nor
    // serde_json then checks each string again. Another body is read as bytes, so that its
    // invalid string is reported where it is.
    let text = super::utf8(body);
    if stored_form
        && let Some(text) = text
        && let Some(stored) = stored_array(text, validator)
    {
        *validator = stored;
        return Ok(());
    }
    match text {
        Some(text) => decode_array_from(serde_json::Deserializer::from_str(text), validator),
        None => decode_array_from(serde_json::Deserializer::from_slice(body), validator),
    }
}

/// The fast path of [`decode_array`], for an array whose every element is laid out as the store
/// writes a line, `{"timestamp":"…","path":"…","userAgent":"…"}`: those keys in that order, no
/// whitespace inside (what our own producer sends, and what most clients' JSON encoders write for
/// this record). The values are then found without a JSON parser ([`StoredRecord`]) and each
/// record is validated as the full path would ([`Validator::stored_form`]). `None` as soon as an
/// element is laid out otherwise, holds an escape serde_json refuses, or the batch is over
/// `maxRecords`: the body is then decoded in full, which gives the same answer for the same
/// records.
fn stored_array<'l>(body: &str, validator: &Validator<'l>) -> Option<Validator<'l>> {
    let mut stored = Validator::new(validator.limits, validator.expected_output);
    let mut rest = skip_whitespace(body).strip_prefix('[')?;
    loop {
        rest = skip_whitespace(rest);
        let record = StoredRecord::at(rest)?;
        let length = record.line.len();
        let at = Position {
            index: stored.admit().ok()?,
            line: None,
        };
        stored.stored_form(at, record);
        // The record ends with its closing brace, so `length` is a character boundary.
        rest = skip_whitespace(&rest[length..]);
        if let Some(after) = rest.strip_prefix(',') {
            rest = after;
        } else {
            let after = rest.strip_prefix(']')?;
            return skip_whitespace(after).is_empty().then_some(stored);
        }
    }
}

/// A record laid out as the store writes a line (`record::stored_layout_at`), its values read:
/// borrowed from the body, or unescaped by serde_json when they hold an escape (Go's encoder
/// writes `&` as `\u0026`, say).
pub(super) struct StoredRecord<'b> {
    /// The record's text, from its opening brace to its closing one.
    pub line: &'b [u8],
    pub timestamp: Cow<'b, str>,
    pub path: Cow<'b, str>,
    pub agent: Cow<'b, str>,
    /// No value held an escape or was empty: `line` may be what encoding the record writes.
    pub plain: bool,
}

impl<'b> StoredRecord<'b> {
    /// The record at the start of `text`; `None` if it is not laid out as a stored line, or a
    /// value holds an escape that JSON does not allow (a full parse then reports where).
    fn at(text: &'b str) -> Option<StoredRecord<'b>> {
        let bytes = text.as_bytes();
        let layout = crate::record::stored_layout_at(bytes)?;
        let plain = layout.values.iter().all(|value| value.is_plain());
        let [timestamp, path, agent] = layout.values.map(|value| match value.escaped {
            false => value.text_in(text).map(Cow::Borrowed),
            true => serde_json::from_slice::<String>(value.quoted)
                .ok()
                .map(Cow::Owned),
        });
        Some(StoredRecord {
            line: &bytes[..layout.len],
            timestamp: timestamp?,
            path: path?,
            agent: agent?,
            plain,
        })
    }
}

/// JSON whitespace: space, tab, line feed, carriage return (not form feed).
const WHITESPACE: [char; 4] = [' ', '\t', '\n', '\r'];

/// `text` after any JSON whitespace.
fn skip_whitespace(text: &str) -> &str {
    text.trim_start_matches(WHITESPACE)
}

fn decode_array_from<'de, R: serde_json::de::Read<'de>>(
    mut de: serde_json::Deserializer<R>,
    validator: &mut Validator<'_>,
) -> Result<(), DecodeError> {
    let mut abort = None;
    let outcome = BatchSeed {
        validator,
        abort: &mut abort,
    }
    .deserialize(&mut de)
    .and_then(|()| de.end());
    if let Some(err) = abort {
        return Err(err);
    }
    outcome.map_err(|err| malformed("JSON", &err))
}

/// Decodes NDJSON: each non-blank line is one record object. A line that is not valid JSON is an
/// error of that record (with its line and column), so one bad line does not hide the others.
/// With `stored_form`, a line laid out as the store writes it is read without the JSON parser
/// (see [`stored_array`]).
pub(super) fn decode_lines(
    body: &[u8],
    validator: &mut Validator<'_>,
    stored_form: bool,
) -> Result<(), DecodeError> {
    // As in `decode_array`: a line that is UTF-8 is read as text, not checked string by string;
    // a body that is UTF-8 as a whole is checked once, not line by line.
    let text = super::utf8(body);
    let mut start = 0;
    for (number, line) in body.split(|&b| b == b'\n').enumerate() {
        let span = start..start + line.len();
        start = span.end + 1;
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        let at = Position {
            index: validator.admit()?,
            line: Some(number + 1),
        };
        // A line ends at a line feed, so `span` is a character boundary of `text`.
        let line_text = match text {
            Some(text) => text.get(span),
            None => super::utf8(line),
        };
        if stored_form
            && let Some(line_text) = line_text
            && let trimmed = line_text.trim_matches(WHITESPACE)
            && let Some(record) = StoredRecord::at(trimmed)
            && record.line.len() == trimmed.len()
        {
            validator.stored_form(at, record);
            continue;
        }
        let seed = RecordSeed {
            validator: &mut *validator,
            at,
        };
        let outcome = match line_text {
            Some(text) => read_whole(seed, serde_json::Deserializer::from_str(text)),
            None => read_whole(seed, serde_json::Deserializer::from_slice(line)),
        };
        if let Err(err) = outcome {
            validator.reject(
                at,
                Some(err.column()),
                "record",
                format!("invalid JSON: {}", strip_position(&err)),
            );
        }
    }
    Ok(())
}

/// Reads one value with `seed`, then the end of the input.
fn read_whole<'de, R: serde_json::de::Read<'de>>(
    seed: RecordSeed<'_, '_>,
    mut de: serde_json::Deserializer<R>,
) -> Result<(), serde_json::Error> {
    seed.deserialize(&mut de).and_then(|()| de.end())
}

fn malformed(format: &'static str, err: &serde_json::Error) -> DecodeError {
    DecodeError::Malformed {
        format,
        line: err.line(),
        column: err.column(),
        message: strip_position(err),
    }
}

/// serde_json appends " at line L column C" to its messages; we report those as fields.
fn strip_position(err: &serde_json::Error) -> String {
    let text = err.to_string();
    match text.rfind(" at line ") {
        Some(cut) => text[..cut].to_owned(),
        None => text,
    }
}

/// The top-level value of a JSON-array body.
struct BatchSeed<'v, 'l> {
    validator: &'v mut Validator<'l>,
    /// Set when decoding stops for a reason that is not a JSON syntax error (too many records).
    abort: &'v mut Option<DecodeError>,
}

impl<'de> DeserializeSeed<'de> for BatchSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl<'de> Visitor<'de> for BatchSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON array of log records")
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        // `null`: no records, reported as an empty batch like the original.
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        loop {
            let index = match self.validator.admit() {
                Ok(index) => index,
                Err(err) => {
                    // Only fail if there really is one more element.
                    if seq.next_element::<IgnoredAny>()?.is_none() {
                        return Ok(());
                    }
                    *self.abort = Some(err);
                    return Err(de::Error::custom("too many records"));
                }
            };
            let seed = RecordSeed {
                validator: &mut *self.validator,
                at: Position { index, line: None },
            };
            if seq.next_element_seed(seed)?.is_none() {
                self.validator.records -= 1;
                return Ok(());
            }
        }
    }
}

/// One record object. Anything else is a record error of field `record`.
struct RecordSeed<'v, 'l> {
    validator: &'v mut Validator<'l>,
    at: Position,
}

impl<'de> DeserializeSeed<'de> for RecordSeed<'_, '_> {
    type Value = ();

    fn deserialize<D: Deserializer<'de>>(self, deserializer: D) -> Result<(), D::Error> {
        deserializer.deserialize_any(self)
    }
}

impl RecordSeed<'_, '_> {
    fn not_an_object(self, kind: &str) {
        self.validator.reject(
            self.at,
            None,
            "record",
            format!("must be a JSON object, got {kind}"),
        );
    }
}

impl<'de> Visitor<'de> for RecordSeed<'_, '_> {
    type Value = ();

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a log record object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<(), A::Error> {
        let (mut timestamp, mut path, mut agent) = (Field::Missing, Field::Missing, Field::Missing);
        while let Some(key) = map.next_key::<Key>()? {
            match key {
                Key::Timestamp => timestamp = map.next_value::<Field<'de>>()?,
                Key::Path => path = map.next_value::<Field<'de>>()?,
                Key::UserAgent => agent = map.next_value::<Field<'de>>()?,
                Key::Other => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        self.validator.record(self.at, timestamp, path, agent);
        Ok(())
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<(), A::Error> {
        while seq.next_element::<IgnoredAny>()?.is_some() {}
        self.not_an_object("an array");
        Ok(())
    }

    fn visit_str<E: de::Error>(self, _: &str) -> Result<(), E> {
        self.not_an_object("a string");
        Ok(())
    }

    fn visit_bool<E: de::Error>(self, _: bool) -> Result<(), E> {
        self.not_an_object("a boolean");
        Ok(())
    }

    fn visit_i64<E: de::Error>(self, _: i64) -> Result<(), E> {
        self.not_an_object("a number");
        Ok(())
    }

    fn visit_u64<E: de::Error>(self, _: u64) -> Result<(), E> {
        self.not_an_object("a number");
        Ok(())
    }

    fn visit_f64<E: de::Error>(self, _: f64) -> Result<(), E> {
        self.not_an_object("a number");
        Ok(())
    }

    fn visit_unit<E: de::Error>(self) -> Result<(), E> {
        self.not_an_object("null");
        Ok(())
    }
}

/// The record keys we read; all others are ignored, like the original.
enum Key {
    Timestamp,
    Path,
    UserAgent,
    Other,
}

impl<'de> de::Deserialize<'de> for Key {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Key, D::Error> {
        struct KeyVisitor;
        impl Visitor<'_> for KeyVisitor {
            type Value = Key;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a field name")
            }
            fn visit_str<E: de::Error>(self, key: &str) -> Result<Key, E> {
                Ok(match key {
                    "timestamp" => Key::Timestamp,
                    "path" => Key::Path,
                    "userAgent" => Key::UserAgent,
                    _ => Key::Other,
                })
            }
        }
        deserializer.deserialize_identifier(KeyVisitor)
    }
}

impl<'de> de::Deserialize<'de> for Field<'de> {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Field<'de>, D::Error> {
        struct FieldVisitor;
        impl<'de> Visitor<'de> for FieldVisitor {
            type Value = Field<'de>;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a string")
            }
            fn visit_borrowed_str<E: de::Error>(self, value: &'de str) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Borrowed(value)))
            }
            fn visit_str<E: de::Error>(self, value: &str) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Owned(value.to_owned())))
            }
            fn visit_string<E: de::Error>(self, value: String) -> Result<Field<'de>, E> {
                Ok(Field::Text(Cow::Owned(value)))
            }
            fn visit_unit<E: de::Error>(self) -> Result<Field<'de>, E> {
                Ok(Field::Missing)
            }
            fn visit_bool<E: de::Error>(self, _: bool) -> Result<Field<'de>, E> {
                Ok(Field::WrongType("a boolean"))
            }
            fn visit_i64<E: de::Error>(self, _: i64) -> Result<Field<'de>, E> {
                Ok(Field::WrongType("a number"))
            }
            fn visit_u64<E: de::Error>(self, _: u64) -> Result<Field<'de>, E> {
                Ok(Field::WrongType("a number"))
            }
            fn visit_f64<E: de::Error>(self, _: f64) -> Result<Field<'de>, E> {
                Ok(Field::WrongType("a number"))
            }
            fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Field<'de>, A::Error> {
                while seq.next_element::<IgnoredAny>()?.is_some() {}
                Ok(Field::WrongType("an array"))
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Field<'de>, A::Error> {
                while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
                Ok(Field::WrongType("an object"))
            }
        }
        deserializer.deserialize_any(FieldVisitor)
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::{LIMITS, lines};
    use super::super::{DecodeError, Format, decode};

    #[test]
    fn array_of_records_becomes_lines_in_utc() {
        let body = br#"[
            {"timestamp":"2025-11-22T16:23:00+02:00","path":" /home ","userAgent":"Mozilla/5.0","extra":[1,{"a":2}]},
            {"userAgent":"curl/7.68.0","path":"/login","timestamp":"2025-11-22T14:24:00.500Z"}
        ]"#;
        let batch = decode(Format::JsonArray, body, &LIMITS).unwrap();
        assert_eq!(
            lines(&batch),
            [
                r#"{"timestamp":"2025-11-22T14:23:00Z","path":"/home","userAgent":"Mozilla/5.0"}"#,
                r#"{"timestamp":"2025-11-22T14:24:00.5Z","path":"/login","userAgent":"curl/7.68.0"}"#,
            ]
        );
    }

    #[test]
    fn escaped_strings_are_decoded_and_reencoded() {
        let body = br#"[{"timestamp":"2025-11-22T14:00:00Z","path":"/caf\u00e9\/x","userAgent":"say \"hi\""}]"#;
        let batch = decode(Format::JsonArray, body, &LIMITS).unwrap();
        assert_eq!(
            lines(&batch),
            [r#"{"timestamp":"2025-11-22T14:00:00Z","path":"/café/x","userAgent":"say \"hi\""}"#]
        );
    }

    #[test]
    fn empty_and_null_bodies_have_no_records() {
        for body in ["[]", "null", " [ ] ", "", " \n"] {
            assert_eq!(
                decode(Format::JsonArray, body.as_bytes(), &LIMITS),
                Err(DecodeError::Empty),
                "{body}"
            );
        }
        assert_eq!(
            decode(Format::Ndjson, b"\n \n", &LIMITS),
            Err(DecodeError::Empty)
        );
    }

    #[test]
    fn syntax_errors_give_line_and_column() {
        let body = b"[\n  {\"timestamp\": \"2025-11-22T14:00:00Z\",\n   \"path\": }\n]";
        let err = decode(Format::JsonArray, body, &LIMITS).unwrap_err();
        let DecodeError::Malformed {
            format,
            line,
            column,
            message,
        } = err
        else {
            panic!("{err:?}")
        };
        assert_eq!((format, line, column), ("JSON", 3, 12));
        assert_eq!(message, "expected value");

        for (body, line) in [(&b"[{}"[..], 1), (b"[] []", 1), (b"\n\n[1,", 3)] {
            let err = decode(Format::JsonArray, body, &LIMITS).unwrap_err();
            assert!(
                matches!(err, DecodeError::Malformed { line: l, .. } if l == line),
                "{err:?}"
            );
        }
    }

    #[test]
    fn top_level_object_is_malformed() {
        let err = decode(Format::JsonArray, br#"{"timestamp":"x"}"#, &LIMITS).unwrap_err();
        let DecodeError::Malformed { message, .. } = err else {
            panic!("{err:?}")
        };
        assert!(
            message.contains("expected a JSON array of log records"),
            "{message}"
        );
    }

    #[test]
    fn elements_that_are_not_objects_are_record_errors() {
        let body = br#"["x", 1, null, [1], true, {"timestamp":"2025-11-22T14:00:00Z","path":{"a":1},"userAgent":["u"]}]"#;
        let DecodeError::Invalid { total, errors } =
            decode(Format::JsonArray, body, &LIMITS).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(total, 7);
        assert_eq!(errors[0].reason, "must be a JSON object, got a string");
        assert_eq!(errors[3].reason, "must be a JSON object, got an array");
        assert_eq!((errors[5].index, errors[5].field), (5, "path"));
        assert_eq!(errors[5].reason, "must be a string, got an object");
        assert_eq!(errors[6].reason, "must be a string, got an array");
    }

    #[test]
    fn ndjson_lines_are_records_and_bad_lines_are_reported_individually() {
        let good = r#"{"timestamp":"2025-11-22T14:00:00Z","path":"/a","userAgent":"u"}"#;
        let body = format!("{good}\r\n\n{good}\n");
        let batch = decode(Format::Ndjson, body.as_bytes(), &LIMITS).unwrap();
        assert_eq!(batch.records(), 2);
        assert_eq!(lines(&batch)[1], good);

        let body = format!("{good}\n{{\"path\": \n\n{good}\n[1]\n{{\"path\":\"/x\"}}");
        let DecodeError::Invalid { total, errors } =
            decode(Format::Ndjson, body.as_bytes(), &LIMITS).unwrap_err()
        else {
            panic!()
        };
        assert_eq!(total, 4);
        assert_eq!(
            (errors[0].index, errors[0].line, errors[0].field),
            (1, Some(2), "record")
        );
        assert!(
            errors[0].reason.starts_with("invalid JSON: "),
            "{}",
            errors[0].reason
        );
        assert!(errors[0].column.is_some());
        assert_eq!((errors[1].index, errors[1].line), (3, Some(5)));
        assert_eq!(
            (errors[2].index, errors[2].line, errors[2].field),
            (4, Some(6), "timestamp")
        );
    }
}
