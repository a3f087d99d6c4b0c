//! The object store killed (`kill -9`) under load and started again on the same port, twice: with
//! its storage kept (same metadata and data) and with it lost (a new node, the bucket and key
//! created again under the same names). The instances are not restarted: they must write again
//! on their own once the store is back, and `/ready` must stay honest throughout (the API takes
//! batches while the store is down: Kafka holds them).
//!
//! What may be lost: with the storage kept, nothing acknowledged. With it lost, only what the
//! store alone held: records the consumers had written and committed to Kafka before the kill
//! (below the group's committed offsets read while the store is down, when no commit can move
//! them; the topic is read up to there). Everything else, including every record acknowledged while the store was down or after
//! it came back, is in the bucket exactly once, and every instance's analytics answer for what
//! the bucket holds, not for what it lost.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};

use crate::bucket::{Bucket, analytics_hours, show_warnings, start_instances, stop_all};
use crate::garage::OwnStore;
use crate::load::{Batch, Disk, Load, lost_lines, tally};
use crate::support::{
    AT_14, KAFKA_DEADLINE, KAFKA_POLL, Names, PARTITIONS, kafka_broker, kafka_client, line,
    mark_ends, metric_now, poll_within, read_topic_to, test_bucket, try_send, wait_joined,
};

const INSTANCES: usize = 2;
/// Clients per instance (each sends as fast as it is answered).
const CLIENTS: usize = 1;
/// Batches acknowledged (by all instances together) before the store is killed.
const BATCHES_BEFORE_KILL: usize = 30;
/// How long the store stays dead: longer than a flush's three tries with their pauses.
const DOWN: Duration = Duration::from_secs(5);
/// How long the consumers may take, from the store's return, to write the backlog.
const RECOVERY_BOUND: Duration = Duration::from_secs(30);
/// The hour of the records written (and committed) before the kill and never again: with the
/// storage lost, it has no object left, and the analytics must stop answering for it.
const EARLY_HOUR: &str = "2025-11-22T10";

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn object_store_killed_and_restarted_with_its_storage_kept() {
    killed_under_load(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn object_store_killed_and_restarted_with_its_storage_lost() {
    killed_under_load(true).await;
}

async fn killed_under_load(storage_lost: bool) {
    let started = Instant::now();
    let phase = |what: &str| eprintln!("{:5.1} s: {what}", started.elapsed().as_secs_f64());
    let broker = kafka_broker();
    let mut store = OwnStore::start(test_bucket()).await;
    let names = Names::new(if storage_lost {
        "scale-store-lost"
    } else {
        "scale-store-kept"
    });
    let bucket = Bucket::new(&store.as_test_bucket(), &names.topic);
    let instances = start_instances(INSTANCES, &broker, &names, &bucket).await;
    let addrs = instances.addrs.clone();
    wait_joined(&addrs).await;
    phase("instances joined");

    let loads: Vec<Load> = (addrs.iter().enumerate())
        .map(|(i, addr)| Load::start(*addr, CLIENTS, &format!("/store/{i}")))
        .collect();
    let accepted = || loads.iter().map(Load::accepted).sum::<usize>();
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "batches acknowledged before the kill",
        async || match accepted() {
            n if n >= BATCHES_BEFORE_KILL => Ok(()),
            n => Err(n),
        },
    )
    .await;
    let early = write_early_hour(&broker, &names).await;
    // Every instance has counted the early hour (its own copy of the summary).
    for addr in &addrs {
        let (hours, _) = analytics_hours(*addr).await;
        assert!(
            hours.contains_key(&format!("{EARLY_HOUR}:00:00Z")),
            "{addr}: {hours:?}"
        );
    }

    phase("the early hour counted");
    let ready = ReadyWatch::start(&addrs);
    store.kill().await;
    let killed_at = Instant::now();
    let accepted_at_kill = accepted();
    tokio::time::sleep(DOWN).await;
    // No range can be written, so no commit moves while the store is dead.
    let committed_at_kill = committed(&broker, &names).await;
    let accepted_while_down = accepted() - accepted_at_kill;
    if storage_lost {
        store.start_afresh().await;
    } else {
        store.restart().await;
    }
    let returned_at = Instant::now();
    phase("the store is back");
    let (first_write, caught_up) = watch_recovery(&broker, &names, &bucket, &addrs).await;
    // Keep the load on a while after the recovery, then stop it.
    let now = accepted();
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "batches acknowledged after the recovery",
        async || match accepted() {
            n if n >= now + 60 => Ok(()),
            n => Err(n),
        },
    )
    .await;
    let mut batches: Vec<Batch> = vec![early.batch.clone()];
    for load in loads {
        batches.extend(load.stop().await);
    }
    let probes = ready.stop().await;
    batches.push(caught_up.marks.clone());
    let (marks, ends) = mark_ends(&broker, &names.topic).await;
    batches.push(Batch::accepted_now(marks.lines));
    bucket.wait_stored_to(&names.topic, &ends).await;
    phase("everything stored");

    // `/ready` said 200 all along, and it was true: every batch was acknowledged, those sent
    // while the store was dead too.
    let not_ready: Vec<&(Instant, SocketAddr, u16)> = probes
        .iter()
        .filter(|(_, _, status)| *status != 200)
        .collect();
    assert!(
        not_ready.is_empty(),
        "/ready answered other than 200 while batches were taken: {:?}",
        not_ready
            .iter()
            .take(5)
            .map(|(at, addr, status)| (*at - killed_at, addr, status))
            .collect::<Vec<_>>()
    );
    let refused: Vec<&Batch> = batches.iter().filter(|b| b.status != 202).collect();
    assert!(
        refused.is_empty(),
        "{} batches not acknowledged, e.g. {:?}",
        refused.len(),
        refused.first().map(|b| (&b.answer, b.sent_at - killed_at))
    );
    assert!(
        accepted_while_down > 0,
        "nothing acknowledged while the store was dead"
    );

    // Nothing is produced after the end marks: the bucket holds all it ever will.
    let (disk, _) = bucket.read().await;
    // Every instance's analytics equal the bucket's lines per hour: nothing of what the store
    // lost, everything it holds.
    let in_bucket = lines_per_hour(&disk);
    for addr in &addrs {
        let (hours, complete) = analytics_hours(*addr).await;
        assert!(complete, "{addr}: the analytics say they are incomplete");
        assert_eq!(
            hours, in_bucket,
            "{addr}: requests per hour against the bucket's lines per hour"
        );
    }
    for child in &instances.children {
        show_warnings(child);
    }
    stop_all(instances.children).await;
    phase("analytics checked, instances stopped");

    // What the store alone held: the records below the offsets committed at the kill.
    let held_by_store: HashSet<String> = if storage_lost {
        let topic = read_topic_to(&broker, &names.topic, &committed_at_kill).await;
        phase("the topic read up to the kill's commits");
        topic.into_keys().collect()
    } else {
        HashSet::new()
    };
    let mut row = tally(
        if storage_lost {
            "object store killed and restarted under load, storage lost (s3)"
        } else {
            "object store killed and restarted under load, storage kept (s3)"
        },
        1,
        &batches,
        &disk,
    );
    let lost = lost_lines(&batches, &disk);
    let lost_with_store = (lost.iter())
        .filter(|(line, _)| held_by_store.contains(*line))
        .count();
    row.lost -= lost_with_store;
    let seconds = |at: Instant| (at - returned_at).as_secs_f64();
    row.measured = format!(
        "first records object {:.1} s and the backlog written {:.1} s after the store's return; \
         {accepted_while_down} batches acknowledged while it was down; /ready 200 in all {} probes{}",
        seconds(first_write),
        seconds(caught_up.at),
        probes.len(),
        if storage_lost {
            format!(
                "; lost with the store's storage: {lost_with_store} of {} records it alone held",
                held_by_store.len()
            )
        } else {
            String::new()
        }
    );
    eprintln!(
        "the store was down {:.1} s",
        (returned_at - killed_at).as_secs_f64()
    );
    row.record_and_check();
}

/// Lines per hour (`2025-11-22T14:00:00Z`) of what [`Bucket::read`] read, by their timestamps.
fn lines_per_hour(disk: &Disk) -> BTreeMap<String, u64> {
    let mut hours = BTreeMap::new();
    for line in disk.records() {
        let record: serde_json::Value = serde_json::from_str(line).expect("a record");
        let timestamp = record["timestamp"].as_str().expect("a timestamp");
        *hours
            .entry(format!("{}:00:00Z", &timestamp[..13]))
            .or_insert(0) += disk.count(line) as u64;
    }
    hours
}

/// Records of [`EARLY_HOUR`], one produced straight to each partition, written and committed
/// before the kill.
struct Early {
    batch: Batch,
}

/// Produces [`Early`] and waits until the group has committed past it.
async fn write_early_hour(broker: &str, names: &Names) -> Early {
    let (lines, after) =
        one_per_partition(broker, names, &format!("{EARLY_HOUR}:00:00Z"), "/early").await;
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL * 4,
        "the early hour's records written and committed",
        async || {
            let committed = committed(broker, names).await;
            if committed.iter().zip(&after).all(|(c, a)| c >= a) {
                Ok(())
            } else {
                Err(committed)
            }
        },
    )
    .await;
    Early {
        batch: Batch::accepted_now(lines),
    }
}

/// Produces one record at `timestamp` straight to each partition (path `<path>/<partition>`);
/// returns their lines and, per partition, the offset after it.
async fn one_per_partition(
    broker: &str,
    names: &Names,
    timestamp: &str,
    path: &str,
) -> (Vec<String>, Vec<i64>) {
    let producer: FutureProducer = kafka_client(broker).create().expect("a producer builds");
    let mut lines = Vec::new();
    let mut after = Vec::new();
    for partition in 0..PARTITIONS {
        let line = line(timestamp, &format!("{path}/{partition}"), "curl/8.5.0");
        let delivery = producer
            .send(
                FutureRecord::<(), str>::to(&names.topic)
                    .partition(partition)
                    .payload(&line),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(err, _)| panic!("producing to {}: {err}", names.topic));
        assert_eq!(delivery.partition, partition);
        after.push(delivery.offset + 1);
        lines.push(line);
    }
    (lines, after)
}

/// The group's committed offset of each partition (0 where none is).
async fn committed(broker: &str, names: &Names) -> Vec<i64> {
    // Asks the coordinator (OffsetFetch) without joining the group.
    let consumer: BaseConsumer = kafka_client(broker)
        .set("group.id", &names.group_id)
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer builds");
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions.add_partition(&names.topic, partition);
    }
    let offsets = tokio::task::spawn_blocking(move || {
        consumer.committed_offsets(partitions, Duration::from_secs(10))
    })
    .await
    .expect("the offsets' task")
    .expect("the group's committed offsets");
    (0..PARTITIONS)
        .map(|partition| {
            match offsets
                .find_partition(&names.topic, partition)
                .map(|p| p.offset())
            {
                Some(Offset::Offset(offset)) => offset,
                _ => 0,
            }
        })
        .collect()
}

/// When the consumers were writing again.
struct CaughtUp {
    /// When the bucket held everything produced up to the store's return.
    at: Instant,
    /// The records marking where each partition ended at the store's return.
    marks: Batch,
}

/// From the store's return: when the first records object was written (any instance), and when
/// the bucket held every partition up to where it ended at the return (the backlog of the outage
/// written). Fails after [`RECOVERY_BOUND`].
async fn watch_recovery(
    broker: &str,
    names: &Names,
    bucket: &Bucket,
    addrs: &[SocketAddr],
) -> (Instant, CaughtUp) {
    const WRITTEN: &str = "object_store_objects_written_total{kind=\"records\"}";
    let written = async || {
        let mut sum = 0.0;
        for addr in addrs {
            sum += metric_now(*addr, WRITTEN).await;
        }
        sum
    };
    let before = written().await;
    let (marks, ends) = one_per_partition(broker, names, AT_14, "/store-returned").await;
    let expected: BTreeMap<i32, i64> = (0..PARTITIONS).zip(ends).collect();
    let mut first_write = None;
    let caught_up = poll_within(
        RECOVERY_BOUND,
        KAFKA_POLL * 4,
        "the consumers writing again and the backlog in the bucket",
        async || {
            if first_write.is_none() && written().await > before {
                first_write = Some(Instant::now());
            }
            let stored = bucket.stored_positions(&names.topic).await;
            let done = expected.iter().all(|(p, end)| stored.get(p) >= Some(end));
            match first_write {
                Some(_) if done => Ok(Instant::now()),
                _ => Err(format!(
                    "first write: {first_write:?}, stored up to {stored:?}"
                )),
            }
        },
    )
    .await;
    (
        first_write.expect("set before caught up"),
        CaughtUp {
            at: caught_up,
            marks: Batch::accepted_now(marks),
        },
    )
}

/// Asks every instance's `/ready` every 100 ms until stopped.
struct ReadyWatch {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<Vec<(Instant, SocketAddr, u16)>>,
}

impl ReadyWatch {
    fn start(addrs: &[SocketAddr]) -> ReadyWatch {
        let stop = Arc::new(AtomicBool::new(false));
        let addrs = addrs.to_vec();
        let task = tokio::spawn({
            let stop = stop.clone();
            async move {
                let client = crate::support::client();
                let mut probes = Vec::new();
                while !stop.load(Ordering::Relaxed) {
                    for addr in &addrs {
                        let status = try_send(
                            &client,
                            *addr,
                            reqwest::Method::GET,
                            "/ready",
                            &[],
                            Vec::new(),
                        )
                        .await
                        .map_or(0, |answer| answer.status().as_u16());
                        probes.push((Instant::now(), *addr, status));
                    }
                    tokio::time::sleep(Duration::from_millis(100)).await;
                }
                probes
            }
        });
        ReadyWatch { stop, task }
    }

    async fn stop(self) -> Vec<(Instant, SocketAddr, u16)> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await.expect("the /ready watcher")
    }
}
