//! What the configuration's tests expect of an answer: a refusal, a message holding a text.

use super::Config;

/// The message refusing `yaml`.
pub fn refused(yaml: &str) -> String {
    Config::from_yaml_str(yaml)
        .expect_err("config must be rejected")
        .to_string()
}

/// Fails unless `haystack` holds `needle`, showing both.
pub fn contains(haystack: &str, needle: &str) {
    assert!(
        haystack.contains(needle),
        "expected {needle:?} in:\n{haystack}"
    );
}

/// A temporary file holding `text`.
pub fn file(text: &str) -> tempfile::NamedTempFile {
    use std::io::Write;
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    file.write_all(text.as_bytes()).expect("write temp file");
    file
}
