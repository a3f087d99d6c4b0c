//! Why `POST /logs` refused a request, and the one place each refusal is counted.

use super::{CONFLICT_IN_FLIGHT, CONFLICT_REUSED, Metrics};

impl Metrics {
    /// Counts one refused `POST /logs` request in the counter of its kind:
    /// `invalid_requests_total`, `ingest_inflight_rejections_total`,
    /// `ingest_overload_rejections_total` or `idempotency_conflicts_total{reason}`; a site's
    /// limits only in `site_batches_refused_total` (see [`Refused`]). A request of a site counts
    /// there too, by reason.
    pub fn count_refused(&self, site: Option<&str>, why: Refused) {
        if let Some(site) = site {
            self.sites.refused(site, why);
        }
        match why {
            Refused::Invalid | Refused::OverBurst => self.invalid_requests.inc(),
            Refused::RateLimited | Refused::InflightShare => {}
            Refused::BodiesInFlight => self.inflight_rejections.inc(),
            Refused::PendingWork => self.overload_rejections.inc(),
            Refused::KeyInFlight => self
                .idempotency_conflicts
                .with_label_values(&[CONFLICT_IN_FLIGHT])
                .inc(),
            Refused::KeyReused => self
                .idempotency_conflicts
                .with_label_values(&[CONFLICT_REUSED])
                .inc(),
        }
    }
}

/// Why `POST /logs` refused a request, as the refusal counters tell refusals apart (see
/// [`Metrics::count_refused`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refused {
    /// The body, its type, its encoding or its `Idempotency-Key` (400, 413, 415).
    Invalid,
    /// Request bodies in flight reached `server.maxInflightBytes` (503 `overloaded`).
    BodiesInFlight,
    /// Pending work reached its bound (503 `overloaded`).
    PendingWork,
    /// A request with the same `Idempotency-Key` is in flight (409).
    KeyInFlight,
    /// The `Idempotency-Key` was used for another batch (422).
    KeyReused,
    /// The batch did not fit its site's records per second now (429 `rate_limited`).
    RateLimited,
    /// The batch has more records than its site's burst: it never fits (413 `over_burst`).
    OverBurst,
    /// The site's bodies in flight reached its share of `server.maxInflightBytes` (429
    /// `inflight_share_exceeded`).
    InflightShare,
}

impl Refused {
    pub const ALL: [Refused; 8] = [
        Refused::Invalid,
        Refused::BodiesInFlight,
        Refused::PendingWork,
        Refused::KeyInFlight,
        Refused::KeyReused,
        Refused::RateLimited,
        Refused::OverBurst,
        Refused::InflightShare,
    ];

    /// The `reason` label of `site_batches_refused_total`.
    pub fn label(self) -> &'static str {
        match self {
            Refused::Invalid => "invalid",
            Refused::BodiesInFlight => "bodies_in_flight",
            Refused::PendingWork => "pending_work",
            Refused::KeyInFlight => "key_in_flight",
            Refused::KeyReused => "key_reused",
            Refused::RateLimited => "rate_limited",
            Refused::OverBurst => "over_burst",
            Refused::InflightShare => "inflight_share",
        }
    }
}
