//! The [`Ledger`] of keyed batches stored: per key, its batch's fingerprint, record count and
//! which records are stored ([`Written`]); the [`Update`]s it is built from (the store's
//! journal lines); expiry and the cap; and the [`SharedLedger`] callers ask by intent.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use super::{Fingerprint, Key};
use crate::config::IdempotencyConfig;

/// Which records of one keyed batch (by their index in it) are stored, as sorted, disjoint,
/// half-open ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Written(Vec<(u32, u32)>);

impl Written {
    /// All of `records` records.
    pub fn all(records: u32) -> Written {
        Written(if records == 0 {
            Vec::new()
        } else {
            vec![(0, records)]
        })
    }

    /// Whether record `index` is stored.
    pub fn contains(&self, index: u32) -> bool {
        let at = self.0.partition_point(|(_, end)| *end <= index);
        self.0.get(at).is_some_and(|(start, _)| *start <= index)
    }

    /// Records `index` as stored.
    pub fn insert(&mut self, index: u32) {
        self.insert_range(index, index + 1);
    }

    /// Records `start..end` as stored.
    pub fn insert_range(&mut self, start: u32, end: u32) {
        if start >= end {
            return;
        }
        // The ranges that touch or overlap `start..end` merge into one.
        let first = self.0.partition_point(|(_, e)| *e < start);
        let last = self.0.partition_point(|(s, _)| *s <= end);
        let (mut start, mut end) = (start, end);
        if first < last {
            start = start.min(self.0[first].0);
            end = end.max(self.0[last - 1].1);
        }
        self.0.splice(first..last, [(start, end)]);
    }

    /// Everything of `other` too.
    pub fn merge(&mut self, other: &Written) {
        for (start, end) in &other.0 {
            self.insert_range(*start, *end);
        }
    }

    /// How many records are stored.
    pub fn count(&self) -> u64 {
        self.0
            .iter()
            .map(|(start, end)| u64::from(end - start))
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The ranges.
    pub fn ranges(&self) -> &[(u32, u32)] {
        &self.0
    }
}

/// One keyed batch as stored, kept small (an index holds up to `idempotency.maxKeys` of them):
/// the fingerprint's low 64 bits (it is only ever compared with batches under the same key), and
/// which records are stored only while not all are.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    fingerprint: u64,
    /// When it was first stored, in milliseconds since the Unix epoch.
    first_ms: u64,
    records: u32,
    /// `None` once every record is stored.
    partial: Option<Box<Written>>,
}

impl Entry {
    fn new(update: &Update) -> Entry {
        let mut entry = Entry {
            fingerprint: update.fingerprint as u64,
            first_ms: update.at_ms,
            records: update.records,
            partial: Some(Box::default()),
        };
        entry.add(&update.written);
        entry
    }

    fn add(&mut self, written: &Written) {
        if let Some(partial) = &mut self.partial {
            partial.merge(written);
            if partial.count() >= u64::from(self.records) {
                self.partial = None;
            }
        }
    }

    /// Whether this is the entry of the batch with `fingerprint`.
    pub fn is_batch(&self, fingerprint: Fingerprint) -> bool {
        self.fingerprint == fingerprint.0 as u64
    }

    /// Records in the batch.
    pub fn records(&self) -> u32 {
        self.records
    }

    /// Whether every record of the batch is stored.
    pub fn complete(&self) -> bool {
        self.partial.is_none()
    }

    /// Whether record `index` of the batch is stored.
    pub fn holds(&self, index: u32) -> bool {
        match &self.partial {
            None => index < self.records,
            Some(written) => written.contains(index),
        }
    }

    fn written(&self) -> Written {
        match &self.partial {
            None => Written::all(self.records),
            Some(written) => (**written).clone(),
        }
    }
}

/// A change to the ledger, as the store's journal holds it (one JSON line each): records
/// `written` of the batch `fingerprint` (`records` long) under `key` are stored, as of `at_ms`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Update {
    #[serde(rename = "k", with = "hex128")]
    pub key: u128,
    #[serde(rename = "f", with = "hex128")]
    pub fingerprint: u128,
    #[serde(rename = "n")]
    pub records: u32,
    #[serde(rename = "t")]
    pub at_ms: u64,
    #[serde(rename = "w")]
    pub written: Written,
}

impl Update {
    /// A whole batch stored at once (v1).
    pub fn whole(key: Key, fingerprint: Fingerprint, records: u32, at_ms: u64) -> Update {
        Update {
            key: key.0,
            fingerprint: fingerprint.0,
            records,
            at_ms,
            written: Written::all(records),
        }
    }

    pub fn key(&self) -> Key {
        Key(self.key)
    }

    pub fn fingerprint(&self) -> Fingerprint {
        Fingerprint(self.fingerprint)
    }
}

/// Limits of an index: `idempotency.retention` and `idempotency.maxKeys`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Retention {
    pub retention: Duration,
    pub max_keys: usize,
}

impl Retention {
    pub fn from_config(idempotency: &IdempotencyConfig) -> Retention {
        Retention {
            retention: idempotency.retention,
            max_keys: idempotency.max_keys,
        }
    }
}

/// Keyed batches stored (or, for v2's API, acknowledged) within the retention.
#[derive(Debug)]
pub struct Ledger {
    entries: HashMap<Key, Entry>,
    /// Keys in the order they were first stored (oldest first), for expiry and the cap. A key
    /// leaves the map only from the front of this order, so each key is in it once.
    order: VecDeque<Key>,
    limits: Retention,
}

impl Ledger {
    pub fn new(limits: Retention) -> Ledger {
        Ledger {
            entries: HashMap::new(),
            order: VecDeque::new(),
            limits: Retention {
                max_keys: limits.max_keys.max(1),
                ..limits
            },
        }
    }

    /// Applies `update`. An update for a key held with another fingerprint changes nothing: the
    /// first batch stored under a key is the one it names.
    pub fn apply(&mut self, update: &Update) {
        let key = update.key();
        match self.entries.get_mut(&key) {
            Some(entry) => {
                if entry.is_batch(update.fingerprint()) {
                    entry.add(&update.written);
                }
            }
            None => {
                self.entries.insert(key, Entry::new(update));
                self.order.push_back(key);
                while self.entries.len() > self.limits.max_keys {
                    self.evict_oldest();
                }
            }
        }
    }

    /// The entry of `key`, if held.
    pub fn get(&self, key: &Key) -> Option<&Entry> {
        self.entries.get(key)
    }

    /// Forgets the keys first stored more than the retention before `now_ms`.
    pub fn expire(&mut self, now_ms: u64) {
        let horizon = now_ms.saturating_sub(self.limits.retention.as_millis() as u64);
        while let Some(oldest) = self.order.front()
            && self
                .entries
                .get(oldest)
                .is_some_and(|entry| entry.first_ms < horizon)
        {
            self.evict_oldest();
        }
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Every entry as one update, oldest first: what a compacted journal holds.
    pub fn updates(&self) -> impl Iterator<Item = Update> + '_ {
        self.order.iter().filter_map(|key| {
            let entry = self.entries.get(key)?;
            Some(Update {
                key: key.0,
                fingerprint: u128::from(entry.fingerprint),
                records: entry.records,
                at_ms: entry.first_ms,
                written: entry.written(),
            })
        })
    }

    fn evict_oldest(&mut self) {
        if let Some(key) = self.order.pop_front() {
            self.entries.remove(&key);
        }
    }
}

/// A [`Ledger`] shared by the one who writes it (the store's writer, once a group is durable;
/// v2's API, once the broker acknowledged a batch) and those who ask it, through what they ask
/// rather than its entries, so that the rules of what a key means stay here. Cheap to clone.
#[derive(Debug, Clone)]
pub struct SharedLedger(Arc<Mutex<Ledger>>);

impl SharedLedger {
    pub fn new(ledger: Ledger) -> SharedLedger {
        SharedLedger(Arc::new(Mutex::new(ledger)))
    }

    /// Whether record `index` of the batch `fingerprint` under `key` is stored (v2's consumers
    /// drop a record produced again then). A record of another batch under the key is not.
    pub fn holds_record(&self, key: Key, fingerprint: Fingerprint, index: u32) -> bool {
        self.lock()
            .get(&key)
            .is_some_and(|entry| entry.is_batch(fingerprint) && entry.holds(index))
    }

    /// A ledger of its own with the same limits, holding only the batches stored whole here:
    /// what v2's API knows to have been acknowledged when it starts (a batch its consumers
    /// stored in part may still have been refused to its client).
    pub fn whole_batches(&self) -> SharedLedger {
        let ledger = self.lock();
        let mut whole = Ledger::new(ledger.limits);
        for update in ledger.updates() {
            if update.written.count() >= u64::from(update.records) {
                whole.apply(&update);
            }
        }
        SharedLedger::new(whole)
    }

    /// Applies `updates`, in order; returns how many keys are held then.
    pub fn apply_all<'a>(&self, updates: impl IntoIterator<Item = &'a Update>) -> usize {
        let mut ledger = self.lock();
        for update in updates {
            ledger.apply(update);
        }
        ledger.len()
    }

    /// Forgets the keys first stored more than the retention before `now_ms`; returns how many
    /// keys are held then.
    pub fn expire(&self, now_ms: u64) -> usize {
        let mut ledger = self.lock();
        ledger.expire(now_ms);
        ledger.len()
    }

    /// Every entry as one update, oldest first: what a compacted journal holds. A copy, so that
    /// the API's claims do not wait while it is written.
    pub fn updates(&self) -> Vec<Update> {
        self.lock().updates().collect()
    }

    /// Keys held.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The ledger itself, for the rules of this module that read it (the key index).
    pub(super) fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.0.lock().expect("ledger lock")
    }
}

/// 128-bit values as 32 hex digits in the journal.
mod hex128 {
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{value:032x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        let text = <&str>::deserialize(deserializer)?;
        u128::from_str_radix(text, 16).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::fixtures::{HOUR_MS, batch, ledger};

    #[test]
    fn updates_merge_and_round_trip_through_the_journal_format() {
        let mut ledger = Ledger::new(Retention {
            retention: Duration::from_secs(3600),
            max_keys: 10,
        });
        let key = Key::parse(b"k").unwrap();
        let fp = Fingerprint::of(&batch(&["/a", "/b", "/c"]));
        let mut first = Update::whole(key, fp, 3, 5);
        first.written = Written(vec![(0, 1)]);
        let mut second = first.clone();
        second.written = Written(vec![(2, 3)]);
        second.at_ms = 9;
        ledger.apply(&first);
        ledger.apply(&second);
        let entry = ledger.get(&key).unwrap();
        assert!(entry.holds(0) && !entry.holds(1) && entry.holds(2));
        assert_eq!(entry.first_ms, 5);
        assert!(!entry.complete());
        let mut third = first.clone();
        third.written = Written(vec![(1, 2)]);
        ledger.apply(&third);
        assert!(ledger.get(&key).unwrap().complete());
        // Another batch under the same key changes nothing.
        let mut other = Update::whole(key, Fingerprint::of(&batch(&["/z"])), 1, 10);
        other.written = Written::all(1);
        ledger.apply(&other);
        assert!(ledger.get(&key).unwrap().is_batch(fp));

        let compacted: Vec<Update> = ledger.updates().collect();
        assert_eq!(compacted.len(), 1);
        let line = serde_json::to_string(&compacted[0]).unwrap();
        assert_eq!(serde_json::from_str::<Update>(&line).unwrap(), compacted[0]);
        assert!(line.starts_with(r#"{"k":""#), "{line}");
        assert!(line.ends_with(r#","n":3,"t":5,"w":[[0,3]]}"#), "{line}");
    }

    #[test]
    fn written_ranges_merge() {
        let mut written = Written::default();
        for index in [0, 1, 2, 5, 4, 3, 9] {
            written.insert(index);
        }
        assert_eq!(written.ranges(), [(0, 6), (9, 10)]);
        assert!(written.contains(4) && !written.contains(6) && written.contains(9));
        assert!(!written.contains(10));
        assert_eq!(written.count(), 7);
        let mut other = Written::default();
        other.insert_range(6, 8);
        written.merge(&other);
        assert_eq!(written.ranges(), [(0, 8), (9, 10)]);
        written.insert_range(8, 9);
        assert_eq!(written.ranges(), [(0, 10)]);
        written.insert_range(20, 30);
        written.insert_range(12, 14);
        assert_eq!(written.ranges(), [(0, 10), (12, 14), (20, 30)]);
    }

    #[test]
    fn a_record_is_held_only_for_its_own_batch_and_index() {
        let shared = ledger(10);
        let key = Key::parse(b"k").unwrap();
        let fp = Fingerprint::of(&batch(&["/a", "/b", "/c"]));
        let mut part = Update::whole(key, fp, 3, 0);
        part.written = Written(vec![(0, 1), (2, 3)]);
        assert_eq!(shared.apply_all([&part]), 1);
        assert!(shared.holds_record(key, fp, 0));
        assert!(!shared.holds_record(key, fp, 1), "not stored yet");
        assert!(shared.holds_record(key, fp, 2));
        assert!(!shared.holds_record(key, fp, 3), "beyond the batch");
        let other = Fingerprint::of(&batch(&["/z"]));
        assert!(
            !shared.holds_record(key, other, 0),
            "another batch under the key"
        );
        assert!(!shared.holds_record(Key::parse(b"unknown").unwrap(), fp, 0));
    }

    #[test]
    fn whole_batches_leave_out_those_stored_in_part_and_keep_the_limits() {
        let shared = ledger(2);
        let fp = Fingerprint::of(&batch(&["/a", "/b"]));
        let (whole, part) = (Key::parse(b"whole").unwrap(), Key::parse(b"part").unwrap());
        let mut half = Update::whole(part, fp, 2, HOUR_MS);
        half.written = Written::all(1);
        shared.apply_all([&Update::whole(whole, fp, 2, 0), &half]);

        let acknowledged = shared.whole_batches();
        assert_eq!(acknowledged.len(), 1);
        assert!(acknowledged.holds_record(whole, fp, 0) && acknowledged.holds_record(whole, fp, 1));
        assert!(!acknowledged.holds_record(part, fp, 0));
        // A ledger of its own: what is applied to it stays out of the first.
        let third = Key::parse(b"third").unwrap();
        acknowledged.apply_all([&Update::whole(third, fp, 2, HOUR_MS)]);
        assert!(!shared.holds_record(third, fp, 0));
        // The same cap (2 keys) and retention (24 h).
        let fourth = Key::parse(b"fourth").unwrap();
        assert_eq!(
            acknowledged.apply_all([&Update::whole(fourth, fp, 2, 2 * HOUR_MS)]),
            2
        );
        assert!(
            !acknowledged.holds_record(whole, fp, 0),
            "the oldest went first"
        );
        assert_eq!(acknowledged.expire(HOUR_MS + 24 * HOUR_MS + 1), 1);
        assert_eq!(acknowledged.updates()[0].key(), fourth);
    }
}
