//! Writing ranges (see the protocol in [`super`]): intents first, then the records objects,
//! every request asking the writer's [`Ownership`] first; each records object created counted
//! once in `logs_ingested_total`.

use std::collections::BTreeMap;

use bytes::Bytes;
use futures_util::future::try_join_all;
use tokio::sync::Semaphore;

use super::intent::Intent;
use super::{ObjectError, Objects, Ownership, PUT_CONCURRENCY, Range};
use crate::layout;
use crate::metrics::{OBJECT_INTENT, OBJECT_RECORDS};

impl Objects {
    /// Writes `ranges` of `topic` (see the module's protocol): each range's intent, unless the
    /// same one is there already, then its records objects, those of a range decided before
    /// only if they are not there. Every request that writes asks `owner` first. Fails as a whole
    /// if any range does; what was written is rewritten identically by the next try.
    pub async fn write_owned(
        &self,
        topic: &str,
        mut ranges: Vec<Range>,
        owner: &dyn Ownership,
    ) -> Result<(), ObjectError> {
        // Intents first, every one of them, before any records object that depends on them.
        let limit = Semaphore::new(PUT_CONCURRENCY);
        let decided_before = try_join_all(ranges.iter().map(|range| async {
            let _permit = limit.acquire().await.expect("never closed");
            self.decide(topic, range, owner).await
        }))
        .await?;
        let puts: Vec<RecordsPut> = (ranges.iter_mut().zip(decided_before))
            .flat_map(|(range, decided_before)| {
                let (partition, first, last) = (range.partition, range.first, range.last);
                range.batch.chunks.iter_mut().map(move |chunk| RecordsPut {
                    partition,
                    key: layout::site_records_object(
                        topic,
                        partition,
                        first,
                        last,
                        &chunk.site_hour(),
                    ),
                    bytes: Bytes::from(std::mem::take(&mut chunk.lines)),
                    records: chunk.records,
                    maybe_there: decided_before,
                })
            })
            .collect();
        try_join_all(puts.into_iter().map(|put| {
            let limit = &limit;
            async move {
                let _permit = limit.acquire().await.expect("never closed");
                // Its decider may have written it (a crash or a failed flush came after): the
                // same bytes, already there and counted.
                if put.maybe_there && self.exists(&put.key).await? {
                    return Ok(());
                }
                let owned = || owned(owner, put.partition);
                self.put_if(&put.key, put.bytes, OBJECT_RECORDS, owned)
                    .await?;
                // Counted by whoever creates the object: once, however often its range is written.
                self.metrics.logs_ingested.inc_by(put.records as u64);
                Ok::<(), ObjectError>(())
            }
        }))
        .await?;
        let mut written = self.written.lock().expect("written lock");
        for range in &ranges {
            let next = written.entry(range.partition).or_insert(0);
            *next = (*next).max(range.last + 1);
        }
        Ok(())
    }

    /// [`Objects::write_owned`] by an owner that never withholds a write.
    #[cfg(test)]
    pub async fn write(&self, topic: &str, ranges: Vec<Range>) -> Result<(), ObjectError> {
        struct Always;
        impl Ownership for Always {
            fn withheld(&self, _: i32) -> Option<String> {
                None
            }
        }
        self.write_owned(topic, ranges, &Always).await
    }

    /// Per partition, the offset after the last range this process wrote since it was last
    /// assigned the partition.
    pub fn written(&self) -> BTreeMap<i32, i64> {
        self.written.lock().expect("written lock").clone()
    }

    /// `partition` was assigned (again): what this process wrote of it before says nothing of
    /// where it is now (others may have written it since).
    pub fn forget_written(&self, partition: i32) {
        self.written
            .lock()
            .expect("written lock")
            .remove(&partition);
    }

    /// Makes `range`'s end the decided one: writes its intent, or finds the same one there.
    /// Returns whether it was there (decided before, by another writer or an earlier try).
    async fn decide(
        &self,
        topic: &str,
        range: &Range,
        owner: &dyn Ownership,
    ) -> Result<bool, ObjectError> {
        // Its copies were dropped as the intent says (the consumer follows it), so only the end
        // is compared: an offset the broker no longer delivers is no line either way.
        match self.decided(topic, range.partition, range.first).await? {
            Some(decided) if decided.last == range.last => return Ok(true),
            Some(decided) => {
                return Err(ObjectError::Decided {
                    partition: range.partition,
                    first: range.first,
                    last: decided.last,
                    ours: range.last,
                });
            }
            None => {}
        }
        let intent = Intent {
            topic: topic.to_owned(),
            partition: range.partition,
            first: range.first,
            last: range.last,
            hours: hours_of(range),
            objects: sited_objects(topic, range),
            records: range.batch.records(),
            copies: range.copies.clone(),
            kept: range.kept.clone(),
        };
        let body = serde_json::to_vec(&intent).expect("an intent serializes");
        let key = layout::intent_object(topic, range.partition, range.first);
        let owned = || owned(owner, range.partition);
        self.put_if(&key, Bytes::from(body), OBJECT_INTENT, owned)
            .await?;
        Ok(false)
    }
}

/// One records object of a flush.
struct RecordsPut {
    partition: i32,
    key: String,
    bytes: Bytes,
    records: usize,
    /// Its range was decided before: the object may be there already.
    maybe_there: bool,
}

/// `Ok` if `owner` lets `partition` be written now.
fn owned(owner: &dyn Ownership, partition: i32) -> Result<(), ObjectError> {
    match owner.withheld(partition) {
        None => Ok(()),
        Some(reason) => Err(ObjectError::Withheld { partition, reason }),
    }
}

/// With sites, the records objects `range` writes (below the prefix), each below its site's
/// prefix; none when all its records are unsited (the hours name those, as before sites).
fn sited_objects(topic: &str, range: &Range) -> Vec<String> {
    if range.batch.chunks.iter().all(|chunk| chunk.site.is_none()) {
        return Vec::new();
    }
    (range.batch.chunks.iter())
        .map(|chunk| {
            let (partition, first, last) = (range.partition, range.first, range.last);
            layout::site_records_object(topic, partition, first, last, &chunk.site_hour())
        })
        .collect()
}

/// The hours `range` has records of, each once (several sites may have records of one), in the
/// order of their first chunk.
fn hours_of(range: &Range) -> Vec<String> {
    let mut hours: Vec<String> = Vec::new();
    for chunk in &range.batch.chunks {
        let hour = chunk.hour.to_string();
        if !hours.contains(&hour) {
            hours.push(hour);
        }
    }
    hours
}
