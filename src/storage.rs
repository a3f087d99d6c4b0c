//! Where records are stored, decided once: `storage.backend` is read here and nowhere else.
//!
//! [`Storage::open`] builds everything that depends on the backend, each used afterwards through
//! one interface:
//!
//! | part | `local` (the hour files) | `s3` (one bucket, several instances) |
//! |---|---|---|
//! | v1's writer ([`Storage::store`]) | the [`Store`] | none (s3 runs v2 only) |
//! | what the v2 consumers write through ([`Sink`]) | [`FilesSink`] (the same store) | [`BucketSink`] |
//! | what the analytics read ([`Aggregator`]'s source, one per site) | the logs directory (a site's: [`layout::site_dir`]) | the bucket's objects (a site's: [`layout::site_prefix`]) |
//! | the dashboard's ingest figures ([`IngestFigures`]) | this process's | every live instance's |
//!
//! The bucket client ([`Objects`]) is built once and shared; with `s3` no local store is opened
//! (the logs directory is not touched). A third backend is one more arm of the match in
//! [`Storage::open`], with its consumer sink (`kafka/consumer/<name>.rs`) and its analytics source.

use std::path::PathBuf;
use std::sync::Arc;

use crate::analytics::bucket::BucketSource;
use crate::analytics::ingest_figures::IngestFigures;
use crate::analytics::{Aggregator, Aggregators, Bounds};
use crate::config::{Config, StorageBackend};
use crate::kafka::Sink;
use crate::kafka::consumer::bucket::BucketSink;
use crate::kafka::consumer::files::FilesSink;
use crate::kafka::ranges::RangeLimits;
use crate::layout;
use crate::metrics::Metrics;
use crate::objects::Objects;
use crate::site::SiteId;
use crate::store::{Store, StoreOptions};

/// Everything of the configured backend (see the module docs).
pub struct Storage {
    /// The hour files' store, with `local`: v1 writes through it.
    pub store: Option<Store>,
    /// Where the v2 consumers write.
    pub sink: Arc<dyn Sink>,
    /// The summaries of what is stored (one aggregator per site, or one for the whole data),
    /// shared by the periodic pass and the queries.
    pub aggregators: Arc<Aggregators>,
    /// The ingest figures of the dashboard.
    pub figures: Arc<IngestFigures>,
}

impl Storage {
    /// Opens the configured backend: with `local` the store (locking and repairing the logs
    /// directory); with `s3` the bucket client.
    pub fn open(config: &Config, metrics: &Metrics) -> anyhow::Result<Storage> {
        let storage = &config.storage;
        let bounds = Bounds {
            max_keys: config.aggregation.max_keys_per_hour,
            max_bytes: config.aggregation.max_summary_bytes,
        };
        let analytics_dir = storage.analytics_dir.clone();
        Ok(match storage.backend {
            StorageBackend::Local => {
                let options = StoreOptions::from_config(storage, &config.idempotency);
                let store = Store::open(options, metrics.clone())?;
                let (flush_size, flush_interval) =
                    (config.consumer.flush_size, config.consumer.flush_interval);
                Storage {
                    sink: Arc::new(FilesSink::new(store.clone(), flush_size, flush_interval)),
                    store: Some(store),
                    aggregators: Arc::new(files_aggregators(
                        storage.logs_dir.clone(),
                        analytics_dir,
                        bounds,
                        metrics.clone(),
                    )),
                    figures: Arc::new(IngestFigures::new(metrics.clone())),
                }
            }
            StorageBackend::S3 => {
                let objects = Arc::new(Objects::connect(&storage.s3, metrics.clone())?);
                let limits = RangeLimits::from_config(&storage.s3);
                Storage {
                    store: None,
                    sink: Arc::new(BucketSink::new(
                        objects.clone(),
                        limits,
                        config.kafka.session_timeout,
                    )?),
                    aggregators: Arc::new(bucket_aggregators(
                        objects.clone(),
                        analytics_dir,
                        bounds,
                        metrics.clone(),
                    )),
                    figures: Arc::new(IngestFigures::in_bucket(metrics.clone(), objects)),
                }
            }
        })
    }
}

/// The aggregators of the hour files below `logs_dir` (a site's below its root there), whose
/// summaries are below `analytics_dir` likewise.
fn files_aggregators(
    logs_dir: PathBuf,
    analytics_dir: PathBuf,
    bounds: Bounds,
    metrics: Metrics,
) -> Aggregators {
    Aggregators::new(
        bounds,
        Box::new(move |site: Option<&SiteId>| {
            Aggregator::new(
                layout::site_dir(&logs_dir, site),
                layout::site_dir(&analytics_dir, site),
                bounds,
                metrics.clone(),
            )
        }),
    )
}

/// The aggregators of the bucket's record objects (a site's below its prefix there), whose copies
/// of the summaries are below `analytics_dir` (a site's below its root there).
fn bucket_aggregators(
    objects: Arc<Objects>,
    analytics_dir: PathBuf,
    bounds: Bounds,
    metrics: Metrics,
) -> Aggregators {
    Aggregators::new(
        bounds,
        Box::new(move |site: Option<&SiteId>| {
            let objects = match site {
                None => objects.clone(),
                Some(_) => Arc::new(objects.below(&layout::site_prefix(site))),
            };
            Aggregator::with_source(
                Box::new(BucketSource::new(objects)),
                layout::site_dir(&analytics_dir, site),
                bounds,
                metrics.clone(),
            )
        }),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::PipelineVersion;

    fn config(root: &std::path::Path, backend: StorageBackend) -> Config {
        let mut config = Config {
            version: PipelineVersion::V2,
            ..Config::default()
        };
        config.storage.backend = backend;
        config.storage.logs_dir = root.join("logs");
        config.storage.analytics_dir = root.join("analytics");
        config.storage.s3.bucket = "logs".to_owned();
        // Nothing listens there: opening the bucket sends no request.
        config.storage.s3.endpoint = "http://127.0.0.1:9".to_owned();
        config
    }

    #[tokio::test]
    async fn the_bucket_opens_no_local_store() {
        let root = tempfile::tempdir().unwrap();
        let config = config(root.path(), StorageBackend::S3);
        let storage = Storage::open(&config, &Metrics::new()).expect("opens");
        assert!(storage.store.is_none());
        assert!(
            !config.storage.logs_dir.exists(),
            "the logs directory is not touched"
        );
        // Readiness does not depend on a disk this backend does not use.
        assert_eq!(storage.sink.readiness(), Ok(()));
        assert_eq!(storage.sink.stored("logs"), Default::default());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn in_the_bucket_each_site_is_summarised_from_its_own_prefix_only() {
        use crate::analytics::CancelFlag;
        use crate::record::Hour;
        use object_store::{ObjectStoreExt as _, PutPayload, memory::InMemory, path::Path};

        let store = Arc::new(InMemory::new());
        let hour = Hour::from_index(486_782);
        let line = |path: &str| {
            let at = hour.to_string();
            format!("{{\"timestamp\":\"{at}\",\"path\":\"{path}\",\"userAgent\":\"curl/8.5.0\"}}\n")
        };
        for (prefix, path, n) in [
            ("sites/a/", "/a", 3),
            ("sites/b/", "/b", 2),
            ("", "/root", 1),
        ] {
            let key = format!(
                "team/{prefix}{}",
                layout::records_object("t", 0, 0, 9, hour)
            );
            let payload = PutPayload::from(line(path).repeat(n).into_bytes());
            store.put(&Path::from(key), payload).await.unwrap();
        }
        let objects = Arc::new(Objects::new(
            store.clone(),
            "team",
            std::time::Duration::from_secs(5),
            Metrics::new(),
        ));
        let analytics = tempfile::tempdir().unwrap();
        let bounds = Bounds {
            max_keys: 100,
            max_bytes: 1 << 20,
        };
        let aggregators =
            bucket_aggregators(objects, analytics.path().to_owned(), bounds, Metrics::new());
        let a = aggregators.get(Some(&SiteId::parse("a").unwrap()));
        tokio::task::spawn_blocking(move || a.update_all_hours(&CancelFlag::new()).unwrap())
            .await
            .unwrap();
        let copy = analytics
            .path()
            .join("sites/a")
            .join(layout::summary_file(hour));
        let copy: serde_json::Value =
            serde_json::from_slice(&std::fs::read(copy).unwrap()).unwrap();
        assert_eq!(copy["requestsPerPath"], serde_json::json!({"/a": 3}));
        let in_bucket = format!("team/sites/a/{}", layout::summary_object(hour));
        assert!(
            store.head(&Path::from(in_bucket)).await.is_ok(),
            "a's summary is below its prefix"
        );
        assert!(
            store
                .head(&Path::from(format!(
                    "team/{}",
                    layout::summary_object(hour)
                )))
                .await
                .is_err(),
            "nothing is summarised at the root"
        );
    }

    #[tokio::test]
    async fn the_local_backend_opens_its_store_once_for_v1_and_the_consumers() {
        let root = tempfile::tempdir().unwrap();
        let config = config(root.path(), StorageBackend::Local);
        let storage = Storage::open(&config, &Metrics::new()).expect("opens");
        assert!(storage.store.is_some());
        assert!(config.storage.logs_dir.is_dir());
        // The directory is locked by the one store: a second one is refused.
        let again = Storage::open(&config, &Metrics::new());
        assert!(again.is_err(), "the logs directory is locked once");
        storage.sink.shutdown().await;
    }
}
