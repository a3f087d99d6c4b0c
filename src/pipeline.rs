//! Where accepted batches go: one value owns each pipeline mode, from start-up to shutdown.
//!
//! - [`Pipeline::V1`]: the [`Store`] writes batches straight to the hour files.
//! - [`Pipeline::V2`]: the [`KafkaPipeline`] produces them to Kafka; its consumer group writes
//!   them through the sink of [`Storage`] (the same hour files, or the bucket).
//!
//! The HTTP layer sees only [`Intake`] (what it asks of a pipeline, which [`Pipeline`]
//! implements) and [`SubmitError`], whose [`Refusal`] says what a refused batch means for the
//! client: each backend's errors are mapped to it once, in `pipeline/refusal.rs`;
//! `http::ApiError` turns it into an answer.
//!
//! Batches sent with an `Idempotency-Key` go through [`Pipeline::submit_keyed`], which asks the
//! mode's [`KeyIndex`] first (see [`crate::idempotency`]): in v1 "done" means in the store's
//! ledger (stored, durable with the lines); in v2 it means acknowledged by the broker, in an index
//! of this process seeded at start-up from the batches its consumers stored whole.

mod refusal;

use std::sync::Arc;
use std::time::{Duration, Instant};

use futures_util::future::BoxFuture;

pub use refusal::{Refusal, SubmitError, UnknownCounts};

use crate::config::{Config, PipelineVersion};
use anyhow::Context as _;

use crate::idempotency::{Claim, Fingerprint, Key, KeyIndex, Retention, Update, now_ms};
use crate::kafka::{KafkaPipeline, KafkaSettings};
use crate::metrics::Metrics;
use crate::record::EncodedBatch;
use crate::site::SiteId;
use crate::storage::Storage;
use crate::store::Store;

/// The running pipeline of this process.
pub enum Pipeline {
    /// v1: straight into the hour files.
    V1 {
        store: Store,
        metrics: Metrics,
        keys: Arc<KeyIndex>,
    },
    /// v2: through Kafka.
    V2 {
        kafka: KafkaPipeline,
        keys: Arc<KeyIndex>,
    },
}

/// What became of a batch sent with an `Idempotency-Key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum KeyedOutcome {
    /// Stored (v1) or acknowledged (v2) now.
    Stored,
    /// The same batch was stored under this key before: nothing done, answer as then.
    Replayed { records: u32 },
    /// Another batch was stored under this key: refused.
    Reused,
    /// A request with this key is still being handled: refused for now.
    InFlight,
}

/// What the HTTP API asks of the running pipeline, whatever its mode: the router holds it as a
/// trait object, so that its tests can drive every answer with a stand-in (no socket, no disk).
/// [`Pipeline`]'s methods of the same names say what each does.
pub trait Intake: Send + Sync {
    /// See [`Pipeline::submit`].
    fn submit(
        &self,
        site: Option<SiteId>,
        batch: EncodedBatch,
        deadline: Instant,
    ) -> BoxFuture<'_, Result<(), SubmitError>>;

    /// See [`Pipeline::submit_keyed`].
    fn submit_keyed(
        &self,
        site: Option<SiteId>,
        batch: EncodedBatch,
        key: Key,
        fingerprint: Fingerprint,
        deadline: Instant,
    ) -> BoxFuture<'_, Result<KeyedOutcome, SubmitError>>;

    /// See [`Pipeline::settle`].
    fn settle(&self, timeout: Duration) -> BoxFuture<'_, bool>;

    /// See [`Pipeline::readiness`].
    fn readiness(&self) -> Result<(), &'static str>;
}

impl Intake for Pipeline {
    fn submit(
        &self,
        site: Option<SiteId>,
        batch: EncodedBatch,
        deadline: Instant,
    ) -> BoxFuture<'_, Result<(), SubmitError>> {
        Box::pin(Pipeline::submit(self, site, batch, deadline))
    }

    fn submit_keyed(
        &self,
        site: Option<SiteId>,
        batch: EncodedBatch,
        key: Key,
        fingerprint: Fingerprint,
        deadline: Instant,
    ) -> BoxFuture<'_, Result<KeyedOutcome, SubmitError>> {
        Box::pin(Pipeline::submit_keyed(
            self,
            site,
            batch,
            key,
            fingerprint,
            deadline,
        ))
    }

    fn settle(&self, timeout: Duration) -> BoxFuture<'_, bool> {
        Box::pin(Pipeline::settle(self, timeout))
    }

    fn readiness(&self) -> Result<(), &'static str> {
        Pipeline::readiness(self)
    }
}

impl Pipeline {
    /// Starts the configured mode over `storage`: v1 writes through its store; v2 connects to
    /// Kafka and starts the consumer group, which writes through its sink.
    pub async fn start(
        config: &Config,
        storage: &Storage,
        metrics: &Metrics,
    ) -> anyhow::Result<Pipeline> {
        Ok(match config.version {
            PipelineVersion::V1 => {
                let store = (storage.store.clone())
                    .context("v1 writes the hour files: it needs storage.backend local")?;
                Pipeline::V1 {
                    keys: KeyIndex::new(store.ledger().clone()),
                    store,
                    metrics: metrics.clone(),
                }
            }
            PipelineVersion::V2 => {
                // Acknowledged batches are this process's to remember; those its consumers
                // stored whole before a restart are known to be acknowledged.
                let retention = Retention::from_config(&config.idempotency);
                let keys = KeyIndex::new(storage.sink.whole_batches(retention));
                let settings = KafkaSettings::from_config(config);
                match KafkaPipeline::start(settings, storage.sink.clone(), metrics.clone()).await {
                    Ok(kafka) => Pipeline::V2 { kafka, keys },
                    Err(err) => {
                        // Release the logs directory before reporting the failure.
                        storage.sink.shutdown().await;
                        return Err(err);
                    }
                }
            }
        })
    }

    /// Stores (v1) or produces (v2) the batch; returns once it is durable per the configured
    /// policy (v1) or acknowledged by the broker (v2), or with what is known of its outcome.
    /// In v1 a batch still waiting for the writer at `deadline` is withdrawn (nothing stored);
    /// in v2 the wait is bounded by `kafka.produceTimeout` instead.
    ///
    /// `site` is the site whose ingest key sent the batch (`None` without sites): its records
    /// are stored under it.
    pub async fn submit(
        &self,
        site: Option<SiteId>,
        batch: EncodedBatch,
        deadline: Instant,
    ) -> Result<(), SubmitError> {
        let mut batch = batch;
        batch.assign_site(site.as_ref());
        match self {
            Pipeline::V1 { store, metrics, .. } => {
                // The ingestion queue of v1 is the store's queue, as far as API batches go.
                let _queued = metrics.queued_batch();
                Ok(store.append_by(batch, deadline).await?)
            }
            Pipeline::V2 { kafka, .. } => Ok(kafka.submit(site.as_ref(), batch, None).await?),
        }
    }

    /// [`Pipeline::submit`] for a batch sent with `key`; `fingerprint` is the batch's. A batch
    /// whose key is done or in flight is not submitted (see [`KeyedOutcome`]).
    pub async fn submit_keyed(
        &self,
        site: Option<SiteId>,
        batch: EncodedBatch,
        key: Key,
        fingerprint: Fingerprint,
        deadline: Instant,
    ) -> Result<KeyedOutcome, SubmitError> {
        let mut batch = batch;
        batch.assign_site(site.as_ref());
        let keys = match self {
            Pipeline::V1 { keys, .. } | Pipeline::V2 { keys, .. } => keys,
        };
        let now = now_ms();
        let hold = match keys.claim(key, fingerprint, now) {
            Claim::Fresh(hold) => hold,
            Claim::Replay { records } => return Ok(KeyedOutcome::Replayed { records }),
            Claim::Reused => return Ok(KeyedOutcome::Reused),
            Claim::InFlight => return Ok(KeyedOutcome::InFlight),
        };
        let update = Update::whole(key, fingerprint, batch.records() as u32, now);
        match self {
            Pipeline::V1 { store, metrics, .. } => {
                let _queued = metrics.queued_batch();
                // The store holds the key in flight until it has decided the batch's outcome.
                store.append_keyed_by(batch, update, hold, deadline).await?;
            }
            Pipeline::V2 { kafka, keys } => {
                kafka.submit(site.as_ref(), batch, Some(&update)).await?;
                keys.complete(&update);
                drop(hold);
            }
        }
        Ok(KeyedOutcome::Stored)
    }

    /// Waits, at most `timeout`, until every batch acknowledged before the call is in the hour
    /// files, so that a read of them (the analytics) sees it; whether it got there. v1 stores
    /// before it acknowledges; v2 waits for its consumers (see [`KafkaPipeline::settle`]).
    pub async fn settle(&self, timeout: Duration) -> bool {
        match self {
            Pipeline::V1 { .. } => true,
            Pipeline::V2 { kafka, .. } => kafka.settle(timeout).await,
        }
    }

    /// Whether batches can be taken now (`GET /ready`); if not, why.
    pub fn readiness(&self) -> Result<(), &'static str> {
        match self {
            Pipeline::V1 { store, .. } => store.readiness(),
            Pipeline::V2 { kafka, .. } => kafka.readiness(),
        }
    }

    /// Drains what is pending and releases everything, in the mode's documented order. A batch
    /// submitted afterwards is refused. Idempotent.
    pub async fn shutdown(&self) {
        match self {
            Pipeline::V1 { store, .. } => store.shutdown().await,
            Pipeline::V2 { kafka, .. } => kafka.shutdown().await,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use chrono::{DateTime, Utc};

    use super::*;
    use crate::config::PipelineVersion;

    /// The v1 pipeline of a logs directory.
    async fn v1(logs_dir: &Path) -> Pipeline {
        let mut config = Config {
            version: PipelineVersion::V1,
            ..Config::default()
        };
        config.storage.logs_dir = logs_dir.to_owned();
        config.storage.analytics_dir = logs_dir.join("analytics");
        let metrics = Metrics::new();
        let storage = Storage::open(&config, &metrics).unwrap();
        Pipeline::start(&config, &storage, &metrics).await.unwrap()
    }

    /// A batch of records at 2025-11-22 14:xx with these paths.
    fn batch(paths: &[&str]) -> EncodedBatch {
        let mut batch = EncodedBatch::default();
        let at: DateTime<Utc> = "2025-11-22T14:05:00Z".parse().unwrap();
        for path in paths {
            batch.push(&at, path, "curl/8.5.0");
        }
        batch
    }

    /// The paths stored in the hour file of 2025-11-22 14:00, in order.
    fn stored(logs_dir: &Path) -> Vec<String> {
        let text =
            std::fs::read_to_string(logs_dir.join("2025-11-22/14.log.json")).unwrap_or_default();
        text.lines()
            .map(|line| {
                let record: serde_json::Value = serde_json::from_str(line).unwrap();
                record["path"].as_str().unwrap().to_owned()
            })
            .collect()
    }

    fn later() -> Instant {
        Instant::now() + Duration::from_secs(30)
    }

    #[tokio::test]
    async fn v1_stores_a_keyed_batch_once_and_refuses_its_key_for_another() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = v1(dir.path()).await;
        let key = Key::parse(b"order-42").unwrap();
        let first = batch(&["/a", "/b"]);
        let fingerprint = Fingerprint::of(&first);
        let submit =
            |batch, fingerprint| pipeline.submit_keyed(None, batch, key, fingerprint, later());

        assert_eq!(
            submit(first, fingerprint).await.unwrap(),
            KeyedOutcome::Stored
        );
        assert_eq!(stored(dir.path()), ["/a", "/b"]);
        assert!(
            pipeline.settle(Duration::ZERO).await,
            "v1 stores before it acknowledges"
        );

        let again = batch(&["/a", "/b"]);
        assert_eq!(Fingerprint::of(&again), fingerprint);
        assert_eq!(
            submit(again, fingerprint).await.unwrap(),
            KeyedOutcome::Replayed { records: 2 }
        );
        let other = batch(&["/c"]);
        let other_fingerprint = Fingerprint::of(&other);
        assert_eq!(
            submit(other, other_fingerprint).await.unwrap(),
            KeyedOutcome::Reused
        );
        assert_eq!(stored(dir.path()), ["/a", "/b"], "nothing stored twice");

        pipeline
            .submit(None, batch(&["/unkeyed"]), later())
            .await
            .unwrap();
        assert_eq!(stored(dir.path()), ["/a", "/b", "/unkeyed"]);
        pipeline.shutdown().await;
    }

    #[tokio::test]
    async fn v1_refuses_batches_after_shutdown_as_shutting_down() {
        let dir = tempfile::tempdir().unwrap();
        let pipeline = v1(dir.path()).await;
        assert_eq!(pipeline.readiness(), Ok(()));
        pipeline.shutdown().await;
        let refused = pipeline.submit(None, batch(&["/late"]), later()).await;
        assert_eq!(
            refused.map_err(|err| err.refusal()).unwrap_err(),
            Refusal::ShuttingDown
        );
        let key = Key::parse(b"late").unwrap();
        let late = batch(&["/late"]);
        let fingerprint = Fingerprint::of(&late);
        let refused = pipeline
            .submit_keyed(None, late, key, fingerprint, later())
            .await;
        assert_eq!(
            refused.map_err(|err| err.refusal()).unwrap_err(),
            Refusal::ShuttingDown
        );
        assert!(stored(dir.path()).is_empty());
    }
}
