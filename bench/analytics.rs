//! Analytics benchmark: one hour file of 7 million realistic lines (~1.2 GB), then
//! (a) a full build of its summary from nothing and (b) a pass after appending 1% more lines.
//!
//! Run with `make bench-analytics` (or `cargo bench --bench analytics`). Knobs (env):
//! `LINES` (default 7000000), `BENCH_DIR` (default a temp dir; the file is deleted afterwards).
//! The original service needed ~14 s of CPU for (a) and the same again for (b) on this machine.

use std::fs::{self, File};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use log_pipeline::analytics::Aggregator;
use log_pipeline::metrics::Metrics;

/// The original's CPU time for one pass over the 7M-line hour (measured on this machine kind).
const ORIGINAL_CPU_SECS: f64 = 14.0;

fn main() {
    // `cargo test --all-targets` builds benches too; only run the measurement under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("analytics benchmark: run it with `cargo bench --bench analytics`");
        return;
    }
    let lines: u64 = std::env::var("LINES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(7_000_000);
    let root = match std::env::var("BENCH_DIR") {
        Ok(dir) => tempfile::tempdir_in(dir).expect("BENCH_DIR is writable"),
        Err(_) => tempfile::tempdir().expect("a temp dir"),
    };
    let logs = root.path().join("logs");
    let analytics = root.path().join("analytics");
    let hour_file = logs.join("2025-11-22/14.log.json");
    fs::create_dir_all(hour_file.parent().unwrap()).unwrap();

    let started = Instant::now();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let size = generate(&hour_file, lines, &mut rng);
    println!(
        "generated {lines} lines, {:.0} MB in {:.1} s ({})",
        size as f64 / 1e6,
        started.elapsed().as_secs_f64(),
        hour_file.display()
    );

    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let aggregator = Aggregator::new(logs.clone(), analytics.clone(), 100_000, Metrics::new());
    let (full, full_cpu) = measure(|| aggregator.run_pass());
    assert_eq!(
        full.0.records, lines,
        "every generated line must be counted"
    );
    report("(a) full build", full.1, full_cpu, lines, size);

    let appended_lines = lines / 100;
    let appended = append(&hour_file, appended_lines, &mut rng);
    let (incremental, incremental_cpu) = measure(|| aggregator.run_pass());
    assert_eq!(incremental.0.records, appended_lines);
    assert_eq!(incremental.0.bytes_read, appended);
    report(
        "(b) +1% appended",
        incremental.1,
        incremental_cpu,
        appended_lines,
        appended,
    );

    // A restart: a new aggregator learns the covered bytes from the summary and reads only new bytes.
    let appended_again = append(&hour_file, appended_lines, &mut rng);
    let restarted = Aggregator::new(logs, analytics, 100_000, Metrics::new());
    let (after_restart, restart_cpu) = measure(|| restarted.run_pass());
    assert_eq!(after_restart.0.bytes_read, appended_again);
    report(
        "(c) +1% after restart",
        after_restart.1,
        restart_cpu,
        appended_lines,
        appended_again,
    );

    println!();
    println!("threads: {threads}; page cache warm (the file was just written)");
    println!(
        "(a) CPU {:.2} s vs original ~{ORIGINAL_CPU_SECS:.0} s: {:.1}x less CPU; wall {:.2} s vs target <= 1.40 s: {}",
        full_cpu.as_secs_f64(),
        ORIGINAL_CPU_SECS / full_cpu.as_secs_f64(),
        full.1.as_secs_f64(),
        verdict(full.1.as_secs_f64() <= 1.4)
    );
    let ratio = incremental.1.as_secs_f64() / full.1.as_secs_f64();
    println!(
        "(b) wall {:.3} s = {:.2}% of (a) vs target <= 5%: {}",
        incremental.1.as_secs_f64(),
        ratio * 100.0,
        verdict(ratio <= 0.05)
    );
}

fn verdict(ok: bool) -> &'static str {
    if ok { "met" } else { "NOT met" }
}

fn report(name: &str, wall: Duration, cpu: Duration, lines: u64, bytes: u64) {
    let secs = wall.as_secs_f64();
    println!(
        "{name:<24} wall {secs:>7.3} s  cpu {:>7.3} s  {:>12.0} lines/s  {:>8.0} MB/s",
        cpu.as_secs_f64(),
        lines as f64 / secs,
        bytes as f64 / 1e6 / secs
    );
}

/// Runs `work`, returning its result with its wall time, and the process CPU time it used.
fn measure<T>(work: impl FnOnce() -> T) -> ((T, Duration), Duration) {
    let cpu_before = process_cpu();
    let started = Instant::now();
    let value = work();
    let wall = started.elapsed();
    ((value, wall), process_cpu().saturating_sub(cpu_before))
}

/// User + system CPU time of this process, from /proc/self/stat (clock ticks of 10 ms).
fn process_cpu() -> Duration {
    let stat = fs::read_to_string("/proc/self/stat").expect("/proc/self/stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .unwrap()
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap();
    Duration::from_millis(ticks * 10)
}

fn generate(path: &Path, lines: u64, rng: &mut Rng) -> u64 {
    let file = File::create(path).unwrap();
    write_lines(file, lines, rng)
}

fn append(path: &Path, lines: u64, rng: &mut Rng) -> u64 {
    let file = fs::OpenOptions::new().append(true).open(path).unwrap();
    write_lines(file, lines, rng)
}

const AGENTS: &[&str] = &[
    "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36",
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Safari/605.1.15",
    "Mozilla/5.0 (iPhone; CPU iPhone OS 17_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/17.1 Mobile/15E148 Safari/604.1",
    "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
    "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.6099.43 Mobile Safari/537.36",
    "Googlebot/2.1 (+http://www.google.com/bot.html)",
    "curl/7.68.0",
    "python-requests/2.31.0",
];

fn write_lines(file: File, lines: u64, rng: &mut Rng) -> u64 {
    let mut out = BufWriter::with_capacity(1 << 20, file);
    let mut written = 0u64;
    let mut line = String::with_capacity(256);
    for _ in 0..lines {
        line.clear();
        let second = rng.below(3600);
        let millis = rng.below(1000);
        let path = match rng.below(10) {
            0 => "/".to_owned(),
            1 => "/home".to_owned(),
            2 => "/login".to_owned(),
            3 => format!("/api/v1/users/{}", rng.below(50_000)),
            4 => format!("/products/{}?ref=email", rng.below(20_000)),
            5 => "/static/app.3f9c2.js".to_owned(),
            6 => format!("/search?q=item{}", rng.below(5_000)),
            7 => "/cart".to_owned(),
            8 => format!("/checkout/step/{}", rng.below(4)),
            _ => format!("/blog/{}/comments", rng.below(2_000)),
        };
        let agent = AGENTS[rng.below(AGENTS.len() as u64) as usize];
        use std::fmt::Write as _;
        let _ = writeln!(
            line,
            r#"{{"timestamp":"2025-11-22T14:{:02}:{:02}.{millis:03}Z","path":"{path}","userAgent":"{agent}"}}"#,
            second / 60,
            second % 60
        );
        out.write_all(line.as_bytes()).unwrap();
        written += line.len() as u64;
    }
    out.flush().unwrap();
    written
}

/// xorshift64*: a fast, deterministic generator for test data.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D) % n
    }
}
