//! The instances of a scenario and the bucket they share, read back the way a user would: by
//! listing it.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::{StreamExt as _, TryStreamExt as _};
use object_store::aws::{AmazonS3, AmazonS3Builder};
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt as _};

use crate::load::Disk;
use crate::support::{
    AT_14, ChildGuard, KAFKA_DEADLINE, KAFKA_POLL, Names, PARTITIONS, TestBucket, kafka_client,
    line, poll_within, start_binary_ready,
};
use rdkafka::producer::{FutureProducer, FutureRecord};

/// One scenario's part of the bucket: its own prefix (the topic's name).
pub struct Bucket {
    store: AmazonS3,
    pub endpoint: String,
    pub bucket: String,
    pub prefix: String,
}

impl Bucket {
    pub fn new(test: &TestBucket, prefix: &str) -> Bucket {
        let store = AmazonS3Builder::from_env()
            .with_endpoint(&test.endpoint)
            .with_allow_http(true)
            .with_bucket_name(&test.bucket)
            .build()
            .expect("the test's S3 client builds");
        Bucket {
            store,
            endpoint: test.endpoint.clone(),
            bucket: test.bucket.clone(),
            prefix: prefix.to_owned(),
        }
    }

    /// The keys under `<prefix>/<sub>`, sorted.
    pub async fn keys(&self, sub: &str) -> Vec<String> {
        let prefix = ObjectPath::from(format!("{}/{sub}", self.prefix));
        let mut keys: Vec<String> = self
            .store
            .list(Some(&prefix))
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .expect("the bucket lists");
        keys.sort();
        keys
    }

    /// Every line of every records object, counted as the fault suite counts files.
    pub async fn read(&self) -> (Disk, usize) {
        self.read_below("").await
    }

    /// [`Bucket::read`] of the records objects below `root` (`sites/<id>/`: a site's; empty: the
    /// unsited root's, not the sites').
    pub async fn read_below(&self, root: &str) -> (Disk, usize) {
        let keys = self.keys(&format!("{root}logs")).await;
        // Sixteen GETs at a time: a scenario leaves thousands of objects.
        let bodies: Vec<(String, String)> = futures_util::stream::iter(&keys)
            .map(|key| async move {
                let bytes = self
                    .store
                    .get(&ObjectPath::from(key.as_str()))
                    .await
                    .expect("a listed object reads")
                    .bytes()
                    .await
                    .expect("its body reads");
                let text = String::from_utf8(bytes.to_vec()).expect("objects are UTF-8");
                (key.clone(), text)
            })
            .buffered(16)
            .collect()
            .await;
        let mut lines = Vec::new();
        for (key, text) in &bodies {
            assert!(
                text.ends_with('\n'),
                "{key}: an object ends with a whole line"
            );
            lines.extend(text.lines().map(|line| (line.to_owned(), key.clone())));
        }
        // Where a record is more than once, for the failure message.
        let mut seen: BTreeMap<&str, Vec<&str>> = BTreeMap::new();
        for (line, key) in &lines {
            seen.entry(line).or_default().push(key);
        }
        for (line, keys) in seen.iter().filter(|(_, keys)| keys.len() > 1).take(5) {
            eprintln!("{line} is in {keys:?}");
        }
        (
            Disk::of_lines(lines.into_iter().map(|(line, _)| line)),
            keys.len(),
        )
    }

    /// How many lines the object at `key` (below the scenario's prefix) holds, if it is there.
    pub async fn lines_of(&self, key: &str) -> Option<usize> {
        let path = ObjectPath::from(format!("{}/{key}", self.prefix));
        match self.store.get(&path).await {
            Ok(got) => {
                let bytes = got.bytes().await.expect("its body reads");
                Some(memchr::memchr_iter(b'\n', &bytes).count())
            }
            Err(object_store::Error::NotFound { .. }) => None,
            Err(err) => panic!("GET {path}: {err}"),
        }
    }

    /// Lines per hour across the records objects, by hour as the analytics name it
    /// (`2025-11-22T14:00:00Z`).
    pub async fn lines_per_hour(&self) -> BTreeMap<String, u64> {
        let mut hours = BTreeMap::new();
        for key in self.keys("logs").await {
            let mut dirs = key.rsplit('/').skip(1);
            let (hh, day) = (dirs.next().expect("an hour"), dirs.next().expect("a day"));
            let bytes = (self.store.get(&ObjectPath::from(key.as_str())).await)
                .expect("a listed object reads")
                .bytes()
                .await
                .expect("its body reads");
            *hours.entry(format!("{day}T{hh}:00:00Z")).or_insert(0) +=
                memchr::memchr_iter(b'\n', &bytes).count() as u64;
        }
        hours
    }

    /// The keys of every records object, the unsited root's and every site's.
    async fn records_keys(&self) -> Vec<String> {
        let mut keys = self.keys("logs").await;
        let sites = self.keys("sites").await;
        keys.extend(sites.into_iter().filter(|key| key.contains("/logs/")));
        keys
    }

    /// Every records object the intents of `topic` name (their `objects`, keys below the
    /// prefix).
    pub async fn intent_objects(&self, topic: &str) -> BTreeSet<String> {
        let mut named = BTreeSet::new();
        for key in self.keys(&format!("intents/{topic}")).await {
            let bytes = (self.store.get(&ObjectPath::from(key.as_str())).await)
                .expect("a listed intent reads")
                .bytes()
                .await
                .expect("its body reads");
            let intent: serde_json::Value = serde_json::from_slice(&bytes).expect("JSON");
            for object in intent["objects"].as_array().into_iter().flatten() {
                named.insert(object.as_str().expect("an object key").to_owned());
            }
        }
        named
    }

    /// Per partition of `topic`: the offset after the last records object's range.
    pub async fn stored_positions(&self, topic: &str) -> BTreeMap<i32, i64> {
        let mut stored = BTreeMap::new();
        for key in self.records_keys().await {
            let (partition, _, last) = parse_records_key(&key, topic)
                .unwrap_or_else(|| panic!("{key} is not a records object of {topic}"));
            let next = stored.entry(partition).or_insert(0);
            *next = (*next).max(last + 1);
        }
        stored
    }

    /// Pairs of records objects of the same partition whose offset ranges overlap (each such
    /// pair holds some records twice), with the intents of their first offsets.
    pub async fn overlaps(&self, topic: &str) -> Vec<String> {
        let mut ranges: BTreeMap<i32, BTreeMap<(i64, i64), Vec<String>>> = BTreeMap::new();
        for key in self.records_keys().await {
            let (partition, first, last) =
                parse_records_key(&key, topic).expect("a records object of the topic");
            (ranges.entry(partition).or_default())
                .entry((first, last))
                .or_default()
                .push(key);
        }
        let mut found = Vec::new();
        for (partition, ranges) in ranges {
            let mut previous: Option<(i64, i64)> = None;
            for (first, last) in ranges.keys().copied() {
                if let Some((p_first, p_last)) = previous
                    && first <= p_last
                {
                    found.push(format!(
                        "partition {partition}: {p_first}..={p_last} and {first}..={last}"
                    ));
                }
                if previous.is_none_or(|(_, p_last)| last > p_last) {
                    previous = Some((first, last));
                }
            }
        }
        found
    }

    /// Waits until records objects of every partition reach `ends` (from `mark_ends`).
    pub async fn wait_stored_to(&self, topic: &str, ends: &[i64]) {
        let expected: BTreeMap<i32, i64> = (0..PARTITIONS).zip(ends.iter().copied()).collect();
        poll_within(
            KAFKA_DEADLINE * 2,
            KAFKA_POLL * 4,
            &format!("the bucket to hold {topic} up to {ends:?}"),
            async || {
                let stored = self.stored_positions(topic).await;
                if stored == expected {
                    Ok(())
                } else {
                    Err(format!("stored up to {stored:?}"))
                }
            },
        )
        .await;
    }
}

/// (partition, first, last) of a records object key of `topic`:
/// `<prefix>/logs/YYYY-MM-DD/HH/<topic>-<partition>-<first>-<last>.log.json`.
fn parse_records_key(key: &str, topic: &str) -> Option<(i32, i64, i64)> {
    let name = key.rsplit('/').next()?.strip_suffix(".log.json")?;
    let rest = name.strip_prefix(topic)?.strip_prefix('-')?;
    let mut parts = rest.split('-');
    let partition = parts.next()?.parse().ok()?;
    let first = parts.next()?.parse().ok()?;
    let last = parts.next()?.parse().ok()?;
    parts.next().is_none().then_some((partition, first, last))
}

/// Produces one record straight to each partition of `topic`, its path naming `mark` (so that
/// every mark is a new record, unlike `mark_ends`'s); returns their lines and where each
/// partition now ends.
pub async fn mark_partitions(broker: &str, topic: &str, mark: usize) -> (Vec<String>, Vec<i64>) {
    let producer: FutureProducer = kafka_client(broker).create().expect("a producer builds");
    let (mut lines, mut ends) = (Vec::new(), Vec::new());
    for partition in 0..PARTITIONS {
        let line = line(AT_14, &format!("/mark/{mark}/{partition}"), "curl/8.5.0");
        let record = FutureRecord::<(), str>::to(topic)
            .partition(partition)
            .payload(&line);
        let delivery = (producer.send(record, Duration::from_secs(10)).await)
            .unwrap_or_else(|(err, _)| panic!("producing to {topic}/{partition}: {err}"));
        ends.push(delivery.offset + 1);
        lines.push(line);
    }
    (lines, ends)
}

/// What `GET /analytics/hours` of the instance at `addr` answers: requests per hour, and whether
/// the answer says it is complete.
pub async fn analytics_hours(addr: SocketAddr) -> (BTreeMap<String, u64>, bool) {
    let body: serde_json::Value = reqwest::get(format!("http://{addr}/analytics/hours"))
        .await
        .expect("GET /analytics/hours")
        .error_for_status()
        .expect("/analytics/hours answers 200")
        .json()
        .await
        .expect("a JSON body");
    let hours = (body["hours"].as_array().expect("hours is a list").iter())
        .map(|hour| {
            (
                hour["hour"].as_str().expect("an hour").to_owned(),
                hour["totalRequests"].as_u64().expect("a total"),
            )
        })
        .collect();
    (hours, body["complete"] == serde_json::Value::Bool(true))
}

/// The configuration of one instance in `dir`: v2 on `broker`, writing to `bucket`; small
/// objects so that a scenario makes many.
pub fn write_config(dir: &Path, broker: &str, names: &Names, bucket: &Bucket) -> PathBuf {
    let rest = format!(
        "aggregation:\n  interval: 100ms\n\
         kafka:\n  brokers: [{broker}]\n  topic: {topic}\n  deadLetterTopic: {dead_letters}\n  \
         groupID: {group}\n  partitions: {PARTITIONS}\n  batchTimeout: 5ms\n  sessionTimeout: 6s\n",
        broker = quoted(broker),
        topic = quoted(&names.topic),
        dead_letters = quoted(&names.dead_letter_topic),
        group = quoted(&names.group_id),
    );
    write_yaml(
        dir,
        "version: 2\nstorage:\n  backend: s3\n",
        bucket,
        "maxObjectRecords: 300\n    maxObjectAge: 200ms\n    requestTimeout: 2s",
        &rest,
    )
}

/// Writes `dir/config.yaml`: `head` (which must end inside `storage:`), the logs and analytics
/// directories in `dir`, `storage.s3` of `bucket` with the keys `s3_extra` (one per line,
/// indented by 4), a listener on a free port, then `rest`.
pub fn write_yaml(dir: &Path, head: &str, bucket: &Bucket, s3_extra: &str, rest: &str) -> PathBuf {
    let path_of = |name: &str| quoted(dir.join(name).to_str().expect("UTF-8 temporary path"));
    let yaml = format!(
        "{head}  logsDir: {logs}\n  analyticsDir: {analytics}\n  s3:\n    \
         endpoint: {endpoint}\n    bucket: {bucket_name}\n    prefix: {prefix}\n    region: garage\n    \
         {s3_extra}\n\
         server:\n  addr: 127.0.0.1:0\n{rest}",
        logs = path_of("logs"),
        analytics = path_of("analytics"),
        endpoint = quoted(&bucket.endpoint),
        bucket_name = quoted(&bucket.bucket),
        prefix = quoted(&bucket.prefix),
    );
    let path = dir.join("config.yaml");
    std::fs::write(&path, yaml).expect("write config.yaml");
    path
}

fn quoted(value: &str) -> String {
    serde_json::to_string(value).expect("a string serializes")
}

/// The instances of a scenario: their directories, processes and addresses.
pub struct Instances {
    pub dirs: Vec<tempfile::TempDir>,
    pub children: Vec<ChildGuard>,
    pub addrs: Vec<SocketAddr>,
}

/// Starts `n` instances, each in a new directory, and waits until each is ready.
pub async fn start_instances(n: usize, broker: &str, names: &Names, bucket: &Bucket) -> Instances {
    start_instances_with(n, broker, names, bucket, |_| {}).await
}

/// [`start_instances`], each configuration file changed by `adjust` first.
pub async fn start_instances_with(
    n: usize,
    broker: &str,
    names: &Names,
    bucket: &Bucket,
    adjust: impl Fn(&Path),
) -> Instances {
    let mut instances = Instances {
        dirs: Vec::new(),
        children: Vec::new(),
        addrs: Vec::new(),
    };
    for _ in 0..n {
        let dir = tempfile::tempdir().unwrap();
        let config = write_config(dir.path(), broker, names, bucket);
        adjust(&config);
        let (child, addr) = start_binary_ready(dir.path(), &config).await;
        instances.dirs.push(dir);
        instances.children.push(child);
        instances.addrs.push(addr);
    }
    instances
}

/// Stops every instance with SIGTERM; each must exit 0 (having written what it read).
pub async fn stop_all(children: Vec<ChildGuard>) {
    for child in &children {
        child.terminate();
    }
    for mut child in children {
        let status = child.wait_exit().await;
        assert!(status.success(), "{status}; stderr:\n{}", child.stderr());
        show_warnings(&child);
    }
}

/// Prints what an instance logged above INFO (the scenario's log shows why things happened).
pub fn show_warnings(child: &ChildGuard) {
    for line in child.stderr().lines() {
        if line.contains("\"level\":\"WARN\"") || line.contains("\"level\":\"ERROR\"") {
            eprintln!("[{}] {}", child.pid(), &line[..line.len().min(400)]);
        }
    }
}

#[test]
fn records_keys_parse_with_dashes_in_the_topic() {
    assert_eq!(
        parse_records_key(
            "p/logs/2025-11-22/14/lp-scale-1-00002-00000000000000000010-00000000000000000019.log.json",
            "lp-scale-1"
        ),
        Some((2, 10, 19))
    );
    assert_eq!(
        parse_records_key("p/logs/2025-11-22/14/other-00002-1-2.log.json", "lp"),
        None
    );
}

/// [`wait_joined`](crate::support::wait_joined) (each instance's partitions) that, when the
/// group does not settle, shows what each instance logged before failing.
pub async fn wait_joined_or_show(
    addrs: &[SocketAddr],
    children: &[&ChildGuard],
) -> Vec<std::collections::BTreeSet<i32>> {
    use futures_util::FutureExt as _;
    let joined = std::panic::AssertUnwindSafe(crate::support::wait_joined(addrs))
        .catch_unwind()
        .await;
    match joined {
        Ok(owned) => owned,
        Err(panic) => {
            for (addr, child) in addrs.iter().zip(children) {
                let stderr = child.stderr();
                let tail: Vec<&str> = stderr.lines().rev().take(40).collect();
                eprintln!("---- {addr}, last lines:");
                for line in tail.into_iter().rev() {
                    eprintln!("{line}");
                }
            }
            std::panic::resume_unwind(panic)
        }
    }
}
