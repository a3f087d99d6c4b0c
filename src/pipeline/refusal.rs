//! Why a batch was not accepted, in the terms a client acts on: [`Refusal`] says what was stored
//! and what the client may do, whichever backend refused; [`SubmitError`] carries it with the
//! backend's own account (for the log). Each backend's errors are mapped here, once: the store's
//! ([`StoreError`], v1) and the producer's ([`ProduceError`], v2). `http::ApiError` turns a
//! [`Refusal`] into a status code and a JSON body, and never sees a backend's variants.

use crate::kafka::ProduceError;
use crate::store::StoreError;

/// What a refused batch means for the client.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Nothing stored: it waited for the writer past its deadline and was withdrawn. Retry later.
    TimedOut,
    /// Nothing stored: pending work is at its bound. Retry later.
    Overloaded,
    /// Nothing stored: the service is draining.
    ShuttingDown,
    /// Nothing stored: a write failed and was rolled back, or the broker refused the batch or
    /// does not answer. Retry later.
    Unavailable,
    /// `delivered` of the batch's `total` records reached Kafka; the others certainly did not.
    Partial { delivered: usize, total: usize },
    /// Part of the batch may be stored, and nobody can tell which: a rollback failed or the
    /// writer did not answer in time (v1), or records were sent to Kafka without an answer (v2,
    /// which knows the `counts`).
    OutcomeUnknown { counts: Option<UnknownCounts> },
    /// The backend cannot work at all (cannot happen after start-up).
    Broken,
}

/// The records of a batch whose outcome is unknown, when the backend can count them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct UnknownCounts {
    /// Records certainly stored.
    pub delivered: usize,
    /// Records that may or may not be stored.
    pub unknown: usize,
    /// Records of the batch.
    pub total: usize,
}

/// Why a batch was not accepted: its [`Refusal`], and the backend's error for the log (its
/// `Display`).
#[derive(Debug, thiserror::Error)]
#[error("{cause}")]
pub struct SubmitError {
    refusal: Refusal,
    cause: Box<dyn std::error::Error + Send + Sync>,
}

impl SubmitError {
    /// A refusal for the client, with what the backend reported.
    pub fn new(
        refusal: Refusal,
        cause: impl Into<Box<dyn std::error::Error + Send + Sync>>,
    ) -> SubmitError {
        SubmitError {
            refusal,
            cause: cause.into(),
        }
    }

    /// What the refusal means for the client.
    pub fn refusal(&self) -> Refusal {
        self.refusal
    }
}

impl From<StoreError> for SubmitError {
    fn from(err: StoreError) -> SubmitError {
        let refusal = match &err {
            StoreError::Withdrawn => Refusal::TimedOut,
            StoreError::Overloaded => Refusal::Overloaded,
            StoreError::Closed => Refusal::ShuttingDown,
            StoreError::WriteFailed(_) => Refusal::Unavailable,
            StoreError::Inconsistent(_) | StoreError::OutcomeUnknown => {
                Refusal::OutcomeUnknown { counts: None }
            }
            StoreError::Locked { .. } | StoreError::Open { .. } => Refusal::Broken,
        };
        SubmitError::new(refusal, err)
    }
}

impl From<ProduceError> for SubmitError {
    fn from(err: ProduceError) -> SubmitError {
        let refusal = match &err {
            ProduceError::Overloaded => Refusal::Overloaded,
            ProduceError::Unavailable { .. } => Refusal::Unavailable,
            ProduceError::Partial {
                delivered, total, ..
            } => Refusal::Partial {
                delivered: *delivered,
                total: *total,
            },
            ProduceError::OutcomeUnknown {
                delivered,
                unknown,
                total,
                ..
            } => Refusal::OutcomeUnknown {
                counts: Some(UnknownCounts {
                    delivered: *delivered,
                    unknown: *unknown,
                    total: *total,
                }),
            },
        };
        SubmitError::new(refusal, err)
    }
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use super::*;

    /// Every variant of each backend's error, and the refusal it means for the client.
    #[test]
    fn each_backend_error_means_one_refusal() {
        let unknown = Refusal::OutcomeUnknown { counts: None };
        let store = [
            (StoreError::Withdrawn, Refusal::TimedOut),
            (StoreError::Overloaded, Refusal::Overloaded),
            (StoreError::Closed, Refusal::ShuttingDown),
            (
                StoreError::WriteFailed("disk full".into()),
                Refusal::Unavailable,
            ),
            (StoreError::Inconsistent("truncate failed".into()), unknown),
            (StoreError::OutcomeUnknown, unknown),
            (
                StoreError::Locked {
                    dir: PathBuf::from("logs"),
                    holder: "pid 7".into(),
                },
                Refusal::Broken,
            ),
            (
                StoreError::Open {
                    dir: PathBuf::from("logs"),
                    reason: "permission denied".into(),
                },
                Refusal::Broken,
            ),
        ];
        for (err, refusal) in store {
            let said = err.to_string();
            let mapped = SubmitError::from(err);
            assert_eq!(mapped.refusal(), refusal, "{said}");
            assert_eq!(mapped.to_string(), said, "the log keeps the store's words");
        }
        let kafka = [
            (ProduceError::Overloaded, Refusal::Overloaded),
            (
                ProduceError::Unavailable {
                    reason: "no broker".into(),
                },
                Refusal::Unavailable,
            ),
            (
                ProduceError::Partial {
                    delivered: 2,
                    total: 5,
                    reason: "too large".into(),
                },
                Refusal::Partial {
                    delivered: 2,
                    total: 5,
                },
            ),
            (
                ProduceError::OutcomeUnknown {
                    delivered: 1,
                    unknown: 3,
                    total: 5,
                    reason: "timed out".into(),
                },
                Refusal::OutcomeUnknown {
                    counts: Some(UnknownCounts {
                        delivered: 1,
                        unknown: 3,
                        total: 5,
                    }),
                },
            ),
        ];
        for (err, refusal) in kafka {
            let said = err.to_string();
            let mapped = SubmitError::from(err);
            assert_eq!(mapped.refusal(), refusal, "{said}");
            assert_eq!(
                mapped.to_string(),
                said,
                "the log keeps the producer's words"
            );
        }
    }
}
