//! The analytics API's reads: one hour's summary, the hours that have data, and a merged range.
//! Everything is served from the summary files; hour files are never rescanned here.

use std::fs;
use std::io;
use std::path::Path;

use serde::Serialize;

use super::summary::{Counts, HourSummary, read_tail};
use crate::layout;
use crate::record::Hour;

/// The longest range `GET /analytics?from&to` merges: 31 days.
pub const MAX_RANGE_HOURS: i64 = 31 * 24;
/// The largest `top` a range query may ask for.
pub const MAX_TOP: usize = 1000;
/// The default `top`.
pub const DEFAULT_TOP: usize = 10;
/// Distinct keys kept while merging a range; beyond it counts go to the overflow bucket.
const MAX_MERGED_KEYS: usize = 1_000_000;

/// An hour and its number of requests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HourTotal {
    pub hour: String,
    pub total_requests: u64,
}

/// A key and its count in a top-N list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ranked {
    pub key: String,
    pub requests: u64,
}

/// One merged summary over `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeSummary {
    pub from: String,
    pub to: String,
    pub total_requests: u64,
    pub distinct_paths: usize,
    pub distinct_user_agents: usize,
    /// The `top` paths by requests (ties by key).
    pub top_paths: Vec<Ranked>,
    /// The `top` user agents by requests (ties by key).
    pub top_user_agents: Vec<Ranked>,
    /// Every hour of the range that has a summary, in order.
    pub hours: Vec<HourTotal>,
}

/// The summary file of `hour`, as stored, or `None` if there is none.
pub fn summary_file(analytics_dir: &Path, hour: Hour) -> io::Result<Option<Vec<u8>>> {
    match fs::read(analytics_dir.join(layout::summary_file(hour))) {
        Ok(bytes) => Ok(Some(bytes)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e),
    }
}

/// Every hour that has a summary, with its total, in order.
pub fn hours(analytics_dir: &Path) -> io::Result<Vec<HourTotal>> {
    let mut found = Vec::new();
    for (hour, path) in layout::summaries(analytics_dir)? {
        if let Some((_, total)) = read_tail(&path)? {
            found.push(HourTotal {
                hour: hour.to_string(),
                total_requests: total,
            });
        }
    }
    Ok(found)
}

/// Merges the summaries of every hour in `[from, to)`.
pub fn range(analytics_dir: &Path, from: Hour, to: Hour, top: usize) -> io::Result<RangeSummary> {
    let mut paths = Counts::new(MAX_MERGED_KEYS);
    let mut agents = Counts::new(MAX_MERGED_KEYS);
    let mut total = 0;
    let mut hours = Vec::new();
    for index in from.index()..to.index() {
        let hour = Hour::from_index(index);
        let Some(bytes) = summary_file(analytics_dir, hour)? else {
            continue;
        };
        let summary = HourSummary::from_json(&bytes, usize::MAX).map_err(|e| {
            io::Error::new(
                io::ErrorKind::InvalidData,
                format!("summary of {hour}: {e}"),
            )
        })?;
        paths.merge(&summary.paths);
        agents.merge(&summary.agents);
        total += summary.total;
        hours.push(HourTotal {
            hour: hour.to_string(),
            total_requests: summary.total,
        });
    }
    Ok(RangeSummary {
        from: from.to_string(),
        to: to.to_string(),
        total_requests: total,
        distinct_paths: paths.len(),
        distinct_user_agents: agents.len(),
        top_paths: top_n(&paths, top),
        top_user_agents: top_n(&agents, top),
        hours,
    })
}

fn top_n(counts: &Counts, n: usize) -> Vec<Ranked> {
    let mut all: Vec<(&str, u64)> = counts.iter().collect();
    all.sort_unstable_by(|a, b| b.1.cmp(&a.1).then_with(|| a.0.cmp(b.0)));
    all.into_iter()
        .take(n)
        .map(|(key, requests)| Ranked {
            key: key.to_owned(),
            requests,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::summary::write_summary;
    use super::*;

    fn hour(name: &str) -> Hour {
        layout::parse_hour_file(name).unwrap()
    }

    fn store(dir: &Path, name: &str, records: &[(&str, &str)]) {
        let mut summary = HourSummary::new(hour(name), 100);
        for (path, agent) in records {
            summary.add(path, agent);
        }
        write_summary(dir, &summary).unwrap();
    }

    #[test]
    fn range_merges_hours_and_ranks_keys() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), "2025-11-22/13.log.json", &[("/a", "x")]);
        store(
            dir.path(),
            "2025-11-22/14.log.json",
            &[("/a", "x"), ("/b", "y"), ("/b", "y")],
        );
        store(
            dir.path(),
            "2025-11-22/15.log.json",
            &[("/c", "x"), ("/b", "z")],
        );
        store(dir.path(), "2025-11-22/16.log.json", &[("/z", "x")]);
        let merged = range(
            dir.path(),
            hour("2025-11-22/14.log.json"),
            hour("2025-11-22/16.log.json"),
            2,
        )
        .unwrap();
        assert_eq!(merged.total_requests, 5);
        assert_eq!((merged.distinct_paths, merged.distinct_user_agents), (3, 3));
        assert_eq!(
            merged.top_paths,
            [
                Ranked {
                    key: "/b".into(),
                    requests: 3
                },
                Ranked {
                    key: "/a".into(),
                    requests: 1
                }
            ]
        );
        // x and y tie at 2: ties are ordered by key.
        assert_eq!(
            merged.top_user_agents,
            [
                Ranked {
                    key: "x".into(),
                    requests: 2
                },
                Ranked {
                    key: "y".into(),
                    requests: 2
                }
            ]
        );
        let hours: Vec<(&str, u64)> = merged
            .hours
            .iter()
            .map(|h| (h.hour.as_str(), h.total_requests))
            .collect();
        assert_eq!(
            hours,
            [("2025-11-22T14:00:00Z", 3), ("2025-11-22T15:00:00Z", 2)]
        );
    }

    #[test]
    fn hours_lists_summaries_in_order_with_totals() {
        let dir = tempfile::tempdir().unwrap();
        assert!(hours(dir.path()).unwrap().is_empty());
        store(dir.path(), "2025-11-23/01.log.json", &[("/a", "x")]);
        store(
            dir.path(),
            "2025-11-22/14.log.json",
            &[("/a", "x"), ("/b", "y")],
        );
        fs::write(dir.path().join("2025-11-22/summary_15.json.tmp"), "junk").unwrap();
        let listed = hours(dir.path()).unwrap();
        assert_eq!(
            listed,
            [
                HourTotal {
                    hour: "2025-11-22T14:00:00Z".into(),
                    total_requests: 2
                },
                HourTotal {
                    hour: "2025-11-23T01:00:00Z".into(),
                    total_requests: 1
                }
            ]
        );
    }

    #[test]
    fn missing_summary_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert_eq!(
            summary_file(dir.path(), hour("2025-11-22/14.log.json")).unwrap(),
            None
        );
    }
}
