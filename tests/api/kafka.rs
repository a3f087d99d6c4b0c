//! Kafka mode (v2) against a real Kafka-protocol broker (tansu, `scripts/kafka-local.sh`): every
//! batch answered 202 reaches the hour files exactly once — through several consumers, several
//! processes, `kill -9` and a paused broker — invalid messages go to the dead-letter topic, and
//! the Kafka metrics count it all.
//!
//! The broker is `LOG_PIPELINE_TEST_KAFKA` ([`kafka_broker`]): without one a test is skipped,
//! except under CI where it fails. Every test has its own topic, dead-letter topic and consumer
//! group ([`Names`]), so the tests share the broker and run in parallel. Every record is unique
//! (path `/<test>/<batch>/<i>`), so a duplicate shows. Nothing sleeps and hopes: waits poll (at
//! most [`KAFKA_DEADLINE`]) until the expected state, then exact values are asserted. "Everything
//! is consumed" is exact as well: the checkpoints stored with the lines add up to the number of
//! messages in the topic ([`wait_stored_count`]), or reach the offsets of records produced last
//! ([`mark_ends`]), so no line can still arrive.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use log_pipeline::config::{Config, PipelineVersion};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::{Headers, Message};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use reqwest::{Client, Method, StatusCode};
use serde_json::{Value, json};

use crate::helpers::{
    CSV, ChildGuard, HOUR_14, HOUR_15, JSON, KAFKA_DEADLINE, KAFKA_POLL, NDJSON, TestApp,
    assert_accepted, body_json, client, free_port, header, hour_files, json_array, kafka_broker,
    line, ndjson, pipeline, poll_within, record, sample, scrape, series, spawn_app, tansu_binary,
    try_send, wait_for_listener,
};

/// Partitions of every test topic (the service's default `kafka.partitions`).
const PARTITIONS: i32 = 3;

/// The timestamp of every record that is not about hours; stored as is.
const AT_14: &str = "2025-11-22T14:00:00Z";

/// The Kafka names of one test.
struct Names {
    topic: String,
    dead_letter_topic: String,
    group_id: String,
}

impl Names {
    /// Names no other test (of this run or an earlier one on the same broker) uses.
    fn new(test: &str) -> Names {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let topic = format!(
            "lp-{test}-{}-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed),
            chrono::Utc::now().timestamp_millis()
        );
        Names {
            dead_letter_topic: format!("{topic}.dlq"),
            group_id: format!("{topic}-group"),
            topic,
        }
    }
}

/// v2 on `broker` with the test's names and fast settings, for [`spawn_app`].
fn v2(config: &mut Config, broker: &str, names: &Names) {
    config.version = PipelineVersion::V2;
    config.kafka.brokers = vec![broker.to_owned()];
    config.kafka.topic = names.topic.clone();
    config.kafka.dead_letter_topic = names.dead_letter_topic.clone();
    config.kafka.group_id = names.group_id.clone();
    config.kafka.partitions = PARTITIONS as u32;
    config.kafka.batch_timeout = Duration::from_millis(5);
    config.consumer.flush_interval = Duration::from_millis(50);
    config.aggregation.interval = Duration::from_millis(100);
}

/// The same settings as a configuration file for the binary, in `dir` (`config.yaml`, with
/// `dir/logs` and `dir/analytics`); `consumer` holds the lines of the `consumer:` block, indented
/// by two spaces. Returns its path.
fn write_v2_config(dir: &Path, broker: &str, names: &Names, consumer: &str) -> PathBuf {
    let quoted = |value: &str| serde_json::to_string(value).expect("a string serializes");
    let path_of = |name: &str| quoted(dir.join(name).to_str().expect("UTF-8 temporary path"));
    let yaml = format!(
        "version: 2\n\
         server:\n  addr: 127.0.0.1:0\n\
         storage:\n  logsDir: {logs}\n  analyticsDir: {analytics}\n\
         aggregation:\n  interval: 100ms\n\
         consumer:\n{consumer}\
         kafka:\n  brokers: [{broker}]\n  topic: {topic}\n  deadLetterTopic: {dead_letters}\n  \
         groupID: {group}\n  partitions: {PARTITIONS}\n  batchTimeout: 5ms\n",
        logs = path_of("logs"),
        analytics = path_of("analytics"),
        broker = quoted(broker),
        topic = quoted(&names.topic),
        dead_letters = quoted(&names.dead_letter_topic),
        group = quoted(&names.group_id),
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).expect("write config.yaml");
    path
}

/// Starts the binary on the configuration file `config`, in `dir`.
fn start_binary(dir: &Path, config: &Path) -> ChildGuard {
    let mut command = pipeline(dir);
    command.arg("--config").arg(config);
    ChildGuard::spawn(&mut command)
}

// ---------------------------------------------------------------------------------------------
// Records and batches.

/// A record: the timestamp as sent, and as stored (canonical UTC).
#[derive(Clone)]
struct Rec {
    sent: String,
    stored: String,
    path: String,
    user_agent: &'static str,
}

/// `n` records with paths `{prefix}/0..n`, sent with timestamp `sent`, stored with `stored`.
fn records_at(prefix: &str, n: usize, sent: &str, stored: &str) -> Vec<Rec> {
    (0..n)
        .map(|i| Rec {
            sent: sent.to_owned(),
            stored: stored.to_owned(),
            path: format!("{prefix}/{i}"),
            user_agent: "curl/8.5.0",
        })
        .collect()
}

/// `n` records of hour 14 with paths `{prefix}/0..n`.
fn records(prefix: &str, n: usize) -> Vec<Rec> {
    records_at(prefix, n, AT_14, AT_14)
}

fn values(records: &[Rec]) -> Vec<Value> {
    records
        .iter()
        .map(|r| record(&r.sent, &r.path, r.user_agent))
        .collect()
}

fn json_body(records: &[Rec]) -> Vec<u8> {
    json_array(&values(records))
}

fn ndjson_body(records: &[Rec]) -> Vec<u8> {
    ndjson(&values(records))
}

/// A headerless CSV body, every field quoted.
fn csv_body(records: &[Rec]) -> Vec<u8> {
    records
        .iter()
        .map(|r| format!("\"{}\",\"{}\",\"{}\"\n", r.sent, r.path, r.user_agent))
        .collect::<String>()
        .into_bytes()
}

/// The lines the service stores for `records` (v1's line format).
fn stored_lines(records: &[Rec]) -> Vec<String> {
    records
        .iter()
        .map(|r| line(&r.stored, &r.path, r.user_agent))
        .collect()
}

/// A batch a client sent, and whether it was answered 202.
struct Sent {
    lines: Vec<String>,
    accepted: bool,
}

/// POSTs `records` as NDJSON to `addr`; `Sent` says whether the answer was 202 (a refusal or a
/// lost connection is not). Also returns the answer (status and body, or the error) for reports.
async fn post_records(client: &Client, addr: SocketAddr, records: &[Rec]) -> (Sent, String) {
    let answer = try_send(
        client,
        addr,
        Method::POST,
        "/logs",
        &[("content-type", NDJSON)],
        ndjson_body(records),
    )
    .await;
    let (accepted, answer) = match answer {
        Ok(response) => {
            let status = response.status();
            let body = response.text().await.unwrap_or_else(|err| err.to_string());
            (status == StatusCode::ACCEPTED, format!("{status} {body}"))
        }
        Err(err) => (false, format!("no answer: {err}")),
    };
    let sent = Sent {
        lines: stored_lines(records),
        accepted,
    };
    (sent, answer)
}

/// POSTs a batch and expects 202.
async fn post_accepted(app: &TestApp, content_type: &str, body: Vec<u8>, records: usize) {
    assert_accepted(app.post_logs(content_type, body).await, records).await;
}

// ---------------------------------------------------------------------------------------------
// What is stored.

/// How often each line occurs in the hour files of `dirs` together.
fn line_counts(dirs: &[&Path]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for dir in dirs {
        for lines in hour_files(dir).into_values() {
            for line in lines {
                *counts.entry(line).or_default() += 1;
            }
        }
    }
    counts
}

/// The stored positions of a logs directory (`.checkpoint.json`: `topic/partition` → next
/// offset); `Err` while it cannot be read.
fn checkpoint(logs_dir: &Path) -> Result<BTreeMap<String, i64>, String> {
    let path = logs_dir.join(".checkpoint.json");
    let text = match std::fs::read_to_string(&path) {
        Ok(text) => text,
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(err) => return Err(format!("{}: {err}", path.display())),
    };
    let state: Value =
        serde_json::from_str(&text).map_err(|err| format!("{}: {err}: {text}", path.display()))?;
    serde_json::from_value(state["positions"].clone())
        .map_err(|err| format!("{}: positions: {err}: {text}", path.display()))
}

/// A Kafka client of the test's own, to produce and read around the service.
fn kafka_client(broker: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker)
        .set("client.id", "log-pipeline-test")
        .set("log_level", "3");
    config
}

/// Per partition of `topic`, the next offset the processes on `dirs` have stored (the highest
/// checkpoint: a partition may have moved between processes).
fn stored_positions(dirs: &[&Path], topic: &str) -> Result<Vec<i64>, String> {
    let mut stored = vec![0; PARTITIONS as usize];
    for dir in dirs {
        let positions = checkpoint(dir)?;
        for (partition, position) in stored.iter_mut().enumerate() {
            let key = format!("{topic}/{partition}");
            *position = (*position).max(positions.get(&key).copied().unwrap_or(0));
        }
    }
    Ok(stored)
}

/// Waits until the processes on `dirs` have stored `messages` messages of `topic` (each message
/// takes one offset, so the checkpoints add up to that); fails at once beyond. When the topic
/// holds exactly that many, nothing can arrive after this.
async fn wait_stored_count(dirs: &[&Path], topic: &str, messages: usize) {
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        &format!("{messages} messages of {topic} to be stored"),
        async || {
            let stored = stored_positions(dirs, topic)?;
            let total: i64 = stored.iter().sum();
            assert!(
                total <= messages as i64,
                "{total} messages of {topic} stored ({stored:?}); it holds {messages}"
            );
            if total == messages as i64 {
                Ok(())
            } else {
                Err(format!("stored up to {stored:?}"))
            }
        },
    )
    .await;
}

/// For a topic that holds an unknown number of messages (batches cut off by a crash or a timeout
/// may be in it or not): produces one valid record straight to each partition, after which nothing
/// is produced, and returns them (as an accepted batch) with where each partition now ends. Once
/// the checkpoints reach these ends ([`wait_stored_to`]) every message of the topic is stored.
/// (The broker's high watermarks would say the same, but tansu's are not exact.)
async fn mark_ends(broker: &str, topic: &str) -> (Sent, Vec<i64>) {
    let producer: FutureProducer = kafka_client(broker).create().expect("a producer builds");
    let mut lines = Vec::new();
    let mut ends = Vec::new();
    for partition in 0..PARTITIONS {
        let line = line(
            AT_14,
            &format!("/end-of-partition/{partition}"),
            "curl/8.5.0",
        );
        let delivery = producer
            .send(
                FutureRecord::<(), str>::to(topic)
                    .partition(partition)
                    .payload(&line),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(err, _)| panic!("producing to {topic}/{partition}: {err}"));
        assert_eq!(delivery.partition, partition);
        ends.push(delivery.offset + 1);
        lines.push(line);
    }
    let sent = Sent {
        lines,
        accepted: true,
    };
    (sent, ends)
}

/// Waits until the processes on `dirs` have stored every partition of `topic` up to `ends`.
async fn wait_stored_to(dirs: &[&Path], topic: &str, ends: &[i64]) {
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        &format!("{topic} to be stored up to {ends:?}"),
        async || {
            let stored = stored_positions(dirs, topic)?;
            if stored == ends {
                Ok(())
            } else {
                Err(format!("stored up to {stored:?}"))
            }
        },
    )
    .await;
}

/// Where each message value of a topic is: (partition, offset) of every copy.
type TopicContents = BTreeMap<String, Vec<(i32, i64)>>;

/// Reads every partition of `topic` up to `ends` (see [`mark_ends`]) with a consumer of the test's
/// own.
async fn read_topic_to(broker: &str, topic: &str, ends: &[i64]) -> TopicContents {
    let consumer: BaseConsumer = kafka_client(broker)
        .set("group.id", format!("{topic}-test-reader"))
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer builds");
    let mut partitions = TopicPartitionList::new();
    for partition in 0..PARTITIONS {
        partitions
            .add_partition_offset(topic, partition, Offset::Beginning)
            .expect("a partition");
    }
    consumer.assign(&partitions).expect("assign");
    let (topic, ends) = (topic.to_owned(), ends.to_vec());
    tokio::task::spawn_blocking(move || {
        let deadline = Instant::now() + KAFKA_DEADLINE;
        let mut contents = TopicContents::new();
        let mut next = vec![0; ends.len()];
        while next != ends {
            assert!(
                Instant::now() < deadline,
                "timed out reading {topic} up to {ends:?}; read up to {next:?}"
            );
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let (partition, offset) = (message.partition(), message.offset());
                    if offset < ends[partition as usize] {
                        let value = message.payload().unwrap_or_default();
                        contents
                            .entry(String::from_utf8_lossy(value).into_owned())
                            .or_default()
                            .push((partition, offset));
                    }
                    next[partition as usize] = offset + 1;
                }
                Some(Err(err)) => eprintln!("reading {topic}: {err}"),
                None => {}
            }
        }
        contents
    })
    .await
    .expect("reader task")
}

/// Checks that the hour files of `dirs` hold exactly the messages of the topic, each once.
fn assert_files_hold_the_topic(dirs: &[&Path], topic: &TopicContents) {
    let counts = line_counts(dirs);
    let twice_in_topic: Vec<_> = topic.iter().filter(|(_, at)| at.len() > 1).collect();
    assert!(
        twice_in_topic.is_empty(),
        "{} record(s) are in the topic more than once (produced twice), e.g. {:?}",
        twice_in_topic.len(),
        &twice_in_topic[..twice_in_topic.len().min(5)]
    );
    let not_stored: Vec<_> = topic
        .iter()
        .filter(|(line, _)| !counts.contains_key(*line))
        .collect();
    assert!(
        not_stored.is_empty(),
        "{} message(s) of the topic are not stored, although the checkpoints are past them, \
         e.g. (value, [(partition, offset)]) {:?}",
        not_stored.len(),
        &not_stored[..not_stored.len().min(5)]
    );
    let not_in_topic: Vec<_> = counts.keys().filter(|l| !topic.contains_key(*l)).collect();
    assert!(
        not_in_topic.is_empty(),
        "stored lines that are not in the topic: {not_in_topic:?}"
    );
}

/// Checks the hour files of `dirs` against what the clients were told: no line is stored twice,
/// every line of an accepted batch is stored, and every line comes from a batch that was sent
/// (a refused batch may be stored in part or in full, never twice). With the topic's `contents`,
/// says whether a missing line is in the topic. Returns the line counts.
fn assert_stored_once(
    dirs: &[&Path],
    sent: &[Sent],
    contents: Option<&TopicContents>,
) -> BTreeMap<String, usize> {
    let counts = line_counts(dirs);
    let duplicated: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        duplicated.is_empty(),
        "{} line(s) stored more than once, e.g. {:?}",
        duplicated.len(),
        &duplicated[..duplicated.len().min(5)]
    );
    let missing: Vec<&String> = sent
        .iter()
        .filter(|batch| batch.accepted)
        .flat_map(|batch| &batch.lines)
        .filter(|line| !counts.contains_key(*line))
        .collect();
    if let (Some(contents), false) = (contents, missing.is_empty()) {
        let lost: Vec<_> = missing
            .iter()
            .filter(|l| !contents.contains_key(**l))
            .collect();
        let skipped: Vec<_> = missing
            .iter()
            .filter_map(|l| Some((*l, contents.get(*l)?)))
            .collect();
        panic!(
            "{} line(s) of accepted batches (202) are not stored. {} of them are not in the topic \
             (acknowledged, then lost), e.g. {:?}; {} are in the topic (skipped by the \
             consumers), e.g. (value, [(partition, offset)]) {:?}",
            missing.len(),
            lost.len(),
            &lost[..lost.len().min(5)],
            skipped.len(),
            &skipped[..skipped.len().min(5)]
        );
    }
    assert!(
        missing.is_empty(),
        "{} line(s) of accepted batches are not stored, e.g. {:?}",
        missing.len(),
        &missing[..missing.len().min(5)]
    );
    let known: BTreeSet<&String> = sent.iter().flat_map(|batch| &batch.lines).collect();
    let unknown: Vec<&String> = counts.keys().filter(|l| !known.contains(l)).collect();
    assert!(unknown.is_empty(), "lines nobody sent: {unknown:?}");
    counts
}

/// The lines of accepted batches.
fn accepted_lines(sent: &[Sent]) -> usize {
    sent.iter()
        .filter(|batch| batch.accepted)
        .map(|batch| batch.lines.len())
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Metrics.

/// `kafka_consumer_lag` by partition.
fn consumer_lag(metrics: &str) -> BTreeMap<i32, f64> {
    series(metrics, "kafka_consumer_lag")
        .into_iter()
        .map(|(labels, lag)| {
            let partition = labels
                .strip_prefix("partition=\"")
                .and_then(|rest| rest.strip_suffix('"'))
                .and_then(|p| p.parse().ok())
                .unwrap_or_else(|| panic!("kafka_consumer_lag{{{labels}}}: unexpected labels"));
            (partition, lag)
        })
        .collect()
}

/// Waits until the consumers of the services at `addrs` have joined the group and own every
/// partition between them, each a part (its `kafka_consumer_lag` series), none the same one.
/// Returns each one's partitions.
async fn wait_joined(addrs: &[SocketAddr]) -> Vec<BTreeSet<i32>> {
    let all: BTreeSet<i32> = (0..PARTITIONS).collect();
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "the consumers to join and share every partition",
        async || {
            let mut owned = Vec::new();
            for addr in addrs {
                owned.push(
                    consumer_lag(&scrape(*addr).await)
                        .into_keys()
                        .collect::<BTreeSet<i32>>(),
                );
            }
            let total: usize = owned.iter().map(BTreeSet::len).sum();
            let union: BTreeSet<i32> = owned.iter().flatten().copied().collect();
            if union == all && total == all.len() && owned.iter().all(|p| !p.is_empty()) {
                Ok(owned)
            } else {
                Err(owned)
            }
        },
    )
    .await
}

/// Waits until the service at `addr` reports lag 0 for every partition (all of them present).
async fn wait_lag_zero(addr: SocketAddr) {
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "kafka_consumer_lag 0 for every partition",
        async || {
            let lag = consumer_lag(&scrape(addr).await);
            let all_zero = lag.values().all(|lag| *lag == 0.0);
            if lag.len() == PARTITIONS as usize && all_zero {
                Ok(())
            } else {
                Err(lag)
            }
        },
    )
    .await;
}

/// Waits until counter `name`, summed over the services at `addrs`, reaches `expected`; fails at
/// once if it goes beyond.
async fn wait_counter(addrs: &[SocketAddr], name: &str, expected: f64) {
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        &format!("{name} = {expected}"),
        async || {
            let mut value = 0.0;
            for addr in addrs {
                value += metric_now(*addr, name).await;
            }
            assert!(value <= expected, "{name} = {value}, beyond {expected}");
            if value == expected {
                Ok(())
            } else {
                Err(value)
            }
        },
    )
    .await;
}

/// A sample of the service at `addr` right now; 0 when the series does not exist.
async fn metric_now(addr: SocketAddr, name: &str) -> f64 {
    sample(&scrape(addr).await, name).unwrap_or(0.0)
}

/// `totalRequests` of the summary of `hour_file` (e.g. `2025-11-22/14.log.json`), waiting until
/// it is `expected`.
async fn wait_summary_total(analytics: &Path, hour_file: &str, expected: u64) {
    let (day, file) = hour_file.split_once('/').expect("DAY/HH.log.json");
    let hour = file.strip_suffix(".log.json").expect("HH.log.json");
    let path = analytics.join(day).join(format!("summary_{hour}.json"));
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        &format!("{} to count {expected} requests", path.display()),
        async || {
            let text = std::fs::read_to_string(&path).map_err(|e| e.to_string())?;
            let summary: Value = serde_json::from_str(&text).map_err(|e| e.to_string())?;
            match summary["totalRequests"].as_u64() {
                Some(total) if total == expected => Ok(()),
                _ => Err(text),
            }
        },
    )
    .await;
}

// ---------------------------------------------------------------------------------------------
// The tests.

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_batches_reach_the_hour_files_once_with_summaries_and_metrics() {
    let Some(broker) = kafka_broker() else { return };
    let names = Names::new("e2e");
    let app = spawn_app(|config| v2(config, &broker, &names)).await;

    // JSON with an offset timestamp, CSV with a quoted comma, a batch across both hours.
    let offset = records_at(
        "/e2e/0",
        4,
        "2025-11-22T16:05:00+02:00",
        "2025-11-22T14:05:00Z",
    );
    let mut browsers = records_at(
        "/e2e/1",
        3,
        "2025-11-22T15:10:00.250Z",
        "2025-11-22T15:10:00.25Z",
    );
    for rec in &mut browsers {
        rec.user_agent = "Mozilla/5.0 (X11, Linux)";
    }
    let mut both_hours = records_at("/e2e/2", 2, "2025-11-22T14:59:59Z", "2025-11-22T14:59:59Z");
    both_hours.extend(records_at(
        "/e2e/2/15",
        2,
        "2025-11-22T15:00:00Z",
        "2025-11-22T15:00:00Z",
    ));
    let plain = records("/e2e/3", 5);
    post_accepted(&app, JSON, json_body(&offset), 4).await;
    post_accepted(&app, CSV, csv_body(&browsers), 3).await;
    post_accepted(&app, JSON, json_body(&both_hours), 4).await;
    post_accepted(&app, CSV, csv_body(&plain), 5).await;
    let total = 16;
    // Answered only once the broker acknowledged every record, so these are exact already.
    assert_eq!(app.metric("kafka_produced_messages_total").await, 16.0);
    assert_eq!(app.metric("ingestion_work_queue_depth").await, 0.0);
    assert_eq!(app.metric("kafka_produce_errors_total").await, 0.0);

    wait_stored_count(&[app.logs_dir.path()], &names.topic, total).await;
    let sorted = |mut lines: Vec<String>| {
        lines.sort();
        lines
    };
    let all = [&offset[..], &browsers, &both_hours, &plain].concat();
    let expected_14: Vec<Rec> = all
        .iter()
        .filter(|r| r.stored.starts_with("2025-11-22T14"))
        .cloned()
        .collect();
    let expected_15: Vec<Rec> = all
        .iter()
        .filter(|r| r.stored.starts_with("2025-11-22T15"))
        .cloned()
        .collect();
    assert_eq!(
        sorted(app.read_hour_file(HOUR_14)),
        sorted(stored_lines(&expected_14))
    );
    assert_eq!(
        sorted(app.read_hour_file(HOUR_15)),
        sorted(stored_lines(&expected_15))
    );
    assert_eq!(
        app.read_hour_file(HOUR_14)
            .iter()
            .find(|l| l.contains("/e2e/0/0\"")),
        Some(&line("2025-11-22T14:05:00Z", "/e2e/0/0", "curl/8.5.0")),
        "the v1 line format: canonical UTC timestamp, three fields"
    );
    assert_eq!(
        hour_files(app.logs_dir.path()).len(),
        2,
        "only hours 14 and 15"
    );

    wait_summary_total(app.analytics_dir(), HOUR_14, 11).await;
    wait_summary_total(app.analytics_dir(), HOUR_15, 5).await;

    wait_counter(&[app.addr], "logs_ingested_total", 16.0).await;
    wait_counter(&[app.addr], "kafka_produce_to_store_seconds_count", 16.0).await;
    wait_lag_zero(app.addr).await;
    let metrics = app.metrics_text().await;
    for (name, expected) in [
        ("kafka_produced_messages_total", 16.0),
        ("kafka_consumed_messages_total", 16.0),
        ("logs_ingested_total", 16.0),
        ("kafka_produce_to_store_seconds_count", 16.0),
        ("kafka_dead_letter_messages_total", 0.0),
        ("kafka_produce_errors_total", 0.0),
        ("ingest_errors_total", 0.0),
        ("ingestion_work_queue_depth", 0.0),
        ("log_batches_received_total", 4.0),
    ] {
        assert_eq!(sample(&metrics, name), Some(expected), "{name}");
    }
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_consumer_tasks_share_the_partitions_and_store_each_record_once() {
    let Some(broker) = kafka_broker() else { return };
    let names = Names::new("two-consumers");
    let app = spawn_app(|config| {
        v2(config, &broker, &names);
        config.kafka.consumers = 2;
    })
    .await;

    let mut sent = Vec::new();
    for batch in 0..12 {
        let batch = records(&format!("/two-consumers/{batch}"), 5);
        post_accepted(&app, NDJSON, ndjson_body(&batch), 5).await;
        sent.push(Sent {
            lines: stored_lines(&batch),
            accepted: true,
        });
    }
    wait_stored_count(&[app.logs_dir.path()], &names.topic, 60).await;
    let counts = assert_stored_once(&[app.logs_dir.path()], &sent, None);
    assert_eq!(counts.len(), 60);

    // The two consumers together report every partition (each its own).
    wait_lag_zero(app.addr).await;
    wait_counter(&[app.addr], "logs_ingested_total", 60.0).await;
    assert_eq!(
        app.metric("kafka_consumed_messages_total").await,
        60.0,
        "no message consumed twice"
    );
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_processes_in_one_group_split_the_partitions_and_store_each_record_once() {
    let Some(broker) = kafka_broker() else { return };
    let names = Names::new("two-processes");
    let (dir_a, dir_b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let consumer = "  flushInterval: 50ms\n";
    let config_a = write_v2_config(dir_a.path(), &broker, &names, consumer);
    let config_b = write_v2_config(dir_b.path(), &broker, &names, consumer);
    // One after the other: the first creates the topics.
    let mut a = start_binary(dir_a.path(), &config_a);
    let addr_a = a.listening_addr().await;
    let mut b = start_binary(dir_b.path(), &config_b);
    let addr_b = b.listening_addr().await;
    let owned = wait_joined(&[addr_a, addr_b]).await;
    eprintln!("partitions: A {:?}, B {:?}", owned[0], owned[1]);

    let (logs_a, logs_b) = (dir_a.path().join("logs"), dir_b.path().join("logs"));
    let client = client();
    let mut sent = Vec::new();
    let mut batch = 0;
    // Keyless records go to partitions at random: post until both processes stored some.
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "records in both logs directories",
        async || {
            let records = records(&format!("/two-processes/{batch}"), 5);
            batch += 1;
            let (posted, answer) = post_records(&client, addr_a, &records).await;
            assert!(posted.accepted, "batch {batch}: {answer}");
            sent.push(posted);
            let stored = (hour_files(&logs_a).len(), hour_files(&logs_b).len());
            if stored.0 > 0 && stored.1 > 0 {
                Ok(())
            } else {
                Err(stored)
            }
        },
    )
    .await;

    let total = accepted_lines(&sent);
    let dirs = [logs_a.as_path(), logs_b.as_path()];
    wait_stored_count(&dirs, &names.topic, total).await;
    let counts = assert_stored_once(&dirs, &sent, None);
    assert_eq!(counts.len(), total);
    assert!(!line_counts(&[&logs_a]).is_empty() && !line_counts(&[&logs_b]).is_empty());
    wait_counter(&[addr_a, addr_b], "logs_ingested_total", total as f64).await;

    for child in [&mut a, &mut b] {
        child.terminate();
        let status = child.wait_exit().await;
        assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
    }
    assert_eq!(
        line_counts(&dirs),
        counts,
        "a clean shutdown stores nothing more"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kill_9_and_restart_stores_every_acknowledged_record_exactly_once() {
    let Some(broker) = kafka_broker() else { return };
    let names = Names::new("crash");
    let dir = tempfile::tempdir().unwrap();
    let config = write_v2_config(
        dir.path(),
        &broker,
        &names,
        "  flushSize: 16\n  flushInterval: 20ms\n",
    );
    let logs = dir.path().join("logs");
    const KILLS: usize = 2;
    let mut sent = Vec::new();
    for round in 0..=KILLS {
        let mut child = start_binary(dir.path(), &config);
        let addr = child.listening_addr().await;
        // Only once this process consumes can the kill land in the middle of its flushes.
        wait_joined(&[addr]).await;

        let stop = Arc::new(AtomicBool::new(false));
        let accepted = Arc::new(AtomicUsize::new(0));
        let racers: Vec<_> = (0..3)
            .map(|racer| {
                let (stop, accepted) = (stop.clone(), accepted.clone());
                tokio::spawn(async move {
                    let client = client();
                    let mut sent = Vec::new();
                    for batch in 0.. {
                        if stop.load(Ordering::Relaxed) {
                            break;
                        }
                        let prefix = format!("/crash/{round}/{racer}/{batch}");
                        let (posted, _) = post_records(&client, addr, &records(&prefix, 5)).await;
                        let ok = posted.accepted;
                        sent.push(posted);
                        if !ok {
                            break;
                        }
                        accepted.fetch_add(1, Ordering::Relaxed);
                    }
                    sent
                })
            })
            .collect();
        poll_within(
            KAFKA_DEADLINE,
            KAFKA_POLL,
            "batches accepted and stored in this round",
            async || {
                let batches = accepted.load(Ordering::Relaxed);
                let ingested = metric_now(addr, "logs_ingested_total").await;
                if batches >= 40 && ingested >= 50.0 {
                    Ok(())
                } else {
                    Err((batches, ingested))
                }
            },
        )
        .await;
        if round < KILLS {
            child.kill();
        } else {
            stop.store(true, Ordering::Relaxed);
        }
        for racer in racers {
            sent.extend(racer.await.expect("racer task"));
        }
        if round < KILLS {
            continue;
        }

        let (marks, ends) = mark_ends(&broker, &names.topic).await;
        sent.push(marks);
        wait_stored_to(&[&logs], &names.topic, &ends).await;
        let topic = read_topic_to(&broker, &names.topic, &ends).await;
        let counts = assert_stored_once(&[&logs], &sent, Some(&topic));
        assert_files_hold_the_topic(&[&logs], &topic);
        assert_eq!(
            counts.len() as i64,
            ends.iter().sum::<i64>(),
            "every message of the topic is stored once"
        );
        let refused = sent.iter().filter(|batch| !batch.accepted).count();
        eprintln!(
            "{} batches sent, {refused} not accepted; {} lines stored",
            sent.len(),
            counts.len()
        );
        child.terminate();
        let status = child.wait_exit().await;
        assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
        assert_eq!(line_counts(&[&logs]), counts);
    }
}

/// A tansu broker of one test's own; resumed (`SIGCONT`) before it is killed, however the test
/// ends.
struct OwnBroker {
    child: ChildGuard,
    addr: String,
}

impl OwnBroker {
    async fn start(tansu: &Path) -> OwnBroker {
        let port = free_port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(tansu);
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
            ])
            .args([&url, "--storage-engine", "memory://tansu/"])
            .env("RUST_LOG", "warn");
        let child = ChildGuard::spawn(&mut command);
        let addr = format!("127.0.0.1:{port}");
        wait_for_listener(addr.parse().expect("IP:PORT")).await;
        OwnBroker { child, addr }
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        // No assertion here: this may run while a failed test unwinds.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.pid().to_string()])
            .status();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_broker_gets_503_with_retry_after_then_recovers_on_its_own() {
    let Some(tansu) = tansu_binary() else { return };
    let broker = OwnBroker::start(&tansu).await;
    let names = Names::new("paused");
    let produce_timeout = Duration::from_secs(1);
    let app = spawn_app(|config| {
        v2(config, &broker.addr, &names);
        config.kafka.produce_timeout = produce_timeout;
    })
    .await;
    let ready = async |status: StatusCode| {
        poll_within(
            KAFKA_DEADLINE,
            KAFKA_POLL,
            &format!("/ready {status}"),
            async || match app.get("/ready").await.status() {
                answered if answered == status => Ok(()),
                answered => Err(answered),
            },
        )
        .await;
    };
    ready(StatusCode::OK).await;
    let mut sent = Vec::new();
    let mut batch = 0;
    let mut next = || {
        batch += 1;
        records(&format!("/paused/{batch}"), 5)
    };
    let before = next();
    post_accepted(&app, NDJSON, ndjson_body(&before), 5).await;
    sent.push(Sent {
        lines: stored_lines(&before),
        accepted: true,
    });

    broker.child.signal("STOP");
    for _ in 0..2 {
        let records = next();
        let started = Instant::now();
        let response = app.post_logs(NDJSON, ndjson_body(&records)).await;
        let elapsed = started.elapsed();
        let status = response.status();
        let retry_after = header(&response, "retry-after");
        let body = body_json(response).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
        assert!(!retry_after.is_empty(), "503 without Retry-After: {body}");
        let error = body["error"].as_str().unwrap_or_default();
        assert!(
            ["storage_unavailable", "partially_delivered", "overloaded"].contains(&error),
            "{body}"
        );
        assert!(
            elapsed <= produce_timeout + Duration::from_secs(3),
            "answered after {elapsed:?}"
        );
        sent.push(Sent {
            lines: stored_lines(&records),
            accepted: false,
        });
    }
    ready(StatusCode::SERVICE_UNAVAILABLE).await;

    broker.child.signal("CONT");
    // No restart, no operator: the next POSTs succeed once the broker answers again.
    let client = client();
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "a POST accepted after the broker resumed",
        async || {
            let (posted, answer) = post_records(&client, app.addr, &next()).await;
            let accepted = posted.accepted;
            sent.push(posted);
            if accepted { Ok(()) } else { Err(answer) }
        },
    )
    .await;
    for _ in 0..3 {
        let records = next();
        post_accepted(&app, NDJSON, ndjson_body(&records), 5).await;
        sent.push(Sent {
            lines: stored_lines(&records),
            accepted: true,
        });
    }
    ready(StatusCode::OK).await;

    let (marks, ends) = mark_ends(&broker.addr, &names.topic).await;
    sent.push(marks);
    wait_stored_to(&[app.logs_dir.path()], &names.topic, &ends).await;
    let topic = read_topic_to(&broker.addr, &names.topic, &ends).await;
    let counts = assert_stored_once(&[app.logs_dir.path()], &sent, Some(&topic));
    assert_files_hold_the_topic(&[app.logs_dir.path()], &topic);
    assert_eq!(
        counts.len() as i64,
        ends.iter().sum::<i64>(),
        "every message of the topic is stored once"
    );
    assert!(metric_now(app.addr, "kafka_produce_errors_total").await >= 10.0);
    app.stop().await;
}

/// Messages read back from a topic's partition 0 by a consumer of the test's own.
fn read_topic(
    broker: &str,
    topic: &str,
    group: &str,
    count: usize,
) -> Vec<rdkafka::message::OwnedMessage> {
    let consumer: BaseConsumer = kafka_client(broker)
        .set("group.id", group)
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .create()
        .expect("a consumer builds");
    let mut partitions = TopicPartitionList::new();
    partitions
        .add_partition_offset(topic, 0, Offset::Beginning)
        .expect("partition 0");
    consumer.assign(&partitions).expect("assign");
    let deadline = Instant::now() + KAFKA_DEADLINE;
    let mut messages = Vec::new();
    while messages.len() < count {
        assert!(
            Instant::now() < deadline,
            "timed out reading {count} messages of {topic}; got {}",
            messages.len()
        );
        match consumer.poll(Duration::from_millis(100)) {
            Some(Ok(message)) => messages.push(message.detach()),
            Some(Err(err)) => eprintln!("reading {topic}: {err}"),
            None => {}
        }
    }
    messages
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn invalid_messages_go_to_the_dead_letter_topic_and_consumption_goes_on() {
    let Some(broker) = kafka_broker() else { return };
    let names = Names::new("poison");
    let app = spawn_app(|config| v2(config, &broker, &names)).await;

    // Straight to the topic (the service created it), bypassing the API's validation.
    let producer: FutureProducer = kafka_client(&broker).create().expect("a producer builds");
    let valid = line(AT_14, "/poison/valid", "curl/8.5.0");
    let empty_path = json!({"timestamp": AT_14, "path": "", "userAgent": "curl/8.5.0"}).to_string();
    let mut delivered = BTreeMap::new();
    for payload in ["not json", empty_path.as_str(), valid.as_str()] {
        let delivery = producer
            .send(
                FutureRecord::<(), str>::to(&names.topic).payload(payload),
                Duration::from_secs(10),
            )
            .await
            .unwrap_or_else(|(err, _)| panic!("producing {payload:?}: {err}"));
        delivered.insert(payload.to_owned(), (delivery.partition, delivery.offset));
    }

    let dead = {
        let (broker, topic, group) = (
            broker.clone(),
            names.dead_letter_topic.clone(),
            format!("{}-reader", names.group_id),
        );
        tokio::task::spawn_blocking(move || read_topic(&broker, &topic, &group, 2))
            .await
            .expect("reader task")
    };
    let mut seen = BTreeSet::new();
    for message in &dead {
        let payload = String::from_utf8_lossy(message.payload().unwrap_or_default()).into_owned();
        let headers: BTreeMap<String, String> = message
            .headers()
            .expect("dead letters carry headers")
            .iter()
            .map(|h| {
                let value = String::from_utf8_lossy(h.value.unwrap_or_default()).into_owned();
                (h.key.to_owned(), value)
            })
            .collect();
        let (partition, offset) = delivered
            .get(&payload)
            .unwrap_or_else(|| panic!("unexpected dead letter {payload:?}"));
        assert_ne!(payload, valid, "the valid record is not dead-lettered");
        assert_eq!(headers["source.topic"], names.topic, "{headers:?}");
        assert_eq!(
            headers["source.partition"],
            partition.to_string(),
            "{headers:?}"
        );
        assert_eq!(headers["source.offset"], offset.to_string(), "{headers:?}");
        // The reason, as the API would give it for the same record.
        let error = &headers["error"];
        if payload == "not json" {
            assert!(error.to_lowercase().contains("json"), "{headers:?}");
        } else {
            assert!(error.starts_with("path "), "{headers:?}");
        }
        seen.insert(payload);
    }
    assert_eq!(seen.len(), 2, "each poison message dead-lettered once");
    wait_counter(&[app.addr], "kafka_dead_letter_messages_total", 2.0).await;

    // The partitions go on: the valid message and a batch posted afterwards are stored.
    let after = records("/poison/after", 5);
    post_accepted(&app, NDJSON, ndjson_body(&after), 5).await;
    let sent = [
        Sent {
            lines: vec![valid.clone()],
            accepted: true,
        },
        Sent {
            lines: stored_lines(&after),
            accepted: true,
        },
    ];
    wait_stored_count(&[app.logs_dir.path()], &names.topic, 8).await;
    let counts = assert_stored_once(&[app.logs_dir.path()], &sent, None);
    assert_eq!(counts.len(), 6, "the valid ones and nothing else");
    wait_counter(&[app.addr], "logs_ingested_total", 6.0).await;
    assert_eq!(app.metric("kafka_dead_letter_messages_total").await, 2.0);
    assert_eq!(app.metric("kafka_consumed_messages_total").await, 8.0);
    app.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn async_acknowledgement_answers_202_and_the_records_still_arrive() {
    let Some(broker) = kafka_broker() else { return };
    let names = Names::new("async");
    let app = spawn_app(|config| {
        v2(config, &broker, &names);
        config.kafka.async_ack = true;
    })
    .await;
    let mut sent = Vec::new();
    for batch in 0..5 {
        let records = records(&format!("/async/{batch}"), 4);
        post_accepted(&app, NDJSON, ndjson_body(&records), 4).await;
        sent.push(Sent {
            lines: stored_lines(&records),
            accepted: true,
        });
    }
    wait_stored_count(&[app.logs_dir.path()], &names.topic, 20).await;
    assert_eq!(
        assert_stored_once(&[app.logs_dir.path()], &sent, None).len(),
        20
    );
    wait_counter(&[app.addr], "kafka_produced_messages_total", 20.0).await;
    wait_counter(&[app.addr], "logs_ingested_total", 20.0).await;
    app.stop().await;
}
