//! What a request of `POST /logs` may hold and take: its share of `server.maxInflightBytes`
//! while its body is read and decoded ([`BudgetShare`]), and, with sites, its site's fair share
//! ([`SiteShare`]): records per second with a burst (a token bucket, governor's GCRA) and a share
//! of the in-flight byte budget (`inflightShare` × `server.maxInflightBytes`). Without sites there
//! is no site share and nothing here changes what a request may do.
//!
//! A site's share is looked up by the site and the limits of the keys in force when its request
//! arrived ([`FairShare::of`]): new limits from a reload apply to the requests that arrive
//! afterwards, and a site whose limits a reload did not change keeps its bucket and the bytes its
//! bodies hold.

use std::collections::HashMap;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::middleware::NoOpMiddleware;
use governor::state::{InMemoryState, NotKeyed};
use governor::{Quota, RateLimiter};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::error::ApiError;
use crate::config::SiteLimits;
use crate::site::SiteId;

/// Every site's share, made when its first request arrives.
pub struct FairShare<C: Clock = DefaultClock> {
    /// `server.maxInflightBytes` (as the budget's semaphore holds it).
    inflight_bytes: usize,
    clock: C,
    sites: Mutex<HashMap<SiteId, Arc<SiteShare<C>>>>,
}

/// One site's share, for its limits.
pub struct SiteShare<C: Clock = DefaultClock> {
    site: SiteId,
    limits: SiteLimits,
    bucket: RateLimiter<NotKeyed, InMemoryState, C, NoOpMiddleware<C::Instant>>,
    clock: C,
    /// The site's share of the in-flight budget, in bytes.
    inflight: Arc<Semaphore>,
    inflight_bytes: usize,
}

impl FairShare {
    /// The shares of sites whose requests share a budget of `inflight_bytes`.
    pub fn new(inflight_bytes: usize) -> FairShare {
        FairShare::with_clock(inflight_bytes, DefaultClock::default())
    }
}

impl<C: Clock + Clone> FairShare<C> {
    /// [`FairShare::new`], the buckets filling by `clock`.
    pub fn with_clock(inflight_bytes: usize, clock: C) -> FairShare<C> {
        FairShare {
            inflight_bytes,
            clock,
            sites: Mutex::new(HashMap::new()),
        }
    }

    /// The share of `site` under `limits`: the one it has if its limits are these, a new one
    /// (a full bucket, no bytes held) otherwise.
    pub fn of(&self, site: &SiteId, limits: SiteLimits) -> Arc<SiteShare<C>> {
        let mut sites = self.sites.lock().expect("fair share lock");
        if let Some(share) = sites.get(site)
            && share.limits == limits
        {
            return share.clone();
        }
        let share = Arc::new(SiteShare::new(
            site.clone(),
            limits,
            self.inflight_bytes,
            self.clock.clone(),
        ));
        sites.insert(site.clone(), share.clone());
        share
    }
}

impl<C: Clock + Clone> SiteShare<C> {
    fn new(site: SiteId, limits: SiteLimits, inflight_bytes: usize, clock: C) -> SiteShare<C> {
        let at_least_one = |n: u32| NonZeroU32::new(n).unwrap_or(NonZeroU32::MIN);
        let quota = Quota::per_second(at_least_one(limits.records_per_second))
            .allow_burst(at_least_one(limits.burst));
        // The configuration keeps the share in (0, 1]; a site always holds at least a byte.
        let share = ((inflight_bytes as f64 * limits.inflight_share) as usize)
            .clamp(1, inflight_bytes.max(1));
        SiteShare {
            bucket: RateLimiter::direct_with_clock(quota, clock.clone()),
            clock,
            inflight: Arc::new(Semaphore::new(share)),
            inflight_bytes: share,
            site,
            limits,
        }
    }

    /// The site's share of the in-flight budget, in bytes.
    pub fn inflight_bytes(&self) -> usize {
        self.inflight_bytes
    }

    /// Whether a request of the site may begin, before its body is read: its bucket holds a
    /// record now (taken: every batch has one), else 429 `rate_limited`.
    pub fn admit(&self) -> Result<(), ApiError> {
        self.take(1)
    }

    /// Charges the rest of a decoded batch of `records` records (one was taken by
    /// [`SiteShare::admit`]): 413 `over_burst` if it has more than the burst (it can never fit),
    /// 429 `rate_limited` if it does not fit now (nothing taken).
    pub fn charge(&self, records: usize) -> Result<(), ApiError> {
        if records > self.limits.burst as usize {
            return Err(ApiError::OverBurst {
                site: self.site.clone(),
                records,
                burst: self.limits.burst,
            });
        }
        self.take(records.saturating_sub(1) as u32)
    }

    fn take(&self, records: u32) -> Result<(), ApiError> {
        let Some(records) = NonZeroU32::new(records) else {
            return Ok(());
        };
        match self.bucket.check_n(records) {
            Ok(Ok(())) => Ok(()),
            Ok(Err(not_until)) => {
                Err(self.rate_limited(not_until.wait_time_from(self.clock.now())))
            }
            // More than the burst: refused by `charge` before it asks.
            Err(_) => Err(self.rate_limited(Duration::from_secs(1))),
        }
    }

    fn rate_limited(&self, wait: Duration) -> ApiError {
        // Whole seconds, rounded up, at least one: a client that waits that long fits.
        let retry_after = wait.as_secs() + u64::from(wait.subsec_nanos() > 0);
        ApiError::RateLimited {
            site: self.site.clone(),
            records_per_second: self.limits.records_per_second,
            burst: self.limits.burst,
            retry_after: retry_after.max(1),
        }
    }

    fn over_share(&self) -> ApiError {
        ApiError::InflightShareExceeded {
            site: self.site.clone(),
            bytes: self.inflight_bytes,
        }
    }

    /// Whether a body that declares `length` bytes may fit the site's share now (advisory,
    /// reserving nothing: see [`BudgetShare`]).
    pub fn may_hold(&self, length: usize) -> Result<(), ApiError> {
        if length > self.inflight.available_permits() {
            return Err(self.over_share());
        }
        Ok(())
    }
}

/// One request's share of `server.maxInflightBytes` (and of its site's share of it, with sites);
/// given back when dropped.
pub struct BudgetShare {
    budget: Arc<Semaphore>,
    held: Option<OwnedSemaphorePermit>,
    site: Option<(Arc<SiteShare>, Option<OwnedSemaphorePermit>)>,
    bytes: usize,
}

impl BudgetShare {
    /// An empty share of `budget`, and of `site`'s share of it.
    pub fn new(budget: &Arc<Semaphore>, site: Option<Arc<SiteShare>>) -> BudgetShare {
        BudgetShare {
            budget: budget.clone(),
            held: None,
            site: site.map(|site| (site, None)),
            bytes: 0,
        }
    }

    /// Grows the share to cover `bytes` exactly (a body's frames are at most a connection's
    /// read buffer, so this is one step per 16 KiB at most): 429 `inflight_share_exceeded` if
    /// they are not free in the site's share, 503 `overloaded` if not in the whole budget.
    pub fn grow_to(&mut self, bytes: usize) -> Result<(), ApiError> {
        if bytes <= self.bytes {
            return Ok(());
        }
        let capacity = Semaphore::MAX_PERMITS.min(u32::MAX as usize);
        let wanted = (bytes - self.bytes).min(capacity) as u32;
        // The site's first, so that a site over its share is told so, and takes nothing of the
        // budget the other sites share.
        let of_site = match &self.site {
            Some((site, _)) => Some(
                (site.inflight.clone().try_acquire_many_owned(wanted))
                    .map_err(|_| site.over_share())?,
            ),
            None => None,
        };
        let more = (self.budget.clone().try_acquire_many_owned(wanted))
            .map_err(|_| ApiError::Overloaded)?;
        self.bytes += wanted as usize;
        merge(&mut self.held, more);
        if let (Some((_, held)), Some(of_site)) = (&mut self.site, of_site) {
            merge(held, of_site);
        }
        Ok(())
    }
}

fn merge(held: &mut Option<OwnedSemaphorePermit>, more: OwnedSemaphorePermit) {
    match held {
        Some(held) => held.merge(more),
        None => *held = Some(more),
    }
}

#[cfg(test)]
mod tests {
    use governor::clock::FakeRelativeClock;

    use super::*;

    fn limits(records_per_second: u32, burst: u32) -> SiteLimits {
        SiteLimits {
            records_per_second,
            burst,
            inflight_share: 0.25,
        }
    }

    fn code_and_wait(refused: ApiError) -> (&'static str, Option<u64>) {
        let wait = match &refused {
            ApiError::RateLimited { retry_after, .. } => Some(*retry_after),
            _ => None,
        };
        (refused.code(), wait)
    }

    #[test]
    fn a_bucket_passes_its_burst_then_its_rate_and_says_when_to_retry() {
        let clock = FakeRelativeClock::default();
        let shares = FairShare::with_clock(1000, clock.clone());
        let share = shares.of(&SiteId::parse("a").unwrap(), limits(10, 100));
        share.admit().unwrap();
        share.charge(100).unwrap();
        // Empty: the next batch is refused before its body is read.
        assert_eq!(
            code_and_wait(share.admit().unwrap_err()),
            ("rate_limited", Some(1))
        );
        clock.advance(Duration::from_millis(1500));
        // 15 records came back: a batch of 15 fits, one of 16 more would need 0.1 s more.
        share.admit().unwrap();
        assert_eq!(
            code_and_wait(share.charge(16).unwrap_err()),
            ("rate_limited", Some(1))
        );
        share.charge(15).unwrap();
        // Ten seconds later the bucket holds its burst, not ten seconds' worth.
        clock.advance(Duration::from_secs(10));
        share.admit().unwrap();
        share.charge(100).unwrap();
        share.admit().unwrap_err();
        // 50 back: a batch of 100 lacks 50 records, 5 s of them.
        clock.advance(Duration::from_secs(5));
        share.admit().unwrap();
        assert_eq!(
            code_and_wait(share.charge(100).unwrap_err()),
            ("rate_limited", Some(5))
        );
    }

    #[test]
    fn a_batch_over_the_burst_never_fits() {
        let shares = FairShare::with_clock(1000, FakeRelativeClock::default());
        let share = shares.of(&SiteId::parse("a").unwrap(), limits(10, 100));
        share.admit().unwrap();
        let refused = share.charge(101).unwrap_err();
        assert_eq!(refused.code(), "over_burst");
        assert_eq!(refused.status(), axum::http::StatusCode::PAYLOAD_TOO_LARGE);
        share.charge(100).unwrap();
    }

    #[test]
    fn a_bucket_is_kept_while_its_limits_stay_and_replaced_when_they_change() {
        let shares = FairShare::with_clock(1000, FakeRelativeClock::default());
        let (a, b) = (SiteId::parse("a").unwrap(), SiteId::parse("b").unwrap());
        let share = shares.of(&a, limits(1, 5));
        share.admit().unwrap();
        share.charge(5).unwrap();
        assert!(
            shares.of(&a, limits(1, 5)).admit().is_err(),
            "the same bucket"
        );
        shares.of(&b, limits(1, 5)).admit().unwrap();
        let changed = shares.of(&a, limits(1, 6));
        changed.admit().unwrap();
        assert_eq!(changed.inflight_bytes(), 250);
    }

    #[test]
    fn a_site_holds_at_most_its_share_and_leaves_the_rest_to_the_others() {
        let budget = Arc::new(Semaphore::new(1000));
        let shares = FairShare::new(1000);
        let a = shares.of(&SiteId::parse("a").unwrap(), limits(10, 10));
        let mut first = BudgetShare::new(&budget, Some(a.clone()));
        first.grow_to(200).unwrap();
        let mut second = BudgetShare::new(&budget, Some(a.clone()));
        assert_eq!(
            second.grow_to(51).unwrap_err().code(),
            "inflight_share_exceeded"
        );
        assert_eq!(
            a.may_hold(51).unwrap_err().code(),
            "inflight_share_exceeded"
        );
        assert_eq!(
            budget.available_permits(),
            800,
            "a refused step takes nothing"
        );
        second.grow_to(50).unwrap();
        let b = shares.of(&SiteId::parse("b").unwrap(), limits(10, 10));
        let mut other = BudgetShare::new(&budget, Some(b));
        other.grow_to(250).unwrap();
        drop((first, second));
        assert_eq!(budget.available_permits(), 750);
        BudgetShare::new(&budget, Some(a)).grow_to(250).unwrap();
    }
}
