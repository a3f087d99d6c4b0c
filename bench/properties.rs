//! The property tests of `tests/properties/` with many more cases: 100,000 in all by default,
//! shared evenly by the properties. Prints how many cases each property ran and how long it took.
//!
//! Run with `make bench-properties` (or `cargo bench --bench properties`). Knobs (env):
//! `CASES` (default 100000, in all), `PROPTEST_RNG_SEED` (the seed a run printed: replays it; by
//! default the seed is random).

#[path = "../tests/properties/oracle.rs"]
mod oracle;
#[path = "../tests/properties/property.rs"]
mod property;
#[path = "../tests/properties/strategies.rs"]
mod strategies;

use std::time::{Instant, SystemTime, UNIX_EPOCH};

use proptest::test_runner::{Config, RngSeed, TestRunner};

fn main() {
    // `cargo test --all-targets` builds benches too; only run them under `cargo bench`.
    if !std::env::args().any(|a| a == "--bench") {
        println!("properties benchmark: run it with `cargo bench --bench properties`");
        return;
    }
    let total: u32 = std::env::var("CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100_000);
    let cases = total.div_ceil(property::ALL.len() as u32);
    // Chosen here rather than by proptest, so that a failure can be replayed with it.
    let seed = match Config::default().rng_seed {
        RngSeed::Fixed(seed) => seed,
        RngSeed::Random => SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .expect("a clock after 1970")
            .as_nanos() as u64,
    };
    println!("seed {seed} (PROPTEST_RNG_SEED={seed} replays this run)");
    let started = Instant::now();
    let mut failed = Vec::new();
    for property in &property::ALL {
        let mut runner = TestRunner::new(Config {
            cases,
            rng_seed: RngSeed::Fixed(seed),
            failure_persistence: None,
            ..Config::default()
        });
        let began = Instant::now();
        let outcome = (property.check)(&mut runner);
        let seconds = began.elapsed().as_secs_f64();
        let verdict = match &outcome {
            Ok(()) => "ok",
            Err(_) => "FAILED",
        };
        println!(
            "{:<46} {cases:>7} cases {seconds:>7.2} s {:>9.0} cases/s  {verdict}",
            property.name,
            f64::from(cases) / seconds
        );
        if let Err(failure) = outcome {
            failed.push(format!("{}: {failure}", property.name));
        }
    }
    println!(
        "{:<46} {:>7} cases {:>7.2} s",
        "all",
        cases as usize * property::ALL.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
