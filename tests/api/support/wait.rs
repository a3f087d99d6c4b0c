//! Waiting without sleeping and hoping: every wait polls its condition until a deadline, then
//! fails the test naming what it waited for.

use std::time::{Duration, Instant};

/// Longest any single wait in the suite may take before the test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

/// How often waits re-check their condition.
pub const POLL: Duration = Duration::from_millis(10);

/// Polls `condition` until it holds; fails the test with `what` after [`DEADLINE`].
pub async fn wait_until(what: &str, mut condition: impl FnMut() -> bool) {
    let deadline = Instant::now() + DEADLINE;
    while !condition() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(POLL).await;
    }
}

/// Polls `probe` until it returns `Ok`, and returns that value; fails the test with `what` and the
/// last `Err` after [`DEADLINE`].
pub async fn poll<T, E: std::fmt::Debug>(
    what: &str,
    probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    poll_within(DEADLINE, POLL, what, probe).await
}

/// [`poll`] with its own deadline and interval (e.g. [`KAFKA_DEADLINE`] and [`KAFKA_POLL`] for
/// waits on Kafka, whose probes ask the broker or scrape the service).
pub async fn poll_within<T, E: std::fmt::Debug>(
    timeout: Duration,
    interval: Duration,
    what: &str,
    mut probe: impl AsyncFnMut() -> Result<T, E>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        match probe().await {
            Ok(value) => return value,
            Err(last) => assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; last seen: {last:?}"
            ),
        }
        tokio::time::sleep(interval).await;
    }
}
