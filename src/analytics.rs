//! Hourly analytics: `<analyticsDir>/YYYY-MM-DD/summary_HH.json` for every hour file, kept up to
//! date incrementally, and the queries behind the analytics API.
//!
//! One [`Aggregator`] owns the summaries of one [`Source`] (chosen once at start-up: the hour
//! files of a logs directory, [`files`], or the bucket's record objects, [`bucket`]); with sites,
//! each site has its own, over its own root ([`sites`]). The
//! periodic pass ([`Aggregator::run_pass`], at start-up, every `aggregation.interval` and once more
//! at shutdown) and the queries ([`Aggregator::update_hours`], which bring only the hours they read
//! up to date first, so an answer is never stale) share it, through one path: each hour is
//! brought up to date by [`Source::update_hour`], under the source's lock, taken per hour, so a
//! query and a pass never write the same summary at once and a query waits for at most one hour
//! of a pass. How each source finds what is new, and why a summary never goes back, is in its
//! module.
//!
//! Memory and summary size are bounded by [`Bounds`] (`aggregation.maxKeysPerHour`,
//! `aggregation.maxSummaryBytes`): keys beyond them are counted under `(other)` and the summary
//! says `"truncated": true`; a summary file larger than the bounds allow is not read, its hour is
//! rebuilt within them; the parsed summaries kept in memory take at most one summary's budget.
//!
//! Every record is also counted as a bot or a human request ([`bots`]). A summary split with
//! another bot list than this binary's, or written before the split existed, is split again: from
//! its own user-agent counts when they are complete, else by rebuilding the hour from its file.
//!
//! The analytics read what the store wrote; they share no locks with it.

pub mod bots;
pub mod bucket;
pub mod files;
pub mod ingest_figures;
pub mod query;
pub mod scan;
pub mod sites;
pub mod source;
pub mod summary;

use std::io;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::metrics::Metrics;
use crate::record::Hour;
use crate::site::SiteId;
use bots::BotClassifier;
use files::FilesSource;
pub use sites::Aggregators;
pub use source::Source;
use source::Summaries;
pub use summary::Bounds;

/// What one pass (or one query's update) did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PassReport {
    /// Hour files looked at.
    pub hours: usize,
    /// Summaries written.
    pub updated: usize,
    /// Summaries rebuilt from the start of their hour file.
    pub rebuilt: usize,
    /// Summaries split into bots and humans again from their own user-agent counts.
    pub reclassified: usize,
    /// Records counted in this pass.
    pub records: u64,
    /// Lines skipped in this pass because they were not valid records.
    pub skipped: u64,
    /// Bytes of hour files read.
    pub bytes_read: u64,
    /// Hours that failed (I/O errors); retried next pass.
    pub errors: usize,
}

impl PassReport {
    fn add(&mut self, outcome: &HourOutcome) {
        if let HourOutcome::Updated {
            rebuilt,
            reclassified,
            records,
            skipped,
            bytes,
        } = *outcome
        {
            self.updated += 1;
            self.rebuilt += usize::from(rebuilt);
            self.reclassified += usize::from(reclassified);
            self.records += records;
            self.skipped += skipped;
            self.bytes_read += bytes;
        }
    }
}

/// A query's update stopped because its request went away (timed out, or the client left).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the query was cancelled")]
pub struct Cancelled;

/// Set when the request behind a query is gone: blocking work checks it between hours and stops.
#[derive(Debug, Clone, Default)]
pub struct CancelFlag(Arc<AtomicBool>);

impl CancelFlag {
    pub fn new() -> CancelFlag {
        CancelFlag::default()
    }

    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// `Err(Cancelled)` once [`CancelFlag::cancel`] was called.
    pub fn check(&self) -> Result<(), Cancelled> {
        if self.0.load(Ordering::Relaxed) {
            Err(Cancelled)
        } else {
            Ok(())
        }
    }

    /// A guard that cancels the flag when dropped: hold it in the request's future, so that
    /// dropping the future (timeout, client gone) stops the blocking work it started.
    pub fn cancel_on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(self.clone())
    }
}

/// See [`CancelFlag::cancel_on_drop`].
pub struct CancelOnDrop(CancelFlag);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Keeps the summaries of one logs directory (or one bucket) up to date; shared (`Arc`) by the
/// periodic task and the analytics queries.
pub struct Aggregator {
    source: Box<dyn Source>,
    summaries: Summaries,
    /// Set at shutdown: a pass in progress stops after the hour it is on.
    stopping: AtomicBool,
}

/// What bringing one hour up to date did.
pub enum HourOutcome {
    Unchanged,
    /// The bucket has no records of the hour any more; this instance's copy of its summary was
    /// removed.
    Forgotten,
    Updated {
        rebuilt: bool,
        reclassified: bool,
        records: u64,
        skipped: u64,
        bytes: u64,
    },
}

impl Aggregator {
    /// An aggregator of the hour files in `logs_dir`.
    pub fn new(
        logs_dir: PathBuf,
        analytics_dir: PathBuf,
        bounds: Bounds,
        metrics: Metrics,
    ) -> Aggregator {
        let source = Box::new(FilesSource::new(logs_dir));
        Aggregator::with_source(source, analytics_dir, bounds, metrics)
    }

    /// An aggregator of `source`, whose summaries the queries read from `analytics_dir`.
    pub fn with_source(
        source: Box<dyn Source>,
        analytics_dir: PathBuf,
        bounds: Bounds,
        metrics: Metrics,
    ) -> Aggregator {
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Aggregator {
            source,
            summaries: Summaries {
                analytics_dir,
                bounds,
                threads,
                metrics,
                classifier: BotClassifier::embedded(),
            },
            stopping: AtomicBool::new(false),
        }
    }

    /// Where the summaries are (`storage.analyticsDir`).
    pub fn analytics_dir(&self) -> &Path {
        &self.summaries.analytics_dir
    }

    /// The bot list summaries are split with.
    pub fn classifier(&self) -> &'static BotClassifier {
        self.summaries.classifier
    }

    /// What the summaries may hold; queries read no larger ones and merge within the same bytes.
    pub fn bounds(&self) -> Bounds {
        self.summaries.bounds
    }

    /// Brings every hour's summary up to date with its hour file.
    pub fn run_pass(&self) -> PassReport {
        let started = Instant::now();
        let mut report = PassReport::default();
        let hours = match self.hours() {
            Ok(hours) => hours,
            Err(e) => {
                tracing::error!(source = %self.source.name(), error = %e, "cannot list the hours");
                report.errors += 1;
                Vec::new()
            }
        };
        for hour in hours {
            if self.stopping.load(Ordering::Relaxed) {
                break;
            }
            report.hours += 1;
            match self.update_hour(hour) {
                Ok(outcome) => report.add(&outcome),
                Err(e) => {
                    report.errors += 1;
                    tracing::error!(%hour, source = %self.source.name(), error = %e, "cannot update the hour's summary; retrying next pass");
                    if self.source.remote() {
                        // Each hour would wait out the same tries: the rest waits for the next pass.
                        break;
                    }
                }
            }
        }
        self.summaries.metrics.aggregation_runs.inc();
        self.summaries
            .metrics
            .aggregation_duration
            .observe(started.elapsed().as_secs_f64());
        self.count(&report);
        if report.updated > 0 || report.errors > 0 {
            tracing::info!(
                hours = report.hours,
                updated = report.updated,
                rebuilt = report.rebuilt,
                reclassified = report.reclassified,
                records = report.records,
                skipped = report.skipped,
                bytes_read = report.bytes_read,
                errors = report.errors,
                elapsed_ms = started.elapsed().as_millis() as u64,
                "aggregation pass"
            );
        }
        report
    }

    /// Brings the summaries of `hours` up to date with their hour files (hours without a file are
    /// left as they are), for a query about to read them. Stops between hours once `cancel` is
    /// set. An hour that cannot be updated is logged and counted and its summary read as it is.
    pub fn update_hours(
        &self,
        hours: impl IntoIterator<Item = Hour>,
        cancel: &CancelFlag,
    ) -> Result<PassReport, Cancelled> {
        let started = Instant::now();
        let mut report = PassReport::default();
        let mut outcome = Ok(());
        for hour in hours {
            if let Err(cancelled) = cancel.check() {
                outcome = Err(cancelled);
                break;
            }
            match self.update_hour(hour) {
                Ok(updated) => {
                    report.hours += 1;
                    report.add(&updated);
                }
                Err(e) if e.kind() == io::ErrorKind::NotFound => {}
                Err(e) => {
                    report.errors += 1;
                    tracing::error!(%hour, source = %self.source.name(), error = %e, "cannot bring the hour's summary up to date for a query; answering from the summary as it is");
                }
            }
        }
        self.count(&report);
        self.summaries
            .metrics
            .analytics_query_catch_up
            .observe(started.elapsed().as_secs_f64());
        outcome.map(|()| report)
    }

    /// [`Aggregator::update_hours`] of every hour that has an hour file (or record objects).
    pub fn update_all_hours(&self, cancel: &CancelFlag) -> Result<PassReport, Cancelled> {
        let hours = self.hours().unwrap_or_else(|e| {
            tracing::error!(source = %self.source.name(), error = %e, "cannot list the hours; answering from the summaries as they are");
            Vec::new()
        });
        self.update_hours(hours, cancel)
    }

    /// Every hour that has records, sorted (see [`Source::hours`]).
    fn hours(&self) -> io::Result<Vec<Hour>> {
        self.source.hours(&self.summaries)
    }

    /// Brings `hour`'s summary up to date with its records; `NotFound` if it has none.
    fn update_hour(&self, hour: Hour) -> io::Result<HourOutcome> {
        self.source.update_hour(&self.summaries, hour)
    }

    /// Adds what `report` read to the aggregation counters.
    fn count(&self, report: &PassReport) {
        self.summaries
            .metrics
            .aggregation_lines
            .inc_by(report.records + report.skipped);
        self.summaries
            .metrics
            .aggregation_skipped_lines
            .inc_by(report.skipped);
        self.summaries
            .metrics
            .aggregation_errors
            .inc_by(report.errors as u64);
    }
}

/// The roots whose aggregators the task keeps up to date, asked at every pass: the sites in force
/// (`None`, the whole data, without sites).
pub type RootsInForce = Box<dyn Fn() -> Vec<Option<SiteId>> + Send + Sync>;

/// The background task that runs passes over every root in force: at start, every `interval`,
/// and a last one when stopped (hour files only).
pub struct AggregationTask {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
    aggregators: Arc<Aggregators>,
}

impl AggregationTask {
    /// Starts the task; the first pass runs at once. A root that comes into force (a site added
    /// by a reload) gets its aggregator at the next pass.
    pub fn spawn(
        aggregators: Arc<Aggregators>,
        roots: RootsInForce,
        interval: Duration,
    ) -> AggregationTask {
        let (stop, mut stopped) = oneshot::channel();
        let task_aggregators = aggregators.clone();
        let handle = tokio::spawn(async move {
            let aggregators = task_aggregators;
            loop {
                run_blocking(aggregators.in_force(&roots())).await;
                tokio::select! {
                    () = tokio::time::sleep(interval) => {}
                    _ = &mut stopped => break,
                }
            }
            // The bucket's summaries are brought up to date by whichever instance looks next; a
            // last pass there could hold the shutdown for as long as the bucket does not answer.
            let mut last = aggregators.in_force(&roots());
            last.retain(|aggregator| !aggregator.source.remote());
            run_blocking(last).await;
        });
        AggregationTask {
            stop,
            handle,
            aggregators,
        }
    }

    /// Runs the final pass (call after the store flushed; local sources only) and waits for it.
    pub async fn finish(self) {
        for aggregator in self.aggregators.all() {
            if aggregator.source.remote() {
                // A pass in progress stops after its current hour.
                aggregator.stopping.store(true, Ordering::Relaxed);
            }
        }
        let _ = self.stop.send(());
        if let Err(e) = self.handle.await {
            tracing::error!(error = %e, "aggregation task failed");
        }
    }
}

/// A pass of each of `aggregators`, one after the other, on a blocking thread.
async fn run_blocking(aggregators: Vec<Arc<Aggregator>>) {
    tokio::task::spawn_blocking(move || {
        for aggregator in aggregators {
            aggregator.run_pass();
        }
    })
    .await
    .expect("an aggregation pass does not panic");
}
