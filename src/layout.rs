//! The on-disk layout of the two data directories: which file holds which hour. Naming, parsing
//! and walking live here and only here.
//!
//! | directory | file | what |
//! |---|---|---|
//! | `storage.logsDir` | `YYYY-MM-DD/HH.log.json` | the hour's records, one NDJSON line each |
//! | `storage.logsDir` | `.lock`, `.checkpoint.json` | the store's lock and source positions |
//! | `storage.logsDir` | `.idempotency.jsonl` | the store's journal of idempotency keys |
//! | `storage.analyticsDir` | `YYYY-MM-DD/summary_HH.json` | the hour's summary |
//!
//! Days and hours are UTC and always zero-padded; a name that differs from the canonical spelling
//! of its hour (`2025-1-2/3.log.json`, a temp file) is not an hour's file and walks skip it.
//!
//! # Object keys (`storage.backend: s3`)
//!
//! Under `storage.s3.prefix`, one object per (partition, offset range, hour); the same messages
//! always give the same names (see [`crate::objects`]):
//!
//! | key | what |
//! |---|---|
//! | `logs/YYYY-MM-DD/HH/<topic>-<partition>-<first>-<last>.log.json` | the range's records of the hour |
//! | `intents/<topic>/<partition>/<first>.json` | the range a writer decided on, before writing it |
//!
//! Partitions are zero-padded to 5 digits and offsets to 20, so names sort by offset.
//!
//! # Sites
//!
//! With sites configured (`sites.file`), each site's records and summaries live below its own
//! root, in exactly the layout above: `<logsDir>/sites/<id>/`, `<analyticsDir>/sites/<id>/`, and
//! `sites/<id>/` below the bucket's prefix ([`site_dir`], [`site_prefix`]). Without sites the
//! roots are the directories and the prefix themselves, as the original service had them. A site
//! id is a slug ([`crate::site`]), so it is one path segment as it is.
//!
//! | where | what |
//! |---|---|
//! | `storage.logsDir` | `sites/<id>/YYYY-MM-DD/HH.log.json`: the site's records of the hour ([`site_hour_file`]) |
//! | `storage.analyticsDir` | `sites/<id>/YYYY-MM-DD/summary_HH.json`: the site's summary of the hour |
//! | bucket | `sites/<id>/logs/YYYY-MM-DD/HH/<topic>-<partition>-<first>-<last>.log.json` ([`site_records_object`]) and `sites/<id>/logs/YYYY-MM-DD/HH/v1-<source>-<start>-<end>.log.json` (shipped) |
//!
//! The store's `.lock`, `.checkpoint.json` and `.idempotency.jsonl` stay at the root of the logs
//! directory (one store writes every site's files), and the intents at the root of the prefix
//! (a range covers a partition's offsets whatever their sites; its intent lists its objects).

use std::fs;
use std::io;
use std::path::{Path, PathBuf};

use chrono::{Datelike, NaiveDate, Timelike};

use crate::record::{Hour, SiteHour};
use crate::site::SiteId;

/// The directory (of the logs or of the analytics) below which `site`'s files live: `root`
/// itself without a site, `root/sites/<id>` with one.
pub fn site_dir(root: &Path, site: Option<&SiteId>) -> PathBuf {
    match site {
        None => root.to_path_buf(),
        Some(site) => root.join(SITES).join(site.as_str()),
    }
}

/// The key prefix (below the bucket's prefix) of `site`'s objects: empty without a site,
/// `sites/<id>/` with one.
pub fn site_prefix(site: Option<&SiteId>) -> String {
    match site {
        None => String::new(),
        Some(site) => format!("{SITES}/{site}/"),
    }
}

/// The directory (and object "directory") that holds one root per site.
pub const SITES: &str = "sites";

/// The lock file inside the logs directory (it holds the owner's PID).
pub const LOCK_FILE: &str = ".lock";
/// The store's checkpoint state file inside the logs directory.
pub const CHECKPOINT_FILE: &str = ".checkpoint.json";
/// The store's journal of idempotency keys inside the logs directory.
pub const KEYS_JOURNAL: &str = ".idempotency.jsonl";

/// The two kinds of per-hour files.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// `HH.log.json` in the logs directory.
    Records,
    /// `summary_HH.json` in the analytics directory.
    Summary,
}

impl Kind {
    fn affixes(self) -> (&'static str, &'static str) {
        match self {
            Kind::Records => ("", ".log.json"),
            Kind::Summary => ("summary_", ".json"),
        }
    }

    fn name(self, hour: Hour) -> String {
        let (prefix, suffix) = self.affixes();
        format!(
            "{}/{prefix}{:02}{suffix}",
            day_dir(hour),
            hour.start().hour()
        )
    }

    fn parse(self, day: &str, file: &str) -> Option<Hour> {
        let (prefix, suffix) = self.affixes();
        let digits = file.strip_prefix(prefix)?.strip_suffix(suffix)?;
        if digits.len() != 2 || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        let date = NaiveDate::parse_from_str(day, "%Y-%m-%d").ok()?;
        let start = date.and_hms_opt(digits.parse().ok()?, 0, 0)?.and_utc();
        let hour = Hour::of(&start);
        // chrono accepts spellings such as `2025-1-02`; only the canonical one names the hour.
        (day_dir(hour) == day).then_some(hour)
    }

    fn walk(self, dir: &Path) -> io::Result<Vec<(Hour, PathBuf)>> {
        let days = match fs::read_dir(dir) {
            Ok(days) => days,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(e),
        };
        let mut found = Vec::new();
        for day in days {
            let day = day?;
            if !day.file_type()?.is_dir() {
                continue;
            }
            let day_name = day.file_name().to_string_lossy().into_owned();
            for file in fs::read_dir(day.path())? {
                let file = file?;
                if let Some(hour) = self.parse(&day_name, &file.file_name().to_string_lossy())
                    && file.file_type()?.is_file()
                {
                    found.push((hour, file.path()));
                }
            }
        }
        found.sort();
        Ok(found)
    }
}

/// The day directory of an hour: `YYYY-MM-DD`.
pub fn day_dir(hour: Hour) -> String {
    let start = hour.start();
    format!(
        "{:04}-{:02}-{:02}",
        start.year(),
        start.month(),
        start.day()
    )
}

/// The hour file's path relative to the logs directory: `YYYY-MM-DD/HH.log.json`.
pub fn hour_file(hour: Hour) -> String {
    Kind::Records.name(hour)
}

/// The hour file of `site_hour` relative to the logs directory: [`hour_file`] below the site's
/// root (`sites/<id>/YYYY-MM-DD/HH.log.json`), or the root's own.
pub fn site_hour_file(site_hour: &SiteHour) -> String {
    format!(
        "{}{}",
        site_prefix(site_hour.site.as_ref()),
        hour_file(site_hour.hour)
    )
}

/// The sites that have a root below `root` (`root/sites/<id>`, of the logs or the analytics),
/// sorted; a directory whose name is not a site id is not a site's and is skipped.
pub fn sites_below(root: &Path) -> io::Result<Vec<SiteId>> {
    let entries = match fs::read_dir(root.join(SITES)) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e),
    };
    let mut sites = Vec::new();
    for entry in entries {
        let entry = entry?;
        if entry.file_type()?.is_dir()
            && let Ok(site) = SiteId::parse(&entry.file_name().to_string_lossy())
        {
            sites.push(site);
        }
    }
    sites.sort();
    Ok(sites)
}

/// Every hour file of the root and of every site below `logs_dir`, as (site and hour, path),
/// the root's first, then each site's, each sorted by hour.
pub fn every_hour_file(logs_dir: &Path) -> io::Result<Vec<(SiteHour, PathBuf)>> {
    let roots = std::iter::once(None).chain(sites_below(logs_dir)?.into_iter().map(Some));
    let mut found = Vec::new();
    for site in roots {
        for (hour, path) in hour_files(&site_dir(logs_dir, site.as_ref()))? {
            let site = site.clone();
            found.push((SiteHour { site, hour }, path));
        }
    }
    Ok(found)
}

/// The summary's path relative to the analytics directory: `YYYY-MM-DD/summary_HH.json`.
pub fn summary_file(hour: Hour) -> String {
    Kind::Summary.name(hour)
}

/// The hour an hour file's relative path (`YYYY-MM-DD/HH.log.json`) names, if it names one.
pub fn parse_hour_file(relative: &str) -> Option<Hour> {
    let (day, file) = relative.split_once('/')?;
    Kind::Records.parse(day, file)
}

/// The hour a summary's relative path (`YYYY-MM-DD/summary_HH.json`) names, if it names one.
pub fn parse_summary_file(relative: &str) -> Option<Hour> {
    let (day, file) = relative.split_once('/')?;
    Kind::Summary.parse(day, file)
}

/// Every hour file under `logs_dir` as (hour, path), sorted by hour; none if the directory is
/// missing.
pub fn hour_files(logs_dir: &Path) -> io::Result<Vec<(Hour, PathBuf)>> {
    Kind::Records.walk(logs_dir)
}

/// Every summary under `analytics_dir` as (hour, path), sorted by hour; none if the directory is
/// missing.
pub fn summaries(analytics_dir: &Path) -> io::Result<Vec<(Hour, PathBuf)>> {
    Kind::Summary.walk(analytics_dir)
}

/// The object key (below the prefix) of the records of `hour` from offsets `first..=last` of
/// `partition`: `logs/YYYY-MM-DD/HH/<topic>-<partition>-<first>-<last>.log.json`.
pub fn records_object(topic: &str, partition: i32, first: i64, last: i64, hour: Hour) -> String {
    format!(
        "{}/{}-{partition:05}-{first:020}-{last:020}.log.json",
        hour_object_dir(hour),
        topic
    )
}

/// [`records_object`] of `site_hour`'s site and hour, below the site's prefix
/// ([`site_prefix`]): `sites/<id>/logs/YYYY-MM-DD/HH/<topic>-<partition>-<first>-<last>.log.json`.
pub fn site_records_object(
    topic: &str,
    partition: i32,
    first: i64,
    last: i64,
    site_hour: &SiteHour,
) -> String {
    format!(
        "{}{}",
        site_prefix(site_hour.site.as_ref()),
        records_object(topic, partition, first, last, site_hour.hour)
    )
}

/// The top "directory" of the record objects.
pub const OBJECT_LOGS: &str = "logs";

/// The "directory" of an hour's record objects: `logs/YYYY-MM-DD/HH`.
pub fn hour_object_dir(hour: Hour) -> String {
    format!("{OBJECT_LOGS}/{}/{:02}", day_dir(hour), hour.start().hour())
}

/// The hour an hour's object directory (`logs/YYYY-MM-DD/HH`) names, if it names one.
pub fn parse_hour_object_dir(dir: &str) -> Option<Hour> {
    let rest = dir.strip_prefix("logs/")?;
    let (day, hh) = rest.split_once('/')?;
    if hh.contains('/') {
        return None;
    }
    Kind::Records.parse(day, &format!("{hh}.log.json"))
}

/// The object key (below the prefix) of an hour's summary in the bucket:
/// `analytics/YYYY-MM-DD/summary_HH.json`.
pub fn summary_object(hour: Hour) -> String {
    format!("analytics/{}", summary_file(hour))
}

/// The hour of a record object's key (below the prefix), if the key names one.
pub fn parse_records_object(key: &str) -> Option<Hour> {
    let (dir, name) = key.rsplit_once('/')?;
    if !name.ends_with(".log.json") {
        return None;
    }
    parse_hour_object_dir(dir)
}

/// The object key (below the prefix) of the bytes `start..end` of `hour`'s file shipped by
/// `source` (`log-pipeline ship`): `logs/YYYY-MM-DD/HH/v1-<source>-<start>-<end>.log.json`.
pub fn shipped_object(hour: Hour, source: &str, start: u64, end: u64) -> String {
    format!(
        "{}/v1-{source}-{start:020}-{end:020}.log.json",
        hour_object_dir(hour)
    )
}

/// The byte range of a shipped object's name (within its hour's directory), if `source`
/// shipped it.
pub fn parse_shipped_object(name: &str, source: &str) -> Option<(u64, u64)> {
    let range = name
        .strip_prefix("v1-")?
        .strip_prefix(source)?
        .strip_prefix('-')?
        .strip_suffix(".log.json")?;
    let (start, end) = range.split_once('-')?;
    if start.len() != 20 || end.len() != 20 {
        return None;
    }
    Some((start.parse().ok()?, end.parse().ok()?))
}

/// The "directory" of the instances' published ingest figures.
pub const OBJECT_INSTANCES: &str = "instances";

/// The object key (below the prefix) of an instance's published ingest figures:
/// `instances/<instance>.json`.
pub fn instance_object(instance: &str) -> String {
    format!("{OBJECT_INSTANCES}/{instance}.json")
}

/// The object key (below the prefix) of the intent of the range starting at `first`.
pub fn intent_object(topic: &str, partition: i32, first: i64) -> String {
    format!("{}/{first:020}.json", intent_dir(topic, partition))
}

/// The "directory" (key prefix, below the prefix) of a partition's intents.
pub fn intent_dir(topic: &str, partition: i32) -> String {
    format!("intents/{topic}/{partition:05}")
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::{DateTime, Utc};

    fn hour(text: &str) -> Hour {
        Hour::of(
            &DateTime::parse_from_rfc3339(text)
                .unwrap()
                .with_timezone(&Utc),
        )
    }

    #[test]
    fn a_site_has_its_own_root_and_no_site_is_the_root_itself() {
        let acme = SiteId::parse("acme").unwrap();
        assert_eq!(site_dir(Path::new("/l"), None), Path::new("/l"));
        assert_eq!(
            site_dir(Path::new("/l"), Some(&acme)),
            Path::new("/l/sites/acme")
        );
        assert_eq!(site_prefix(None), "");
        assert_eq!(site_prefix(Some(&acme)), "sites/acme/");
        let h = hour("2025-11-22T14:00:00Z");
        assert_eq!(
            format!(
                "{}{}",
                site_prefix(Some(&acme)),
                records_object("t", 1, 2, 3, h)
            ),
            "sites/acme/logs/2025-11-22/14/t-00001-00000000000000000002-00000000000000000003.log.json"
        );
    }

    #[test]
    fn shipped_objects_name_their_source_and_byte_range() {
        let h = hour("2025-11-22T14:00:00Z");
        let key = shipped_object(h, "web-1", 4, 19);
        assert_eq!(
            key,
            "logs/2025-11-22/14/v1-web-1-00000000000000000004-00000000000000000019.log.json"
        );
        assert_eq!(parse_records_object(&key), Some(h));
        let name = key.rsplit('/').next().unwrap();
        assert_eq!(parse_shipped_object(name, "web-1"), Some((4, 19)));
        // Another source, even one whose name starts the same, is not ours.
        assert_eq!(parse_shipped_object(name, "web"), None);
        let other = shipped_object(h, "web-1-2", 0, 7);
        assert_eq!(
            parse_shipped_object(other.rsplit('/').next().unwrap(), "web-1"),
            None
        );
    }

    #[test]
    fn names_round_trip() {
        let h = hour("2025-11-22T14:59:59.999Z");
        assert_eq!(day_dir(h), "2025-11-22");
        assert_eq!(hour_file(h), "2025-11-22/14.log.json");
        assert_eq!(summary_file(h), "2025-11-22/summary_14.json");
        assert_eq!(parse_hour_file("2025-11-22/14.log.json"), Some(h));
        assert_eq!(parse_summary_file("2025-11-22/summary_14.json"), Some(h));
        let early = hour("1969-12-31T23:30:00Z");
        assert_eq!(hour_file(early), "1969-12-31/23.log.json");
        assert_eq!(parse_hour_file(&hour_file(early)), Some(early));
    }

    #[test]
    fn object_keys_sort_by_offset_and_name_their_hour() {
        let h = hour("2025-11-22T14:05:00Z");
        let key = records_object("logs", 3, 1200, 1299, h);
        assert_eq!(
            key,
            "logs/2025-11-22/14/logs-00003-00000000000000001200-00000000000000001299.log.json"
        );
        assert_eq!(parse_records_object(&key), Some(h));
        assert!(records_object("t", 0, 9, 9, h) < records_object("t", 0, 10, 10, h));
        for key in [
            "logs/2025-11-22/14",
            "logs/2025-11-22/24/t-00000-1-1.log.json",
            "logs/2025-11-22/14/sub/t.log.json",
            "intents/t/00000/00000000000000000001.json",
        ] {
            assert_eq!(parse_records_object(key), None, "{key}");
        }
        assert_eq!(
            intent_object("t", 7, 42),
            "intents/t/00007/00000000000000000042.json"
        );
    }

    #[test]
    fn only_canonical_names_name_an_hour() {
        for name in [
            "2025-11-22/24.log.json",
            "2025-11-22/4.log.json",
            "2025-11-22/+4.log.json",
            "2025-13-22/14.log.json",
            "2025-11-22/14.log",
            "2025-11-2/14.log.json",
            "2025-11-22/summary_14.json",
            "2025-11-22",
        ] {
            assert_eq!(parse_hour_file(name), None, "{name}");
        }
        for name in [
            "2025-11-22/summary_14.json.tmp",
            "2025-11-22/summary_24.json",
            "2025-11-22/14.log.json",
            "2025-1-22/summary_14.json",
        ] {
            assert_eq!(parse_summary_file(name), None, "{name}");
        }
    }

    #[test]
    fn walks_find_only_their_kind_sorted_by_hour() {
        let dir = tempfile::tempdir().unwrap();
        for name in [
            "2025-11-22/15.log.json",
            "2025-11-22/14.log.json",
            "2025-11-21/23.log.json",
            "2025-11-22/summary_14.json",
            "2025-11-22/notes.txt",
            "2025-11-22/summary_14.json.tmp",
        ] {
            let path = dir.path().join(name);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(path, "").unwrap();
        }
        // A directory where a file would be is not a file.
        fs::create_dir_all(dir.path().join("2025-11-22/16.log.json")).unwrap();
        fs::write(dir.path().join(LOCK_FILE), "1").unwrap();
        let names = |found: Vec<(Hour, PathBuf)>| -> Vec<String> {
            found
                .into_iter()
                .map(|(_, path)| {
                    path.strip_prefix(dir.path())
                        .unwrap()
                        .to_string_lossy()
                        .into_owned()
                })
                .collect()
        };
        assert_eq!(
            names(hour_files(dir.path()).unwrap()),
            [
                "2025-11-21/23.log.json",
                "2025-11-22/14.log.json",
                "2025-11-22/15.log.json"
            ]
        );
        assert_eq!(
            names(summaries(dir.path()).unwrap()),
            ["2025-11-22/summary_14.json"]
        );
        assert!(hour_files(&dir.path().join("missing")).unwrap().is_empty());
    }
}
