//! Idempotency-Key benchmark: what keys cost, side by side in one run.
//!
//! (a) Ingest throughput of the release binary (v1, fsync `always`) with and without an
//!     `Idempotency-Key` on every request, alternating runs (no key, key, no key, key) so that the
//!     machine's drift hits both; each run starts a fresh server on a fresh logs directory and
//!     sends unique 100-record JSON batches from `CONCURRENCY` connections for `DURATION`. Every
//!     run is checked: the lines on disk equal the records acknowledged. Also: replays (the same
//!     keyed request again), which store nothing.
//! (b) Memory of the key index: the ledger with `KEYS` keys, measured as the resident-memory
//!     growth of this process (system allocator; the service uses jemalloc), and the journal's
//!     bytes per key.
//!
//! Run with `make bench-idempotency` (or `cargo bench --bench idempotency`). Knobs (env):
//! `DURATION` (seconds per run, default 10), `CONCURRENCY` (default 50), `KEYS` (default
//! 1000000), `BASELINE_BIN` (another build of the service, e.g. one without keys at all: its
//! runs without keys alternate with ours, to show that requests without a key got no slower).

use std::net::SocketAddr;
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use log_pipeline::idempotency::{Fingerprint, Key, Ledger, Retention, Update, now_ms};

const RECORDS: usize = 100;

fn main() {
    if !std::env::args().any(|a| a == "--bench") {
        println!("idempotency benchmark: run it with `cargo bench --bench idempotency`");
        return;
    }
    let env = |name: &str, default: u64| {
        std::env::var(name)
            .ok()
            .and_then(|v| v.parse().ok())
            .unwrap_or(default)
    };
    let duration = Duration::from_secs(env("DURATION", 10));
    let concurrency = env("CONCURRENCY", 50) as usize;
    let keys = env("KEYS", 1_000_000) as usize;

    // (b) first, while this process is small.
    index_memory(keys);

    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .worker_threads(2)
        .build()
        .unwrap();
    println!(
        "\n(a) ingest, v1, fsync always, {RECORDS}-record JSON batches, {concurrency} connections, {} s per run",
        duration.as_secs()
    );
    println!(
        "{:<22} {:>12} {:>12} {:>9} {:>9}",
        "run", "batches/s", "records/s", "p50 ms", "p99 ms"
    );
    let ours = env!("CARGO_BIN_EXE_log-pipeline").to_owned();
    let baseline = std::env::var("BASELINE_BIN").ok();
    let mut plain = Vec::new();
    let mut keyed = Vec::new();
    let mut base = Vec::new();
    for round in 1..=2 {
        if let Some(baseline) = &baseline {
            let result = runtime.block_on(run(baseline, false, false, duration, concurrency));
            result.print(&format!("baseline, no keys #{round}"));
            base.push(result.batches_per_sec);
        }
        for with_key in [false, true] {
            let result = runtime.block_on(run(&ours, with_key, false, duration, concurrency));
            let name = if with_key {
                "with keys"
            } else {
                "without keys"
            };
            result.print(&format!("{name} #{round}"));
            if with_key { &mut keyed } else { &mut plain }.push(result.batches_per_sec);
        }
    }
    let replay = runtime.block_on(run(&ours, true, true, duration, concurrency));
    replay.print("replays (same key)");
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "with keys / without: {:.2} (throughput ratio, mean of {} runs each)",
        mean(&keyed) / mean(&plain),
        plain.len()
    );
    if !base.is_empty() {
        println!(
            "without keys / baseline: {:.2} (throughput ratio, mean of {} runs each)",
            mean(&plain) / mean(&base),
            base.len()
        );
    }
}

/// The ledger with `keys` keys: resident memory and journal bytes per key.
fn index_memory(keys: usize) {
    let before = rss_bytes();
    let mut ledger = Ledger::new(Retention {
        retention: Duration::from_secs(24 * 3600),
        max_keys: keys,
    });
    let now = now_ms();
    let mut journal_bytes = 0;
    for i in 0..keys {
        let key = Key::parse(format!("client-7/batch-{i}").as_bytes()).unwrap();
        let update = Update::whole(key, Fingerprint(i as u128), 100, now);
        if i < 1000 {
            journal_bytes += serde_json::to_vec(&update).unwrap().len() + 1;
        }
        ledger.apply(&update);
    }
    let grown = rss_bytes().saturating_sub(before);
    println!(
        "(b) key index: {keys} keys: {:.1} MB resident ({:.0} bytes per key); journal {:.0} bytes per key ({:.0} MB for {keys})",
        grown as f64 / 1e6,
        grown as f64 / keys as f64,
        journal_bytes as f64 / 1000.0,
        journal_bytes as f64 / 1000.0 * keys as f64 / 1e6,
    );
    assert_eq!(ledger.len(), keys);
}

fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse::<u64>().ok())
        .unwrap()
        * 1024
}

struct RunResult {
    batches_per_sec: f64,
    p50: Duration,
    p99: Duration,
}

impl RunResult {
    fn print(&self, name: &str) {
        println!(
            "{name:<22} {:>12.0} {:>12.0} {:>9.1} {:>9.1}",
            self.batches_per_sec,
            self.batches_per_sec * RECORDS as f64,
            self.p50.as_secs_f64() * 1e3,
            self.p99.as_secs_f64() * 1e3
        );
    }
}

/// One run against a fresh server: `with_key` puts a unique key on every batch; `replay` sends
/// one keyed batch over and over (after it was stored once).
async fn run(
    binary: &str,
    with_key: bool,
    replay: bool,
    duration: Duration,
    concurrency: usize,
) -> RunResult {
    let dir = tempfile::tempdir().unwrap();
    let (mut server, addr) = start_server(binary, dir.path());
    let client = reqwest::Client::builder().no_proxy().build().unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let accepted = Arc::new(AtomicUsize::new(0));
    if replay {
        let (status, _) = post(&client, addr, &body(0, 0), Some("replayed")).await;
        assert_eq!(status, 202);
    }
    let started = Instant::now();
    let workers: Vec<_> = (0..concurrency)
        .map(|worker| {
            let (client, stop, accepted) = (client.clone(), stop.clone(), accepted.clone());
            tokio::spawn(async move {
                let mut latencies = Vec::new();
                for n in 0.. {
                    if stop.load(Ordering::Relaxed) {
                        break;
                    }
                    let (body, key) = if replay {
                        (body(0, 0), Some("replayed".to_owned()))
                    } else {
                        let key = with_key.then(|| format!("bench-{worker}-{n}"));
                        (body(worker, n), key)
                    };
                    let sent = Instant::now();
                    let (status, replayed) = post(&client, addr, &body, key.as_deref()).await;
                    assert_eq!(status, 202, "the benchmark expects every batch accepted");
                    assert_eq!(replayed, replay);
                    latencies.push(sent.elapsed());
                    accepted.fetch_add(1, Ordering::Relaxed);
                }
                latencies
            })
        })
        .collect();
    tokio::time::sleep(duration).await;
    stop.store(true, Ordering::Relaxed);
    let mut latencies = Vec::new();
    for worker in workers {
        latencies.extend(worker.await.unwrap());
    }
    let elapsed = started.elapsed();
    stop_server(&mut server);
    // Every acknowledged record is on disk, once per stored batch.
    let stored = lines_on_disk(&dir.path().join("logs"));
    let expected = if replay {
        RECORDS
    } else {
        latencies.len() * RECORDS
    };
    assert_eq!(
        stored, expected,
        "lines on disk against records acknowledged"
    );
    latencies.sort();
    let at = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];
    RunResult {
        batches_per_sec: latencies.len() as f64 / elapsed.as_secs_f64(),
        p50: at(0.50),
        p99: at(0.99),
    }
}

/// A JSON array of 100 unique records (two hours).
fn body(worker: usize, n: usize) -> Vec<u8> {
    let records: Vec<String> = (0..RECORDS)
        .map(|i| {
            format!(
                r#"{{"timestamp":"2025-11-22T{}:{:02}:00Z","path":"/bench/{worker}/{n}/{i}","userAgent":"Mozilla/5.0 (X11; Linux x86_64) bench"}}"#,
                14 + i % 2,
                i % 60
            )
        })
        .collect();
    format!("[{}]", records.join(",")).into_bytes()
}

async fn post(
    client: &reqwest::Client,
    addr: SocketAddr,
    body: &[u8],
    key: Option<&str>,
) -> (u16, bool) {
    let mut request = client
        .post(format!("http://{addr}/logs"))
        .header("content-type", "application/json")
        .body(body.to_vec());
    if let Some(key) = key {
        request = request.header("idempotency-key", key);
    }
    let response = request.send().await.expect("an answer");
    let replayed = response.headers().contains_key("idempotent-replayed");
    (response.status().as_u16(), replayed)
}

fn start_server(binary: &str, dir: &Path) -> (Child, SocketAddr) {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let addr: SocketAddr = format!("127.0.0.1:{port}").parse().unwrap();
    let child = Command::new(binary)
        .args(["--addr", &addr.to_string()])
        .args(["--logs-dir", dir.join("logs").to_str().unwrap()])
        .args(["--analytics-dir", dir.join("analytics").to_str().unwrap()])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("the service starts");
    let deadline = Instant::now() + Duration::from_secs(30);
    while std::net::TcpStream::connect(addr).is_err() {
        assert!(Instant::now() < deadline, "the service did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    (child, addr)
}

fn stop_server(child: &mut Child) {
    let _ = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status();
    let _ = child.wait();
}

fn lines_on_disk(logs: &Path) -> usize {
    log_pipeline::layout::hour_files(logs)
        .unwrap()
        .into_iter()
        .map(|(_, path)| {
            std::fs::read(&path)
                .unwrap()
                .iter()
                .filter(|b| **b == b'\n')
                .count()
        })
        .sum()
}
