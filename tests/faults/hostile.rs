//! Hostile and unlucky clients: the five reproductions of issue 9 (each failed on the code before
//! the fix), and slow or idle clients next to a normal one.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::crash::write_v1_config;
use crate::load::{Answer, Batch, Disk, nearest_rank_p99, tally};
use crate::summary::Row;
use crate::support::{
    CSV, ChildGuard, JSON, NDJSON, client, hour_files, line, ndjson, record, start_binary,
    try_post_logs,
};

/// Starts the binary with a v1 configuration (`extra` YAML lines under the top level).
pub(crate) async fn start_v1(dir: &Path, extra: &str) -> (ChildGuard, SocketAddr) {
    let config = write_v1_config(dir, extra);
    let mut child = start_binary(dir, &config);
    let addr = child.listening_addr().await;
    (child, addr)
}

/// Stops the binary with SIGTERM and expects exit 0 within `within`.
pub(crate) async fn stop_within(mut child: ChildGuard, within: Duration) {
    let started = Instant::now();
    child.terminate();
    let status = child.wait_exit().await;
    assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
    assert!(
        started.elapsed() <= within,
        "shutdown took {:?}",
        started.elapsed()
    );
}

/// The peak resident memory of a process so far, in bytes (`VmHWM`).
pub(crate) fn peak_rss(pid: u32) -> u64 {
    proc_status_kib(pid, "VmHWM:") * 1024
}

/// The resident memory of a process now, in bytes (`VmRSS`).
pub(crate) fn rss(pid: u32) -> u64 {
    proc_status_kib(pid, "VmRSS:") * 1024
}

/// Resets a process's peak resident memory (`VmHWM`) to what it holds now, so that a later
/// [`peak_rss`] measures one phase of a scenario (`/proc/<pid>/clear_refs`, value 5).
pub fn reset_peak_rss(pid: u32) {
    std::fs::write(format!("/proc/{pid}/clear_refs"), "5").expect("reset the peak RSS");
}

fn proc_status_kib(pid: u32, field: &str) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("/proc status");
    status
        .lines()
        .find_map(|line| line.strip_prefix(field))
        .and_then(|value| value.trim().strip_suffix("kB"))
        .and_then(|kib| kib.trim().parse().ok())
        .unwrap_or_else(|| panic!("no {field} in /proc/{pid}/status"))
}

/// Fails the test if the peak resident memory is above `bound` (both in bytes).
pub(crate) fn assert_peak_within(peak: u64, bound: u64) {
    assert!(
        peak <= bound,
        "peak RSS {} MB above the bound {} MB",
        peak >> 20,
        bound >> 20
    );
}

/// Fails the test if a client's p99 `beside` a load is more than 5× (+50 ms) its p99 `alone`.
pub(crate) fn assert_p99_near(p99: Duration, alone: Duration, beside: &str) {
    assert!(
        p99 <= alone * 5 + Duration::from_millis(50),
        "p99 {p99:?} beside {beside} vs {alone:?} alone"
    );
}

/// Lines in every hour file under `logs`.
fn stored_lines(logs: &Path) -> usize {
    hour_files(logs).values().map(Vec::len).sum()
}

/// What a hostile scenario saw, counted as it happens: the times its fault was applied, the
/// records answered 202 and the 5xx answers. Its row says what was seen, never typed-in numbers.
#[derive(Debug, Default)]
struct Seen {
    runs: usize,
    acknowledged: usize,
    server_errors: usize,
}

impl Seen {
    /// The fault was applied once more.
    fn run(&mut self) {
        self.runs += 1;
    }

    /// An answer with `status` to a batch of `records`.
    fn answer(&mut self, status: u16, records: usize) {
        if status == 202 {
            self.acknowledged += records;
        }
        if status >= 500 {
            self.server_errors += 1;
        }
    }

    fn add(&mut self, other: Seen) {
        self.runs += other.runs;
        self.acknowledged += other.acknowledged;
        self.server_errors += other.server_errors;
    }

    /// The scenario's row (no records to check on disk beyond what the test asserted).
    fn record(self, scenario: &str) {
        Row {
            scenario: scenario.to_owned(),
            runs: self.runs,
            acknowledged: self.acknowledged,
            server_errors: self.server_errors,
            ..Row::default()
        }
        .record_and_check();
    }
}

/// The status code of an HTTP/1.1 status line (0 if it has none).
fn status_of(line: &str) -> u16 {
    line.split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0)
}

/// Reproduction 1: 300 connections that send nothing. Before the fix they were all still open
/// 8 s later (HTTP/1-or-2 detection waited for bytes without a timer).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn silent_connections_are_closed_after_the_header_timeout() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start_v1(dir.path(), "  readHeaderTimeout: 1s\n").await;
    let opened = Instant::now();
    let mut silent = Vec::new();
    for _ in 0..300 {
        silent.push(TcpStream::connect(addr).await.expect("connect"));
    }
    let closed: Vec<_> = silent
        .into_iter()
        .map(|mut stream| {
            tokio::spawn(async move {
                let mut byte = [0u8; 1];
                matches!(
                    tokio::time::timeout(Duration::from_secs(8), stream.read(&mut byte)).await,
                    Ok(Ok(0) | Err(_))
                )
            })
        })
        .collect();
    let mut seen = Seen::default();
    for connection in closed {
        assert!(
            connection.await.unwrap(),
            "a silent connection was still open 8 s later"
        );
        seen.run();
    }
    assert!(opened.elapsed() < Duration::from_secs(8));
    // The service still serves, and silent connections do not hold its shutdown.
    let batch = ndjson(&[record(
        "2025-11-22T14:00:00Z",
        "/after-silence",
        "curl/8.5.0",
    )]);
    let answer = try_post_logs(&client(), addr, NDJSON, batch)
        .await
        .expect("an answer");
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    seen.answer(answer.status().as_u16(), 1);
    let mut more = Vec::new();
    for _ in 0..50 {
        more.push(TcpStream::connect(addr).await.expect("connect"));
    }
    stop_within(child, Duration::from_secs(3)).await;
    seen.record("300 silent connections closed after readHeaderTimeout");
}

/// Reproduction 2: one batch over 73 hours, one of which cannot be opened. Before the fix: 503
/// "nothing stored" while 9 lines stayed on disk (files of the group were closed mid-group).
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_over_many_hours_is_stored_whole_or_not_at_all() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir_all(dir.path().join("logs/2025-01-04/00.log.json")).unwrap();
    let (child, addr) = start_v1(dir.path(), "").await;
    let records: Vec<Value> = (0..73)
        .map(|h| {
            let ts = format!("2025-01-{:02}T{:02}:00:00Z", 1 + h / 24, h % 24);
            record(&ts, &format!("/hours/{h}"), "curl/8.5.0")
        })
        .collect();
    let body = serde_json::to_vec(&records).unwrap();
    let answer = try_post_logs(&client(), addr, JSON, body)
        .await
        .expect("an answer");
    assert_eq!(answer.status(), StatusCode::SERVICE_UNAVAILABLE);
    let mut seen = Seen::default();
    seen.run();
    seen.answer(answer.status().as_u16(), records.len());
    let body: Value = answer.json().await.unwrap();
    assert_eq!(body["error"], "storage_unavailable", "{body}");
    assert_eq!(
        stored_lines(&dir.path().join("logs")),
        0,
        "nothing of it stays on disk"
    );
    stop_within(child, Duration::from_secs(10)).await;
    seen.record("a batch over 73 hours, one unwritable: all or nothing");
}

/// Reproduction 3: 10,000 records in 10,000 hours with `server.requestTimeout: 5s`. Before the
/// fix: 503 `timeout` (grouping was quadratic in hours), and afterwards all 10,000 lines on disk;
/// a 1-record batch sent meanwhile also got 503 after 5 s. Now the batch is refused at once
/// (413 `too_many_hours`), and batches at the limit do not stall small ones.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_batch_over_too_many_hours_is_refused_and_big_batches_do_not_stall_small_ones() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start_v1(dir.path(), "  requestTimeout: 5s\n").await;
    let http = client();
    let hours = |n: usize, prefix: &str| -> Vec<u8> {
        let records: Vec<Value> = (0..n)
            .map(|h| {
                let ts = chrono::DateTime::from_timestamp(631_152_000 + h as i64 * 3600, 0)
                    .unwrap()
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
                record(&ts, &format!("{prefix}/{h}"), "curl/8.5.0")
            })
            .collect();
        serde_json::to_vec(&records).unwrap()
    };
    let small = |path: &str| ndjson(&[record("2025-11-22T14:00:00Z", path, "curl/8.5.0")]);
    let big = tokio::spawn({
        let http = http.clone();
        let body = hours(10_000, "/10k");
        async move {
            let started = Instant::now();
            let answer = try_post_logs(&http, addr, JSON, body)
                .await
                .expect("an answer");
            (
                answer.status(),
                answer.json::<Value>().await.unwrap(),
                started.elapsed(),
            )
        }
    });
    let started = Instant::now();
    let one = try_post_logs(&http, addr, NDJSON, small("/one"))
        .await
        .expect("an answer");
    assert_eq!(one.status(), StatusCode::ACCEPTED);
    let mut seen = Seen::default();
    seen.run();
    seen.answer(one.status().as_u16(), 1);
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let (status, body, took) = big.await.unwrap();
    seen.answer(status.as_u16(), 10_000);
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert_eq!(body["error"], "too_many_hours", "{body}");
    assert!(took < Duration::from_secs(5), "{took:?}");
    assert_eq!(
        stored_lines(&dir.path().join("logs")),
        1,
        "only the 1-record batch"
    );

    // Batches at the limit (168 hours each) in a loop, while a small client measures.
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let loader = tokio::spawn({
        let (http, stop) = (http.clone(), stop.clone());
        async move {
            let mut seen = Seen::default();
            for round in 0.. {
                if stop.load(std::sync::atomic::Ordering::Relaxed) {
                    break;
                }
                let body = hours(168, &format!("/week/{round}"));
                let answer = try_post_logs(&http, addr, JSON, body)
                    .await
                    .expect("an answer");
                assert_eq!(answer.status(), StatusCode::ACCEPTED);
                seen.answer(answer.status().as_u16(), 168);
            }
            seen
        }
    });
    let mut latencies = Vec::new();
    for i in 0..100 {
        let started = Instant::now();
        let answer = try_post_logs(&http, addr, NDJSON, small(&format!("/small/{i}")))
            .await
            .expect("an answer");
        assert_eq!(answer.status(), StatusCode::ACCEPTED);
        seen.answer(answer.status().as_u16(), 1);
        latencies.push(started.elapsed());
    }
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let beside = loader.await.unwrap();
    let weeks = beside.acknowledged / 168;
    seen.add(beside);
    let p99 = nearest_rank_p99(&mut latencies);
    eprintln!(
        "small batches beside {weeks} week-long batches: p50 {:?}, p99 {p99:?}",
        latencies[49]
    );
    assert!(weeks > 0);
    assert!(
        p99 < Duration::from_secs(1),
        "small batches stalled: p99 {p99:?}"
    );
    stop_within(child, Duration::from_secs(10)).await;
    seen.record("10,000-hour batch refused (413); 168-hour batches do not stall small ones");
}

/// Reproduction 4: 80 concurrent valid 15 MB CSV bodies. Before the fix the process reached
/// 844 MB (bodies were read and decoded before any budget was checked). Now request bodies in
/// flight are bounded by `server.maxInflightBytes` (503 `overloaded` beyond: before the body is
/// read when its length is more than is free, else when its next bytes do not fit) and memory
/// stays within the documented bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_huge_bodies_stay_within_the_memory_bound() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start_v1(dir.path(), "ingestion:\n  maxRecords: 1000000\n").await;
    let pid = child.pid();
    let baseline = rss(pid);
    let bodies: Vec<(Vec<u8>, Vec<String>)> = (0..80)
        .map(|request| {
            let mut csv = String::with_capacity(15 << 20);
            let mut lines = Vec::new();
            let mut i = 0;
            while csv.len() < 15_000_000 {
                let path = format!("/mem/{request}/{i}");
                csv.push_str(&format!("2025-11-22T14:00:00Z,{path},\"Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)\"\n"));
                lines.push(line("2025-11-22T14:00:00Z", &path, "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko)"));
                i += 1;
            }
            (csv.into_bytes(), lines)
        })
        .collect();
    let senders: Vec<_> = bodies
        .into_iter()
        .map(|(body, lines)| {
            tokio::spawn(async move {
                let http = client();
                let sent_at = Instant::now();
                let answer = try_post_logs(&http, addr, CSV, body).await;
                let (status, code) = match answer {
                    Ok(answer) => {
                        let status = answer.status().as_u16();
                        let body: Value = answer.json().await.unwrap_or(Value::Null);
                        (
                            status,
                            body["error"].as_str().unwrap_or_default().to_owned(),
                        )
                    }
                    Err(err) => (0, err.to_string()),
                };
                let answer = match status {
                    202 => Answer::Accepted,
                    503 => Answer::NothingStored { status, code },
                    _ => Answer::Unknown(format!("{status} {code}")),
                };
                Batch {
                    lines,
                    answer,
                    status,
                    retry_after: status == 503,
                    sent_at,
                    answered_at: Instant::now(),
                }
            })
        })
        .collect();
    let mut batches = Vec::new();
    for sender in senders {
        batches.push(sender.await.unwrap());
    }
    let peak = peak_rss(pid);
    // The documented bound: what the budgets allow, plus 64 KiB of buffer per connection, plus
    // the idle process and allocator slack.
    let bound = baseline + (64 << 20) + (64 << 20) + 80 * (64 << 10) + (64 << 20);
    eprintln!(
        "80 x 15 MB CSV bodies: peak RSS {} MB (idle {} MB, bound {} MB)",
        peak >> 20,
        baseline >> 20,
        bound >> 20
    );
    assert_peak_within(peak, bound);
    for batch in &batches {
        assert!(
            matches!(&batch.answer, Answer::Accepted)
                || matches!(&batch.answer, Answer::NothingStored { status: 503, code } if code == "overloaded"),
            "{:?}",
            batch.answer
        );
    }
    assert!(batches.iter().any(|b| b.answer == Answer::Accepted));
    assert!(
        batches.iter().any(|b| b.answer != Answer::Accepted),
        "the budget refused some"
    );
    stop_within(child, Duration::from_secs(30)).await;
    tally(
        "80 concurrent 15 MB bodies: memory bounded",
        1,
        &batches,
        &Disk::read(&[&dir.path().join("logs")]),
    )
    .record_and_check();
}

/// Sends `head` then all of `body` before reading the answer (what Python's urllib does), and
/// returns the answer's status line and body. Before the fix, an early 413 closed the connection
/// while the client was still sending: the client saw `Broken pipe`, never the 413.
async fn post_whole_then_read(addr: SocketAddr, head: &str, body: &[u8]) -> (String, Value) {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream
        .write_all(head.as_bytes())
        .await
        .expect("send the head");
    if !body.is_empty() {
        stream
            .write_all(body)
            .await
            .expect("send the whole body (no reset)");
    }
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer))
        .await
        .expect("an answer in time")
        .expect("read the answer");
    let answer = String::from_utf8_lossy(&answer).into_owned();
    let (head, body) = answer.split_once("\r\n\r\n").unwrap_or((&answer, ""));
    let status = head.lines().next().unwrap_or_default().to_owned();
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Reproduction 5: a 21.6 MB body over the 16 MiB limit, sent whole before the answer is read.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_oversized_body_gets_its_413_whatever_the_client_does() {
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start_v1(dir.path(), "").await;
    let record =
        r#"{"timestamp":"2025-11-22T14:00:00Z","path":"/big","userAgent":"python-urllib/3.11"}"#;
    let mut body = String::from("[");
    while body.len() < 21_600_000 {
        body.push_str(record);
        body.push(',');
    }
    body.push_str(record);
    body.push(']');
    let head = |expect: &str| {
        format!(
            "POST /logs HTTP/1.1\r\nHost: {addr}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n{expect}Connection: close\r\n\r\n",
            body.len()
        )
    };
    let mut seen = Seen::default();
    for _ in 0..3 {
        let (status, answer) = post_whole_then_read(addr, &head(""), body.as_bytes()).await;
        assert!(status.starts_with("HTTP/1.1 413"), "{status}");
        assert_eq!(answer["error"], "body_too_large", "{answer}");
        seen.run();
        seen.answer(status_of(&status), 1);
    }
    // A client that asks first is answered before it sends anything.
    let (status, answer) = post_whole_then_read(addr, &head("Expect: 100-continue\r\n"), b"").await;
    assert!(status.starts_with("HTTP/1.1 413"), "{status}");
    assert_eq!(answer["error"], "body_too_large", "{answer}");
    seen.run();
    seen.answer(status_of(&status), 1);
    assert_eq!(stored_lines(&dir.path().join("logs")), 0);
    stop_within(child, Duration::from_secs(10)).await;
    seen.record("21.6 MB body: 413 read by a client that sends it whole (3 of 3)");
}

/// 1,000 slow or idle clients (half silent, half sending their request head a byte at a time)
/// while a normal client sends batches: its latency stays close to its unloaded latency, and
/// memory within the bound.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_thousand_slow_clients_do_not_slow_a_normal_one() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start_v1(dir.path(), "").await;
    let pid = child.pid();
    let baseline = rss(pid);
    let http = client();
    let records: Vec<Value> = (0..100)
        .map(|i| {
            record(
                "2025-11-22T14:00:00Z",
                &format!("/normal/{i}"),
                "curl/8.5.0",
            )
        })
        .collect();
    let body = ndjson(&records);
    let mut seen = Seen::default();
    let mut measure = async |phase: &str| {
        let mut latencies = Vec::new();
        for _ in 0..200 {
            let started = Instant::now();
            let answer = try_post_logs(&http, addr, NDJSON, body.clone())
                .await
                .expect("an answer");
            assert_eq!(answer.status(), StatusCode::ACCEPTED, "{phase}");
            seen.answer(answer.status().as_u16(), records.len());
            latencies.push(started.elapsed());
        }
        nearest_rank_p99(&mut latencies)
    };
    let unloaded = measure("unloaded").await;
    let mut slow = Vec::new();
    for i in 0..1000 {
        let stream = TcpStream::connect(addr).await.expect("connect");
        if i % 2 == 0 {
            slow.push(tokio::spawn(async move {
                let _held = stream;
                tokio::time::sleep(Duration::from_secs(30)).await;
            }));
        } else {
            slow.push(tokio::spawn(async move {
                let mut stream = stream;
                for byte in
                    b"POST /logs HTTP/1.1\r\nHost: slow\r\nContent-Type: application/x-ndjson\r\n"
                {
                    if stream.write_all(&[*byte]).await.is_err() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
            }));
        }
    }
    let loaded = measure("beside 1,000 slow clients").await;
    let peak = peak_rss(pid);
    for task in &slow {
        task.abort();
    }
    eprintln!(
        "normal client p99: unloaded {unloaded:?}, beside 1,000 slow clients {loaded:?}; peak RSS {} MB",
        peak >> 20
    );
    assert_p99_near(loaded, unloaded, "1,000 slow clients");
    assert_peak_within(peak, baseline + 1000 * (64 << 10) + (64 << 20));
    stop_within(child, Duration::from_secs(5)).await;
    seen.run();
    seen.record("1,000 slow or idle clients beside a normal one");
}
