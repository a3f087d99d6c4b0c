//! Budget squatting (issue 28, defect 3): clients that declare a 16 MiB body and send it a byte a
//! second. Before the fix, four of them took the whole default `server.maxInflightBytes` and
//! every normal batch got 503 `overloaded` until they gave up. Here a normal client's latency is
//! measured alone, beside 4 and beside 100 of them (each cut off for its pace opens a new one at
//! once, as a real squatter would), in the same run.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::task::JoinHandle;

use crate::hostile::{assert_p99_near, assert_peak_within, peak_rss, rss, start_v1, stop_within};
use crate::load::{Answer, Batch, Disk, nearest_rank_p99, tally};
use crate::support::{
    DEADLINE, NDJSON, RawAnswer, SlowBody, client, line, ndjson, record, try_post_logs, wait_until,
};

/// Batches the normal client sends in each phase at least: enough for a 99th percentile.
const SAMPLES: usize = 200;

/// Squatters, each holding one slow body at a time until stopped.
struct Squad {
    stop: Arc<AtomicBool>,
    /// Squatters whose body the service is reading now.
    reading: Arc<AtomicUsize>,
    /// Answers the squatters got so far.
    answered: Arc<AtomicUsize>,
    squatters: Vec<JoinHandle<Vec<String>>>,
}

impl Squad {
    fn new() -> Squad {
        Squad {
            stop: Arc::new(AtomicBool::new(false)),
            reading: Arc::new(AtomicUsize::new(0)),
            answered: Arc::new(AtomicUsize::new(0)),
            squatters: Vec::new(),
        }
    }

    /// Adds squatters up to `size` and waits until the service reads a body of each.
    async fn grow_to(&mut self, addr: SocketAddr, size: usize) {
        while self.squatters.len() < size {
            let counts = (self.reading.clone(), self.answered.clone());
            self.squatters
                .push(tokio::spawn(squat(addr, self.stop.clone(), counts)));
        }
        wait_until(&format!("{size} slow bodies being read"), || {
            self.reading.load(Ordering::Relaxed) >= size
        })
        .await;
    }

    /// Answers the squatters got so far.
    fn answered(&self) -> usize {
        self.answered.load(Ordering::Relaxed)
    }

    /// Stops the squatters; returns the error codes of the answers they got.
    async fn stop(self) -> Vec<String> {
        self.stop.store(true, Ordering::Relaxed);
        let mut answers = Vec::new();
        for squatter in self.squatters {
            answers.extend(squatter.await.expect("a squatter does not panic"));
        }
        answers
    }
}

/// One squatter: a 16 MiB body a byte a second, again as soon as it is answered, until `stop`;
/// counts its bodies being read and its answers. Returns the error code of every answer it got.
async fn squat(
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    (reading, answered): (Arc<AtomicUsize>, Arc<AtomicUsize>),
) -> Vec<String> {
    let mut answers = Vec::new();
    let headers = [("content-type", NDJSON)];
    while !stop.load(Ordering::Relaxed) {
        let pace = Duration::from_secs(1);
        match SlowBody::start(addr, &headers, 16 << 20, 0, pace).await {
            Ok(body) => {
                reading.fetch_add(1, Ordering::Relaxed);
                let answer = tokio::select! {
                    answer = body.answer_within(DEADLINE) => Some(answer),
                    () = until(&stop) => None,
                };
                reading.fetch_sub(1, Ordering::Relaxed);
                if let Some(answer) = answer {
                    answered.fetch_add(1, Ordering::Relaxed);
                    answers.push(error_code(&answer));
                }
            }
            Err(refused) => {
                answered.fetch_add(1, Ordering::Relaxed);
                answers.push(error_code(&refused));
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    answers
}

/// The `error` of an answer, or its status when it has none.
fn error_code(answer: &RawAnswer) -> String {
    answer.body["error"]
        .as_str()
        .map_or_else(|| answer.status.to_string(), str::to_owned)
}

/// Completes once `stop` is set.
async fn until(stop: &AtomicBool) {
    while !stop.load(Ordering::Relaxed) {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// The normal client: one-record batches one after the other, each on a new connection, at least
/// [`SAMPLES`] of them and until `enough` says so; returns them with their 99th percentile answer
/// time.
async fn normal_client(
    addr: SocketAddr,
    phase: &str,
    enough: impl Fn() -> bool,
) -> (Vec<Batch>, Duration) {
    let http = client();
    let mut batches = Vec::new();
    let mut latencies = Vec::new();
    for i in 0.. {
        if i >= SAMPLES && enough() {
            break;
        }
        let path = format!("/normal/{phase}/{i}");
        let body = ndjson(&[record("2025-11-22T14:00:00Z", &path, "curl/8.5.0")]);
        let sent_at = Instant::now();
        let answer = try_post_logs(&http, addr, NDJSON, body)
            .await
            .expect("an answer");
        let status = answer.status().as_u16();
        let text = answer.text().await.unwrap_or_default();
        assert_eq!(status, 202, "{phase}: batch {i}: {text}");
        latencies.push(sent_at.elapsed());
        batches.push(Batch {
            lines: vec![line("2025-11-22T14:00:00Z", &path, "curl/8.5.0")],
            answer: Answer::Accepted,
            status,
            retry_after: false,
            sent_at,
            answered_at: Instant::now(),
        });
    }
    (batches, nearest_rank_p99(&mut latencies))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn squatters_do_not_slow_a_normal_client() {
    let _ = rlimit::increase_nofile_limit(u64::MAX);
    let dir = tempfile::tempdir().unwrap();
    let (child, addr) = start_v1(dir.path(), "").await;
    let pid = child.pid();
    let baseline = rss(pid);
    let started = Instant::now();
    let (mut batches, alone) = normal_client(addr, "alone", || true).await;
    let mut squad = Squad::new();
    let mut beside = Vec::new();
    for size in [4, 100] {
        squad.grow_to(addr, size).await;
        // Beside 100, on until each squatter was cut off once and came back: the churn counts.
        let enough = || size < 100 || squad.answered() >= size;
        let (more, p99) = normal_client(addr, &format!("beside-{size}"), enough).await;
        batches.extend(more);
        beside.push((size, p99));
    }
    let peak = peak_rss(pid);
    let answers = squad.stop().await;
    let too_slow = answers
        .iter()
        .filter(|code| *code == "body_too_slow")
        .count();
    eprintln!(
        "normal client p99 (nearest rank): alone {alone:?}, beside 4 slow bodies {:?}, beside \
         100 {:?} ({} batches); squatters answered {} times, {too_slow} of them body_too_slow; \
         peak RSS {} MB (idle {} MB); {:?} in all",
        beside[0].1,
        beside[1].1,
        batches.len() - 2 * SAMPLES,
        answers.len(),
        peak >> 20,
        baseline >> 20,
        started.elapsed()
    );
    for (size, p99) in &beside {
        assert_p99_near(*p99, alone, &format!("{size} squatters"));
    }
    assert!(answers.len() >= 100, "{} answers", answers.len());
    assert_eq!(too_slow, answers.len(), "{answers:?}");
    // The squatters hold what they sent: a few bytes each, nothing near their 16 MiB.
    assert_peak_within(peak, baseline + 100 * (64 << 10) + (64 << 20));
    stop_within(child, Duration::from_secs(5)).await;
    tally(
        "budget squatting: a normal client beside 4 and 100 slow 16 MiB bodies",
        1,
        &batches,
        &Disk::read(&[&dir.path().join("logs")]),
    )
    .record_and_check();
}
