//! Property-based tests of the body decoders and the stored line format, with proptest's default
//! number of cases (256; `PROPTEST_CASES` changes it). `make bench-properties` runs the same
//! properties with many more cases. Each test names its property in `property.rs`, which says
//! what it asserts. The configuration's numbers and durations at their extremes are in
//! `config.rs`.

mod config;
mod oracle;
mod property;
mod strategies;

use proptest::test_runner::{Config, TestRunner};

/// Runs the property `name` of [`property::ALL`]; fails with its minimal failing input.
fn check(name: &str) {
    let property = property::ALL
        .iter()
        .find(|p| p.name == name)
        .unwrap_or_else(|| panic!("no property {name}"));
    let mut runner = TestRunner::new(Config {
        failure_persistence: None,
        ..Config::default()
    });
    if let Err(failure) = (property.check)(&mut runner) {
        panic!("{name}: {failure}");
    }
}

#[test]
fn any_bytes_decode_to_a_batch_or_an_error() {
    check("any_bytes_decode_to_a_batch_or_an_error");
}

#[test]
fn valid_records_decode_alike_in_every_format() {
    check("valid_records_decode_alike_in_every_format");
}

#[test]
fn timestamps_print_like_go_rfc3339nano() {
    check("timestamps_print_like_go_rfc3339nano");
}

#[test]
fn canonical_hours_agree_with_parse_canonical_timestamp() {
    check("canonical_hours_agree_with_parse_canonical_timestamp");
}

#[test]
fn stored_lines_append_like_ndjson() {
    check("stored_lines_append_like_ndjson");
}

#[test]
fn append_record_agrees_with_ndjson_on_any_line() {
    check("append_record_agrees_with_ndjson_on_any_line");
}

#[test]
fn stored_form_bodies_decode_as_in_full() {
    check("stored_form_bodies_decode_as_in_full");
}

#[test]
fn csv_bodies_decode_as_in_full() {
    check("csv_bodies_decode_as_in_full");
}
