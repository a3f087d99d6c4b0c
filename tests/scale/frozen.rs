//! An instance frozen (SIGSTOP, as a paused VM or a stalled host would be) under load for longer
//! than `kafka.sessionTimeout` while another instance takes its partitions over, then thawed
//! (SIGCONT): three rounds. When it wakes it may hold a flush half-written and ranges read but
//! not written, and it must write none of them over what the partitions' new owner decided
//! (`src/kafka/lease.rs`).
//!
//! How the partitions move: tansu 0.6 lets a member go once it missed the session timeout, but
//! while other members stay it keeps assigning it its partitions (see `instances`). So, as in a
//! rolling replacement, the other instance leaves (SIGTERM, having written what it read) and a
//! new one joins, which gets every partition, the frozen instance's included. Each round freezes
//! the instance that joined last and replaces the one thawed in the round before.
//!
//! Checked: every acknowledged record once in the bucket, no two objects of a partition whose
//! offsets overlap, and the instances' `logs_ingested_total` adding up to the lines in the bucket
//! (the new owner writes again the ranges the frozen one wrote and did not commit, and does not
//! count them again).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::bucket::{Bucket, Instances, show_warnings, start_instances, stop_all};
use crate::load::{Batch, Load, tally};
use crate::paused::Paused;
use crate::support::{
    ChildGuard, KAFKA_DEADLINE, KAFKA_POLL, Names, PARTITIONS, consumer_lag, consumer_partitions,
    kafka_broker, mark_ends, metric_now, poll_within, scrape, test_bucket, with_commas,
};

const ROUNDS: usize = 3;
/// `kafka.sessionTimeout` of the scale suite's instances (`bucket::write_config`).
const SESSION_TIMEOUT: Duration = Duration::from_secs(6);
/// How long after the freeze the other instance leaves: once the frozen one's session is over
/// (the coordinator lets it go when the other one next heartbeats).
const REPLACE_AFTER: Duration = Duration::from_millis(7_500);
/// Batches acknowledged in a round before the freeze, and by the new owner before the thaw.
const BATCHES: usize = 20;

/// One running instance, with its clients.
struct Member {
    _dir: tempfile::TempDir,
    child: ChildGuard,
    addr: SocketAddr,
    /// Its clients, until they are stopped.
    load: Option<Load>,
}

impl Member {
    fn load(&self) -> &Load {
        self.load.as_ref().expect("clients running")
    }

    /// Stops its clients, keeping what they were told.
    async fn stop_load(&mut self, batches: &mut Vec<Batch>) {
        if let Some(load) = self.load.take() {
            batches.extend(load.stop().await);
        }
    }

    /// Stops the clients, then, once it wrote everything its partitions hold, the instance
    /// itself (SIGTERM). Returns its `logs_ingested_total`, read last.
    async fn leave(mut self, batches: &mut Vec<Batch>) -> f64 {
        self.stop_load(batches).await;
        written_up(self.addr, &self.child).await;
        let ingested = metric_now(self.addr, "logs_ingested_total").await;
        stop_all(vec![self.child]).await;
        ingested
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_frozen_past_the_session_timeout_writes_nothing_twice() {
    const { assert!(REPLACE_AFTER.as_millis() > SESSION_TIMEOUT.as_millis()) };
    let broker = kafka_broker();
    let names = Names::new("scale-frozen");
    let bucket = Bucket::new(&test_bucket(), &names.topic);
    let join = async |n: usize| {
        let Instances {
            mut dirs,
            mut children,
            addrs,
        } = start_instances(1, &broker, &names, &bucket).await;
        Member {
            _dir: dirs.pop().expect("one directory"),
            child: children.pop().expect("one instance"),
            addr: addrs[0],
            load: Some(Load::start(addrs[0], 1, &format!("/frozen/{n}"))),
        }
    };
    let mut members = vec![join(0).await, join(1).await];
    wait_owned(&members, "both instances to own partitions").await;
    let mut batches: Vec<Batch> = Vec::new();
    // What the instances that left had counted.
    let mut ingested = 0.0;
    let mut takeovers = Vec::new();
    for round in 0..ROUNDS {
        let [frozen, other] = &members[..] else {
            unreachable!("two members")
        };
        wait_accepted(&[frozen.load(), other.load()], BATCHES).await;
        let frozen_at = Instant::now();
        let paused = Paused::pause(frozen.child.pid());
        tokio::time::sleep_until((frozen_at + REPLACE_AFTER).into()).await;
        let other = members.pop().expect("two members");
        ingested += other.leave(&mut batches).await;
        members.push(join(round + 2).await);
        let new = &members[1];
        poll_within(
            KAFKA_DEADLINE,
            KAFKA_POLL,
            "the new instance to own every partition",
            async || match owned_per_instance(&[new.addr]).await[0] {
                n if n == PARTITIONS as usize => Ok(()),
                n => Err(n),
            },
        )
        .await;
        takeovers.push(frozen_at.elapsed());
        // The new owner writes ranges of the frozen instance's partitions before it wakes up.
        wait_accepted(&[new.load()], BATCHES).await;
        poll_within(
            KAFKA_DEADLINE,
            KAFKA_POLL,
            "the new owner to write records objects",
            async || match metric_now(new.addr, RECORDS_WRITTEN).await {
                n if n > 0.0 => Ok(()),
                n => Err(n),
            },
        )
        .await;
        drop(paused);
        wait_owned(&members, "the group to settle with the thawed instance").await;
        // Next round: freeze the one that joined, replace the one that thawed.
        members.swap(0, 1);
    }
    for member in &mut members {
        member.stop_load(&mut batches).await;
    }
    // Nothing is produced after the end marks: once the bucket holds them, it holds everything.
    let (marks, ends) = mark_ends(&broker, &names.topic).await;
    batches.push(Batch::accepted_now(marks.lines));
    bucket.wait_stored_to(&names.topic, &ends).await;
    let mut withheld = 0;
    for member in members {
        withheld += withheld_writes(&member.child);
        ingested += member.leave(&mut batches).await;
    }

    let (disk, objects) = bucket.read().await;
    let lines: usize = disk.records().map(|line| disk.count(line)).sum();
    let overlaps = bucket.overlaps(&names.topic).await;
    let measured = format!(
        "a new instance owned every partition {:?} s after each freeze; {withheld} bucket \
         writes withheld by the instances that woke up; {objects} records objects; \
         logs_ingested_total {} for {} lines in the bucket",
        takeovers.iter().map(Duration::as_secs).collect::<Vec<_>>(),
        with_commas(ingested as u64),
        with_commas(lines as u64),
    );
    eprintln!("{measured}");
    let mut row = tally(
        "instance frozen past the session timeout, partitions taken over (s3)",
        ROUNDS,
        &batches,
        &disk,
    );
    row.measured = measured;
    row.record_and_check();
    assert!(
        overlaps.is_empty(),
        "records objects whose offsets overlap: {overlaps:#?}"
    );
    assert_eq!(
        ingested, lines as f64,
        "logs_ingested_total of every instance against the lines in the bucket"
    );
}

const RECORDS_WRITTEN: &str = "object_store_objects_written_total{kind=\"records\"}";

/// Waits until `loads` together had `n` more batches acknowledged.
async fn wait_accepted(loads: &[&Load], n: usize) {
    let accepted = || loads.iter().map(|load| load.accepted()).sum::<usize>();
    let before = accepted();
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        &format!("{n} more batches acknowledged"),
        async || match accepted() - before {
            done if done >= n => Ok(()),
            done => Err(done),
        },
    )
    .await;
}

/// Waits until the instance at `addr` wrote everything of the partitions it owns now (those
/// assigned after its last revocation, as it logs them): no lag on any of them.
async fn written_up(addr: SocketAddr, child: &ChildGuard) {
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "the instance to write what it read",
        async || {
            let stderr = child.stderr();
            let since = stderr
                .rfind("\"partitions revoked\"")
                .map_or(&stderr[..], |at| &stderr[at..]);
            let lag = consumer_lag(&scrape(addr).await);
            let behind: Vec<(i32, f64)> = (since.lines())
                .filter(|line| line.contains("\"partition assigned\""))
                .filter_map(|line| {
                    let value: serde_json::Value = serde_json::from_str(line).ok()?;
                    let partition = value["fields"]["partition"].as_i64()? as i32;
                    Some((partition, lag.get(&partition).copied().unwrap_or(f64::NAN)))
                })
                .filter(|(_, lag)| *lag != 0.0)
                .collect();
            if behind.is_empty() {
                Ok(())
            } else {
                Err(behind)
            }
        },
    )
    .await;
}

/// Waits until each of `members` owns a partition and they own every one between them.
async fn wait_owned(members: &[Member], what: &str) {
    let addrs: Vec<SocketAddr> = members.iter().map(|m| m.addr).collect();
    poll_within(KAFKA_DEADLINE, KAFKA_POLL, what, async || {
        let owned = owned_per_instance(&addrs).await;
        if owned.iter().all(|n| *n > 0) && owned.iter().sum::<usize>() == PARTITIONS as usize {
            Ok(())
        } else {
            Err(owned)
        }
    })
    .await;
}

/// How many partitions the consumers of each instance at `addrs` own
/// (`kafka_consumer_partitions`, set by the rebalance callbacks).
async fn owned_per_instance(addrs: &[SocketAddr]) -> Vec<usize> {
    let mut owned = Vec::new();
    for addr in addrs {
        let consumers = consumer_partitions(&scrape(*addr).await);
        owned.push(consumers.values().sum::<f64>() as usize);
    }
    owned
}

/// How many bucket writes the instance logged as withheld by its lease.
fn withheld_writes(child: &ChildGuard) -> usize {
    let stderr = child.stderr();
    show_warnings(child);
    stderr.matches("not written: ").count()
}
