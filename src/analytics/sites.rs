//! One [`Aggregator`] per root of the data: the whole directory (or bucket prefix) without sites,
//! else one per configured site, over that site's root ([`crate::layout::site_dir`],
//! [`crate::layout::site_prefix`]), in exactly the same layout. A site's aggregator is made the
//! first time it is asked for (by a query, or by the aggregation task's next pass), so a site
//! added by a reload is served without a restart; one whose site is no longer configured is
//! dropped at the next pass (its summaries stay where they are).
//!
//! How an aggregator is made for a root (which source, which directories) is the storage
//! backend's to say: [`crate::storage`] hands a [`Build`] in.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use super::Aggregator;
use super::summary::Bounds;
use crate::site::SiteId;

/// Makes the aggregator of a root: `None` is the whole data (no sites), `Some(site)` a site's.
pub type Build = Box<dyn Fn(Option<&SiteId>) -> Aggregator + Send + Sync>;

/// The aggregators made so far, by root.
pub struct Aggregators {
    build: Build,
    bounds: Bounds,
    made: Mutex<BTreeMap<Option<SiteId>, Arc<Aggregator>>>,
}

impl Aggregators {
    /// Aggregators made by `build`, whose summaries hold at most `bounds`.
    pub fn new(bounds: Bounds, build: Build) -> Aggregators {
        Aggregators {
            build,
            bounds,
            made: Mutex::default(),
        }
    }

    /// What every aggregator's summaries may hold (see [`Aggregator::bounds`]).
    pub fn bounds(&self) -> Bounds {
        self.bounds
    }

    /// The aggregator of `root`, made now if it was not yet. Call it in the runtime's context:
    /// a bucket source keeps the runtime it is made in.
    pub fn get(&self, root: Option<&SiteId>) -> Arc<Aggregator> {
        let mut made = self.made.lock().expect("aggregators lock");
        if let Some(aggregator) = made.get(&root.cloned()) {
            return aggregator.clone();
        }
        let aggregator = Arc::new((self.build)(root));
        made.insert(root.cloned(), aggregator.clone());
        aggregator
    }

    /// The aggregators of `roots` (the roots in force), made if need be; those of any other root
    /// are forgotten (a query that holds one finishes with it).
    pub fn in_force(&self, roots: &[Option<SiteId>]) -> Vec<Arc<Aggregator>> {
        let aggregators: Vec<_> = roots.iter().map(|root| self.get(root.as_ref())).collect();
        (self.made.lock().expect("aggregators lock")).retain(|root, _| roots.contains(root));
        aggregators
    }

    /// Every aggregator made and not forgotten.
    pub fn all(&self) -> Vec<Arc<Aggregator>> {
        let made = self.made.lock().expect("aggregators lock");
        made.values().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use std::path::Path;

    const BOUNDS: Bounds = Bounds {
        max_keys: 10,
        max_bytes: 1 << 16,
    };

    fn aggregators(root: &Path) -> Aggregators {
        let root = root.to_owned();
        Aggregators::new(
            BOUNDS,
            Box::new(move |site: Option<&SiteId>| {
                let dir = crate::layout::site_dir(&root, site);
                Aggregator::new(
                    dir.join("logs"),
                    dir.join("analytics"),
                    BOUNDS,
                    Metrics::new(),
                )
            }),
        )
    }

    fn site(id: &str) -> Option<SiteId> {
        Some(SiteId::parse(id).unwrap())
    }

    #[test]
    fn each_root_has_one_aggregator_over_its_own_directories() {
        let dir = tempfile::tempdir().unwrap();
        let aggregators = aggregators(dir.path());
        let a = aggregators.get(site("a").as_ref());
        assert!(Arc::ptr_eq(&a, &aggregators.get(site("a").as_ref())));
        assert_eq!(
            a.analytics_dir(),
            dir.path().join("sites/a/analytics"),
            "a site's summaries are below its own root"
        );
        assert_eq!(
            aggregators.get(None).analytics_dir(),
            dir.path().join("analytics")
        );
    }

    #[test]
    fn roots_no_longer_in_force_are_forgotten_and_new_ones_made() {
        let dir = tempfile::tempdir().unwrap();
        let aggregators = aggregators(dir.path());
        let a = aggregators.get(site("a").as_ref());
        let now = aggregators.in_force(&[site("b"), site("c")]);
        assert_eq!(now.len(), 2);
        assert_eq!(aggregators.all().len(), 2, "a is forgotten");
        assert!(
            !Arc::ptr_eq(&a, &aggregators.get(site("a").as_ref())),
            "a site added again gets a new aggregator (over the same summaries)"
        );
    }
}
