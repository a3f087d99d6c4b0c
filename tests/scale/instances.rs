//! Three instances in one consumer group, one bucket, load through all three; ten rounds of
//! `kill -9`: one instance mid-stream, then the other two, so that every instance dies with
//! records read and not committed, and ranges half-written. All three then start again, each in
//! an empty directory as a replacement machine would, and the group hands the partitions out
//! afresh, usually to another instance than before. At the end every acknowledged record is in
//! exactly one object line, across every object any instance wrote.
//!
//! Why the survivors do not simply take the partitions over: with tansu 0.6, once a member's
//! session expires in a group that still has live members, the coordinator stops assigning the
//! expired member's partitions (reproduced with `storage.backend: local` as well, so not a matter
//! of the bucket; and tansu does not serve static members, `group.instance.id`). When every
//! member of the group is gone, new members get every partition.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::bucket::{
    Bucket, Instances, analytics_hours, show_warnings, start_instances, stop_all,
    wait_joined_or_show,
};
use crate::load::{Batch, Load, lost_lines, tally};
use crate::support::{
    KAFKA_DEADLINE, KAFKA_POLL, Names, TopicContents, kafka_broker, mark_ends, metric_now,
    poll_within, read_topic_to, test_bucket,
};

const INSTANCES: usize = 3;
const ROUNDS: usize = 10;
/// Clients per instance.
const CLIENTS: usize = 2;
/// Batches acknowledged (by all instances together) in a round before the first kill lands.
const BATCHES_BEFORE_KILL: usize = 20;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_instances_one_bucket_kill_9_rounds() {
    let broker = kafka_broker();
    let names = Names::new("scale-kill");
    let bucket = Bucket::new(&test_bucket(), &names.topic);
    let mut batches: Vec<Batch> = Vec::new();
    let mut owners: Vec<Vec<BTreeSet<i32>>> = Vec::new();
    let mut moved = 0;
    let mut topic = TopicContents::new();
    for round in 0..=ROUNDS {
        let Instances {
            dirs: _dirs,
            mut children,
            addrs,
        } = start_instances(INSTANCES, &broker, &names, &bucket).await;
        let owned = wait_joined_or_show(&addrs, &children.iter().collect::<Vec<_>>()).await;
        if let Some(before) = owners.last()
            && *before != owned
        {
            moved += 1;
        }
        owners.push(owned);
        let loads: Vec<Load> = (addrs.iter().enumerate())
            .map(|(i, addr)| Load::start(*addr, CLIENTS, &format!("/scale/{round}/{i}")))
            .collect();
        poll_within(
            KAFKA_DEADLINE,
            KAFKA_POLL,
            "batches acknowledged in this round",
            async || match loads.iter().map(Load::accepted).sum::<usize>() {
                n if n >= BATCHES_BEFORE_KILL => Ok(()),
                n => Err(n),
            },
        )
        .await;
        if round == ROUNDS {
            for load in loads {
                batches.extend(load.stop().await);
            }
            // Nothing is produced after the end marks: once the bucket holds them, it holds
            // everything.
            let (marks, ends) = mark_ends(&broker, &names.topic).await;
            batches.push(Batch::accepted_now(marks.lines));
            bucket.wait_stored_to(&names.topic, &ends).await;
            for addr in &addrs {
                let written = metric_now(
                    *addr,
                    "object_store_objects_written_total{kind=\"records\"}",
                )
                .await;
                assert!(written > 0.0, "{addr} wrote no records object");
            }
            // Every instance answers the analytics for everything in the bucket, whoever
            // wrote it, counted once.
            let in_bucket = bucket.lines_per_hour().await;
            for addr in &addrs {
                let (hours, complete) = analytics_hours(*addr).await;
                assert!(complete, "{addr}: the analytics say they are incomplete");
                assert_eq!(
                    hours, in_bucket,
                    "{addr}: requests per hour against the bucket's lines per hour"
                );
            }
            let mut read = 0.0;
            for addr in &addrs {
                read +=
                    metric_now(*addr, "object_store_objects_read_total{kind=\"records\"}").await;
            }
            eprintln!(
                "analytics: {in_bucket:?} requests per hour; the three instances read {read} records objects to summarise them"
            );
            for child in &children {
                show_warnings(child);
            }
            stop_all(children).await;
            topic = read_topic_to(&broker, &names.topic, &ends).await;
            break;
        }
        let victim = round % INSTANCES;
        children[victim].kill();
        // The others go on taking load (their consumers writing) a moment longer.
        tokio::time::sleep(Duration::from_millis(300 + 100 * round as u64)).await;
        for (i, child) in children.iter_mut().enumerate() {
            if i != victim {
                child.kill();
            }
        }
        for child in &children {
            show_warnings(child);
        }
        for load in loads {
            batches.extend(load.stop().await);
        }
    }

    let (disk, objects) = bucket.read().await;
    let intents = bucket.keys(&format!("intents/{}", names.topic)).await.len();
    eprintln!(
        "{objects} records objects, {intents} intents; the partitions changed hands in {moved} of {ROUNDS} restarts: {owners:?}"
    );
    assert!(objects > ROUNDS, "only {objects} records objects");
    // Each message of the topic once: as often as the broker holds the record.
    let twice_in_topic = topic.values().filter(|at| at.len() > 1).count();
    let not_as_in_topic: Vec<_> = (topic.iter())
        .filter(|(line, at)| disk.count(line) != at.len())
        .take(5)
        .collect();
    eprintln!("{twice_in_topic} records are in the topic more than once");
    assert!(
        not_as_in_topic.is_empty(),
        "records in the bucket not as often as in the topic: {not_as_in_topic:?}"
    );
    for (line, _) in lost_lines(&batches, &disk).iter().take(10) {
        eprintln!("lost {line}: in the topic at {:?}", topic.get(*line));
    }
    let overlaps = bucket.overlaps(&names.topic).await;
    assert!(
        overlaps.is_empty(),
        "records objects whose offsets overlap: {overlaps:#?}"
    );
    tally(
        "3 instances, one bucket, kill -9 (s3)",
        ROUNDS,
        &batches,
        &disk,
    )
    .record_and_check();
}
