//! Load for the fault scenarios, and the exact check of what is on disk against what the clients
//! were told.
//!
//! Clients send batches of unique records (path `/<prefix>/<client>/<batch>/<i>`) in every format
//! (JSON, CSV, NDJSON, gzipped NDJSON) over two hours, and remember each batch's answer. The
//! check reads every line of every hour file: each must be exactly one record; every record of an
//! accepted batch must be there once; none of a batch whose answer said nothing was stored may
//! be there; nothing may be there twice; and nothing may be there that no client sent.

use std::collections::{HashMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use reqwest::{Client, Method, StatusCode};
use serde_json::Value;
use tokio::task::JoinHandle;

use crate::summary::Row;
use crate::support::{CSV, JSON, NDJSON, gzip, hour_files, line, try_send};
use crate::support::{KAFKA_DEADLINE, KAFKA_POLL, poll_within};

/// The user agent of every record the suite sends.
const AGENT: &str = "fault-suite/1.0";

/// What a client was told about one batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Answer {
    /// 202: every record is stored.
    Accepted,
    /// An error whose meaning is "nothing of this batch was stored": 4xx, and 503 but
    /// `partially_delivered`.
    NothingStored { status: u16, code: String },
    /// No answer, or one that does not say (500 `outcome_unknown`, 503 `partially_delivered`):
    /// each record may be stored once, or not.
    Unknown(String),
}

/// One batch a client sent.
#[derive(Debug, Clone)]
pub struct Batch {
    /// The lines the service stores for its records.
    pub lines: Vec<String>,
    pub answer: Answer,
    /// The answer's status (0 without one).
    pub status: u16,
    /// A 503 came with `Retry-After`.
    pub retry_after: bool,
    pub sent_at: Instant,
    pub answered_at: Instant,
}

impl Batch {
    /// Lines known to be acknowledged now (e.g. the end marks a test produced itself).
    pub fn accepted_now(lines: Vec<String>) -> Batch {
        Batch {
            lines,
            answer: Answer::Accepted,
            status: 202,
            retry_after: false,
            sent_at: Instant::now(),
            answered_at: Instant::now(),
        }
    }
}

/// Clients sending batches until stopped.
pub struct Load {
    stop: Arc<AtomicBool>,
    accepted: Arc<AtomicUsize>,
    clients: Vec<JoinHandle<Vec<Batch>>>,
}

impl Load {
    /// `clients` clients sending to `addr` as fast as they are answered.
    pub fn start(addr: SocketAddr, clients: usize, prefix: &str) -> Load {
        Load::start_as(addr, clients, prefix, None)
    }

    /// [`Load::start`], each request with `key` as its bearer key (a site's ingest key).
    pub fn start_as(addr: SocketAddr, clients: usize, prefix: &str, key: Option<&str>) -> Load {
        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let authorization = key.map(|key| format!("Bearer {key}"));
        let clients = (0..clients)
            .map(|client| {
                let (stop, accepted) = (stop.clone(), accepted.clone());
                let prefix = format!("{prefix}/{client}");
                let authorization = authorization.clone();
                tokio::spawn(async move {
                    let sender = Sender {
                        addr,
                        authorization: authorization.as_deref(),
                    };
                    sender.send_until(&prefix, &stop, &accepted).await
                })
            })
            .collect();
        Load {
            stop,
            accepted,
            clients,
        }
    }

    /// Batches answered 202 so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::Relaxed)
    }

    /// Waits (at most the Kafka deadline) until at least `n` batches were answered 202.
    pub async fn wait_accepted(&self, n: usize) {
        poll_within(
            KAFKA_DEADLINE,
            KAFKA_POLL,
            &format!("{n} batches acknowledged"),
            async || match self.accepted() {
                accepted if accepted >= n => Ok(()),
                accepted => Err(accepted),
            },
        )
        .await;
    }

    /// Stops the clients and returns every batch they sent.
    pub async fn stop(self) -> Vec<Batch> {
        self.stop.store(true, Ordering::Relaxed);
        let mut batches = Vec::new();
        for client in self.clients {
            batches.extend(client.await.expect("a load client does not panic"));
        }
        batches
    }
}

/// A client that never reuses a connection (a killed server must not poison the next batch)
/// and gives up on an answer after a while (a paused broker answers within its timeout).
pub fn load_client() -> Client {
    Client::builder()
        .no_proxy()
        .pool_max_idle_per_host(0)
        .timeout(Duration::from_secs(30))
        .build()
        .expect("reqwest client builds")
}

/// Where a load client sends, and as whom.
struct Sender<'a> {
    addr: SocketAddr,
    /// The `Authorization` header's value, if it sends one.
    authorization: Option<&'a str>,
}

impl Sender<'_> {
    async fn send_until(
        &self,
        prefix: &str,
        stop: &AtomicBool,
        accepted: &AtomicUsize,
    ) -> Vec<Batch> {
        let addr = self.addr;
        let client = load_client();
        let mut sent = Vec::new();
        for batch in 0.. {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            let (content_type, encoding, body, lines) =
                batch_body(&format!("{prefix}/{batch}"), batch);
            let mut headers = vec![("content-type", content_type)];
            headers.extend(encoding.map(|encoding| ("content-encoding", encoding)));
            headers.extend(self.authorization.map(|value| ("authorization", value)));
            let sent_at = Instant::now();
            let answer = try_send(&client, addr, Method::POST, "/logs", &headers, body).await;
            let (status, retry_after, answer) = match answer {
                Ok(response) => classify(response).await,
                Err(err) => (0, false, Answer::Unknown(err.to_string())),
            };
            if answer == Answer::Accepted {
                accepted.fetch_add(1, Ordering::Relaxed);
            }
            let lost = status == 0;
            sent.push(Batch {
                lines,
                answer,
                status,
                retry_after,
                sent_at,
                answered_at: Instant::now(),
            });
            if lost {
                // The server is gone (killed): do not spin against a closed port.
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
        sent
    }
}

async fn classify(response: reqwest::Response) -> (u16, bool, Answer) {
    let status = response.status();
    let retry_after = response.headers().contains_key("retry-after");
    let body: Value = response.json().await.unwrap_or(Value::Null);
    let code = body["error"].as_str().unwrap_or_default().to_owned();
    let answer = if status == StatusCode::ACCEPTED {
        Answer::Accepted
    } else if status.is_client_error()
        || (status == StatusCode::SERVICE_UNAVAILABLE && code != "partially_delivered")
    {
        Answer::NothingStored {
            status: status.as_u16(),
            code,
        }
    } else {
        Answer::Unknown(format!("{status} {code}"))
    };
    (status.as_u16(), retry_after, answer)
}

/// Batch `n` of a client: 1 to 40 records over hours 14 and 15, in one of four formats.
pub fn batch_body(
    prefix: &str,
    n: usize,
) -> (&'static str, Option<&'static str>, Vec<u8>, Vec<String>) {
    let records: Vec<(String, String)> = (0..1 + (n * 7) % 40)
        .map(|i| {
            let hour = 14 + (n + i) % 2;
            let timestamp = format!("2025-11-22T{hour}:{:02}:{:02}Z", i % 60, n % 60);
            (timestamp, format!("{prefix}/{i}"))
        })
        .collect();
    let lines = records
        .iter()
        .map(|(timestamp, path)| line(timestamp, path, AGENT))
        .collect();
    let ndjson = || {
        records
            .iter()
            .map(|(timestamp, path)| {
                format!(r#"{{"timestamp":"{timestamp}","path":"{path}","userAgent":"{AGENT}"}}"#)
                    + "\n"
            })
            .collect::<String>()
            .into_bytes()
    };
    match n % 4 {
        0 => {
            let objects: Vec<String> = records
                .iter()
                .map(|(timestamp, path)| {
                    format!(
                        r#"{{"timestamp":"{timestamp}","path":"{path}","userAgent":"{AGENT}"}}"#
                    )
                })
                .collect();
            (
                JSON,
                None,
                format!("[{}]", objects.join(",")).into_bytes(),
                lines,
            )
        }
        1 => {
            let rows: String = records
                .iter()
                .map(|(timestamp, path)| format!("\"{timestamp}\",\"{path}\",\"{AGENT}\"\n"))
                .collect();
            (CSV, None, rows.into_bytes(), lines)
        }
        2 => (NDJSON, None, ndjson(), lines),
        _ => (NDJSON, Some("gzip"), gzip(&ndjson()), lines),
    }
}

/// Every line of the hour files under `dirs`: how often each record is there, and how many
/// lines are not exactly one record.
pub struct Disk {
    counts: HashMap<String, usize>,
    torn: usize,
}

impl Disk {
    pub fn read(dirs: &[&Path]) -> Disk {
        Disk::of_lines(
            dirs.iter()
                .flat_map(|dir| hour_files(dir).into_values().flatten()),
        )
    }

    /// The same count over `lines` read from anywhere (the objects of a bucket).
    pub fn of_lines(lines: impl IntoIterator<Item = String>) -> Disk {
        let mut counts = HashMap::new();
        let mut torn = 0;
        for line in lines {
            if is_one_record(&line) {
                *counts.entry(line).or_default() += 1;
            } else {
                torn += 1;
            }
        }
        Disk { counts, torn }
    }

    /// Lines that are not exactly one record.
    pub fn torn(&self) -> usize {
        self.torn
    }

    /// How often `line` is on disk.
    pub fn count(&self, line: &str) -> usize {
        self.counts.get(line).copied().unwrap_or(0)
    }

    /// Every record on disk, once each.
    pub fn records(&self) -> impl Iterator<Item = &str> {
        self.counts.keys().map(String::as_str)
    }
}

/// Whether `line` is exactly one record object with the three fields in the stored order (a torn
/// line is not JSON; two glued lines are not one object).
fn is_one_record(line: &str) -> bool {
    let Ok(Value::Object(record)) = serde_json::from_str::<Value>(line) else {
        return false;
    };
    let keys: Vec<&str> = record.keys().map(String::as_str).collect();
    record.len() == 3
        && ["path", "timestamp", "userAgent"]
            .iter()
            .all(|key| keys.contains(key) && record[*key].is_string())
        && line.starts_with("{\"timestamp\":")
}

/// The row of a scenario: what `batches` were told against what is on `disk`.
pub fn tally(scenario: &str, runs: usize, batches: &[Batch], disk: &Disk) -> Row {
    let mut row = Row {
        scenario: scenario.to_owned(),
        runs,
        torn: disk.torn(),
        ..Row::default()
    };
    for batch in batches {
        if batch.status >= 500 {
            row.server_errors += 1;
            if !documented_server_error(batch) {
                row.undocumented_5xx += 1;
                eprintln!(
                    "{scenario}: a 5xx the API does not document under faults: {} {:?}",
                    batch.status, batch.answer
                );
            }
        }
        for line in &batch.lines {
            let stored = disk.count(line);
            match &batch.answer {
                Answer::Accepted => row.acknowledged += 1,
                Answer::NothingStored { .. } => {
                    row.refused += 1;
                    if stored > 0 {
                        row.refused_yet_stored += 1;
                    }
                }
                Answer::Unknown(_) => {}
            }
            if stored > 1 {
                row.duplicated += 1;
            }
        }
    }
    let lost = lost_lines(batches, disk);
    row.lost = lost.len();
    for (line, batch) in lost.iter().take(10) {
        eprintln!(
            "{scenario}: lost {line}, of a batch of {} answered {} in {:?}",
            batch.lines.len(),
            batch.status,
            batch.answered_at - batch.sent_at
        );
    }
    let sent: HashSet<&str> = (batches.iter())
        .flat_map(|batch| batch.lines.iter().map(String::as_str))
        .collect();
    let never_sent: Vec<&str> = disk.records().filter(|line| !sent.contains(line)).collect();
    for line in never_sent.iter().take(10) {
        eprintln!("{scenario}: stored, yet no client sent it: {line}");
    }
    row.never_sent = never_sent.len();
    row
}

/// Whether a 5xx answer is one the API documents under faults: 503 with `Retry-After`
/// (nothing stored, or `partially_delivered`), or 500 `outcome_unknown`. Anything else (500
/// `internal`, a 503 without `Retry-After`) fails the scenario.
fn documented_server_error(batch: &Batch) -> bool {
    match batch.status {
        503 => batch.retry_after,
        500 => matches!(&batch.answer, Answer::Unknown(said) if said.ends_with(" outcome_unknown")),
        _ => false,
    }
}

/// The lines of accepted batches that are not on `disk`, each with its batch: what a test prints
/// to tell where a lost record went.
pub fn lost_lines<'a>(batches: &'a [Batch], disk: &Disk) -> Vec<(&'a str, &'a Batch)> {
    (batches.iter())
        .filter(|batch| batch.answer == Answer::Accepted)
        .flat_map(|batch| batch.lines.iter().map(move |line| (line.as_str(), batch)))
        .filter(|(line, _)| disk.count(line) == 0)
        .collect()
}

/// Fails the test if a 503 came without `Retry-After`.
pub fn assert_503s_say_when_to_retry(batches: &[Batch]) {
    let without: Vec<&Batch> = batches
        .iter()
        .filter(|batch| batch.status == 503 && !batch.retry_after)
        .collect();
    assert!(
        without.is_empty(),
        "{} 503 answers without Retry-After, e.g. {:?}",
        without.len(),
        without.first().map(|batch| &batch.answer)
    );
}

/// The 99th percentile of `latencies` by nearest rank: the value at rank ⌈0.99 n⌉ in increasing
/// order (the 198th of 200, index 197). Sorts `latencies`.
pub fn nearest_rank_p99(latencies: &mut [Duration]) -> Duration {
    assert!(
        latencies.len() >= 100,
        "a 99th percentile needs 100 samples at least"
    );
    latencies.sort();
    latencies[(latencies.len() * 99).div_ceil(100) - 1]
}
