//! The Kafka broker killed (`kill -9`) under load and started again on the same port, as a rolling
//! restart does, twice: with its storage kept (tansu on SQLite) and with it lost (tansu in memory:
//! every topic, committed offset, group and producer id gone). Without a restart of its own, the
//! service must take batches again within seconds of the broker's return, and `/ready` must say
//! so only once a produce can succeed.
//!
//! What may be lost: with the storage kept, nothing acknowledged. With it lost, only what the
//! broker lost: records it had acknowledged and the consumers had not yet stored when it died (the
//! hour files are read at the kill to know which). Every record acknowledged after the restart is
//! stored exactly once, including those that land at offsets the old topic had already used.

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::load::{Answer, Batch, Disk, Load, lost_lines, tally};
use crate::support::{
    BrokerStorage, KAFKA_DEADLINE, KAFKA_POLL, Names, OwnBroker, mark_ends, poll_within,
    start_binary, tansu_binary, wait_joined, wait_stored_to, write_v2_config,
};

/// Concurrent clients.
const CLIENTS: usize = 4;
/// Batches acknowledged before the broker is killed.
const BATCHES_BEFORE_KILL: usize = 40;
/// How long the broker stays dead: long enough for the probe to call it silent.
const DOWN: Duration = Duration::from_secs(5);
/// How long the service may take, from the broker's return, to acknowledge batches again.
const RECOVERY_BOUND: Duration = Duration::from_secs(15);
const PRODUCE_TIMEOUT: Duration = Duration::from_secs(2);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_restarted_with_its_storage_kept() {
    let storage = tempfile::tempdir().unwrap();
    restart_under_load(BrokerStorage::Sqlite(storage.path().to_owned())).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn broker_restarted_with_its_storage_lost() {
    restart_under_load(BrokerStorage::Memory).await;
}

async fn restart_under_load(storage: BrokerStorage) {
    let kept = matches!(storage, BrokerStorage::Sqlite(_));
    let tansu = tansu_binary();
    let broker = OwnBroker::start_with(&tansu, crate::support::free_port(), &storage).await;
    let port = broker.port;
    let names = Names::new(if kept {
        "faults-restart-kept"
    } else {
        "faults-restart-lost"
    });
    let dir = tempfile::tempdir().unwrap();
    let config = write_v2_config(
        dir.path(),
        &broker.addr,
        &names,
        "  flushSize: 64\n  flushInterval: 20ms\n",
    );
    let yaml = std::fs::read_to_string(&config).unwrap()
        + &format!("  produceTimeout: {}s\n", PRODUCE_TIMEOUT.as_secs());
    std::fs::write(&config, yaml).unwrap();
    let mut child = start_binary(dir.path(), &config);
    let addr = child.listening_addr().await;
    wait_joined(&[addr]).await;
    let logs = dir.path().join("logs");

    let load = Load::start(addr, CLIENTS, if kept { "/kept" } else { "/lost" });
    load.wait_accepted(BATCHES_BEFORE_KILL).await;
    broker.kill();
    let killed_at = Instant::now();
    // What the consumers had stored when the broker died: anything acknowledged and not here
    // is what the broker alone held.
    let at_kill = Disk::read(&[&logs]);
    // While it is dead, `/ready` says so.
    wait_ready_status(addr, 503).await;
    tokio::time::sleep(DOWN.saturating_sub(killed_at.elapsed())).await;
    let broker = OwnBroker::start_with(&tansu, port, &storage).await;
    let restarted_at = Instant::now();

    let (ready_at, accepted_at) = watch_recovery(addr, &load, restarted_at).await;
    // Keep the load on a while after the recovery, then stop it.
    let accepted = load.accepted();
    load.wait_accepted(accepted + 100).await;
    let batches = load.stop().await;

    let (marks, ends) = mark_ends(&broker.addr, &names.topic).await;
    wait_stored_to(&[&logs], &names.topic, &ends).await;
    let mut all = batches.clone();
    all.push(Batch::accepted_now(marks.lines));
    let disk = Disk::read(&[&logs]);

    // Every batch sent once `/ready` said 200 again was acknowledged: it told the truth.
    let after_ready: Vec<&Batch> = batches.iter().filter(|b| b.sent_at >= ready_at).collect();
    assert!(
        !after_ready.is_empty(),
        "batches were sent after /ready said 200"
    );
    let refused: Vec<&&Batch> = after_ready
        .iter()
        .filter(|b| b.answer != Answer::Accepted)
        .collect();
    assert!(
        refused.is_empty(),
        "{} of {} batches sent after /ready said 200 again were not acknowledged, e.g. {:?}",
        refused.len(),
        after_ready.len(),
        refused
            .first()
            .map(|b| (&b.answer, b.sent_at - restarted_at))
    );

    let mut row = tally(
        if kept {
            "Kafka broker killed and restarted under load, storage kept (v2)"
        } else {
            "Kafka broker killed and restarted under load, storage lost (v2)"
        },
        1,
        &all,
        &disk,
    );
    // With the storage lost, what the broker alone held when it died may be gone: acknowledged
    // before the kill and not on disk then. Anything else lost is the service's.
    let at_risk: HashSet<&str> = lost_lines(&batches, &at_kill)
        .into_iter()
        .filter(|(_, batch)| batch.answered_at <= killed_at)
        .map(|(line, _)| line)
        .collect();
    let lost = lost_lines(&all, &disk);
    let lost_with_broker = lost
        .iter()
        .filter(|(line, _)| at_risk.contains(line))
        .count();
    if !kept {
        row.lost -= lost_with_broker;
    }
    row.measured = format!(
        "/ready 200 {:.1} s and first 202 {:.1} s after the broker's return; lost with the broker's storage: {} of {} it alone held",
        (ready_at - restarted_at).as_secs_f64(),
        (accepted_at - restarted_at).as_secs_f64(),
        lost_with_broker,
        at_risk.len(),
    );
    row.record_and_check();

    child.terminate();
    let status = child.wait_exit().await;
    assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
}

/// Waits until `/ready` answers `status`.
async fn wait_ready_status(addr: SocketAddr, status: u16) {
    let client = reqwest::Client::new();
    poll_within(
        DOWN,
        KAFKA_POLL,
        &format!("/ready {status} while the broker is dead"),
        async || match client.get(format!("http://{addr}/ready")).send().await {
            Ok(answer) if answer.status() == status => Ok(()),
            Ok(answer) => Err(answer.status().as_u16()),
            Err(_) => Err(0),
        },
    )
    .await;
}

/// Waits, at most [`RECOVERY_BOUND`] after `restarted_at`, until `/ready` says 200 and a batch
/// sent after the restart is acknowledged; returns when each happened.
async fn watch_recovery(
    addr: SocketAddr,
    load: &Load,
    restarted_at: Instant,
) -> (Instant, Instant) {
    let client = reqwest::Client::new();
    let mut ready_at = None;
    let accepted_before = load.accepted();
    let mut accepted_at = None;
    poll_within(
        KAFKA_DEADLINE.min(RECOVERY_BOUND),
        KAFKA_POLL,
        "/ready 200 and a batch acknowledged after the broker's return",
        async || {
            if ready_at.is_none()
                && let Ok(answer) = client.get(format!("http://{addr}/ready")).send().await
                && answer.status() == 200
            {
                ready_at = Some(Instant::now());
            }
            if accepted_at.is_none() && load.accepted() > accepted_before {
                accepted_at = Some(Instant::now());
            }
            match (ready_at, accepted_at) {
                (Some(ready), Some(accepted)) => Ok((ready, accepted)),
                other => Err(format!(
                    "ready: {:?}, accepted: {:?}",
                    other.0.map(|at| at - restarted_at),
                    other.1.map(|at| at - restarted_at)
                )),
            }
        },
    )
    .await
}
