//! Where accepted batches go, chosen by pipeline version: v1 appends to the [`Store`] directly,
//! v2 produces to Kafka ([`KafkaSink`]). The HTTP layer only ever sees [`Sink`].

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::kafka::producer::KafkaSink;
use crate::record::EncodedBatch;
use crate::store::{Store, StoreError};

/// The destination of accepted batches.
#[derive(Clone)]
pub enum Sink {
    /// v1: straight into the hourly files.
    File(Store),
    /// v2: to Kafka; `reachable` is kept up to date by the broker probe.
    Kafka {
        sink: KafkaSink,
        reachable: Arc<AtomicBool>,
    },
}

/// Why a batch was not accepted by the sink.
#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    /// Pending work is at its bound; nothing was stored; retry later.
    #[error("overloaded")]
    Overloaded,
    /// The sink is shutting down; nothing was stored.
    #[error("shutting down")]
    Closed,
    /// A transient failure; nothing of the batch was stored.
    #[error("storage unavailable: {0}")]
    Unavailable(String),
    /// Some records of the batch reached Kafka before a failure: retrying stores those again.
    #[error("{delivered} of {total} records were delivered")]
    Partial { delivered: usize, total: usize },
    /// A failure after which part of the batch may be stored.
    #[error("internal failure: {0}")]
    Failed(String),
}

impl From<StoreError> for SinkError {
    fn from(err: StoreError) -> Self {
        match err {
            StoreError::Overloaded => SinkError::Overloaded,
            StoreError::Closed => SinkError::Closed,
            StoreError::WriteFailed(reason) => SinkError::Unavailable(reason),
            other => SinkError::Failed(other.to_string()),
        }
    }
}

impl Sink {
    /// Stores (v1) the batch; returns once it is durable per the configured policy.
    pub async fn submit(&self, batch: EncodedBatch) -> Result<(), SinkError> {
        match self {
            Sink::File(store) => Ok(store.append(batch).await?),
            Sink::Kafka { sink, .. } => sink.submit(batch).await,
        }
    }

    /// Whether the sink can take batches now (`GET /ready`).
    pub fn is_ready(&self) -> bool {
        match self {
            Sink::File(store) => store.is_ready(),
            Sink::Kafka { reachable, .. } => reachable.load(Ordering::Relaxed),
        }
    }

    /// Drains what is pending and releases resources.
    pub async fn shutdown(&self) {
        match self {
            Sink::File(store) => store.shutdown().await,
            Sink::Kafka { sink, .. } => {
                let sink = sink.clone();
                let _ = tokio::task::spawn_blocking(move || {
                    sink.flush(std::time::Duration::from_secs(10))
                })
                .await;
            }
        }
    }
}
