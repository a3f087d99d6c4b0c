//! Readers racing writers (issue 28): writers post batches whose event hour moves on every
//! `hour_every`, readers ask the analytics routes meanwhile and check every answer against what
//! had been acknowledged before it was asked, and a watcher re-reads the summary files from disk
//! to catch one going back. What a test asserts on is the [`RaceReport`].

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::Value;

use super::http::{client, try_send};
use super::records::{NDJSON, line};

/// The user agent of every record the writers send.
const AGENT: &str = "racing-writer/1.0";

/// How a race runs.
#[derive(Debug, Clone, Copy)]
pub struct Race {
    pub writers: usize,
    pub readers: usize,
    /// Hours the writers go through, from `2025-11-22T00:00:00Z` (at most 24).
    pub hours: usize,
    /// How long the writers stay in one hour.
    pub hour_every: Duration,
}

/// One batch a writer sent.
#[derive(Debug, Clone)]
pub struct SentBatch {
    /// The lines the service stores for its records.
    pub lines: Vec<String>,
    /// The answer's status (0 without one).
    pub status: u16,
}

/// What a race saw.
#[derive(Debug, Default)]
pub struct RaceReport {
    pub batches: Vec<SentBatch>,
    /// Records acknowledged (202), per hour (`2025-11-22T03:00:00Z`).
    pub acknowledged: BTreeMap<String, u64>,
    /// Analytics answers checked against what was acknowledged before they were asked.
    pub answers: usize,
    /// Answers 503 `busy` (not checked: they say nothing).
    pub busy: usize,
    /// Answers that counted less than had been acknowledged before they were asked.
    pub stale: Vec<String>,
    /// Answers that were neither 200 (nor 404 `no_summary` for an hour without records yet) nor
    /// 503 `busy`.
    pub failed: Vec<String>,
    /// Summary files read from disk by the watcher.
    pub summary_reads: usize,
    /// Reads of a summary covering less (records or bytes) than an earlier read of it, or that
    /// did not parse.
    pub went_back: Vec<String>,
}

/// `2025-11-22T03:00:00Z` for hour 3.
pub fn race_hour(k: usize) -> String {
    format!("2025-11-22T{k:02}:00:00Z")
}

/// `2025-11-22/03.log.json` for hour 3.
pub fn race_hour_file(k: usize) -> String {
    format!("2025-11-22/{k:02}.log.json")
}

/// Runs `race` against the service at `addr` whose summaries are in `analytics_dir`.
pub async fn run_race(addr: SocketAddr, analytics_dir: &Path, race: Race) -> RaceReport {
    assert!(race.hours <= 24);
    let acknowledged: Arc<Vec<AtomicU64>> =
        Arc::new((0..race.hours).map(|_| AtomicU64::new(0)).collect());
    let started = Instant::now();
    let until = started + race.hour_every * race.hours as u32;
    let stop_watching = Arc::new(AtomicBool::new(false));
    let watcher = tokio::task::spawn_blocking({
        let (dir, stop) = (analytics_dir.to_owned(), stop_watching.clone());
        move || watch_summaries(&dir, race.hours, &stop)
    });
    let writers: Vec<_> = (0..race.writers)
        .map(|writer| {
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                write_until(addr, writer, (started, until), race, &acknowledged).await
            })
        })
        .collect();
    let readers: Vec<_> = (0..race.readers)
        .map(|reader| {
            let acknowledged = acknowledged.clone();
            tokio::spawn(async move {
                read_until(addr, reader, (started, until), race, &acknowledged).await
            })
        })
        .collect();
    let mut report = RaceReport::default();
    for writer in writers {
        report
            .batches
            .extend(writer.await.expect("a writer does not panic"));
    }
    for reader in readers {
        let seen = reader.await.expect("a reader does not panic");
        report.answers += seen.answers;
        report.busy += seen.busy;
        report.stale.extend(seen.stale);
        report.failed.extend(seen.failed);
    }
    stop_watching.store(true, Ordering::Relaxed);
    let (reads, went_back) = watcher.await.expect("the watcher does not panic");
    report.summary_reads = reads;
    report.went_back = went_back;
    report.acknowledged = (0..race.hours)
        .map(|k| (race_hour(k), acknowledged[k].load(Ordering::Relaxed)))
        .collect();
    report
}

/// The hour the writers are in now.
fn current_hour(started: Instant, race: Race) -> usize {
    let k = started.elapsed().as_nanos() / race.hour_every.as_nanos();
    (k as usize).min(race.hours - 1)
}

async fn write_until(
    addr: SocketAddr,
    writer: usize,
    (started, until): (Instant, Instant),
    race: Race,
    acknowledged: &[AtomicU64],
) -> Vec<SentBatch> {
    let http = client();
    let mut sent = Vec::new();
    for n in 0.. {
        if Instant::now() >= until {
            break;
        }
        let k = current_hour(started, race);
        let lines: Vec<String> = (0..1 + (n * 7) % 20)
            .map(|i| {
                let timestamp = format!("2025-11-22T{k:02}:{:02}:{:02}Z", i % 60, n % 60);
                line(&timestamp, &format!("/race/{writer}/{n}/{i}"), AGENT)
            })
            .collect();
        let body: String = lines.iter().map(|l| format!("{l}\n")).collect();
        let headers = [("content-type", NDJSON)];
        let status = match try_send(&http, addr, Method::POST, "/logs", &headers, body).await {
            Ok(response) => response.status().as_u16(),
            Err(_) => 0,
        };
        if status == 202 {
            acknowledged[k].fetch_add(lines.len() as u64, Ordering::SeqCst);
        }
        sent.push(SentBatch { lines, status });
    }
    sent
}

#[derive(Default)]
struct ReaderSeen {
    answers: usize,
    busy: usize,
    stale: Vec<String>,
    failed: Vec<String>,
}

/// Asks, in turn, `/analytics/hours`, the writers' current hour and the whole range, each checked
/// against a snapshot of what was acknowledged taken just before the request was sent.
async fn read_until(
    addr: SocketAddr,
    reader: usize,
    (started, until): (Instant, Instant),
    race: Race,
    acknowledged: &[AtomicU64],
) -> ReaderSeen {
    let http = client();
    let mut seen = ReaderSeen::default();
    for n in reader.. {
        if Instant::now() >= until {
            break;
        }
        let k = current_hour(started, race);
        let path = match n % 3 {
            0 => "/analytics/hours".to_owned(),
            1 => format!("/analytics?hour={}", race_hour(k)),
            _ => format!(
                "/analytics?from={}&to={}",
                race_hour(0),
                race_hour(race.hours)
            ),
        };
        let before: Vec<u64> = acknowledged
            .iter()
            .map(|n| n.load(Ordering::SeqCst))
            .collect();
        let answer = try_send(&http, addr, Method::GET, &path, &[], Vec::new()).await;
        let (status, body) = match answer {
            Ok(response) => {
                let status = response.status();
                let text = response.text().await.unwrap_or_default();
                (status, serde_json::from_str(&text).unwrap_or(Value::Null))
            }
            Err(err) => {
                seen.failed.push(format!("GET {path}: {err}"));
                continue;
            }
        };
        match (status, body["error"].as_str()) {
            (StatusCode::SERVICE_UNAVAILABLE, Some("busy")) => seen.busy += 1,
            (StatusCode::NOT_FOUND, Some("no_summary")) if n % 3 == 1 && before[k] == 0 => {
                seen.answers += 1;
            }
            (StatusCode::OK, _) => {
                seen.answers += 1;
                seen.stale.extend(stale_counts(&path, &body, &before, k));
            }
            _ => seen.failed.push(format!("GET {path}: {status} {body}")),
        }
    }
    seen
}

/// What in an answer `body` to `path` counts less than `before` (acknowledged per hour).
fn stale_counts(path: &str, body: &Value, before: &[u64], k: usize) -> Vec<String> {
    let mut stale = Vec::new();
    let mut check = |what: String, answered: u64, acknowledged: u64| {
        if answered < acknowledged {
            stale.push(format!(
                "GET {path}: {what} {answered} < {acknowledged} acknowledged before the request"
            ));
        }
    };
    let per_hour = |hours: &Value| -> BTreeMap<String, u64> {
        (hours.as_array().into_iter().flatten())
            .map(|h| {
                let hour = h["hour"].as_str().unwrap_or_default().to_owned();
                (hour, h["totalRequests"].as_u64().unwrap_or(0))
            })
            .collect()
    };
    if path.contains("?hour=") {
        let total = body["totalRequests"].as_u64().unwrap_or(0);
        check(race_hour(k), total, before[k]);
        return stale;
    }
    let hours = per_hour(&body["hours"]);
    for (k, acknowledged) in before.iter().enumerate() {
        let hour = race_hour(k);
        check(
            hour.clone(),
            hours.get(&hour).copied().unwrap_or(0),
            *acknowledged,
        );
    }
    if path.contains("from=") {
        let total = body["totalRequests"].as_u64().unwrap_or(0);
        check("totalRequests".to_owned(), total, before.iter().sum());
    }
    stale
}

/// Re-reads every summary file until `stop`: how many reads, and each one that covered less than
/// an earlier read of the same file (or did not parse).
fn watch_summaries(analytics_dir: &Path, hours: usize, stop: &AtomicBool) -> (usize, Vec<String>) {
    let paths: Vec<PathBuf> = (0..hours)
        .map(|k| analytics_dir.join(format!("2025-11-22/summary_{k:02}.json")))
        .collect();
    let mut highest = vec![(0u64, 0u64); hours];
    let (mut reads, mut went_back) = (0, Vec::new());
    while !stop.load(Ordering::Relaxed) {
        for (k, path) in paths.iter().enumerate() {
            let Ok(bytes) = std::fs::read(path) else {
                continue;
            };
            reads += 1;
            let Ok(summary) = serde_json::from_slice::<Value>(&bytes) else {
                went_back.push(format!("{}: not JSON", path.display()));
                continue;
            };
            let now = (
                summary["totalRequests"].as_u64().unwrap_or(0),
                summary["source"]["bytes"].as_u64().unwrap_or(0),
            );
            let (records, covered) = highest[k];
            if now.0 < records || now.1 < covered {
                went_back.push(format!(
                    "{}: {} records / {} bytes after {records} / {covered}",
                    race_hour(k),
                    now.0,
                    now.1
                ));
            }
            highest[k] = (records.max(now.0), covered.max(now.1));
        }
        // Not a wait for anything: the next round of reads, a little later.
        std::thread::sleep(Duration::from_millis(2));
    }
    (reads, went_back)
}
