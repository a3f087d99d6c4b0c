//! How a consumer writing to the bucket (`storage.backend: s3`) cuts each partition's messages
//! into the offset ranges of [`crate::objects`]: a pure state machine, no I/O.
//!
//! A partition has at most one **open** range, which takes its messages in offset order, and any
//! number of **sealed** ones waiting for the next flush. A range is sealed
//!
//! - exactly at the end an earlier writer decided for it (its intent, found when the range was
//!   opened), and at no other point;
//! - else when it spans `storage.s3.maxObjectRecords` offsets or holds `maxObjectBytes` of lines,
//!   when it is `maxObjectAge` old, or when the consumer must flush everything (buffer full,
//!   partitions revoked, shutdown).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use super::keyed::KeyedRecord;
use crate::config::S3Config;
use crate::objects::{Decision, KeptRun, Range};
use crate::record::{EncodedBatch, SiteBatches};
use crate::site::SiteId;

/// When an undecided range is sealed.
#[derive(Debug, Clone, Copy)]
pub struct RangeLimits {
    /// Offsets in a range (valid and dead-lettered messages alike).
    pub max_messages: usize,
    /// Bytes of encoded lines.
    pub max_bytes: usize,
    /// Age of its first message.
    pub max_age: Duration,
}

impl RangeLimits {
    /// The limits of `storage.s3`.
    pub fn from_config(s3: &S3Config) -> RangeLimits {
        RangeLimits {
            max_messages: s3.max_object_records,
            max_bytes: s3.max_object_bytes,
            max_age: s3.max_object_age,
        }
    }
}

/// One range being filled or waiting to be written.
#[derive(Debug)]
struct Building {
    first: i64,
    /// The offset after the last message taken.
    next: i64,
    /// Its records, per site: one object per site and hour.
    batches: SiteBatches,
    /// Produce timestamps (ms) of its records, for the latency histogram.
    produced_at: Vec<i64>,
    opened: Instant,
    /// The last offset an earlier writer decided for it.
    decided: Option<i64>,
    /// The offsets that writer did not store as copies of keyed records.
    decided_copies: Vec<i64>,
    /// The offsets not stored here as copies of keyed records.
    copies: Vec<i64>,
    /// The keyed records stored here.
    kept: Vec<KeptRun>,
}

#[derive(Debug, Default)]
struct Partition {
    sealed: Vec<Building>,
    open: Option<Building>,
    /// Where its next range begins: after the last one sealed, or where reading (re)started.
    /// A message past it (offsets the broker has no message for) still belongs to a range
    /// starting here, so ranges stay the same however the partition is read.
    next_first: Option<i64>,
}

impl Partition {
    /// Seals the open range (there must be one); the next range begins after it: after its
    /// decided end, or after its last message.
    fn seal_open(&mut self) {
        let open = self.open.take().expect("a range is open");
        let end = open.decided.map_or(open.next, |last| last + 1);
        self.next_first = Some(end.max(open.next));
        self.sealed.push(open);
    }
}

/// The ranges of every partition of one consumer.
#[derive(Debug, Default)]
pub struct Ranges {
    partitions: BTreeMap<i32, Partition>,
}

/// Sealed ranges taken for a flush.
#[derive(Debug, Default)]
pub struct Taken {
    pub ranges: Vec<Range>,
    /// Per partition: the first offset of its first range and the offset after its last.
    pub partitions: BTreeMap<i32, (i64, i64)>,
    pub produced_at: Vec<i64>,
}

impl Ranges {
    /// Prepares `partition` for a message at `offset`: seals an open decided range that ends
    /// before it. Returns whether a range is open to take the message; if not, the caller opens
    /// one with [`Ranges::open`] once it knows whether an end was decided at `offset`.
    pub fn ready_for(&mut self, partition: i32, offset: i64) -> bool {
        let entry = self.partitions.entry(partition).or_default();
        if let Some(open) = &entry.open
            && open.decided.is_some_and(|last| offset > last)
        {
            entry.seal_open();
        }
        entry.open.is_some()
    }

    /// Where the range that a message at `offset` opens begins (see [`Ranges::open`]).
    pub fn first_for(&self, partition: i32, offset: i64) -> i64 {
        self.partitions
            .get(&partition)
            .and_then(|entry| entry.next_first)
            .filter(|first| *first <= offset)
            .unwrap_or(offset)
    }

    /// Reading `partition` (re)starts at `offset`: its next range begins there.
    pub fn start_at(&mut self, partition: i32, offset: i64) {
        self.partitions.entry(partition).or_default().next_first = Some(offset);
    }

    /// Opens a range of `partition` at `first` (from [`Ranges::first_for`]); `decided` is what an
    /// earlier writer chose for it.
    pub fn open(&mut self, partition: i32, first: i64, decided: Option<Decision>) {
        let entry = self.partitions.entry(partition).or_default();
        debug_assert!(entry.open.is_none(), "one open range per partition");
        let (decided, decided_copies) = match decided {
            Some(Decision { last, copies }) => (Some(last), copies),
            None => (None, Vec::new()),
        };
        entry.open = Some(Building {
            first,
            next: first,
            batches: SiteBatches::default(),
            produced_at: Vec::new(),
            opened: Instant::now(),
            decided,
            decided_copies,
            copies: Vec::new(),
            kept: Vec::new(),
        });
    }

    /// For a keyed record at `offset` of `partition`'s open range: if an earlier writer decided
    /// the range, whether it did not store that offset as a copy; `None` if nobody decided.
    pub fn decided_copy(&self, partition: i32, offset: i64) -> Option<bool> {
        let open = self.partitions.get(&partition)?.open.as_ref()?;
        open.decided?;
        Some(open.decided_copies.binary_search(&offset).is_ok())
    }

    /// Notes that `offset` of `partition`'s open range is not stored, as a copy of a keyed record
    /// kept before (it still counts as taken: call [`Ranges::consumed`] too).
    pub fn copy_dropped(&mut self, partition: i32, offset: i64) {
        self.open_range(partition).copies.push(offset);
    }

    /// Notes that the keyed `record` at `offset` of `partition`'s open range is stored there.
    pub fn kept(&mut self, partition: i32, record: &KeyedRecord, offset: i64) {
        let open = self.open_range(partition);
        KeptRun::push(
            &mut open.kept,
            record.key.0,
            record.fingerprint.0,
            record.index,
            offset,
        );
    }

    /// The open range's lines of `site` in `partition` (it must be open).
    pub fn batch(&mut self, partition: i32, site: Option<&SiteId>) -> &mut EncodedBatch {
        self.open_range(partition).batches.batch(site)
    }

    /// Records the produce timestamp of a record just added to `partition`'s open range.
    pub fn produced(&mut self, partition: i32, at_ms: i64) {
        self.open_range(partition).produced_at.push(at_ms);
    }

    fn open_range(&mut self, partition: i32) -> &mut Building {
        self.partitions
            .get_mut(&partition)
            .and_then(|p| p.open.as_mut())
            .expect("a range is open for the partition")
    }

    /// Counts `offset` of `partition` as taken by its open range (if there is one) and seals the
    /// range if that completes it.
    pub fn consumed(&mut self, partition: i32, offset: i64, limits: &RangeLimits) {
        let Some(entry) = self.partitions.get_mut(&partition) else {
            return;
        };
        let Some(open) = entry.open.as_mut() else {
            return;
        };
        open.next = open.next.max(offset + 1);
        let full = match open.decided {
            Some(last) => open.next > last,
            None => {
                (open.next - open.first) as usize >= limits.max_messages
                    || open.batches.bytes() >= limits.max_bytes
            }
        };
        if full {
            entry.seal_open();
        }
    }

    /// Seals the undecided open ranges at least `max_age` old (all of them with `all`).
    /// Decided ones wait for their end. Returns whether any range is sealed now.
    pub fn seal_due(&mut self, max_age: Duration, all: bool) -> bool {
        let mut any = false;
        for entry in self.partitions.values_mut() {
            if let Some(open) = &entry.open
                && open.decided.is_none()
                && open.next > open.first
                && (all || open.opened.elapsed() >= max_age)
            {
                entry.seal_open();
            }
            any |= !entry.sealed.is_empty();
        }
        any
    }

    /// Offsets buffered, open and sealed.
    pub fn messages(&self) -> usize {
        self.partitions
            .values()
            .flat_map(|p| p.sealed.iter().chain(&p.open))
            .map(|range| (range.next - range.first) as usize)
            .sum()
    }

    /// Takes every sealed range, for a flush.
    pub fn take_sealed(&mut self) -> Taken {
        let mut taken = Taken::default();
        for (partition, entry) in &mut self.partitions {
            for range in entry.sealed.drain(..) {
                // A decided range ends where it was decided, even if its last offsets never came.
                let last = range.decided.unwrap_or(range.next - 1);
                let bounds = taken
                    .partitions
                    .entry(*partition)
                    .or_insert((range.first, last + 1));
                bounds.1 = last + 1;
                taken.produced_at.extend(range.produced_at);
                taken.ranges.push(Range {
                    partition: *partition,
                    first: range.first,
                    last,
                    batch: range.batches.into_batch(),
                    copies: range.copies,
                    kept: range.kept,
                });
            }
        }
        taken
    }

    /// Per partition with anything buffered: its first buffered offset (where to read again if
    /// the buffer is dropped).
    pub fn firsts(&self) -> BTreeMap<i32, i64> {
        self.partitions
            .iter()
            .filter_map(|(partition, entry)| {
                let first = entry.sealed.first().or(entry.open.as_ref())?.first;
                Some((*partition, first))
            })
            .collect()
    }

    /// Drops what is buffered for `partition`.
    pub fn forget(&mut self, partition: i32) {
        self.partitions.remove(&partition);
    }

    /// Drops the open ranges that wait for a decided end (after [`Ranges::seal_due`] with `all`,
    /// the only ones left): whoever reads their partition next completes them.
    pub fn drop_open(&mut self) {
        for entry in self.partitions.values_mut() {
            if let Some(open) = entry.open.take() {
                entry.next_first = Some(open.first);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::Hour;

    fn decided(last: i64) -> Option<Decision> {
        Some(Decision {
            last,
            copies: Vec::new(),
        })
    }

    const LIMITS: RangeLimits = RangeLimits {
        max_messages: 3,
        max_bytes: 1 << 20,
        max_age: Duration::from_secs(3600),
    };

    fn take(ranges: &mut Ranges, partition: i32, offset: i64) {
        if !ranges.ready_for(partition, offset) {
            let first = ranges.first_for(partition, offset);
            ranges.open(partition, first, None);
        }
        ranges
            .batch(partition, None)
            .push_line(Hour::from_index(1), format!("{offset}").as_bytes());
        ranges.consumed(partition, offset, &LIMITS);
    }

    fn bounds(taken: &Taken) -> Vec<(i32, i64, i64)> {
        (taken.ranges.iter())
            .map(|r| (r.partition, r.first, r.last))
            .collect()
    }

    #[test]
    fn undecided_ranges_close_at_the_size_limit_per_partition() {
        let mut ranges = Ranges::default();
        for offset in 0..7 {
            take(&mut ranges, 0, offset);
        }
        take(&mut ranges, 1, 40);
        assert_eq!(ranges.messages(), 8);
        let taken = ranges.take_sealed();
        assert_eq!(bounds(&taken), [(0, 0, 2), (0, 3, 5)]);
        assert_eq!(taken.partitions[&0], (0, 6));
        assert_eq!(ranges.firsts(), BTreeMap::from([(0, 6), (1, 40)]));
        assert!(ranges.seal_due(LIMITS.max_age, true));
        assert_eq!(bounds(&ranges.take_sealed()), [(0, 6, 6), (1, 40, 40)]);
        assert_eq!(ranges.messages(), 0);
    }

    #[test]
    fn a_decided_range_closes_exactly_at_its_end_and_not_before() {
        let mut ranges = Ranges::default();
        assert!(!ranges.ready_for(0, 10));
        ranges.open(0, 10, decided(14));
        for offset in 10..=14 {
            assert!(ranges.ready_for(0, offset));
            ranges.batch(0, None).push_line(Hour::from_index(1), b"x");
            ranges.consumed(0, offset, &LIMITS);
        }
        // Longer than maxObjectRecords (3), yet one range, and age does not close it early.
        assert_eq!(bounds(&ranges.take_sealed()), [(0, 10, 14)]);

        ranges.open(0, 20, decided(30));
        ranges.consumed(0, 20, &LIMITS);
        assert!(!ranges.seal_due(Duration::ZERO, true));
        // Offsets after its end (a gap in the partition) close it before they are taken.
        assert!(!ranges.ready_for(0, 33));
        assert_eq!(bounds(&ranges.take_sealed()), [(0, 20, 30)]);
        // ... and the next range begins right after it, not at the first offset that came.
        assert_eq!(ranges.first_for(0, 33), 31);
    }

    #[test]
    fn copies_are_dropped_as_the_ranges_writer_decided_and_carried_to_its_intent() {
        let mut ranges = Ranges::default();
        ranges.open(
            0,
            10,
            Some(Decision {
                last: 13,
                copies: vec![11, 13],
            }),
        );
        assert_eq!(ranges.decided_copy(0, 11), Some(true));
        assert_eq!(ranges.decided_copy(0, 12), Some(false));
        assert_eq!(ranges.decided_copy(1, 12), None, "no range open");
        for offset in 10..=13 {
            if ranges.decided_copy(0, offset) == Some(true) {
                ranges.copy_dropped(0, offset);
            } else {
                ranges.batch(0, None).push_line(Hour::from_index(1), b"x");
            }
            ranges.consumed(0, offset, &LIMITS);
        }
        let taken = ranges.take_sealed();
        assert_eq!(taken.ranges[0].copies, [11, 13]);
        assert!(
            taken.ranges[0].kept.is_empty(),
            "no keyed record noted as kept"
        );
        assert_eq!(taken.ranges[0].batch.records(), 2);
        // Nobody decided the next one: the caller decides by position.
        ranges.open(0, 14, None);
        assert_eq!(ranges.decided_copy(0, 14), None);
        ranges.copy_dropped(0, 14);
        ranges.consumed(0, 14, &LIMITS);
        assert!(ranges.seal_due(Duration::ZERO, true));
        assert_eq!(ranges.take_sealed().ranges[0].copies, [14]);
    }

    #[test]
    fn a_range_begins_where_reading_started_even_if_the_first_offsets_never_come() {
        let mut ranges = Ranges::default();
        ranges.start_at(2, 100);
        assert!(!ranges.ready_for(2, 104));
        assert_eq!(ranges.first_for(2, 104), 100);
        ranges.open(2, 100, None);
        ranges.consumed(2, 104, &LIMITS);
        assert!(ranges.seal_due(Duration::ZERO, true));
        assert_eq!(bounds(&ranges.take_sealed()), [(2, 100, 104)]);
        // A message below where reading started (a rewind) opens its range where it is.
        assert_eq!(ranges.first_for(2, 50), 50);
    }

    #[test]
    fn age_seals_only_undecided_ranges_and_drop_open_leaves_decided_ones_to_the_next_reader() {
        let mut ranges = Ranges::default();
        take(&mut ranges, 0, 0);
        ranges.open(1, 5, decided(9));
        ranges.consumed(1, 5, &LIMITS);
        assert!(ranges.seal_due(Duration::ZERO, false));
        assert_eq!(bounds(&ranges.take_sealed()), [(0, 0, 0)]);
        ranges.drop_open();
        assert_eq!(ranges.messages(), 0);
        assert!(ranges.firsts().is_empty());
    }
}
