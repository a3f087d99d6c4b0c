//! Decoding benchmark: how long `ingest::decode` takes per record for the ingest benchmark's
//! batch shapes (JSON 100, JSON 1000, CSV 100; bodies made by `bench/gen_payload.py` with its
//! default seed), with its fast paths and without them (`decode_in_full`). In process, one
//! thread, no HTTP and no disk: the figure to watch when changing the decoders, steadier on a
//! shared machine than `bench/ingest.sh` (compare the best rounds of builds run one after the
//! other).
//!
//! Run: `cargo bench --bench decode`. Env: `SECONDS` per measurement (default 2), `SHAPES`
//! (a subset of `json100 json1000 csv100`, space- or comma-separated).

use std::hint::black_box;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

use log_pipeline::config::Config;
use log_pipeline::ingest::{self, Format, Limits};
use log_pipeline::record::EncodedBatch;

const SHAPES: [(&str, &str, usize, Format); 3] = [
    ("json100", "json", 100, Format::JsonArray),
    ("json1000", "json", 1000, Format::JsonArray),
    ("csv100", "csv", 100, Format::Csv),
];

fn main() {
    let seconds: f64 = std::env::var("SECONDS")
        .ok()
        .map_or(2.0, |v| v.parse().expect("SECONDS: a number"));
    let limits = Limits::from_config(&Config::default().ingestion);
    let dir = std::env::temp_dir().join(format!("decode-bench-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("creating the payload dir");
    let wanted = std::env::var("SHAPES").unwrap_or_default();
    let wanted: Vec<&str> = wanted.split([' ', ',']).filter(|s| !s.is_empty()).collect();
    println!("shape      decoder  ns/record: best  median   records/s  MB/s (body)");
    for (name, format_flag, records, format) in SHAPES {
        if !wanted.is_empty() && !wanted.contains(&name) {
            continue;
        }
        let body = payload(&dir, name, format_flag, records);
        for (decoder, decode) in [
            ("fast", ingest::decode as Decode),
            ("in full", ingest::decode_in_full as Decode),
        ] {
            let batch = decode(format, &body, &limits).expect("the payload is a valid batch");
            assert_eq!(batch.records(), records, "{name}: every record decoded");
            let rounds = measure(Duration::from_secs_f64(seconds), || {
                black_box(decode(format, black_box(&body), &limits).map(|b| b.records()))
                    .expect("valid");
            });
            let per_record = |round: Duration| round.as_nanos() as f64 / (CALLS * records) as f64;
            let (best, median) = (per_record(rounds[0]), per_record(rounds[rounds.len() / 2]));
            let mb_s = body.len() as f64 / records as f64 / median * 1e3;
            println!(
                "{name:<10} {decoder:<8} {best:>9.1} {median:>11.1} {:>11.0} {mb_s:>10.1}",
                1e9 / median
            );
        }
    }
    std::fs::remove_dir_all(&dir).expect("removing the payload dir");
}

type Decode = fn(Format, &[u8], &Limits) -> Result<EncodedBatch, ingest::DecodeError>;

/// Calls per timed round.
const CALLS: usize = 50;

/// Times rounds of [`CALLS`] calls of `f` until `budget` is spent; the rounds' durations, fastest
/// first. (The fastest and the median round are what a busy shared machine disturbs least.)
fn measure(budget: Duration, mut f: impl FnMut()) -> Vec<Duration> {
    // Warm-up: caches, branch predictors, the allocator.
    for _ in 0..100 {
        f();
    }
    let (mut rounds, start) = (Vec::new(), Instant::now());
    while start.elapsed() < budget {
        let round = Instant::now();
        for _ in 0..CALLS {
            f();
        }
        rounds.push(round.elapsed());
    }
    rounds.sort();
    rounds
}

/// The body of one shape, as `bench/ingest.sh` makes it.
fn payload(dir: &Path, name: &str, format: &str, records: usize) -> Vec<u8> {
    let out = dir.join(name);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("bench/gen_payload.py");
    let status = Command::new("python3")
        .arg(script)
        .args([
            "--format",
            format,
            "--records",
            &records.to_string(),
            "--out",
        ])
        .arg(&out)
        .status()
        .expect("running python3 bench/gen_payload.py");
    assert!(status.success(), "gen_payload.py failed for {name}");
    std::fs::read(&out).expect("reading the payload")
}
