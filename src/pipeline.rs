//! Where accepted batches go: one value owns each pipeline mode, from start-up to shutdown.
//!
//! - [`Pipeline::V1`]: the [`Store`] writes batches straight to the hour files.
//! - [`Pipeline::V2`]: the [`KafkaPipeline`] produces them to Kafka; its consumer group writes the
//!   same hour files through its own [`Store`].
//!
//! The HTTP layer sees only [`Pipeline`] and [`SubmitError`]; each backend keeps its own error
//! type, and `http::ApiError` is the one place that turns them into answers.

use crate::config::{Config, PipelineVersion};
use crate::kafka::{KafkaPipeline, KafkaSettings, ProduceError};
use crate::metrics::Metrics;
use crate::record::EncodedBatch;
use crate::store::{Store, StoreError, StoreOptions};

/// The running pipeline of this process.
pub enum Pipeline {
    /// v1: straight into the hour files.
    V1 { store: Store, metrics: Metrics },
    /// v2: through Kafka.
    V2(KafkaPipeline),
}

/// Why a batch was not accepted, as its backend reports it.
#[derive(Debug, thiserror::Error)]
pub enum SubmitError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error(transparent)]
    Kafka(#[from] ProduceError),
}

impl Pipeline {
    /// Opens the store and, in v2, connects to Kafka and starts the consumer group.
    pub async fn start(config: &Config, metrics: &Metrics) -> anyhow::Result<Pipeline> {
        let store = Store::open(StoreOptions::from_config(&config.storage), metrics.clone())?;
        Ok(match config.version {
            PipelineVersion::V1 => Pipeline::V1 {
                store,
                metrics: metrics.clone(),
            },
            PipelineVersion::V2 => {
                let settings = KafkaSettings::from_config(config);
                match KafkaPipeline::start(settings, store.clone(), metrics.clone()).await {
                    Ok(kafka) => Pipeline::V2(kafka),
                    Err(err) => {
                        // Release the logs directory before reporting the failure.
                        store.shutdown().await;
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
    pub async fn submit(
        &self,
        batch: EncodedBatch,
        deadline: std::time::Instant,
    ) -> Result<(), SubmitError> {
        match self {
            Pipeline::V1 { store, metrics } => {
                // The ingestion queue of v1 is the store's queue, as far as API batches go.
                let _queued = metrics.queued_batch();
                Ok(store.append_by(batch, deadline).await?)
            }
            Pipeline::V2(kafka) => Ok(kafka.submit(batch).await?),
        }
    }

    /// Waits, at most `timeout`, until every batch acknowledged before the call is in the hour
    /// files, so that a read of them (the analytics) sees it; whether it got there. v1 stores
    /// before it acknowledges; v2 waits for its consumers (see [`KafkaPipeline::settle`]).
    pub async fn settle(&self, timeout: std::time::Duration) -> bool {
        match self {
            Pipeline::V1 { .. } => true,
            Pipeline::V2(kafka) => kafka.settle(timeout).await,
        }
    }

    /// Whether batches can be taken now (`GET /ready`); if not, why.
    pub fn readiness(&self) -> Result<(), &'static str> {
        match self {
            Pipeline::V1 { store, .. } => store.readiness(),
            Pipeline::V2(kafka) => kafka.readiness(),
        }
    }

    /// Drains what is pending and releases everything, in the mode's documented order. A batch
    /// submitted afterwards is refused. Idempotent.
    pub async fn shutdown(&self) {
        match self {
            Pipeline::V1 { store, .. } => store.shutdown().await,
            Pipeline::V2(kafka) => kafka.shutdown().await,
        }
    }
}
