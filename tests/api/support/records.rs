//! What clients send and what the service stores: record builders, bodies, and the hour files
//! read back from disk.

use std::collections::BTreeMap;
use std::path::Path;

use serde_json::{Value, json};

/// The hour every test writes to unless it is about hours.
pub const HOUR_14: &str = "2025-11-22/14.log.json";
/// The next hour.
pub const HOUR_15: &str = "2025-11-22/15.log.json";

pub const JSON: &str = "application/json";
pub const CSV: &str = "text/csv";
pub const NDJSON: &str = "application/x-ndjson";

/// The lines of a file, without their newlines; none if the file does not exist.
pub fn read_lines(path: &Path) -> Vec<String> {
    match std::fs::read_to_string(path) {
        Ok(text) => text.lines().map(str::to_owned).collect(),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(err) => panic!("cannot read {}: {err}", path.display()),
    }
}

/// A record as a client sends it.
pub fn record(timestamp: &str, path: &str, user_agent: &str) -> Value {
    json!({"timestamp": timestamp, "path": path, "userAgent": user_agent})
}

/// The line the service stores for a record whose timestamp is already canonical UTC.
pub fn line(timestamp: &str, path: &str, user_agent: &str) -> String {
    let text = |value: &str| serde_json::to_string(value).expect("a string serializes");
    format!(
        "{{\"timestamp\":{},\"path\":{},\"userAgent\":{}}}",
        text(timestamp),
        text(path),
        text(user_agent)
    )
}

/// A JSON array body.
pub fn json_array(records: &[Value]) -> Vec<u8> {
    serde_json::to_vec(records).expect("records serialize")
}

/// An NDJSON body, one record per line.
pub fn ndjson(records: &[Value]) -> Vec<u8> {
    records
        .iter()
        .map(|r| format!("{r}\n"))
        .collect::<String>()
        .into_bytes()
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut encoder = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
    encoder.write_all(data).expect("gzip into memory");
    encoder.finish().expect("gzip into memory")
}

pub fn zstd(data: &[u8]) -> Vec<u8> {
    zstd::encode_all(data, 3).expect("zstd into memory")
}

/// Every hour file under a logs directory (`YYYY-MM-DD/HH.log.json`, the name relative to the
/// directory) with its lines.
pub fn hour_files(logs_dir: &Path) -> BTreeMap<String, Vec<String>> {
    let mut files = BTreeMap::new();
    let days = match std::fs::read_dir(logs_dir) {
        Ok(days) => days,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return files,
        Err(err) => panic!("cannot list {}: {err}", logs_dir.display()),
    };
    for day in days {
        let day = day.expect("directory entry");
        if !day.file_type().expect("file type").is_dir() {
            continue;
        }
        for file in std::fs::read_dir(day.path()).expect("list a day directory") {
            let file = file.expect("directory entry");
            let name = file.file_name().to_string_lossy().into_owned();
            if name.ends_with(".log.json") && file.file_type().expect("file type").is_file() {
                let relative = format!("{}/{name}", day.file_name().to_string_lossy());
                files.insert(relative, read_lines(&file.path()));
            }
        }
    }
    files
}
