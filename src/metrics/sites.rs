//! The per-site metrics (with `sites.file`): what each configured site sent and how its batches
//! were refused, and the sites file's reloads. The `site` label only ever takes the id of a
//! configured site (the site of the key that authenticated the request, never a value a request
//! names), so there are at most as many series as sites × reasons; a site's series go when a
//! reload removes it.

use prometheus::{IntCounterVec, IntGauge, Opts, Registry};

use super::Refused;

/// `sites_reloads_total` outcomes.
pub const RELOAD_APPLIED: &str = "applied";
pub const RELOAD_REFUSED: &str = "refused";

/// The per-site series and the reload counters.
#[derive(Clone)]
pub struct SiteMetrics {
    /// Sites in the sites file in force.
    pub configured: IntGauge,
    /// Reloads of the sites file, by outcome (`applied`, `refused`: invalid, the running set kept).
    pub reloads: IntCounterVec,
    records_accepted: IntCounterVec,
    bytes_received: IntCounterVec,
    batches_refused: IntCounterVec,
}

impl SiteMetrics {
    pub(super) fn register(registry: &Registry) -> SiteMetrics {
        let vec = |name: &str, help: &str, labels: &[&str]| {
            let vec =
                IntCounterVec::new(Opts::new(name, help), labels).expect("valid metric definition");
            registry
                .register(Box::new(vec.clone()))
                .expect("metric registered once");
            vec
        };
        let configured = IntGauge::new(
            "sites_configured",
            "Number of customer sites in the sites file in force (0 without sites.file).",
        )
        .expect("valid metric definition");
        registry
            .register(Box::new(configured.clone()))
            .expect("metric registered once");
        let reloads = vec(
            "sites_reloads_total",
            "Total number of reloads of the sites file (SIGHUP or POST /admin/reload), by outcome: applied, or refused (invalid; the running set kept).",
            &["outcome"],
        );
        for outcome in [RELOAD_APPLIED, RELOAD_REFUSED] {
            reloads.with_label_values(&[outcome]);
        }
        SiteMetrics {
            configured,
            reloads,
            records_accepted: vec(
                "site_records_accepted_total",
                "Total number of records accepted (answered 202, not a replay) for each site.",
                &["site"],
            ),
            bytes_received: vec(
                "site_bytes_received_total",
                "Total number of request body bytes (after decompression) read in full for each site.",
                &["site"],
            ),
            batches_refused: vec(
                "site_batches_refused_total",
                "Total number of /logs requests of each site refused, by reason (rate_limited, over_burst, inflight_share, bodies_in_flight, pending_work, invalid, key_in_flight, key_reused).",
                &["site", "reason"],
            ),
        }
    }

    /// Makes the series of exactly `sites` exist (at 0 for a new one), and removes those of
    /// sites no longer configured: called with the sites in force at start-up and each reload.
    pub fn configure<'a>(&self, sites: impl IntoIterator<Item = &'a str>, previous: &[&str]) {
        let sites: Vec<&str> = sites.into_iter().collect();
        self.configured.set(sites.len() as i64);
        for gone in previous.iter().filter(|site| !sites.contains(site)) {
            let _ = self.records_accepted.remove_label_values(&[gone]);
            let _ = self.bytes_received.remove_label_values(&[gone]);
            for reason in Refused::ALL {
                let _ = (self.batches_refused).remove_label_values(&[gone, reason.label()]);
            }
        }
        for site in sites {
            self.records_accepted.with_label_values(&[site]);
            self.bytes_received.with_label_values(&[site]);
            for reason in Refused::ALL {
                self.batches_refused
                    .with_label_values(&[site, reason.label()]);
            }
        }
    }

    /// `records` of `site` accepted.
    pub fn accepted(&self, site: &str, records: usize) {
        (self.records_accepted.with_label_values(&[site])).inc_by(records as u64);
    }

    /// A body of `bytes` bytes of `site` read in full.
    pub fn received(&self, site: &str, bytes: usize) {
        (self.bytes_received.with_label_values(&[site])).inc_by(bytes as u64);
    }

    /// A request of `site` refused because `why`.
    pub fn refused(&self, site: &str, why: Refused) {
        (self.batches_refused)
            .with_label_values(&[site, why.label()])
            .inc();
    }
}
