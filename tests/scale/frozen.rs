//! An instance frozen (SIGSTOP, as a paused VM or a stalled host would be) under load for longer
//! than `kafka.sessionTimeout` while another instance takes its partitions over, then thawed
//! (SIGCONT): three rounds. When it wakes it may hold a flush half-written and ranges read but
//! not written, and it must write none of them over what the partitions' new owner decided
//! (`src/kafka/lease.rs`).
//!
//! How the partitions move: tansu 0.6 lets a member go once it missed the session timeout, but
//! while other members stay it gives its partitions to none of them (see `instances`). So, as in a
//! rolling replacement, the other instance leaves (SIGTERM, having written what it read) and a
//! new one joins, which gets every partition, the frozen instance's included. Each round freezes
//! the instance that joined last and replaces the one thawed in the round before.
//!
//! Checked: every acknowledged record once in the bucket, no two objects of a partition whose
//! offsets overlap, and the instances' `logs_ingested_total` adding up to no more than the lines
//! in the bucket (the new owner writes again the ranges the frozen one wrote and did not commit,
//! and does not count them again), and to no fewer than those lines but the ones in objects whose
//! PUT failed in its writer (one that landed while its writer was frozen is counted by nobody).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::bucket::{Bucket, Instances, mark_partitions, show_warnings, start_instances};
use crate::load::{Batch, Load, tally};
use crate::paused::Paused;
use crate::support::{
    ChildGuard, KAFKA_DEADLINE, KAFKA_POLL, Names, PARTITIONS, consumer_partitions, kafka_broker,
    mark_ends, metric_now, poll_within, scrape, test_bucket, with_commas,
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

    /// Stops the instance (SIGTERM; it must exit 0), once it wrote all it read, and adds what it
    /// did to `seen`.
    async fn stop(self, seen: &mut Seen) {
        seen.ingested += metric_now(self.addr, "logs_ingested_total").await;
        let mut child = self.child;
        child.terminate();
        let status = child.wait_exit().await;
        assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
        show_warnings(&child);
        let stderr = child.stderr();
        seen.withheld += stderr.matches("not written: ").count();
        // The records objects named in its warnings and errors: requests that failed.
        for line in stderr.lines().filter(|l| !l.contains("\"level\":\"INFO\"")) {
            let objects = line.match_indices("\"logs/").filter_map(|(at, _)| {
                let key = &line[at + 1..];
                Some(key[..key.find(".log.json")? + ".log.json".len()].to_owned())
            });
            seen.failed_puts.extend(objects);
        }
    }
}

/// What the instances did, as they stop.
#[derive(Default)]
struct Seen {
    /// Their `logs_ingested_total`.
    ingested: f64,
    /// Flushes their leases withheld.
    withheld: usize,
    /// Records objects (below the prefix) whose requests failed at least once.
    failed_puts: BTreeSet<String>,
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
    let mut seen = Seen::default();
    let mut takeovers = Vec::new();
    for round in 0..ROUNDS {
        let [frozen, other] = &members[..] else {
            unreachable!("two members")
        };
        wait_accepted(&[frozen.load(), other.load()], BATCHES).await;
        let frozen_at = Instant::now();
        let paused = Paused::pause(frozen.child.pid());
        tokio::time::sleep_until((frozen_at + REPLACE_AFTER).into()).await;
        let mut other = members.pop().expect("two members");
        other.stop_load(&mut batches).await;
        written_up(&other, &bucket, &broker, &names, &mut batches).await;
        other.stop(&mut seen).await;
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
    for member in members {
        member.stop(&mut seen).await;
    }

    let (disk, objects) = bucket.read().await;
    let lines: usize = disk.records().map(|line| disk.count(line)).sum();
    let overlaps = bucket.overlaps(&names.topic).await;
    // An object whose PUT landed while its writer lost the answer is counted by nobody.
    let mut unsure = 0;
    for key in &seen.failed_puts {
        unsure += bucket.lines_of(key).await.unwrap_or(0);
    }
    let ingested = seen.ingested as usize;
    let measured = format!(
        "a new instance owned every partition {:?} s after each freeze; {} flushes withheld \
         by the lease; {objects} records objects; logs_ingested_total {} for {} lines in the \
         bucket ({} of them in objects whose PUT failed once at least)",
        takeovers.iter().map(Duration::as_secs).collect::<Vec<_>>(),
        seen.withheld,
        with_commas(ingested as u64),
        with_commas(lines as u64),
        with_commas(unsure as u64),
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
    assert!(
        ingested <= lines && lines - ingested <= unsure,
        "logs_ingested_total of every instance: {ingested}, for {lines} lines in the bucket, \
         {unsure} of them in objects whose PUT failed once at least"
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

/// Waits until `member`, whose clients stopped while the other instance is frozen, wrote all it
/// read: marks the end of every partition (the marks are accepted records), and waits until the
/// bucket holds as many partitions up to their marks as the member owns (the frozen instance's
/// partitions cannot get there).
async fn written_up(
    member: &Member,
    bucket: &Bucket,
    broker: &str,
    names: &Names,
    batches: &mut Vec<Batch>,
) {
    let (lines, ends) = mark_partitions(broker, &names.topic, batches.len()).await;
    batches.push(Batch::accepted_now(lines));
    let owned = owned_per_instance(&[member.addr]).await[0];
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL * 4,
        "the instance that leaves to write what it read",
        async || {
            let stored = bucket.stored_positions(&names.topic).await;
            let done = (0..PARTITIONS)
                .zip(&ends)
                .filter(|(partition, end)| stored.get(partition).is_some_and(|s| s >= *end))
                .count();
            if done >= owned {
                Ok(())
            } else {
                Err((stored, &ends))
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
