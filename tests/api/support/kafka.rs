//! Kafka (v2) test support: the broker, per-test names, records with unique paths, and exact
//! checks of what is stored against what clients were told and what the topic holds.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use log_pipeline::config::{Config, PipelineVersion};
use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Offset, TopicPartitionList};
use reqwest::{Client, StatusCode};
use serde_json::Value;

use super::app::TestApp;
use super::child::{ChildGuard, free_port, pipeline, wait_for_listener};
use super::http::{assert_accepted, sample, scrape, series, try_post_logs};
use super::records::{NDJSON, hour_files, json_array, line, ndjson, record};
use super::wait::poll_within;

// ---------------------------------------------------------------------------------------------
// External services of the Kafka (v2) tests, metric series, hour files.

/// Longest a wait on Kafka may take: a consumer group join takes seconds, and the partitions of
/// a member that was killed move only once its session has timed out.
pub const KAFKA_DEADLINE: Duration = Duration::from_secs(60);

/// How often waits on Kafka re-check (each check asks the broker or scrapes the service).
pub const KAFKA_POLL: Duration = Duration::from_millis(50);

/// Partitions of every test topic (the service's default `kafka.partitions`).
pub const PARTITIONS: i32 = 3;

/// The timestamp of every record that is not about hours; stored as is.
pub const AT_14: &str = "2025-11-22T14:00:00Z";

/// The Kafka names of one test.
pub struct Names {
    pub topic: String,
    pub dead_letter_topic: String,
    pub group_id: String,
}

impl Names {
    /// Names no other test (of this run or an earlier one on the same broker) uses.
    pub fn new(test: &str) -> Names {
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
pub fn v2(config: &mut Config, broker: &str, names: &Names) {
    config.version = PipelineVersion::V2;
    config.kafka.brokers = vec![broker.to_owned()];
    config.kafka.topic = names.topic.clone();
    config.kafka.dead_letter_topic = names.dead_letter_topic.clone();
    config.kafka.group_id = names.group_id.clone();
    config.kafka.partitions = PARTITIONS as u32;
    config.kafka.batch_timeout = Duration::from_millis(5);
    // Fast failover when a test kills a member (the default, 45 s, rides out broker pauses).
    config.kafka.session_timeout = Duration::from_secs(6);
    config.consumer.flush_interval = Duration::from_millis(50);
    config.aggregation.interval = Duration::from_millis(100);
}

/// The same settings as a configuration file for the binary, in `dir` (`config.yaml`, with
/// `dir/logs` and `dir/analytics`); `consumer` holds the lines of the `consumer:` block, indented
/// by two spaces. Returns its path.
pub fn write_v2_config(dir: &Path, broker: &str, names: &Names, consumer: &str) -> PathBuf {
    write_config_file(dir, &v2_config_yaml(dir, broker, names, consumer))
}

/// The YAML [`write_v2_config`] writes, for a test that adds sections of its own after it.
pub fn v2_config_yaml(dir: &Path, broker: &str, names: &Names, consumer: &str) -> String {
    let broker = serde_json::to_string(broker).expect("a string serializes");
    // The `kafka:` block is the last one: the brokers line joins it.
    format!(
        "version: 2\n{}  brokers: [{broker}]\n",
        kafka_config_yaml(dir, names, consumer)
    )
}

/// [`write_v2_config`] without `version` and `kafka.brokers`, for a test that sets them from the
/// environment.
pub fn write_kafka_config(dir: &Path, names: &Names, consumer: &str) -> PathBuf {
    write_config_file(dir, &kafka_config_yaml(dir, names, consumer))
}

fn kafka_config_yaml(dir: &Path, names: &Names, consumer: &str) -> String {
    let quoted = |value: &str| serde_json::to_string(value).expect("a string serializes");
    let path_of = |name: &str| quoted(dir.join(name).to_str().expect("UTF-8 temporary path"));
    format!(
        "server:\n  addr: 127.0.0.1:0\n\
         storage:\n  logsDir: {logs}\n  analyticsDir: {analytics}\n\
         aggregation:\n  interval: 100ms\n\
         consumer:\n{consumer}\
         kafka:\n  topic: {topic}\n  deadLetterTopic: {dead_letters}\n  \
         groupID: {group}\n  partitions: {PARTITIONS}\n  batchTimeout: 5ms\n  sessionTimeout: 6s\n",
        logs = path_of("logs"),
        analytics = path_of("analytics"),
        topic = quoted(&names.topic),
        dead_letters = quoted(&names.dead_letter_topic),
        group = quoted(&names.group_id),
    )
}

fn write_config_file(dir: &Path, yaml: &str) -> PathBuf {
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).expect("write config.yaml");
    path
}

/// Starts the binary on the configuration file `config`, in `dir`.
pub fn start_binary(dir: &Path, config: &Path) -> ChildGuard {
    let mut command = pipeline(dir);
    command.arg("--config").arg(config);
    ChildGuard::spawn(&mut command)
}

/// [`start_binary`], then waits until its `/ready` answers 200 (for the fault and scale suites).
#[allow(dead_code)]
pub async fn start_binary_ready(dir: &Path, config: &Path) -> (ChildGuard, SocketAddr) {
    let mut child = start_binary(dir, config);
    let addr = child.listening_addr().await;
    let http = super::http::client();
    poll_within(
        KAFKA_DEADLINE,
        KAFKA_POLL,
        "/ready",
        async || match super::http::try_send(
            &http,
            addr,
            reqwest::Method::GET,
            "/ready",
            &[],
            Vec::new(),
        )
        .await
        {
            Ok(response) if response.status() == 200 => Ok(()),
            Ok(response) => Err(response.status().to_string()),
            Err(err) => Err(err.to_string()),
        },
    )
    .await;
    (child, addr)
}

// ---------------------------------------------------------------------------------------------
// Records and batches.

/// A record: the timestamp as sent, and as stored (canonical UTC).
#[derive(Clone)]
pub struct Rec {
    pub sent: String,
    pub stored: String,
    pub path: String,
    pub user_agent: &'static str,
}

/// `n` records with paths `{prefix}/0..n`, sent with timestamp `sent`, stored with `stored`.
pub fn records_at(prefix: &str, n: usize, sent: &str, stored: &str) -> Vec<Rec> {
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
pub fn records(prefix: &str, n: usize) -> Vec<Rec> {
    records_at(prefix, n, AT_14, AT_14)
}

pub fn values(records: &[Rec]) -> Vec<Value> {
    records
        .iter()
        .map(|r| record(&r.sent, &r.path, r.user_agent))
        .collect()
}

pub fn json_body(records: &[Rec]) -> Vec<u8> {
    json_array(&values(records))
}

pub fn ndjson_body(records: &[Rec]) -> Vec<u8> {
    ndjson(&values(records))
}

/// A headerless CSV body, every field quoted.
pub fn csv_body(records: &[Rec]) -> Vec<u8> {
    records
        .iter()
        .map(|r| format!("\"{}\",\"{}\",\"{}\"\n", r.sent, r.path, r.user_agent))
        .collect::<String>()
        .into_bytes()
}

/// The lines the service stores for `records` (v1's line format).
pub fn stored_lines(records: &[Rec]) -> Vec<String> {
    records
        .iter()
        .map(|r| line(&r.stored, &r.path, r.user_agent))
        .collect()
}

/// A batch a client sent, and whether it was answered 202.
pub struct Sent {
    pub lines: Vec<String>,
    pub accepted: bool,
}

/// POSTs `records` as NDJSON to `addr`; `Sent` says whether the answer was 202 (a refusal or a
/// lost connection is not). Also returns the answer (status and body, or the error) for reports.
pub async fn post_records(client: &Client, addr: SocketAddr, records: &[Rec]) -> (Sent, String) {
    let answer = try_post_logs(client, addr, NDJSON, ndjson_body(records)).await;
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
pub async fn post_accepted(app: &TestApp, content_type: &str, body: Vec<u8>, records: usize) {
    assert_accepted(app.post_logs(content_type, body).await, records).await;
}

// ---------------------------------------------------------------------------------------------
// What is stored.

/// How often each line occurs in the hour files of `dirs` together.
pub fn line_counts(dirs: &[&Path]) -> BTreeMap<String, usize> {
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
pub fn checkpoint(logs_dir: &Path) -> Result<BTreeMap<String, i64>, String> {
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
pub fn kafka_client(broker: &str) -> ClientConfig {
    let mut config = ClientConfig::new();
    config
        .set("bootstrap.servers", broker)
        .set("client.id", "log-pipeline-test")
        .set("log_level", "3");
    config
}

/// Per partition of `topic`, the next offset the processes on `dirs` have stored (the highest
/// checkpoint: a partition may have moved between processes).
pub fn stored_positions(dirs: &[&Path], topic: &str) -> Result<Vec<i64>, String> {
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
pub async fn wait_stored_count(dirs: &[&Path], topic: &str, messages: usize) {
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
pub async fn mark_ends(broker: &str, topic: &str) -> (Sent, Vec<i64>) {
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
pub async fn wait_stored_to(dirs: &[&Path], topic: &str, ends: &[i64]) {
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
pub type TopicContents = BTreeMap<String, Vec<(i32, i64)>>;

/// Reads every partition of `topic` up to `ends` (see [`mark_ends`]; offsets below the topic's
/// ends keep only what lies before them) with a consumer of the test's own. Offsets of a topic no transaction writes to follow one another; when the broker skips
/// some, the partition is read again from its beginning (tansu 0.6 may answer a fetch from inside
/// a producer batch with the next batch), and offsets still missing after that are printed as
/// holes: offsets the broker has no message at.
pub async fn read_topic_to(broker: &str, topic: &str, ends: &[i64]) -> TopicContents {
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
        // How often each (partition, offset where a gap started) was read again.
        let mut rereads: BTreeMap<(i32, i64), usize> = BTreeMap::new();
        // `ends` may lie below the topic's ends: what lies beyond them is read, not kept.
        while next.iter().zip(&ends).any(|(next, end)| next < end) {
            assert!(
                Instant::now() < deadline,
                "timed out reading {topic} up to {ends:?}; read up to {next:?}"
            );
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(message)) => {
                    let (partition, offset) = (message.partition(), message.offset());
                    let expected = next[partition as usize];
                    if offset < expected {
                        // Read again after a gap: already counted.
                        continue;
                    }
                    if offset > expected {
                        let tries = rereads.entry((partition, expected)).or_default();
                        *tries += 1;
                        if *tries <= 3 {
                            eprintln!(
                                "reading {topic}: partition {partition} went from {expected} to {offset}; reading it again from the beginning"
                            );
                            consumer
                                .seek(&topic, partition, Offset::Beginning, Duration::from_secs(10))
                                .expect("seek");
                            continue;
                        }
                        eprintln!(
                            "reading {topic}: the broker has no message at offsets {expected}..{offset} of partition {partition}"
                        );
                    }
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
pub fn assert_files_hold_the_topic(dirs: &[&Path], topic: &TopicContents) {
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
pub fn assert_stored_once(
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
pub fn accepted_lines(sent: &[Sent]) -> usize {
    sent.iter()
        .filter(|batch| batch.accepted)
        .map(|batch| batch.lines.len())
        .sum()
}

// ---------------------------------------------------------------------------------------------
// Metrics.

/// `kafka_consumer_lag` by partition.
pub fn consumer_lag(metrics: &str) -> BTreeMap<i32, f64> {
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

/// `kafka_consumer_partitions` by consumer: how many partitions each consumer of one process owns.
pub fn consumer_partitions(metrics: &str) -> BTreeMap<String, f64> {
    series(metrics, "kafka_consumer_partitions")
}

/// Waits until the consumers of the services at `addrs` have joined the group and own every
/// partition between them, each a part (its `kafka_consumer_lag` series), none the same one.
/// Returns each one's partitions.
pub async fn wait_joined(addrs: &[SocketAddr]) -> Vec<BTreeSet<i32>> {
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
pub async fn wait_lag_zero(addr: SocketAddr) {
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
pub async fn wait_counter(addrs: &[SocketAddr], name: &str, expected: f64) {
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
pub async fn metric_now(addr: SocketAddr, name: &str) -> f64 {
    sample(&scrape(addr).await, name).unwrap_or(0.0)
}

/// `totalRequests` of the summary of `hour_file` (e.g. `2025-11-22/14.log.json`), waiting until
/// it is `expected`.
pub async fn wait_summary_total(analytics: &Path, hour_file: &str, expected: u64) {
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

/// A tansu broker of one test's own; resumed (`SIGCONT`) before it is killed, however the test
/// ends.
pub struct OwnBroker {
    pub child: ChildGuard,
    pub addr: String,
    pub port: u16,
}

/// Where an [`OwnBroker`] keeps its topics.
#[derive(Debug, Clone)]
pub enum BrokerStorage {
    /// In memory: a restart loses every topic, offset, group and producer id.
    Memory,
    /// In a SQLite file in this directory: a restart keeps them.
    #[allow(
        dead_code,
        reason = "the fault suite's restarts use it; the API tests do not"
    )]
    Sqlite(PathBuf),
}

impl OwnBroker {
    /// A broker on a free port.
    pub async fn start(tansu: &Path) -> OwnBroker {
        OwnBroker::start_on(tansu, free_port()).await
    }

    /// A broker on `port` (e.g. the port of one that was stopped: a restarted broker).
    pub async fn start_on(tansu: &Path, port: u16) -> OwnBroker {
        OwnBroker::start_with(tansu, port, &BrokerStorage::Memory).await
    }

    /// A broker on `port` keeping its topics in `storage`.
    pub async fn start_with(tansu: &Path, port: u16, storage: &BrokerStorage) -> OwnBroker {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(tansu);
        command
            .args([
                "broker",
                "--listener-url",
                &url,
                "--advertised-listener-url",
            ])
            .arg(&url)
            .env("RUST_LOG", "warn");
        match storage {
            BrokerStorage::Memory => command.args(["--storage-engine", "memory://tansu/"]),
            // tansu 0.6 opens a `sqlite://` path relative to its working directory.
            BrokerStorage::Sqlite(dir) => command
                .current_dir(dir)
                .args(["--storage-engine", "sqlite://tansu.db"]),
        };
        let child = ChildGuard::spawn(&mut command);
        let addr = format!("127.0.0.1:{port}");
        wait_for_listener(addr.parse().expect("IP:PORT")).await;
        OwnBroker { child, addr, port }
    }

    /// Kills the broker; with memory storage, its topics are gone.
    pub fn kill(mut self) {
        self.child.kill();
    }
}

impl Drop for OwnBroker {
    fn drop(&mut self) {
        // No assertion here: this may run while a failed test unwinds.
        let _ = Command::new("kill")
            .args(["-CONT", &self.child.pid().to_string()])
            .stderr(std::process::Stdio::null())
            .status();
    }
}

/// Messages read back from a topic's partition 0 by a consumer of the test's own.
pub fn read_topic(
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
