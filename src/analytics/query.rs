//! The analytics API's reads: one hour's summary, the hours that have data, and a merged range.
//! Everything is served from the summary files; hour files are never rescanned here (the caller
//! brings the hours up to date first, see `Aggregator::update_hours`).
//!
//! Every read is bounded by the summaries' byte budget (`aggregation.maxSummaryBytes`, see
//! [`Bounds`]), whatever the files hold:
//!
//! - a summary larger than an aggregator writes ([`Bounds::max_file_bytes`]) is not read (the
//!   query answers [`QueryError::SummaryTooLarge`]);
//! - the three merged maps of a range hold no more than one summary may; further keys count under
//!   `(other)` and the answer says `"truncated": true`, so totals stay right;
//! - top lists are selected with a heap of `top` entries, not by sorting every key;
//! - a range stops between hours once its request is gone ([`CancelFlag`]).

use std::cmp::{Ordering, Reverse};
use std::collections::BinaryHeap;
use std::fs::File;
use std::io::{self, Read};
use std::path::Path;

use serde::Serialize;

use super::bots::BotClassifier;
use super::summary::{Bounds, Counts, HourSummary, OVERFLOW_KEY, read_head};
use super::{CancelFlag, Cancelled};
use crate::layout;
use crate::record::Hour;

/// The longest range `GET /analytics?from&to` merges: 31 days.
pub const MAX_RANGE_HOURS: i64 = 31 * 24;
/// The largest `top` a range query may ask for.
pub const MAX_TOP: usize = 1000;
/// The default `top`.
pub const DEFAULT_TOP: usize = 10;

/// Why a query has no answer.
#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error(transparent)]
    Io(#[from] io::Error),
    #[error(
        "the summary of hour {hour} is {bytes} bytes, more than the {limit} bytes a query reads"
    )]
    SummaryTooLarge {
        hour: String,
        bytes: u64,
        limit: u64,
    },
    #[error(transparent)]
    Cancelled(#[from] Cancelled),
}

/// An hour and its number of requests, split into bots and humans when its summary has the split.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HourTotal {
    pub hour: String,
    pub total_requests: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bot_requests: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub human_requests: Option<u64>,
}

/// A key and its count in a top-N list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Ranked {
    pub key: String,
    pub requests: u64,
    /// Top user agents only: whether the bot list classifies this user agent (`null` for the
    /// `(other)` bucket, which mixes both).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bot: Option<Option<bool>>,
}

/// One merged summary over `[from, to)`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RangeSummary {
    pub from: String,
    pub to: String,
    pub total_requests: u64,
    /// Requests whose user agent the bot list classifies as a bot.
    pub bot_requests: u64,
    /// Requests whose user agent it does not.
    pub human_requests: u64,
    /// Requests of hours whose summary has no bot split and whose hour file is gone (their
    /// summary predates the split and cannot be split again); 0 otherwise.
    pub unclassified_requests: u64,
    pub distinct_paths: usize,
    pub distinct_user_agents: usize,
    /// The `top` paths by requests (ties by key).
    pub top_paths: Vec<Ranked>,
    /// The `top` user agents by requests (ties by key), each marked bot or not.
    pub top_user_agents: Vec<Ranked>,
    /// The `top` bot user agents by requests (ties by key).
    pub top_bots: Vec<Ranked>,
    /// The bot list the split comes from: `name@version#crc32` of `assets/bots/isbot.json`.
    pub bot_list: String,
    /// Every hour of the range that has a summary, in order.
    pub hours: Vec<HourTotal>,
    /// Some keys are counted under `(other)`: an hour's summary reached its bounds, or the merged
    /// maps did. Totals and the bot/human split are exact all the same.
    pub truncated: bool,
}

/// The summary file of `hour`, opened, with its length, or `None` if there is none; refused when
/// larger than `limit` bytes. The file is replaced, never rewritten in place, so what is read
/// from it is the summary as it was when opened.
pub fn open_summary(
    analytics_dir: &Path,
    hour: Hour,
    limit: u64,
) -> Result<Option<(File, u64)>, QueryError> {
    let file = match File::open(analytics_dir.join(layout::summary_file(hour))) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let bytes = file.metadata()?.len();
    if bytes > limit {
        return Err(QueryError::SummaryTooLarge {
            hour: hour.to_string(),
            bytes,
            limit,
        });
    }
    Ok(Some((file, bytes)))
}

/// The summary file of `hour`, as stored, or `None` if there is none; refused when larger than
/// `limit` bytes.
pub fn summary_file(
    analytics_dir: &Path,
    hour: Hour,
    limit: u64,
) -> Result<Option<Vec<u8>>, QueryError> {
    let Some((file, bytes)) = open_summary(analytics_dir, hour, limit)? else {
        return Ok(None);
    };
    let mut content = Vec::with_capacity(bytes as usize);
    file.take(bytes).read_to_end(&mut content)?;
    Ok(Some(content))
}

/// A root's requests (one site's, when a range or the hours are read over several), split as the
/// whole answer's are.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Totals {
    pub total_requests: u64,
    pub bot_requests: u64,
    pub human_requests: u64,
    /// Requests of hours whose summary has no bot split.
    pub unclassified_requests: u64,
}

impl Totals {
    /// Adds an hour of `total` requests, split into (bots, humans) when its summary has the split.
    fn add(&mut self, total: u64, split: Option<(u64, u64)>) {
        self.total_requests += total;
        match split {
            Some((bots, humans)) => {
                self.bot_requests += bots;
                self.human_requests += humans;
            }
            None => self.unclassified_requests += total,
        }
    }
}

impl HourTotal {
    /// `hour` with nothing counted yet.
    fn empty(hour: Hour) -> HourTotal {
        HourTotal {
            hour: hour.to_string(),
            total_requests: 0,
            bot_requests: Some(0),
            human_requests: Some(0),
        }
    }

    /// Adds one root's summary of the hour; the hour is split only if every root's summary is.
    fn add(&mut self, total: u64, split: Option<(u64, u64)>) {
        self.total_requests += total;
        let sum = |ours: Option<u64>, theirs: Option<u64>| Some(ours? + theirs?);
        self.bot_requests = sum(self.bot_requests, split.map(|(bots, _)| bots));
        self.human_requests = sum(self.human_requests, split.map(|(_, humans)| humans));
    }
}

/// Every hour that has a summary in one of `roots` (analytics directories), with its totals
/// summed over them, in order; and each root's totals over its hours.
pub fn hours(
    roots: &[&Path],
    cancel: &CancelFlag,
) -> Result<(Vec<HourTotal>, Vec<Totals>), QueryError> {
    let mut found = std::collections::BTreeMap::new();
    let mut per_root = vec![Totals::default(); roots.len()];
    for (root, totals) in roots.iter().zip(&mut per_root) {
        for (hour, path) in layout::summaries(root)? {
            cancel.check()?;
            if let Some(head) = read_head(&path)? {
                let split = head.bots.as_ref().map(|(_, bots, humans)| (*bots, *humans));
                totals.add(head.total, split);
                (found.entry(hour).or_insert_with(|| HourTotal::empty(hour)))
                    .add(head.total, split);
            }
        }
    }
    Ok((found.into_values().collect(), per_root))
}

/// A range merged over one or more roots: the merged summary, and each root's totals.
#[derive(Debug)]
pub struct Ranged {
    pub summary: RangeSummary,
    pub roots: Vec<Totals>,
}

/// Merges the summaries of every hour in `[from, to)` of every root in `roots` (analytics
/// directories), each read if an aggregator within `bounds` could have written it, into maps that
/// hold together no more than `bounds` lets one summary hold (however many roots), marking top
/// user agents with `classifier`. Stops between hours once `cancel` is set.
pub fn range(
    roots: &[&Path],
    (from, to): (Hour, Hour),
    top: usize,
    bounds: Bounds,
    classifier: &BotClassifier,
    cancel: &CancelFlag,
) -> Result<Ranged, QueryError> {
    // Bounded by bytes alone: every entry costs at least `entry_bytes("")`.
    let merged_map = || Counts::new(usize::MAX);
    let (mut paths, mut agents, mut bots) = (merged_map(), merged_map(), merged_map());
    let mut room = bounds.max_bytes;
    let (mut whole, mut per_root) = (Totals::default(), vec![Totals::default(); roots.len()]);
    let mut truncated = false;
    let mut hours = Vec::new();
    for index in from.index()..to.index() {
        let hour = Hour::from_index(index);
        let mut this_hour: Option<HourTotal> = None;
        for (root, totals) in roots.iter().zip(&mut per_root) {
            cancel.check()?;
            let Some(bytes) = summary_file(root, hour, bounds.max_file_bytes())? else {
                continue;
            };
            let summary = HourSummary::from_json(&bytes, Bounds::NONE).map_err(|e| {
                io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("summary of {hour}: {e}"),
                )
            })?;
            drop(bytes);
            truncated |= summary.truncated();
            paths.merge(&summary.paths, &mut room);
            agents.merge(&summary.agents, &mut room);
            let split = (summary.bots.list.is_some())
                .then_some((summary.bots.bot_requests, summary.bots.human_requests));
            if split.is_some() {
                bots.merge(&summary.bots.per_agent, &mut room);
            }
            whole.add(summary.total, split);
            totals.add(summary.total, split);
            (this_hour.get_or_insert_with(|| HourTotal::empty(hour))).add(summary.total, split);
        }
        hours.extend(this_hour);
    }
    let mut top_user_agents = top_n(&agents, top);
    for ranked in &mut top_user_agents {
        ranked.bot = Some((ranked.key != OVERFLOW_KEY).then(|| classifier.is_bot(&ranked.key)));
    }
    let summary = RangeSummary {
        from: from.to_string(),
        to: to.to_string(),
        total_requests: whole.total_requests,
        bot_requests: whole.bot_requests,
        human_requests: whole.human_requests,
        unclassified_requests: whole.unclassified_requests,
        distinct_paths: paths.len(),
        distinct_user_agents: agents.len(),
        top_paths: top_n(&paths, top),
        top_user_agents,
        top_bots: top_n(&bots, top),
        bot_list: classifier.id().to_owned(),
        hours,
        truncated: truncated || paths.folded() || agents.folded() || bots.folded(),
    };
    Ok(Ranged {
        summary,
        roots: per_root,
    })
}

/// A key's rank: more requests first, then the smaller key. `Ord` says which ranks higher.
#[derive(PartialEq, Eq)]
struct Rank<'a>(u64, &'a str);

impl Ord for Rank<'_> {
    fn cmp(&self, other: &Self) -> Ordering {
        self.0.cmp(&other.0).then_with(|| other.1.cmp(self.1))
    }
}

impl PartialOrd for Rank<'_> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

/// The `n` highest-ranked keys, best first, keeping only `n` candidates at a time (a min-heap
/// whose root is the weakest of them): O(keys × log n) time, O(n) memory.
fn top_n(counts: &Counts, n: usize) -> Vec<Ranked> {
    let mut heap: BinaryHeap<Reverse<Rank<'_>>> = BinaryHeap::with_capacity(n + 1);
    for (key, requests) in counts.iter() {
        let rank = Rank(requests, key);
        if heap.len() < n {
            heap.push(Reverse(rank));
        } else if heap.peek().is_some_and(|weakest| rank > weakest.0) {
            heap.pop();
            heap.push(Reverse(rank));
        }
    }
    heap.into_sorted_vec()
        .into_iter()
        .map(|Reverse(Rank(requests, key))| Ranked {
            key: key.to_owned(),
            requests,
            bot: None,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::super::summary::write_summary;
    use super::*;
    use std::fs;

    fn hour(name: &str) -> Hour {
        layout::parse_hour_file(name).unwrap()
    }

    fn classifier() -> &'static BotClassifier {
        BotClassifier::embedded()
    }

    /// The bounds of the tests' summaries: 100 keys per map, 1 MiB.
    const BOUNDS: Bounds = Bounds {
        max_keys: 100,
        max_bytes: 1 << 20,
    };

    const BOT: &str = "curl/8.5.0";
    const HUMAN: &str = "Mozilla/5.0 (X11; Linux x86_64; rv:128.0) Gecko/20100101 Firefox/128.0";

    fn store(dir: &Path, name: &str, records: &[(&str, &str)]) {
        let mut summary = HourSummary::new(hour(name), BOUNDS, classifier().id());
        for (path, agent) in records {
            summary.add(path, agent, classifier().is_bot(agent));
        }
        write_summary(dir, &summary).unwrap();
    }

    /// The range of the one hour `h`, top 10.
    fn range_of(dir: &Path, h: Hour, cancel: &CancelFlag) -> Result<RangeSummary, QueryError> {
        range(
            &[dir],
            (h, Hour::from_index(h.index() + 1)),
            10,
            BOUNDS,
            classifier(),
            cancel,
        )
        .map(|ranged| ranged.summary)
    }

    fn ranked(entries: &[(&str, u64)]) -> Vec<Ranked> {
        entries
            .iter()
            .map(|(key, requests)| Ranked {
                key: (*key).into(),
                requests: *requests,
                bot: None,
            })
            .collect()
    }

    #[test]
    fn range_merges_hours_ranks_keys_and_splits_bots() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), "2025-11-22/13.log.json", &[("/a", "x")]);
        store(
            dir.path(),
            "2025-11-22/14.log.json",
            &[("/a", HUMAN), ("/b", BOT), ("/b", BOT)],
        );
        store(
            dir.path(),
            "2025-11-22/15.log.json",
            &[("/c", HUMAN), ("/b", "z")],
        );
        store(dir.path(), "2025-11-22/16.log.json", &[("/z", "x")]);
        let merged = range(
            &[dir.path()],
            (
                hour("2025-11-22/14.log.json"),
                hour("2025-11-22/16.log.json"),
            ),
            2,
            BOUNDS,
            classifier(),
            &CancelFlag::new(),
        )
        .unwrap()
        .summary;
        assert_eq!(merged.total_requests, 5);
        // "z" alone is a bot by isbot's rules (a bare product token).
        assert_eq!(
            (
                merged.bot_requests,
                merged.human_requests,
                merged.unclassified_requests
            ),
            (3, 2, 0)
        );
        assert_eq!((merged.distinct_paths, merged.distinct_user_agents), (3, 3));
        assert_eq!(merged.top_paths, ranked(&[("/b", 3), ("/a", 1)]));
        let agents: Vec<(&str, u64, Option<Option<bool>>)> = merged
            .top_user_agents
            .iter()
            .map(|r| (r.key.as_str(), r.requests, r.bot))
            .collect();
        // BOT and HUMAN tie at 2: ties are ordered by key.
        assert_eq!(
            agents,
            [(HUMAN, 2, Some(Some(false))), (BOT, 2, Some(Some(true)))]
        );
        assert_eq!(merged.top_bots, ranked(&[(BOT, 2), ("z", 1)]));
        assert_eq!(merged.bot_list, classifier().id());
        let hours: Vec<(&str, u64, Option<u64>)> = merged
            .hours
            .iter()
            .map(|h| (h.hour.as_str(), h.total_requests, h.bot_requests))
            .collect();
        assert_eq!(
            hours,
            [
                ("2025-11-22T14:00:00Z", 3, Some(2)),
                ("2025-11-22T15:00:00Z", 2, Some(1))
            ]
        );
        assert!(!merged.truncated);
    }

    #[test]
    fn a_range_beyond_the_byte_budget_counts_the_rest_under_other_and_says_so() {
        let dir = tempfile::tempdir().unwrap();
        let (h14, h15) = ("2025-11-22/14.log.json", "2025-11-22/15.log.json");
        store(
            dir.path(),
            h14,
            &[("/a", HUMAN), ("/a", HUMAN), ("/b", HUMAN)],
        );
        store(dir.path(), h15, &[("/c", HUMAN), ("/a", HUMAN)]);
        let room_for = |keys: &[&str]| {
            keys.iter()
                .map(|k| super::super::summary::entry_bytes(k))
                .sum()
        };
        let from_to = (hour(h14), Hour::from_index(hour(h15).index() + 1));
        // Room for two paths and the user agent: "/c", first seen in the second hour, is folded.
        let bounds = Bounds {
            max_keys: 100,
            max_bytes: room_for(&["/a", "/b", HUMAN]),
        };
        let merged = range(
            &[dir.path()],
            from_to,
            10,
            bounds,
            classifier(),
            &CancelFlag::new(),
        )
        .unwrap()
        .summary;
        assert_eq!(merged.total_requests, 5);
        assert_eq!(
            merged.top_paths,
            ranked(&[("/a", 3), ("(other)", 1), ("/b", 1)])
        );
        assert!(merged.truncated);
        // Room for everything: not truncated, unless an hour's own summary was.
        let roomy = Bounds {
            max_keys: 100,
            max_bytes: 1 << 20,
        };
        let merged = range(
            &[dir.path()],
            from_to,
            10,
            roomy,
            classifier(),
            &CancelFlag::new(),
        )
        .unwrap()
        .summary;
        assert!(!merged.truncated);
        let mut folded = HourSummary::new(
            hour(h15),
            Bounds {
                max_keys: 1,
                max_bytes: 1 << 20,
            },
            classifier().id(),
        );
        folded.add("/c", HUMAN, false);
        folded.add("/a", HUMAN, false);
        write_summary(dir.path(), &folded).unwrap();
        let merged = range(
            &[dir.path()],
            from_to,
            10,
            roomy,
            classifier(),
            &CancelFlag::new(),
        )
        .unwrap()
        .summary;
        assert_eq!(merged.total_requests, 5);
        assert!(merged.truncated);
    }

    #[test]
    fn top_n_keeps_the_best_n_with_ties_by_key() {
        let mut counts = Counts::new(100);
        for (key, n) in [("d", 1), ("b", 5), ("a", 5), ("c", 7), ("e", 1), ("f", 2)] {
            counts.add(key, n, &mut usize::MAX.clone());
        }
        assert_eq!(top_n(&counts, 3), ranked(&[("c", 7), ("a", 5), ("b", 5)]));
        assert_eq!(top_n(&counts, 5).len(), 5);
        assert_eq!(top_n(&counts, 5)[4], ranked(&[("d", 1)])[0]);
        assert_eq!(top_n(&counts, 100).len(), 6);
        assert!(top_n(&Counts::new(10), 3).is_empty());
    }

    #[test]
    fn summaries_over_the_limit_are_refused_not_read() {
        let dir = tempfile::tempdir().unwrap();
        let h = hour("2025-11-22/14.log.json");
        let path = dir.path().join(layout::summary_file(h));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        File::create(&path)
            .unwrap()
            .set_len(BOUNDS.max_file_bytes() + 1)
            .unwrap();
        let limit = BOUNDS.max_file_bytes();
        let err = summary_file(dir.path(), h, limit).unwrap_err();
        assert!(
            matches!(err, QueryError::SummaryTooLarge { bytes, limit: l, .. } if bytes == limit + 1 && l == limit),
            "{err}"
        );
        let err = range_of(dir.path(), h, &CancelFlag::new()).unwrap_err();
        assert!(matches!(err, QueryError::SummaryTooLarge { .. }), "{err}");
    }

    #[test]
    fn a_cancelled_range_stops() {
        let dir = tempfile::tempdir().unwrap();
        store(dir.path(), "2025-11-22/14.log.json", &[("/a", "x")]);
        let cancel = CancelFlag::new();
        cancel.cancel();
        let err = range_of(dir.path(), hour("2025-11-22/14.log.json"), &cancel).unwrap_err();
        assert!(matches!(err, QueryError::Cancelled(_)), "{err}");
        assert!(matches!(
            hours(&[dir.path()], &cancel).map(|(hours, _)| hours),
            Err(QueryError::Cancelled(_))
        ));
    }

    #[test]
    fn summaries_without_the_split_count_as_unclassified() {
        let dir = tempfile::tempdir().unwrap();
        let h = hour("2025-11-22/14.log.json");
        let path = dir.path().join(layout::summary_file(h));
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(
            &path,
            br#"{"hour":"2025-11-22T14:00:00Z","requestsPerPath":{"/a":3},"requestsPerUserAgent":{"x":3}}"#,
        )
        .unwrap();
        let merged = range_of(dir.path(), h, &CancelFlag::new()).unwrap();
        assert_eq!(
            (
                merged.total_requests,
                merged.bot_requests,
                merged.human_requests,
                merged.unclassified_requests
            ),
            (3, 0, 0, 3)
        );
        assert_eq!(merged.hours[0].bot_requests, None);
    }

    #[test]
    fn hours_lists_summaries_in_order_with_totals() {
        let dir = tempfile::tempdir().unwrap();
        let none = CancelFlag::new();
        assert!(hours(&[dir.path()], &none).unwrap().0.is_empty());
        store(dir.path(), "2025-11-23/01.log.json", &[("/a", BOT)]);
        store(
            dir.path(),
            "2025-11-22/14.log.json",
            &[("/a", HUMAN), ("/b", BOT)],
        );
        fs::write(dir.path().join("2025-11-22/summary_15.json.tmp"), "junk").unwrap();
        let listed = hours(&[dir.path()], &none).unwrap().0;
        assert_eq!(
            listed,
            [
                HourTotal {
                    hour: "2025-11-22T14:00:00Z".into(),
                    total_requests: 2,
                    bot_requests: Some(1),
                    human_requests: Some(1),
                },
                HourTotal {
                    hour: "2025-11-23T01:00:00Z".into(),
                    total_requests: 1,
                    bot_requests: Some(1),
                    human_requests: Some(0),
                }
            ]
        );
    }

    #[test]
    fn over_several_roots_the_answer_sums_them_and_says_each_ones_totals() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (h14, h15) = ("2025-11-22/14.log.json", "2025-11-22/15.log.json");
        store(a.path(), h14, &[("/a", HUMAN), ("/a", BOT)]);
        store(b.path(), h14, &[("/b", BOT)]);
        store(b.path(), h15, &[("/a", HUMAN), ("/b", HUMAN), ("/c", BOT)]);
        let roots = [a.path(), b.path()];
        let from_to = (hour(h14), Hour::from_index(hour(h15).index() + 1));
        let none = CancelFlag::new();
        let ranged = range(&roots, from_to, 10, BOUNDS, classifier(), &none).unwrap();
        let totals = |total, bots, humans| Totals {
            total_requests: total,
            bot_requests: bots,
            human_requests: humans,
            unclassified_requests: 0,
        };
        assert_eq!(ranged.roots, [totals(2, 1, 1), totals(4, 2, 2)]);
        let merged = ranged.summary;
        assert_eq!(
            (
                merged.total_requests,
                merged.bot_requests,
                merged.human_requests
            ),
            (6, 3, 3)
        );
        assert_eq!(
            merged.top_paths,
            ranked(&[("/a", 3), ("/b", 2), ("/c", 1)]),
            "the paths of both roots, merged"
        );
        let per_hour: Vec<_> = (merged.hours.iter())
            .map(|h| (h.total_requests, h.bot_requests))
            .collect();
        assert_eq!(per_hour, [(3, Some(2)), (3, Some(1))]);

        let (listed, per_root) = hours(&roots, &none).unwrap();
        assert_eq!(per_root, [totals(2, 1, 1), totals(4, 2, 2)]);
        let listed: Vec<_> = (listed.iter())
            .map(|h| (h.total_requests, h.human_requests))
            .collect();
        assert_eq!(listed, [(3, Some(1)), (3, Some(2))]);
    }

    #[test]
    fn missing_summary_is_none() {
        let dir = tempfile::tempdir().unwrap();
        assert!(
            summary_file(dir.path(), hour("2025-11-22/14.log.json"), 1 << 20)
                .unwrap()
                .is_none()
        );
    }
}
