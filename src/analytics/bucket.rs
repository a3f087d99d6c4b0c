//! Summaries of the bucket's hours (`storage.backend: s3`), shared by every instance.
//!
//! An hour of the bucket is the set of its record objects (`logs/YYYY-MM-DD/HH/*.log.json`), and
//! they never change once written: a replay rewrites an object with the same bytes. So an hour's
//! summary is kept in the bucket with the names of the objects it counted,
//! `analytics/YYYY-MM-DD/summary_HH.json`, and bringing it up to date lists the hour's objects and
//! reads only those it does not name yet: every object is read once, by whichever instance gets
//! to it first, and the counts of one object are never added twice, because the summary and the
//! names it covers are one object, written whole.
//!
//! Any instance answers for all the data: it keeps a copy of each bucket summary in its own
//! `storage.analyticsDir` (without the names), which the queries read like local summaries.
//! Two instances updating the same hour at once both read what is new and the later write wins;
//! each summary counts exactly the objects it names, so the other's objects are counted again by
//! the next update, never twice. Checking an hour that nothing was added to since this instance
//! last looked costs one listing.
//!
//! Within an instance the hour's objects are listed only once the aggregator's lock is held: a
//! listing made before waiting for the lock could be older than the copy another update wrote
//! meanwhile, and the copy written from it (the bucket's summary, which another instance may have
//! replaced with one naming fewer objects, plus that listing) could count less than the one it
//! replaced. Listed under the lock, every copy counts at least every object listed before it.
//!
//! A store that loses objects (its storage lost, or objects deleted) breaks "only ever added": a
//! summary (in the bucket, or the last one this instance remembers) may then name objects that are
//! gone. An update that finds such names lists the hour again (the summary may have been written,
//! by another instance, after the first listing) and, if they are still missing, rebuilds the hour
//! from the objects there are; an hour with no objects left loses this instance's copy. So the
//! analytics answer for what the bucket holds, never for what it lost.

use std::collections::BTreeSet;
use std::future::Future;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::io;
use std::sync::{Arc, Mutex};

use futures_util::future::try_join_all;
use hashbrown::HashMap;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use tokio::runtime::Handle;

use super::source::{Source, Summaries};
use super::summary::{Bounds, HourSummary, SourceState, write_summary};
use super::{HourOutcome, scan};
use crate::layout;
use crate::metrics::{OBJECT_RECORDS, OBJECT_SUMMARY};
use crate::objects::{Fetched, ObjectError, Objects};
use crate::record::Hour;

/// Record objects read at once while summarising (each at most `storage.s3.maxObjectBytes`).
const READ_CONCURRENCY: usize = 4;
/// How many recently updated bucket summaries stay parsed in memory.
const CACHED_ROLLUPS: usize = 4;

/// The [`Source`] of `storage.backend: s3`: the bucket the summaries count, and the runtime its
/// requests run on (the aggregator runs on blocking threads).
pub struct BucketSource {
    objects: Arc<Objects>,
    runtime: Handle,
    /// Taken for one hour at a time: whoever holds it is this instance's only writer of the
    /// bucket's summaries (and of its copies).
    state: Mutex<BucketStates>,
}

impl BucketSource {
    /// `objects`, reached through the current Tokio runtime.
    pub fn new(objects: Arc<Objects>) -> BucketSource {
        BucketSource {
            objects,
            runtime: Handle::current(),
            state: Mutex::default(),
        }
    }

    fn block_on<T>(&self, request: impl Future<Output = Result<T, ObjectError>>) -> io::Result<T> {
        self.runtime.block_on(request).map_err(io::Error::other)
    }
}

impl Source for BucketSource {
    fn name(&self) -> String {
        "the bucket".to_owned()
    }

    /// The hours with record objects, and those this instance has copies of: those the bucket
    /// lost are found empty by their update, which removes the copy.
    fn hours(&self, summaries: &Summaries) -> io::Result<Vec<Hour>> {
        let mut hours = self.block_on(self.objects.hours())?;
        hours.extend(
            layout::summaries(&summaries.analytics_dir)?
                .into_iter()
                .map(|(hour, _)| hour),
        );
        hours.sort();
        hours.dedup();
        Ok(hours)
    }

    fn update_hour(&self, summaries: &Summaries, hour: Hour) -> io::Result<HourOutcome> {
        self.update(summaries, hour)
    }

    fn remote(&self) -> bool {
        true
    }
}

/// What the source remembers of the bucket's hours between updates.
#[derive(Default)]
struct BucketStates {
    /// Per hour: the listing of record objects the local copy of its summary covers (its
    /// [`listing_id`]), and whether it is split with this binary's bot list.
    seen: HashMap<Hour, (u64, bool)>,
    /// Recently updated summaries and their entity tags, most recent last.
    cache: Vec<(Rollup, Option<String>)>,
}

/// An hour's summary as the bucket holds it: the counts and the objects they cover.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Rollup {
    /// Names of the counted record objects within the hour's directory.
    objects: BTreeSet<String>,
    summary: HourSummary,
}

#[derive(Serialize, Deserialize)]
struct RollupFile<'a> {
    objects: BTreeSet<String>,
    #[serde(borrow)]
    summary: &'a RawValue,
}

impl Rollup {
    fn to_json(&self) -> Vec<u8> {
        let summary = String::from_utf8(self.summary.to_json()).expect("JSON is UTF-8");
        let summary = RawValue::from_string(summary).expect("a summary is JSON");
        serde_json::to_vec(&RollupFile {
            objects: self.objects.clone(),
            summary: &summary,
        })
        .expect("a rollup serializes")
    }

    fn from_json(bytes: &[u8], bounds: Bounds) -> Result<Rollup, serde_json::Error> {
        let file: RollupFile<'_> = serde_json::from_slice(bytes)?;
        Ok(Rollup {
            objects: file.objects,
            summary: HourSummary::from_json(file.summary.get().as_bytes(), bounds)?,
        })
    }
}

impl BucketSource {
    /// Brings `hour`'s summary in the bucket up to date with the hour's record objects, and this
    /// instance's copy with it. `NotFound` if the hour has no objects.
    fn update(&self, summaries: &Summaries, hour: Hour) -> io::Result<HourOutcome> {
        let mut state = self.state.lock().expect("bucket source lock");
        // Listed under the lock: see the module's documentation.
        let mut listed = self.block_on(self.objects.hour_objects(hour))?;
        if listed.is_empty() {
            return forget_hour(summaries, &mut state, hour);
        }
        let states = &mut *state;
        if states.seen.get(&hour) == Some(&(listing_id(&listed), true)) {
            return Ok(HourOutcome::Unchanged);
        }
        let key = layout::summary_object(hour);
        let (mut rollup, e_tag, reclassified) =
            self.stored_rollup(summaries, states, hour, &key)?;
        if !names_only_listed(&rollup, &listed) {
            // Written after our listing (by another instance), or lost: see the module's
            // documentation.
            listed = self.block_on(self.objects.hour_objects(hour))?;
            if !names_only_listed(&rollup, &listed) {
                tracing::warn!(%hour, object = %key, "the hour's summary counts record objects the bucket no longer has (the store lost them, or they were deleted); rebuilding it from the objects it has");
                rollup = empty_rollup(summaries, hour);
            }
            if listed.is_empty() {
                return forget_hour(summaries, &mut state, hour);
            }
        }
        let rebuilt = rollup.objects.is_empty();
        let new: Vec<&(String, u64)> = listed
            .iter()
            .filter(|(name, _)| !rollup.objects.contains(name))
            .collect();
        let (records, skipped, bytes_read) = self.count_new(summaries, &mut rollup, &new, hour)?;
        let changed = !new.is_empty() || reclassified || e_tag.is_none();
        let e_tag = if changed {
            self.block_on(
                self.objects
                    .put(&key, rollup.to_json().into(), OBJECT_SUMMARY),
            )?
        } else {
            e_tag
        };
        write_summary(&summaries.analytics_dir, &rollup.summary)?;
        let states = &mut *state;
        states.seen.insert(hour, (listing_id(&listed), true));
        if states.cache.len() == CACHED_ROLLUPS {
            states.cache.remove(0);
        }
        states.cache.push((rollup, e_tag));
        Ok(HourOutcome::Updated {
            rebuilt,
            reclassified,
            records,
            skipped,
            bytes: bytes_read,
        })
    }

    /// The summary the bucket holds for `hour` (at `key`; from memory if its entity tag did not
    /// change), split with this binary's bot list, with its entity tag and whether it was split
    /// again; an empty one if there is none or it cannot be read or split.
    fn stored_rollup(
        &self,
        summaries: &Summaries,
        states: &mut BucketStates,
        hour: Hour,
        key: &str,
    ) -> io::Result<(Rollup, Option<String>, bool)> {
        let cached = states
            .cache
            .iter()
            .position(|(rollup, _)| rollup.summary.hour == hour)
            .map(|at| states.cache.remove(at));
        let known = cached.as_ref().and_then(|(_, e_tag)| e_tag.as_deref());
        let (stored, e_tag) = match self.block_on(self.objects.fetch(key, known, OBJECT_SUMMARY))? {
            Fetched::Unchanged => cached.expect("an entity tag comes with a cached summary"),
            Fetched::Found { bytes, e_tag } => match Rollup::from_json(&bytes, summaries.bounds) {
                Ok(rollup) if rollup.summary.hour == hour => (rollup, e_tag),
                Ok(_) | Err(_) => {
                    tracing::warn!(object = %key, "the hour's summary in the bucket cannot be read; rebuilding it from the hour's objects");
                    (empty_rollup(summaries, hour), None)
                }
            },
            Fetched::Missing => (
                cached.map_or_else(|| empty_rollup(summaries, hour), |(rollup, _)| rollup),
                None,
            ),
        };
        let mut reclassified = false;
        let rollup = if stored.summary.bots.list.as_deref() == Some(summaries.classifier.id()) {
            stored
        } else {
            let mut split = stored.clone();
            reclassified = split
                .summary
                .reclassify(summaries.classifier.id(), |agent| {
                    summaries.classifier.is_bot(agent)
                });
            if reclassified {
                split
            } else {
                tracing::info!(object = %key, "the hour's bot split cannot be redone from its summary; rebuilding it from the hour's objects");
                empty_rollup(summaries, hour)
            }
        };
        Ok((rollup, e_tag, reclassified))
    }

    /// Reads the record objects `new` of `hour` ([`READ_CONCURRENCY`] at a time) and adds their
    /// counts and names to `rollup`; returns the records, skipped lines and bytes read.
    fn count_new(
        &self,
        summaries: &Summaries,
        rollup: &mut Rollup,
        new: &[&(String, u64)],
        hour: Hour,
    ) -> io::Result<(u64, u64, u64)> {
        let (mut records, mut skipped, mut bytes_read) = (0, 0, 0);
        let dir = layout::hour_object_dir(hour);
        for group in new.chunks(READ_CONCURRENCY) {
            let bodies = self.block_on(try_join_all(group.iter().map(|(name, _)| {
                let key = format!("{dir}/{name}");
                async move { self.objects.fetch(&key, None, OBJECT_RECORDS).await }
            })))?;
            for (&(name, size), body) in group.iter().zip(bodies) {
                let Fetched::Found { bytes, .. } = body else {
                    continue; // listed, then gone: not counted, and so not named either
                };
                let outcome = scan::scan_bytes(&bytes, summaries.bounds, summaries.classifier);
                for skip in &outcome.first_skips {
                    tracing::warn!(object = %format!("{dir}/{name}"), line = skip.line + 1, reason = skip.reason, "skipping a line that is not a valid record");
                }
                summaries.count_requests((outcome.bots.bot_requests, outcome.bots.human_requests));
                let summary = &mut rollup.summary;
                summary.add_counts(
                    &outcome.paths,
                    &outcome.agents,
                    &outcome.bots,
                    outcome.records,
                );
                summary.source = SourceState {
                    bytes: summary.source.bytes + size,
                    lines: summary.source.lines + outcome.lines,
                    skipped_lines: summary.source.skipped_lines + outcome.skipped,
                    tail_crc32: 0,
                };
                rollup.objects.insert(name.clone());
                records += outcome.records;
                skipped += outcome.skipped;
                bytes_read += size;
            }
        }
        Ok((records, skipped, bytes_read))
    }
}

/// The bucket has no record objects of `hour` (any more): this instance's copy of its
/// summary, if it has one, goes, so that no answer counts what the store no longer holds.
/// `NotFound` if there was no copy either.
fn forget_hour(
    summaries: &Summaries,
    states: &mut BucketStates,
    hour: Hour,
) -> io::Result<HourOutcome> {
    states.seen.remove(&hour);
    states
        .cache
        .retain(|(rollup, _)| rollup.summary.hour != hour);
    match std::fs::remove_file(summaries.analytics_dir.join(layout::summary_file(hour))) {
        Ok(()) => {
            tracing::warn!(%hour, "the bucket has no record objects of this hour any more (the store lost them, or they were deleted); its summary is no longer answered for");
            Ok(HourOutcome::Forgotten)
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("no record objects for hour {hour}"),
        )),
        Err(e) => Err(e),
    }
}

fn empty_rollup(summaries: &Summaries, hour: Hour) -> Rollup {
    Rollup {
        objects: BTreeSet::new(),
        summary: HourSummary::new(hour, summaries.bounds, summaries.classifier.id()),
    }
}

/// Identifies a listing of an hour's record objects (names and sizes), so that an hour whose
/// objects are the ones its copy covers costs no more than the listing.
fn listing_id(listed: &[(String, u64)]) -> u64 {
    let mut hasher = DefaultHasher::new();
    listed.hash(&mut hasher);
    hasher.finish()
}

/// Whether every object `rollup` counted is in `listed`.
fn names_only_listed(rollup: &Rollup, listed: &[(String, u64)]) -> bool {
    let listed: BTreeSet<&str> = listed.iter().map(|(name, _)| name.as_str()).collect();
    rollup
        .objects
        .iter()
        .all(|name| listed.contains(name.as_str()))
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use crate::analytics::Aggregator;

    use futures_util::TryStreamExt as _;
    use object_store::memory::InMemory;
    use object_store::{ObjectStore as _, ObjectStoreExt as _};

    use super::*;
    use crate::analytics::{CancelFlag, PassReport};
    use crate::metrics::Metrics;
    use crate::objects::Range;
    use crate::record::EncodedBatch;

    const HOUR: i64 = 490_000;

    const BOUNDS: Bounds = Bounds {
        max_keys: 100,
        max_bytes: 1 << 20,
    };

    fn line(path: &str, agent: &str) -> String {
        format!(
            "{{\"timestamp\":\"{}\",\"path\":\"{path}\",\"userAgent\":\"{agent}\"}}",
            Hour::from_index(HOUR).start().to_rfc3339()
        )
    }

    fn range(partition: i32, first: i64, lines: &[String]) -> Range {
        let mut batch = EncodedBatch::default();
        for line in lines {
            batch.push_line(Hour::from_index(HOUR), line.as_bytes());
        }
        Range {
            partition,
            first,
            last: first + lines.len() as i64 - 1,
            batch,
            copies: Vec::new(),
            kept: Vec::new(),
        }
    }

    /// One instance: its bucket handle, its own analytics directory and metrics.
    struct Instance {
        aggregator: Arc<Aggregator>,
        metrics: Metrics,
        _analytics: tempfile::TempDir,
    }

    fn instance(store: &Arc<InMemory>) -> Instance {
        let metrics = Metrics::new();
        let objects = Arc::new(Objects::new(
            store.clone(),
            "team",
            Duration::from_secs(5),
            metrics.clone(),
        ));
        let analytics = tempfile::tempdir().unwrap();
        Instance {
            aggregator: Arc::new(Aggregator::with_source(
                Box::new(BucketSource::new(objects)),
                analytics.path().to_owned(),
                BOUNDS,
                metrics.clone(),
            )),
            metrics,
            _analytics: analytics,
        }
    }

    async fn update(instance: &Instance) -> PassReport {
        let aggregator = instance.aggregator.clone();
        tokio::task::spawn_blocking(move || aggregator.update_all_hours(&CancelFlag::new()))
            .await
            .unwrap()
            .unwrap()
    }

    fn local_copy(instance: &Instance) -> HourSummary {
        let path = instance
            .aggregator
            .analytics_dir()
            .join(layout::summary_file(Hour::from_index(HOUR)));
        HourSummary::from_json(&std::fs::read(path).unwrap(), BOUNDS).unwrap()
    }

    fn records_read(instance: &Instance) -> u64 {
        instance
            .metrics
            .objects_read
            .with_label_values(&[OBJECT_RECORDS])
            .get()
    }

    async fn write(store: &Arc<InMemory>, ranges: Vec<Range>) {
        let objects = Objects::new(
            store.clone(),
            "team",
            Duration::from_secs(5),
            Metrics::new(),
        );
        objects.write("logs", ranges).await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn every_instance_answers_for_all_objects_and_each_object_is_read_once() {
        let store = Arc::new(InMemory::new());
        let a = [
            line("/a", "curl/8"),
            line(
                "/a",
                "Mozilla/5.0 (X11; Linux x86_64; rv:120.0) Gecko/20100101 Firefox/120.0",
            ),
        ];
        let b = [line("/b", "Googlebot/2.1")];
        write(&store, vec![range(0, 0, &a), range(1, 0, &b)]).await;

        let first = instance(&store);
        let report = update(&first).await;
        assert_eq!((report.updated, report.records), (1, 3));
        assert_eq!(records_read(&first), 2);
        let summary = local_copy(&first);
        assert_eq!(summary.total, 3);
        assert_eq!(summary.source.lines, 3);
        assert_eq!(summary.bots.bot_requests, 2, "curl and Googlebot");

        // Another instance, with nothing of its own, answers from the bucket's summary.
        let second = instance(&store);
        assert_eq!(update(&second).await.records, 0);
        assert_eq!(records_read(&second), 0, "summarised once, by the first");
        assert_eq!(local_copy(&second), summary);

        // A new object: only it is read, by whoever looks first; the other catches up from the
        // bucket's summary.
        write(&store, vec![range(0, 2, &[line("/c", "x")])]).await;
        assert_eq!(update(&second).await.records, 1);
        assert_eq!(records_read(&second), 1);
        assert_eq!(update(&first).await.records, 0);
        assert_eq!(records_read(&first), 2);
        assert_eq!(local_copy(&first).total, 4);
        assert_eq!(local_copy(&first), local_copy(&second));

        // Nothing new: no object is read, and the bucket's summary is not even fetched.
        let summaries_read = first
            .metrics
            .objects_read
            .with_label_values(&[OBJECT_SUMMARY])
            .get();
        assert_eq!(update(&first).await.updated, 0);
        assert_eq!(
            first
                .metrics
                .objects_read
                .with_label_values(&[OBJECT_SUMMARY])
                .get(),
            summaries_read
        );
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_unreadable_summary_in_the_bucket_is_rebuilt_from_the_objects() {
        let store = Arc::new(InMemory::new());
        write(
            &store,
            vec![range(3, 10, &[line("/a", "x"), line("/b", "y")])],
        )
        .await;
        store
            .put(
                &object_store::path::Path::from(format!(
                    "team/{}",
                    layout::summary_object(Hour::from_index(HOUR))
                )),
                object_store::PutPayload::from_static(b"{half a summ"),
            )
            .await
            .unwrap();
        let instance = instance(&store);
        let report = update(&instance).await;
        assert_eq!((report.rebuilt, report.records), (1, 2));
        assert_eq!(local_copy(&instance).total, 2);
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn after_the_store_lost_its_objects_the_summaries_count_what_it_holds() {
        let store = Arc::new(InMemory::new());
        let earlier = Hour::from_index(HOUR - 1);
        let mut early = EncodedBatch::default();
        early.push_line(earlier, line("/early", "x").as_bytes());
        let early = Range {
            partition: 1,
            first: 0,
            last: 0,
            batch: early,
            copies: Vec::new(),
            kept: Vec::new(),
        };
        write(
            &store,
            vec![range(0, 0, &[line("/a", "x"), line("/b", "y")]), early],
        )
        .await;
        let (first, second) = (instance(&store), instance(&store));
        update(&first).await;
        update(&second).await;
        assert_eq!(local_copy(&first).total, 2);

        // The store loses everything (its disk, say); the consumers go on from their committed
        // offsets.
        let keys: Vec<_> = store
            .list(None)
            .map_ok(|meta| meta.location)
            .try_collect()
            .await
            .unwrap();
        for key in keys {
            store.delete(&key).await.unwrap();
        }
        write(&store, vec![range(0, 2, &[line("/c", "z")])]).await;

        let report = update(&first).await;
        assert_eq!((report.rebuilt, report.records), (1, 1));
        // The second takes the first's summary from the bucket.
        assert_eq!(update(&second).await.records, 0);
        for instance in [&first, &second] {
            assert_eq!(local_copy(instance).total, 1, "only what the store holds");
            let copy = instance
                .aggregator
                .analytics_dir()
                .join(layout::summary_file(earlier));
            assert!(
                !copy.exists(),
                "an hour the store has nothing of is not answered for"
            );
        }
    }
}
