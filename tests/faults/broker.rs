//! The Kafka broker paused (SIGSTOP) for 30 s under load, then resumed: while it is silent,
//! batches are refused with 503 and `Retry-After` within `kafka.produceTimeout` (or, for records
//! already sent to it, 500 `outcome_unknown`), never acknowledged; after it resumes the service
//! recovers without a restart and without a failed request; nothing acknowledged is lost,
//! nothing is duplicated, and nothing of a batch refused as "nothing stored" is stored.

use std::time::{Duration, Instant};

use crate::load::{Answer, Batch, Disk, Load, assert_503s_say_when_to_retry, tally};
use crate::support::{
    KAFKA_DEADLINE, KAFKA_POLL, Names, OwnBroker, mark_ends, poll_within, start_binary,
    tansu_binary, wait_joined, wait_stored_to, write_v2_config,
};

const PAUSE: Duration = Duration::from_secs(30);
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_paused_30s_under_load() {
    let tansu = tansu_binary();
    let broker = OwnBroker::start(&tansu).await;
    let names = Names::new("faults-pause");
    let dir = tempfile::tempdir().unwrap();
    let config = write_v2_config(
        dir.path(),
        &broker.addr,
        &names,
        "  flushSize: 64\n  flushInterval: 20ms\n",
    );
    // The default session timeout (45 s) rides out the 30 s pause: the consumer stays in its
    // group (see `kafka.sessionTimeout` for what tansu does to a group otherwise).
    let yaml = std::fs::read_to_string(&config)
        .unwrap()
        .replace("  sessionTimeout: 6s\n", "")
        + &format!("  produceTimeout: {}s\n", PRODUCE_TIMEOUT.as_secs());
    std::fs::write(&config, yaml).unwrap();
    let mut child = start_binary(dir.path(), &config);
    let addr = child.listening_addr().await;
    wait_joined(&[addr]).await;

    let load = Load::start(addr, 4, "/pause");
    poll_until_accepted(&load, 20).await;

    broker.child.signal("STOP");
    let paused_at = Instant::now();
    tokio::time::sleep(PAUSE).await;
    let accepted_while_paused = load.accepted();
    broker.child.signal("CONT");
    let resumed_at = Instant::now();
    // No restart, no operator: batches are accepted again once the broker answers.
    poll_until_accepted(&load, accepted_while_paused + 20).await;
    let batches = load.stop().await;

    let (marks, ends) = mark_ends(&broker.addr, &names.topic).await;
    let logs = dir.path().join("logs");
    wait_stored_to(&[&logs], &names.topic, &ends).await;
    let mut all = batches.clone();
    all.push(Batch::accepted_now(marks.lines));

    // While the broker was silent (after the first produce timeout), nothing was acknowledged,
    // and every refusal came within the produce timeout (plus the probe's second).
    let settled = paused_at + PRODUCE_TIMEOUT + Duration::from_secs(3);
    let during: Vec<&Batch> = batches
        .iter()
        .filter(|b| b.sent_at >= settled && b.answered_at <= resumed_at)
        .collect();
    assert!(
        !during.is_empty(),
        "batches were sent while the broker was paused"
    );
    for batch in &during {
        assert_ne!(
            batch.answer,
            Answer::Accepted,
            "acknowledged while the broker was paused"
        );
        let waited = batch.answered_at - batch.sent_at;
        assert!(
            waited <= PRODUCE_TIMEOUT + Duration::from_secs(2),
            "a refusal took {waited:?}: {:?}",
            batch.answer
        );
    }
    assert!(
        during.iter().any(|b| matches!(&b.answer, Answer::NothingStored { status: 503, code } if code == "storage_unavailable")),
        "503 storage_unavailable while paused"
    );
    assert_503s_say_when_to_retry(&batches);
    tally(
        "Kafka broker paused 30 s under load (v2)",
        1,
        &all,
        &Disk::read(&[&logs]),
    )
    .record_and_check();

    child.terminate();
    let status = child.wait_exit().await;
    assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
}

/// Waits until `load` has had `count` batches accepted in all.
async fn poll_until_accepted(load: &Load, count: usize) {
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        &format!("{count} batches acknowledged"),
        async || match load.accepted() {
            n if n >= count => Ok(()),
            n => Err(n),
        },
    )
    .await;
}
