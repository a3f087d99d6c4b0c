//! The one seam between the [`Aggregator`](super::Aggregator) and where the records are: a
//! [`Source`], chosen once at start-up (`crate::storage`): the hour files of a logs directory
//! ([`files`](super::files)) or the record objects of the bucket ([`bucket`](super::bucket)).
//! The aggregator's passes and queries ask only this trait; each source keeps what it remembers
//! between updates behind its own lock, taken for one hour at a time, so whoever holds it is the
//! only writer of that source's summaries.

use std::io;
use std::path::PathBuf;

use super::HourOutcome;
use super::bots::BotClassifier;
use super::summary::Bounds;
use crate::metrics::Metrics;
use crate::record::Hour;

/// Where the records the summaries count are (see the module docs).
pub trait Source: Send + Sync {
    /// For log lines: the logs directory, or "the bucket".
    fn name(&self) -> String;

    /// Every hour that has records (and every hour the source must look at again, e.g. one
    /// this instance has a summary of), sorted.
    fn hours(&self, summaries: &Summaries) -> io::Result<Vec<Hour>>;

    /// Brings `hour`'s summary up to date with its records; `NotFound` if it has none.
    fn update_hour(&self, summaries: &Summaries, hour: Hour) -> io::Result<HourOutcome>;

    /// Whether it is reached over the network and shared with other instances: a failed
    /// request waits out its retries, so a pass stops at the first hour that fails (the others
    /// would wait the same), and no last pass runs at shutdown (whichever instance looks next
    /// brings the summaries up to date; a pass in progress stops after its hour).
    fn remote(&self) -> bool;
}

/// What every source writes summaries with: where they go, their bounds, the bot list, and the
/// counters of what was read.
pub struct Summaries {
    /// `storage.analyticsDir`: the summaries the queries read.
    pub analytics_dir: PathBuf,
    pub bounds: Bounds,
    /// Threads one hour's scan may use.
    pub threads: usize,
    pub metrics: Metrics,
    pub classifier: &'static BotClassifier,
}

impl Summaries {
    /// Adds a scan's bot/human split (bot requests, human requests) to
    /// `aggregation_requests_total`.
    pub fn count_requests(&self, (bots, humans): (u64, u64)) {
        self.metrics
            .aggregation_requests
            .with_label_values(&[crate::metrics::CLASS_BOT])
            .inc_by(bots);
        self.metrics
            .aggregation_requests
            .with_label_values(&[crate::metrics::CLASS_HUMAN])
            .inc_by(humans);
    }
}
