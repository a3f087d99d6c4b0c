//! What became of the records of one batch: librdkafka's delivery reports counted into a
//! [`Tracker`], and the batch's outcome ([`ProduceError`]) worked out from them once every record
//! was reported or the wait ran out.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rdkafka::error::KafkaError;
use tokio::sync::Notify;

use super::ProduceError;

/// What librdkafka's delivery report says of one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Delivery {
    /// The broker has it. Without an offset when the broker answered DUPLICATE_SEQUENCE_NUMBER
    /// ("an earlier attempt wrote it").
    Persisted { with_offset: bool },
    /// Sent, and no answer came: the broker may or may not have it.
    PossiblyPersisted,
    /// The broker certainly does not have it.
    NotPersisted,
}

/// What became of the records of one batch, filled in by librdkafka's delivery reports.
#[derive(Default)]
pub(in crate::kafka) struct Tracker {
    /// Records sent and not yet reported, plus one while the sender is still sending.
    pending: AtomicUsize,
    persisted: AtomicUsize,
    not_persisted: AtomicUsize,
    possibly_persisted: AtomicUsize,
    /// Of `persisted`: reported without an offset, which is how librdkafka reports a batch the
    /// broker answered with DUPLICATE_SEQUENCE_NUMBER ("an earlier attempt wrote it").
    without_offset: AtomicUsize,
    first_error: Mutex<Option<String>>,
    done: Notify,
}

impl Tracker {
    /// A tracker for a batch about to be sent; [`Tracker::sent_all`] ends the sending.
    pub(in crate::kafka) fn new() -> Arc<Tracker> {
        Arc::new(Tracker {
            pending: AtomicUsize::new(1),
            ..Tracker::default()
        })
    }

    pub(super) fn sending_one(&self) {
        self.pending.fetch_add(1, Ordering::AcqRel);
    }

    pub(super) fn report_done(&self) {
        if self.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            self.done.notify_one();
        }
    }

    fn failed(&self, reason: &dyn std::fmt::Display) {
        self.first_error
            .lock()
            .expect("tracker lock")
            .get_or_insert_with(|| reason.to_string());
    }

    /// Counts the delivery report of one sent record (`error`: the report's, if any).
    pub(super) fn report(&self, delivery: Delivery, error: Option<&dyn std::fmt::Display>) {
        let counter = match delivery {
            Delivery::Persisted { with_offset } => {
                if !with_offset {
                    self.without_offset.fetch_add(1, Ordering::AcqRel);
                }
                &self.persisted
            }
            Delivery::PossiblyPersisted => &self.possibly_persisted,
            Delivery::NotPersisted => &self.not_persisted,
        };
        counter.fetch_add(1, Ordering::AcqRel);
        if let Some(error) = error {
            self.failed(error);
        }
        self.report_done();
    }

    /// The sender sent what it could (`refused`: the error that stopped it, if any).
    pub(in crate::kafka) fn sent_all(&self, refused: Option<&KafkaError>) {
        if let Some(err) = refused {
            self.failed(err);
        }
        self.report_done();
    }

    /// Waits until every sent record was reported, at most `deadline`; whether they all were.
    pub(in crate::kafka) async fn reported(&self, deadline: Duration) -> bool {
        tokio::time::timeout(deadline, async {
            while self.pending.load(Ordering::Acquire) > 0 {
                self.done.notified().await;
            }
        })
        .await
        .is_ok()
    }

    /// Records acknowledged so far.
    pub(in crate::kafka) fn persisted(&self) -> usize {
        self.persisted.load(Ordering::Acquire)
    }

    /// Of the records acknowledged, those acknowledged without an offset (see the field).
    pub(super) fn without_offset(&self) -> usize {
        self.without_offset.load(Ordering::Acquire)
    }

    /// The outcome of a batch of `total` records, once [`Tracker::reported`] returned.
    pub(in crate::kafka) fn outcome(
        &self,
        total: usize,
        all_reported: bool,
    ) -> Result<(), ProduceError> {
        let delivered = self.persisted();
        let possibly = self.possibly_persisted.load(Ordering::Acquire);
        let reason = || {
            self.first_error
                .lock()
                .expect("tracker lock")
                .clone()
                .unwrap_or_else(|| "no delivery report within kafka.produceTimeout".to_owned())
        };
        if !all_reported {
            // Whatever was sent and not reported may still arrive.
            let not = self.not_persisted.load(Ordering::Acquire);
            let unknown = total - delivered - not;
            return Err(ProduceError::OutcomeUnknown {
                delivered,
                unknown,
                total,
                reason: reason(),
            });
        }
        if delivered == total {
            Ok(())
        } else if possibly > 0 {
            Err(ProduceError::OutcomeUnknown {
                delivered,
                unknown: possibly,
                total,
                reason: reason(),
            })
        } else if delivered == 0 {
            Err(ProduceError::Unavailable { reason: reason() })
        } else {
            Err(ProduceError::Partial {
                delivered,
                total,
                reason: reason(),
            })
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::types::RDKafkaErrorCode;

    use super::*;

    /// A tracker of a batch whose `reports` were all sent and reported, in that order.
    fn reported(reports: &[(Delivery, Option<&str>)]) -> Arc<Tracker> {
        let tracker = Tracker::new();
        for _ in reports {
            tracker.sending_one();
        }
        tracker.sent_all(None);
        for (delivery, error) in reports {
            let error = error.as_ref().map(|e| e as &dyn std::fmt::Display);
            tracker.report(*delivery, error);
        }
        tracker
    }

    const ACKED: (Delivery, Option<&str>) = (Delivery::Persisted { with_offset: true }, None);
    const REFUSED: (Delivery, Option<&str>) = (Delivery::NotPersisted, Some("too large"));
    const SILENT: (Delivery, Option<&str>) = (Delivery::PossiblyPersisted, Some("timed out"));

    #[tokio::test]
    async fn a_batch_every_record_of_which_the_broker_has_is_acknowledged() {
        let tracker = reported(&[ACKED, ACKED, ACKED]);
        assert!(tracker.reported(Duration::ZERO).await);
        assert!(tracker.outcome(3, true).is_ok());
    }

    #[tokio::test]
    async fn the_outcome_says_exactly_what_the_broker_has() {
        let tracker = reported(&[REFUSED, REFUSED]);
        assert!(matches!(
            tracker.outcome(2, true),
            Err(ProduceError::Unavailable { reason }) if reason == "too large"
        ));

        let tracker = reported(&[ACKED, REFUSED, REFUSED]);
        assert!(matches!(
            tracker.outcome(3, true),
            Err(ProduceError::Partial {
                delivered: 1,
                total: 3,
                ..
            })
        ));

        // One record without an answer makes the whole outcome unknown, whatever else failed.
        let tracker = reported(&[ACKED, SILENT, REFUSED]);
        assert!(matches!(
            tracker.outcome(3, true),
            Err(ProduceError::OutcomeUnknown { delivered: 1, unknown: 1, total: 3, reason })
                if reason == "timed out"
        ));
    }

    #[tokio::test]
    async fn records_never_reported_are_unknown() {
        let tracker = Tracker::new();
        for _ in 0..4 {
            tracker.sending_one();
        }
        tracker.sent_all(None);
        tracker.report(ACKED.0, None);
        tracker.report(REFUSED.0, None);
        assert!(!tracker.reported(Duration::from_millis(10)).await);
        let outcome = tracker.outcome(4, false);
        assert!(
            matches!(
                &outcome,
                Err(ProduceError::OutcomeUnknown { delivered: 1, unknown: 2, total: 4, reason })
                    if reason == "no delivery report within kafka.produceTimeout"
            ),
            "{outcome:?}"
        );
    }

    #[tokio::test]
    async fn a_record_the_client_refused_to_send_is_certainly_not_stored() {
        // Two of three records sent and acknowledged; the client refused the third (queue full).
        let tracker = Tracker::new();
        tracker.sending_one();
        tracker.sending_one();
        let queue_full = KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull);
        tracker.sent_all(Some(&queue_full));
        tracker.report(ACKED.0, None);
        tracker.report(ACKED.0, Some(&"later failure"));
        assert!(tracker.reported(Duration::ZERO).await);
        let outcome = tracker.outcome(3, true);
        assert!(
            matches!(
                &outcome,
                Err(ProduceError::Partial { delivered: 2, total: 3, reason })
                    if *reason == queue_full.to_string()
            ),
            "the first error is the reason: {outcome:?}"
        );
    }

    #[tokio::test]
    async fn the_waiter_hears_reports_from_another_thread() {
        let tracker = Tracker::new();
        tracker.sending_one();
        tracker.sent_all(None);
        assert_eq!(tracker.without_offset.load(Ordering::Acquire), 0);
        let reporter = tracker.clone();
        let reporting = std::thread::spawn(move || {
            reporter.report(Delivery::Persisted { with_offset: false }, None);
        });
        assert!(tracker.reported(Duration::from_secs(10)).await);
        reporting.join().unwrap();
        assert!(tracker.outcome(1, true).is_ok());
        assert_eq!(tracker.without_offset.load(Ordering::Acquire), 1);
    }
}
