//! The service's own ingest figures, for the dashboard (`GET /analytics/ingest`): records stored
//! per second, records stored and batches accepted since start, `POST /logs` requests refused.
//!
//! Each instance samples its counters every [`SAMPLE_INTERVAL`]; its rate is what it stored over
//! the last [`RATE_WINDOW`] of samples (since start, while younger). So the rate is the service's
//! to measure, and a page opened a moment ago shows it at once.
//!
//! With `storage.backend: s3` the dashboard's totals are the whole bucket's, written by every
//! instance; its ingest figures must be too. So each instance also publishes its figures every
//! [`PUBLISH_INTERVAL`] as `instances/<instance>.json` in the bucket, and the answer adds to its own
//! those of every other instance that published within [`LIVE_FOR`]. Whether one did is judged by
//! the store's modification times against the newest of them (this instance publishes at start
//! and then every few seconds), never against this machine's clock: the machines' clocks need not
//! agree. An instance that stopped drops out of the sums within [`LIVE_FOR`]; the objects of
//! instances silent for [`FORGET_AFTER`] are deleted by whichever instance looks (every
//! [`FORGET_EVERY`] publications). The cost: one PUT per instance every [`PUBLISH_INTERVAL`], and
//! per answer one LIST and a GET per other instance. If the bucket does not answer within
//! [`OTHERS_TIMEOUT`], the answer is this instance's figures alone, and says so (`"scope":
//! "instance"`).

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chrono::{SecondsFormat, Utc};
use futures_util::{StreamExt as _, TryStreamExt as _, stream};
use serde::{Deserialize, Serialize};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::layout;
use crate::metrics::{Metrics, OBJECT_INSTANCE};
use crate::objects::{Fetched, ObjectError, Objects};

/// How often an instance samples its counters.
pub const SAMPLE_INTERVAL: Duration = Duration::from_secs(1);
/// The window an instance's rate covers.
pub const RATE_WINDOW: Duration = Duration::from_secs(10);
/// How often an instance publishes its figures to the bucket.
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(5);
/// How recent a publication must be (against the newest) for its instance to count.
pub const LIVE_FOR: Duration = Duration::from_secs(15);
/// How long an instance's publication stays in the bucket once it stopped publishing.
pub const FORGET_AFTER: Duration = Duration::from_secs(3600);
/// Publications between two looks for instances silent for [`FORGET_AFTER`].
pub const FORGET_EVERY: u64 = 12;
/// Publications of other instances read at once.
const READ_CONCURRENCY: usize = 8;
/// Longest an answer waits for the other instances' figures before answering with this
/// instance's alone.
pub const OTHERS_TIMEOUT: Duration = Duration::from_secs(2);

/// One instance's figures, or their sum over instances.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Figures {
    /// Records stored per second over the last [`RATE_WINDOW`].
    pub records_per_second: f64,
    /// Records stored since start (`logs_ingested_total`).
    pub records_stored: u64,
    /// Batches accepted since start (`log_batches_received_total`).
    pub batches_accepted: u64,
    pub rejected_requests: Rejected,
}

/// `POST /logs` requests refused since start, by reason.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Rejected {
    pub total: u64,
    pub invalid: u64,
    pub overloaded: u64,
    pub failed: u64,
}

impl Figures {
    fn add(&mut self, other: &Figures) {
        self.records_per_second += other.records_per_second;
        self.records_stored += other.records_stored;
        self.batches_accepted += other.batches_accepted;
        let (ours, theirs) = (&mut self.rejected_requests, &other.rejected_requests);
        ours.total += theirs.total;
        ours.invalid += theirs.invalid;
        ours.overloaded += theirs.overloaded;
        ours.failed += theirs.failed;
    }
}

/// Whose figures an answer sums.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// This instance's alone: local storage, or the bucket did not answer.
    Instance,
    /// Every instance publishing to the bucket.
    Bucket,
}

/// What `GET /analytics/ingest` answers.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct IngestAnswer {
    /// This instance's.
    pub uptime_seconds: f64,
    pub at: String,
    #[serde(flatten)]
    pub figures: Figures,
    /// How many instances the figures sum.
    pub instances: usize,
    pub scope: Scope,
}

/// One instance's publication in the bucket.
#[derive(Debug, Serialize, Deserialize)]
struct Publication {
    instance: String,
    #[serde(flatten)]
    figures: Figures,
}

/// Where this instance publishes.
struct Publisher {
    objects: Arc<Objects>,
    instance: String,
    key: String,
    /// [`LIVE_FOR`] (shorter in tests).
    live_for: Duration,
}

/// This instance's ingest figures (and, with a bucket, every instance's); shared by the sampling
/// task and the route.
pub struct IngestFigures {
    metrics: Metrics,
    started: Instant,
    /// (when, records stored then), oldest first: those of the last [`RATE_WINDOW`], and always
    /// the newest.
    samples: Mutex<VecDeque<(Instant, u64)>>,
    publisher: Option<Publisher>,
}

impl IngestFigures {
    /// This instance's figures alone (local storage).
    pub fn new(metrics: Metrics) -> IngestFigures {
        let started = Instant::now();
        // The first sample is the start: records stored before the sampling task first runs
        // count in the rate (they would not if its first sample were the first one).
        let first = (started, metrics.logs_ingested.get());
        IngestFigures {
            metrics,
            started,
            samples: Mutex::new(VecDeque::from([first])),
            publisher: None,
        }
    }

    /// Figures published to `objects` and summed over every instance publishing there.
    pub fn in_bucket(metrics: Metrics, objects: Arc<Objects>) -> IngestFigures {
        let instance = instance_name();
        IngestFigures {
            publisher: Some(Publisher {
                objects,
                key: layout::instance_object(&instance),
                instance,
                live_for: LIVE_FOR,
            }),
            ..IngestFigures::new(metrics)
        }
    }

    /// This instance's figures now.
    fn own(&self) -> Figures {
        let now = Instant::now();
        let stored = self.metrics.logs_ingested.get();
        let (since, stored_then) = (self.samples.lock().expect("samples lock").front())
            .copied()
            .expect("the first sample is kept until a later one replaces it");
        let elapsed = now.duration_since(since).as_secs_f64();
        let invalid = self.metrics.invalid_requests.get();
        let overloaded = self.metrics.overload_rejections.get();
        let failed = self.metrics.ingest_errors.get();
        Figures {
            records_per_second: if elapsed > 0.0 {
                stored.saturating_sub(stored_then) as f64 / elapsed
            } else {
                0.0
            },
            records_stored: stored,
            batches_accepted: self.metrics.batches_received.get(),
            rejected_requests: Rejected {
                total: invalid + overloaded + failed,
                invalid,
                overloaded,
                failed,
            },
        }
    }

    fn sample(&self) {
        let now = Instant::now();
        let mut samples = self.samples.lock().expect("samples lock");
        samples.push_back((now, self.metrics.logs_ingested.get()));
        while samples.len() > 1
            && samples
                .front()
                .is_some_and(|(at, _)| now.duration_since(*at) > RATE_WINDOW)
        {
            samples.pop_front();
        }
    }

    /// The figures `GET /analytics/ingest` answers: this instance's, plus every other live
    /// instance's with a bucket.
    pub async fn answer(&self) -> IngestAnswer {
        let mut figures = self.own();
        let (mut instances, mut scope) = (1, Scope::Instance);
        if let Some(publisher) = &self.publisher {
            let others = tokio::time::timeout(OTHERS_TIMEOUT, publisher.others()).await;
            match others.unwrap_or_else(|_| {
                Err(ObjectError::Unavailable {
                    what: layout::OBJECT_INSTANCES.to_owned(),
                    reason: format!("no answer within {OTHERS_TIMEOUT:?}"),
                })
            }) {
                Ok(others) => {
                    for other in &others {
                        figures.add(other);
                    }
                    instances += others.len();
                    scope = Scope::Bucket;
                }
                Err(err) => {
                    tracing::warn!(error = %err, "cannot read the other instances' ingest figures; answering with this instance's");
                }
            }
        }
        IngestAnswer {
            uptime_seconds: self.started.elapsed().as_secs_f64(),
            at: Utc::now().to_rfc3339_opts(SecondsFormat::Millis, true),
            figures,
            instances,
            scope,
        }
    }

    /// Starts the task that samples (and publishes) the figures; the first sample (and
    /// publication) is taken at once.
    pub fn spawn(self: &Arc<Self>) -> FiguresTask {
        let (stop, mut stopped) = oneshot::channel();
        let figures = self.clone();
        let handle = tokio::spawn(async move {
            let mut ticks = tokio::time::interval(SAMPLE_INTERVAL);
            ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            let per_publication =
                (PUBLISH_INTERVAL.as_millis() / SAMPLE_INTERVAL.as_millis()) as u64;
            for tick in 0_u64.. {
                tokio::select! {
                    _ = ticks.tick() => {}
                    _ = &mut stopped => break,
                }
                figures.sample();
                let Some(publisher) = &figures.publisher else {
                    continue;
                };
                if tick % per_publication != 0 {
                    continue;
                }
                let forget = (tick / per_publication).is_multiple_of(FORGET_EVERY);
                // A store that does not answer holds the task, not the shutdown.
                tokio::select! {
                    () = publisher.publish(figures.own(), forget) => {}
                    _ = &mut stopped => break,
                }
            }
        });
        FiguresTask { stop, handle }
    }
}

impl Publisher {
    /// Writes `figures` as this instance's publication; with `forget`, deletes the publications
    /// of instances silent for [`FORGET_AFTER`] too.
    async fn publish(&self, figures: Figures, forget: bool) {
        let publication = Publication {
            instance: self.instance.clone(),
            figures,
        };
        let body = serde_json::to_vec(&publication).expect("figures serialize");
        if let Err(err) = self
            .objects
            .put(&self.key, body.into(), OBJECT_INSTANCE)
            .await
        {
            tracing::warn!(error = %err, "cannot publish this instance's ingest figures to the bucket");
            return;
        }
        if forget && let Err(err) = self.forget_silent().await {
            tracing::warn!(error = %err, "cannot clear the publications of stopped instances");
        }
    }

    /// The publications in the bucket, and the newest modification time among them.
    async fn listed(
        &self,
    ) -> Result<(Vec<crate::objects::Listed>, Option<chrono::DateTime<Utc>>), ObjectError> {
        let listed = self.objects.list(layout::OBJECT_INSTANCES).await?;
        let newest = listed.iter().map(|object| object.modified).max();
        Ok((listed, newest))
    }

    /// The figures of every other instance that published within [`LIVE_FOR`] of the newest
    /// publication.
    async fn others(&self) -> Result<Vec<Figures>, ObjectError> {
        let (listed, Some(newest)) = self.listed().await? else {
            return Ok(Vec::new());
        };
        let live = listed.into_iter().filter(|object| {
            object.key != self.key
                && (newest - object.modified).to_std().unwrap_or_default() <= self.live_for
        });
        let fetched: Vec<(String, Fetched)> = stream::iter(live)
            .map(|object| async move {
                let fetched = self
                    .objects
                    .fetch(&object.key, None, OBJECT_INSTANCE)
                    .await?;
                Ok::<_, ObjectError>((object.key, fetched))
            })
            .buffer_unordered(READ_CONCURRENCY)
            .try_collect()
            .await?;
        Ok(fetched
            .into_iter()
            .filter_map(|(key, fetched)| match fetched {
                Fetched::Found { bytes, .. } => {
                    match serde_json::from_slice::<Publication>(&bytes) {
                        Ok(publication) => Some(publication.figures),
                        Err(err) => {
                            tracing::warn!(object = %key, error = %err, "skipping an unreadable publication of ingest figures");
                            None
                        }
                    }
                }
                // Deleted since the listing: that instance stopped long ago.
                Fetched::Missing | Fetched::Unchanged => None,
            })
            .collect())
    }

    /// Deletes the publications of instances silent for [`FORGET_AFTER`].
    async fn forget_silent(&self) -> Result<(), ObjectError> {
        let (listed, Some(newest)) = self.listed().await? else {
            return Ok(());
        };
        for object in listed {
            if (newest - object.modified).to_std().unwrap_or_default() > FORGET_AFTER {
                self.objects.delete(&object.key).await?;
            }
        }
        Ok(())
    }
}

/// The sampling task; [`FiguresTask::finish`] stops it.
pub struct FiguresTask {
    stop: oneshot::Sender<()>,
    handle: JoinHandle<()>,
}

impl FiguresTask {
    /// Stops the task (a publication in progress is dropped) and waits for it.
    pub async fn finish(self) {
        let _ = self.stop.send(());
        if let Err(err) = self.handle.await {
            tracing::error!(error = %err, "ingest figures task failed");
        }
    }
}

/// This instance's name in the bucket: host name, process id and start time (milliseconds), so
/// that a restarted process is a new instance, and an operator can tell which machine it is.
fn instance_name() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let host: String = (host.trim().chars())
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .collect();
    format!(
        "{}-{}-{}",
        if host.is_empty() { "host" } else { &host },
        std::process::id(),
        Utc::now().timestamp_millis()
    )
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt as _;
    use object_store::memory::InMemory;

    use super::*;

    const LIVE_FOR_IN_TESTS: Duration = Duration::from_millis(300);

    fn in_bucket(store: &Arc<InMemory>, metrics: &Metrics) -> IngestFigures {
        let objects = Objects::new(
            store.clone(),
            "team",
            Duration::from_secs(5),
            metrics.clone(),
        );
        let mut figures = IngestFigures::in_bucket(metrics.clone(), Arc::new(objects));
        // Instances of one test process need names of their own.
        let publisher = figures.publisher.as_mut().expect("a publisher");
        publisher.instance = format!("{}-{:p}", publisher.instance, metrics);
        publisher.key = layout::instance_object(&publisher.instance);
        publisher.live_for = LIVE_FOR_IN_TESTS;
        figures
    }

    #[tokio::test]
    async fn the_rate_covers_the_window_and_the_records_since_start() {
        let metrics = Metrics::new();
        let figures = IngestFigures::new(metrics.clone());
        figures.sample();
        metrics.logs_ingested.inc_by(500);
        metrics.batches_received.inc_by(5);
        metrics.invalid_requests.inc();
        let answer = figures.answer().await;
        assert_eq!(answer.scope, Scope::Instance);
        assert_eq!(answer.instances, 1);
        assert_eq!(answer.figures.records_stored, 500);
        assert_eq!(answer.figures.batches_accepted, 5);
        assert_eq!(answer.figures.rejected_requests.total, 1);
        // 500 records since the sample, a moment ago.
        assert!(answer.figures.records_per_second > 500.0, "{answer:?}");
    }

    #[tokio::test]
    async fn every_live_instance_counts_and_a_silent_one_drops_out() {
        let store = Arc::new(InMemory::new());
        let (ours, theirs, gone) = (Metrics::new(), Metrics::new(), Metrics::new());
        let (a, b, c) = (
            in_bucket(&store, &ours),
            in_bucket(&store, &theirs),
            in_bucket(&store, &gone),
        );
        ours.logs_ingested.inc_by(10);
        theirs.logs_ingested.inc_by(20);
        gone.logs_ingested.inc_by(40);
        c.publisher.as_ref().unwrap().publish(c.own(), false).await;
        b.publisher.as_ref().unwrap().publish(b.own(), false).await;
        a.publisher.as_ref().unwrap().publish(a.own(), false).await;
        let answer = a.answer().await;
        assert_eq!(answer.scope, Scope::Bucket);
        assert_eq!((answer.instances, answer.figures.records_stored), (3, 70));

        // The third stops publishing; the others go on past the time a publication counts.
        let publication = layout::instance_object(&c.publisher.as_ref().unwrap().instance);
        let silent_since = store
            .head(&object_store::path::Path::from(format!(
                "team/{publication}"
            )))
            .await
            .unwrap()
            .last_modified;
        while Utc::now() - silent_since <= chrono::Duration::from_std(LIVE_FOR_IN_TESTS).unwrap() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        b.publisher.as_ref().unwrap().publish(b.own(), false).await;
        let answer = a.answer().await;
        assert_eq!((answer.instances, answer.figures.records_stored), (2, 30));
    }
}
