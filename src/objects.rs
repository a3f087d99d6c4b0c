//! The bucket of `storage.backend: s3`: where v2's consumers write when several instances, on
//! several machines, share one place for the records.
//!
//! # Exactly once with no local state
//!
//! A consumer cuts each partition's messages into **ranges** of consecutive offsets (closed at
//! `storage.s3.maxObjectRecords`, `maxObjectBytes` or `maxObjectAge`). A range is written as:
//!
//! 1. its **intent**, `intents/<topic>/<partition>/<first>.json` ([`intent`]), saying where it
//!    ends (and which of its offsets are copies of keyed records, not stored, and which keyed
//!    records it stored: see `kafka::keyed::KeptCopies`);
//! 2. one **records object** per event hour it holds, named by topic, partition, first and last
//!    offset and hour ([`crate::layout::records_object`]);
//! 3. then, and only then, its end is committed to Kafka.
//!
//! Whoever reads the partition from `first` again (the same process after a failed write, another
//! instance after a crash or a rebalance) first reads the intent at `first` and, if there is one,
//! closes its range exactly there, dropping the same copies. The same messages give the same
//! lines, so it rewrites the same objects with the same bytes: a record is in exactly one object
//! whatever crashed when. Time and size decide where a range ends only the first time, and the
//! intent makes that decision permanent before anything depends on it.
//!
//! A process that was frozen longer than `kafka.sessionTimeout` (its partitions went to another
//! instance) could race the new owner for a range's intent: with a store that has no conditional
//! writes (Garage 2.5 ignores `If-None-Match` on PUT) the later intent wins and the two may write
//! different ranges. So every request that writes a range first asks its consumer's [`Ownership`]
//! (`kafka::lease`), which withholds it once the partition is no longer held or while the
//! process's assignment is unconfirmed after a pause.
//!
//! `logs_ingested_total` counts a records object's records when this process creates it: a range
//! written again (after a failed flush, a crash or a rebalance) first checks which of its objects
//! exist, and neither writes nor counts those again.
//!
//! Requests time out after `storage.s3.requestTimeout` and are tried up to [`ATTEMPTS`] times
//! with a growing pause; a range that still cannot be written fails its flush, and the consumer
//! reads the partition again from the range's start after a back-off.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use bytes::Bytes;
use object_store::aws::AmazonS3Builder;
use object_store::path::Path;
use object_store::{
    ClientOptions, GetOptions, ObjectStore, ObjectStoreExt as _, PutPayload, RetryConfig,
};

use crate::config::S3Config;
use crate::layout;
use crate::metrics::{Metrics, OBJECT_RECORDS};
use crate::record::{EncodedBatch, Hour};
use crate::site::SiteId;

mod intent;
mod lookups;
mod write;

pub use intent::KeptRun;

/// Tries per request before a flush fails.
pub const ATTEMPTS: u32 = 3;
/// The pause after the first failed try; it doubles after each.
const FIRST_BACKOFF: Duration = Duration::from_millis(200);
/// Puts in flight at once for one flush.
const PUT_CONCURRENCY: usize = 8;
/// [`Objects::kept_before`] reads the intents of at most this many ranges (at most 256 GETs of
/// about 150 bytes and up to 100 more per batch each) ...
pub const RECENT_RANGES: usize = 256;
/// ... that start within this many offsets before where a consumer starts.
pub const RECENT_OFFSETS: i64 = 100_000_000;
/// The first window of offsets [`Objects::kept_before`] lists intents in: it always holds fewer
/// than [`LISTED_PER_WINDOW`].
const FIRST_WINDOW: i64 = 1024;
/// Intents listed in one window at most (five LIST requests).
const LISTED_PER_WINDOW: usize = 4096;

/// A range of one partition's offsets, `first..=last`, and the valid records among them,
/// encoded (dead-lettered messages have offsets but no lines).
#[derive(Debug, Clone)]
pub struct Range {
    pub partition: i32,
    pub first: i64,
    pub last: i64,
    pub batch: EncodedBatch,
    /// Offsets not stored because they were copies of keyed records kept before (see
    /// `kafka::keyed::KeptCopies`), in order.
    pub copies: Vec<i64>,
    /// The keyed records it stores, in offset order.
    pub kept: Vec<KeptRun>,
}

/// Whether this process still owns a partition, asked before every request that writes one of
/// its ranges (a consumer's lease, `kafka::lease`).
pub trait Ownership: Send + Sync {
    /// Why the ranges of `partition` must not be written now, if they must not.
    fn withheld(&self, partition: i32) -> Option<String>;
}

/// What the writer of a range decided, read from its intent: where it ends, and which of its
/// offsets are copies not stored; whoever reads the range again does the same.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decision {
    pub last: i64,
    pub copies: Vec<i64>,
}

/// Why a range was not written.
#[derive(Debug, thiserror::Error)]
pub enum ObjectError {
    /// Another writer decided where the range starting at `first` ends, differently.
    #[error(
        "partition {partition}: the range from offset {first} was decided to end at {last}, not at {ours}"
    )]
    Decided {
        partition: i32,
        first: i64,
        last: i64,
        ours: i64,
    },
    #[error("the bucket refused or did not answer ({what}): {reason}")]
    Unavailable { what: String, reason: String },
    #[error("unreadable intent {key}: {reason}")]
    BadIntent { key: String, reason: String },
    /// Its [`Ownership`] withheld a write of the partition's ranges.
    #[error("partition {partition}: not written: {reason}")]
    Withheld { partition: i32, reason: String },
}

/// An object [`Objects::list`] found.
#[derive(Debug, Clone)]
pub struct Listed {
    /// Its key below the prefix.
    pub key: String,
    pub size: u64,
    /// When it was last written, by the store's clock.
    pub modified: chrono::DateTime<chrono::Utc>,
}

/// What [`Objects::fetch`] found.
#[derive(Debug)]
pub enum Fetched {
    /// The object, and its entity tag.
    Found { bytes: Bytes, e_tag: Option<String> },
    /// Its entity tag is still the one given.
    Unchanged,
    /// There is no such object.
    Missing,
}

/// The bucket, shared by every consumer of this process; cheap to clone through an `Arc`.
pub struct Objects {
    store: Arc<dyn ObjectStore>,
    /// `storage.s3.prefix`, ending in `/` unless empty.
    prefix: String,
    request_timeout: Duration,
    metrics: Metrics,
    /// Per partition: the offset after the last range this process wrote.
    written: Mutex<BTreeMap<i32, i64>>,
}

impl Objects {
    /// The bucket of `config`, with the `AWS_*` environment variables for what it leaves empty.
    pub fn connect(config: &S3Config, metrics: Metrics) -> anyhow::Result<Objects> {
        let mut builder = AmazonS3Builder::from_env()
            .with_bucket_name(&config.bucket)
            // Our own tries (counted in object_store_retries_total) replace the client's.
            .with_retry(RetryConfig {
                max_retries: 0,
                ..RetryConfig::default()
            })
            .with_client_options(
                ClientOptions::new()
                    .with_timeout(config.request_timeout)
                    .with_connect_timeout(config.request_timeout.min(Duration::from_secs(5))),
            );
        if !config.endpoint.is_empty() {
            builder = builder
                .with_endpoint(&config.endpoint)
                .with_allow_http(config.endpoint.starts_with("http://"));
        }
        if !config.region.is_empty() {
            builder = builder.with_region(&config.region);
        }
        if !config.access_key_id.is_empty() {
            builder = builder.with_access_key_id(&config.access_key_id);
        }
        if !config.secret_access_key.is_empty() {
            builder = builder.with_secret_access_key(&config.secret_access_key);
        }
        let store = builder
            .build()
            .with_context(|| format!("storage.s3: cannot use bucket {:?}", config.bucket))?;
        Ok(Objects::new(
            Arc::new(store),
            &config.prefix,
            config.request_timeout,
            metrics,
        ))
    }

    /// Objects in `store` under `prefix`.
    pub fn new(
        store: Arc<dyn ObjectStore>,
        prefix: &str,
        request_timeout: Duration,
        metrics: Metrics,
    ) -> Objects {
        let prefix = prefix.trim_matches('/');
        Objects {
            store,
            prefix: if prefix.is_empty() {
                String::new()
            } else {
                format!("{prefix}/")
            },
            request_timeout,
            metrics,
            written: Mutex::new(BTreeMap::new()),
        }
    }

    /// The same bucket, with `sub` (a [`layout::site_prefix`], ending in `/`) added to the
    /// prefix: a site's objects, in exactly the layout of the whole bucket's.
    pub fn below(&self, sub: &str) -> Objects {
        Objects::new(
            self.store.clone(),
            &format!("{}{sub}", self.prefix),
            self.request_timeout,
            self.metrics.clone(),
        )
    }

    /// The full path of `key` (a [`layout`] object key).
    fn path(&self, key: &str) -> Path {
        Path::from(format!("{}{key}", self.prefix))
    }

    /// Whether there is an object at `key`.
    async fn exists(&self, key: &str) -> Result<bool, ObjectError> {
        let path = self.path(key);
        self.request(key, || async {
            match self.store.head(&path).await {
                Ok(_) => Ok(true),
                Err(object_store::Error::NotFound { .. }) => Ok(false),
                Err(err) => Err(err),
            }
        })
        .await
    }

    /// Writes `bytes` at `key`, an object of `kind` (an `object_store_objects_written_total`
    /// label; records objects count in `object_store_bytes_written_total` too); returns its
    /// entity tag.
    pub async fn put(
        &self,
        key: &str,
        bytes: Bytes,
        kind: &str,
    ) -> Result<Option<String>, ObjectError> {
        self.put_if(key, bytes, kind, || Ok(())).await
    }

    /// [`Objects::put`], if `allowed` says yes before each try.
    async fn put_if(
        &self,
        key: &str,
        bytes: Bytes,
        kind: &str,
        allowed: impl Fn() -> Result<(), ObjectError>,
    ) -> Result<Option<String>, ObjectError> {
        let path = self.path(key);
        let size = bytes.len() as u64;
        let payload = PutPayload::from(bytes);
        let started = Instant::now();
        let put = self
            .request_if(key, allowed, || self.store.put(&path, payload.clone()))
            .await?;
        self.metrics
            .object_put_duration
            .observe(started.elapsed().as_secs_f64());
        self.metrics
            .objects_written
            .with_label_values(&[kind])
            .inc();
        if kind == OBJECT_RECORDS {
            self.metrics.object_bytes_written.inc_by(size);
        }
        Ok(put.e_tag)
    }

    /// Reads `key`, an object of `kind`, unless its entity tag is still `known`.
    pub async fn fetch(
        &self,
        key: &str,
        known: Option<&str>,
        kind: &str,
    ) -> Result<Fetched, ObjectError> {
        let path = self.path(key);
        let fetched = self
            .request(key, || async {
                let options = GetOptions::new().with_if_none_match(known.map(str::to_owned));
                match self.store.get_opts(&path, options).await {
                    Ok(got) => {
                        let e_tag = got.meta.e_tag.clone();
                        let bytes = got.bytes().await?;
                        Ok(Fetched::Found { bytes, e_tag })
                    }
                    Err(object_store::Error::NotFound { .. }) => Ok(Fetched::Missing),
                    Err(object_store::Error::NotModified { .. }) => Ok(Fetched::Unchanged),
                    Err(err) => Err(err),
                }
            })
            .await?;
        if matches!(fetched, Fetched::Found { .. }) {
            self.metrics.objects_read.with_label_values(&[kind]).inc();
        }
        Ok(fetched)
    }

    /// Every hour that has record objects, sorted.
    pub async fn hours(&self) -> Result<Vec<Hour>, ObjectError> {
        let days = self.children(layout::OBJECT_LOGS).await?;
        let mut hours = Vec::new();
        for day in days {
            for hour in self.children(&day).await? {
                hours.extend(layout::parse_hour_object_dir(&hour));
            }
        }
        hours.sort();
        Ok(hours)
    }

    /// The record objects of `hour`: (name within the hour's directory, size), sorted by name.
    pub async fn hour_objects(&self, hour: Hour) -> Result<Vec<(String, u64)>, ObjectError> {
        self.site_hour_objects(None, hour).await
    }

    /// [`Objects::hour_objects`] below `site`'s prefix ([`layout::site_prefix`]; `None`: the
    /// root's).
    pub async fn site_hour_objects(
        &self,
        site: Option<&SiteId>,
        hour: Hour,
    ) -> Result<Vec<(String, u64)>, ObjectError> {
        let root = layout::site_prefix(site);
        let dir = format!("{root}{}", layout::hour_object_dir(hour));
        let mut objects: Vec<(String, u64)> = (self.list(&dir).await?)
            .into_iter()
            .filter_map(|listed| {
                let (_, name) = listed.key.rsplit_once('/')?;
                let key = listed.key.strip_prefix(&root)?;
                (layout::parse_records_object(key) == Some(hour))
                    .then(|| (name.to_owned(), listed.size))
            })
            .collect();
        objects.sort();
        Ok(objects)
    }

    /// Every object under `dir` (a key prefix below our prefix, without the trailing `/`).
    pub async fn list(&self, dir: &str) -> Result<Vec<Listed>, ObjectError> {
        let path = self.path(dir);
        let listed = self
            .request(dir, || async {
                let mut objects = Vec::new();
                let mut pages = self.store.list(Some(&path));
                while let Some(meta) = futures_util::TryStreamExt::try_next(&mut pages).await? {
                    objects.push(meta);
                }
                Ok(objects)
            })
            .await?;
        Ok(listed
            .into_iter()
            .filter_map(|meta| {
                Some(Listed {
                    key: meta
                        .location
                        .as_ref()
                        .strip_prefix(&self.prefix)?
                        .to_owned(),
                    size: meta.size,
                    modified: meta.last_modified,
                })
            })
            .collect())
    }

    /// Deletes `key`; an object that is not there is no error.
    pub async fn delete(&self, key: &str) -> Result<(), ObjectError> {
        let path = self.path(key);
        self.request(key, || async {
            match self.store.delete(&path).await {
                Ok(()) | Err(object_store::Error::NotFound { .. }) => Ok(()),
                Err(err) => Err(err),
            }
        })
        .await
    }

    /// The "subdirectories" of `dir` (a key prefix below our prefix, without the trailing `/`),
    /// as keys below our prefix.
    async fn children(&self, dir: &str) -> Result<Vec<String>, ObjectError> {
        let path = self.path(dir);
        let listed = self
            .request(dir, || self.store.list_with_delimiter(Some(&path)))
            .await?;
        Ok(listed
            .common_prefixes
            .iter()
            .filter_map(|p| p.as_ref().strip_prefix(&self.prefix).map(str::to_owned))
            .collect())
    }

    /// Runs `attempt` up to [`ATTEMPTS`] times, each within `storage.s3.requestTimeout`.
    async fn request<T, F, Fut>(&self, what: &str, attempt: F) -> Result<T, ObjectError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        self.request_if(what, || Ok(()), attempt).await
    }

    /// [`Objects::request`], asking `allowed` right before each try: its refusal ends the
    /// request.
    async fn request_if<T, F, Fut>(
        &self,
        what: &str,
        allowed: impl Fn() -> Result<(), ObjectError>,
        attempt: F,
    ) -> Result<T, ObjectError>
    where
        F: Fn() -> Fut,
        Fut: Future<Output = object_store::Result<T>>,
    {
        let mut backoff = FIRST_BACKOFF;
        let mut tries = 0;
        loop {
            tries += 1;
            allowed()?;
            let reason = match tokio::time::timeout(self.request_timeout, attempt()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(err)) => err.to_string(),
                Err(_) => format!("no answer within {:?}", self.request_timeout),
            };
            if tries >= ATTEMPTS {
                return Err(ObjectError::Unavailable {
                    what: what.to_owned(),
                    reason,
                });
            }
            tracing::warn!(object = what, error = %reason, retry_in = ?backoff, "bucket request failed; trying again");
            self.metrics.object_retries.inc();
            tokio::time::sleep(backoff).await;
            backoff *= 2;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Hour;
    use futures_util::TryStreamExt as _;
    use object_store::memory::InMemory;

    fn objects(store: &Arc<InMemory>) -> Objects {
        Objects::new(
            store.clone(),
            "/team/",
            Duration::from_secs(5),
            Metrics::new(),
        )
    }

    fn range(partition: i32, first: i64, last: i64, hours: &[(i64, &str)]) -> Range {
        let mut batch = EncodedBatch::default();
        for (hour, line) in hours {
            batch.push_line(Hour::from_index(*hour), line.as_bytes());
        }
        Range {
            partition,
            first,
            last,
            batch,
            copies: Vec::new(),
            kept: Vec::new(),
        }
    }

    async fn keys(store: &Arc<InMemory>) -> Vec<String> {
        let mut keys: Vec<String> = store
            .list(None)
            .map_ok(|meta| meta.location.to_string())
            .try_collect()
            .await
            .unwrap();
        keys.sort();
        keys
    }

    #[tokio::test]
    async fn a_range_of_several_sites_is_one_object_per_site_and_hour_listed_in_its_intent() {
        use crate::record::SiteBatches;
        use crate::site::SiteId;
        let store = Arc::new(InMemory::new());
        let objects = objects(&store);
        let (acme, bolt) = (
            SiteId::parse("acme").unwrap(),
            SiteId::parse("bolt").unwrap(),
        );
        let hour = Hour::from_index(490_000);
        let mut batches = SiteBatches::default();
        for (site, line) in [
            (Some(&acme), "a1"),
            (None, "r"),
            (Some(&bolt), "b"),
            (Some(&acme), "a2"),
        ] {
            batches.batch(site).push_line(hour, line.as_bytes());
        }
        let mut sited = range(2, 10, 13, &[]);
        sited.batch = batches.into_batch();
        objects.write("logs", vec![sited]).await.unwrap();
        let object = |site: Option<&SiteId>| {
            let site_hour = crate::record::SiteHour {
                site: site.cloned(),
                hour,
            };
            layout::site_records_object("logs", 2, 10, 13, &site_hour)
        };
        let get = async |key: &str| {
            let path = Path::from(format!("team/{key}"));
            store.get(&path).await.unwrap().bytes().await.unwrap()
        };
        assert_eq!(&get(&object(Some(&acme))).await[..], b"a1\na2\n");
        assert_eq!(&get(&object(Some(&bolt))).await[..], b"b\n");
        assert_eq!(&get(&object(None)).await[..], b"r\n");
        assert!(object(Some(&acme)).starts_with("sites/acme/logs/"));
        let intent = get(&layout::intent_object("logs", 2, 10)).await;
        let intent: serde_json::Value = serde_json::from_slice(&intent).unwrap();
        let mut listed: Vec<String> = serde_json::from_value(intent["objects"].clone()).unwrap();
        listed.sort();
        let mut every = vec![object(None), object(Some(&acme)), object(Some(&bolt))];
        every.sort();
        assert_eq!(listed, every, "the intent lists every site's objects");
        assert_eq!(intent["hours"], serde_json::json!([hour.to_string()]));
        assert_eq!(keys(&store).await.len(), 4, "the intent and three objects");
    }

    #[tokio::test]
    async fn a_range_is_its_intent_then_one_object_per_hour() {
        let store = Arc::new(InMemory::new());
        let objects = objects(&store);
        let hour = 490_000;
        objects
            .write(
                "logs",
                vec![range(
                    2,
                    10,
                    14,
                    &[(hour, "a"), (hour + 1, "b"), (hour, "c")],
                )],
            )
            .await
            .unwrap();
        let start = Hour::from_index(hour);
        let next = Hour::from_index(hour + 1);
        assert_eq!(
            keys(&store).await,
            [
                format!("team/intents/logs/00002/{:020}.json", 10),
                format!("team/{}", layout::records_object("logs", 2, 10, 14, start)),
                format!("team/{}", layout::records_object("logs", 2, 10, 14, next)),
            ]
        );
        let body = store
            .get(&Path::from(format!(
                "team/{}",
                layout::records_object("logs", 2, 10, 14, start)
            )))
            .await
            .unwrap()
            .bytes()
            .await
            .unwrap();
        assert_eq!(&body[..], b"a\nc\n");
        assert_eq!(
            objects.decided("logs", 2, 10).await.unwrap(),
            Some(Decision {
                last: 14,
                copies: Vec::new()
            })
        );
        assert_eq!(objects.decided("logs", 2, 15).await.unwrap(), None);
        assert_eq!(objects.written()[&2], 15);
    }

    #[tokio::test]
    async fn writing_a_range_again_gives_the_same_objects_and_another_end_is_refused() {
        let store = Arc::new(InMemory::new());
        let objects = objects(&store);
        let first = range(0, 0, 2, &[(5, "x"), (5, "y")]);
        objects.write("t", vec![first.clone()]).await.unwrap();
        let before = keys(&store).await;
        objects.write("t", vec![first]).await.unwrap();
        assert_eq!(keys(&store).await, before);
        let err = objects
            .write("t", vec![range(0, 0, 5, &[(5, "x")])])
            .await
            .unwrap_err();
        assert!(
            matches!(
                err,
                ObjectError::Decided {
                    partition: 0,
                    first: 0,
                    last: 2,
                    ours: 5
                }
            ),
            "{err}"
        );
        assert_eq!(keys(&store).await, before, "a refused range writes nothing");
    }

    #[tokio::test]
    async fn a_range_written_again_is_counted_once_across_instances() {
        let store = Arc::new(InMemory::new());
        let hour = 490_000;
        let range = || range(1, 0, 3, &[(hour, "a"), (hour, "b"), (hour + 1, "c")]);
        let first = objects(&store);
        first.write("t", vec![range()]).await.unwrap();
        let before = keys(&store).await;
        // Another instance writes it again (the partition moved before the commit).
        let second = objects(&store);
        second.write("t", vec![range()]).await.unwrap();
        // A third finds the intent and one of the two objects (a crash came in between).
        let later_hour = layout::records_object("t", 1, 0, 3, Hour::from_index(hour + 1));
        store
            .delete(&Path::from(format!("team/{later_hour}")))
            .await
            .unwrap();
        let third = objects(&store);
        third.write("t", vec![range()]).await.unwrap();
        assert_eq!(keys(&store).await, before);
        assert_eq!(
            [&first, &second, &third].map(|o| o.metrics.logs_ingested.get()),
            [3, 0, 1],
            "logs_ingested_total of each instance"
        );
    }

    /// Lets the first `allowed` writes through, then withholds every one.
    struct LostAfter {
        allowed: std::sync::atomic::AtomicUsize,
    }

    impl Ownership for LostAfter {
        fn withheld(&self, _: i32) -> Option<String> {
            let left = self.allowed.load(std::sync::atomic::Ordering::Relaxed);
            if left == 0 {
                return Some("lost".to_owned());
            }
            self.allowed
                .store(left - 1, std::sync::atomic::Ordering::Relaxed);
            None
        }
    }

    #[tokio::test]
    async fn every_write_asks_its_owner_first() {
        let store = Arc::new(InMemory::new());
        let objects = objects(&store);
        let range = || range(4, 0, 1, &[(7, "a"), (8, "b")]);
        let lost = LostAfter { allowed: 0.into() };
        let err = objects
            .write_owned("t", vec![range()], &lost)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, ObjectError::Withheld { partition: 4, reason } if reason == "lost"),
            "{err}"
        );
        assert!(keys(&store).await.is_empty(), "nothing written");
        // Lost between its intent and its records objects (a freeze past the session timeout).
        let lost_after_intent = LostAfter { allowed: 1.into() };
        let err = objects
            .write_owned("t", vec![range()], &lost_after_intent)
            .await
            .unwrap_err();
        assert!(matches!(err, ObjectError::Withheld { .. }), "{err}");
        assert_eq!(
            keys(&store).await,
            [format!("team/{}", layout::intent_object("t", 4, 0))]
        );
        assert_eq!(objects.metrics.logs_ingested.get(), 0);
    }

    #[tokio::test]
    async fn the_keyed_records_of_the_recent_ranges_before_an_offset_are_read_back() {
        let store = Arc::new(InMemory::new());
        let objects = objects(&store);
        let keyed = |first: i64, last: i64| {
            let mut range = range(1, first, last, &[(5, "x")]);
            KeptRun::push(&mut range.kept, first as u128, 9, 0, first);
            range
        };
        // An intent of an older version, without `kept`, among them.
        let old = br#"{"topic":"t","partition":1,"first":10,"last":19,"hours":[],"records":0}"#;
        store
            .put(
                &Path::from(format!("team/{}", layout::intent_object("t", 1, 10))),
                PutPayload::from_static(old),
            )
            .await
            .unwrap();
        let ranges = vec![
            keyed(0, 9),
            keyed(20, 29),
            keyed(30, 39),
            range(2, 0, 5, &[]),
        ];
        objects.write("t", ranges).await.unwrap();
        let firsts = |runs: Vec<KeptRun>| runs.iter().map(|r| r.offset).collect::<Vec<_>>();
        assert_eq!(
            firsts(objects.kept_before("t", 1, 40).await.unwrap()),
            [0, 20, 30]
        );
        assert_eq!(
            firsts(objects.kept_before("t", 1, 30).await.unwrap()),
            [0, 20]
        );
        assert!(firsts(objects.kept_before("t", 1, 0).await.unwrap()).is_empty());
        assert!(firsts(objects.kept_before("t", 2, 40).await.unwrap()).is_empty());
        // At most RECENT_OFFSETS before, and of the last RECENT_RANGES ranges.
        let far = RECENT_OFFSETS + 40;
        objects.write("t", vec![keyed(far, far)]).await.unwrap();
        assert_eq!(
            firsts(objects.kept_before("t", 1, far + 1).await.unwrap()),
            [far]
        );
        let many: Vec<Range> = (1..=RECENT_RANGES as i64)
            .map(|i| keyed(far + i, far + i))
            .collect();
        objects.write("t", many).await.unwrap();
        let runs = firsts(objects.kept_before("t", 1, far + 1_000).await.unwrap());
        assert_eq!(runs.len(), RECENT_RANGES);
        assert_eq!(runs[0], far + 1, "the oldest of the recent ranges");
    }

    #[tokio::test]
    async fn older_windows_of_tiny_ranges_end_the_search_for_recent_intents() {
        let store = Arc::new(InMemory::new());
        let objects = objects(&store);
        let keyed = |first: i64| {
            let mut range = range(0, first, first, &[(5, "x")]);
            KeptRun::push(&mut range.kept, 1, 9, first as u32, first);
            range
        };
        // Twice as many one-offset ranges as a window lists, then one after a gap.
        let dense = 2 * LISTED_PER_WINDOW as i64;
        objects
            .write("t", (0..dense).map(keyed).collect())
            .await
            .unwrap();
        let late = dense + 2 * FIRST_WINDOW;
        objects.write("t", vec![keyed(late)]).await.unwrap();
        let runs = objects.kept_before("t", 0, late + 1).await.unwrap();
        assert_eq!(runs.iter().map(|r| r.offset).collect::<Vec<_>>(), [late]);
        // From right after them, the first window is narrow enough to list.
        let runs = objects.kept_before("t", 0, dense).await.unwrap();
        assert_eq!(runs.len(), RECENT_RANGES);
        assert_eq!(runs.last().unwrap().offset, dense - 1);
    }

    #[tokio::test]
    async fn an_unreadable_intent_is_reported_with_its_key() {
        let store = Arc::new(InMemory::new());
        let objects = objects(&store);
        store
            .put(
                &Path::from(format!("team/{}", layout::intent_object("t", 1, 7))),
                PutPayload::from_static(b"{not json"),
            )
            .await
            .unwrap();
        let err = objects.decided("t", 1, 7).await.unwrap_err();
        assert!(
            err.to_string()
                .contains("intents/t/00001/00000000000000000007.json"),
            "{err}"
        );
    }
}
