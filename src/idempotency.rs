//! Idempotent retries: what an `Idempotency-Key` means, and the two indexes that keep it.
//!
//! - A key is printable ASCII, 1 to [`MAX_KEY_BYTES`] bytes ([`Key::parse`]); only a 128-bit
//!   BLAKE3 hash of it is kept. A batch's [`Fingerprint`] is the hash of its encoded lines: the
//!   same records in the same order are the same batch, whatever format, compression or spacing
//!   they came in. BLAKE3 (cryptographic) so that no client can craft another body, or another
//!   key, that passes for one it does not know.
//! - The [`Ledger`] is what is *stored*: per key, its batch's fingerprint and record count and
//!   which of its records are in the hour files ([`Written`]). The store keeps it durable, in the
//!   same write as the lines, in a journal of [`Update`]s (see [`crate::store`]), and rebuilds it
//!   at start-up. v2's consumers drop the records it already holds. It is shared as a
//!   [`SharedLedger`], asked what a caller means ("is this record of that batch stored?", "which
//!   batches are stored whole?") rather than handed out, so that these rules live here only.
//! - The [`KeyIndex`] answers a request carrying a key ([`KeyIndex::claim`]): first time, go on
//!   ([`Claim::Fresh`], holding the key in flight until the batch's outcome is known); same key
//!   and batch done before, replay the answer; same key, another batch, refuse; same key still in
//!   flight, refuse for now. "Done" is the ledger's word in v1 (stored); in v2 it is an index of its
//!   own (acknowledged by the broker), seeded at start-up from the ledger's complete batches.
//! - Keys are kept `retention` after their batch was first stored and at most `max_keys` of them
//!   (the oldest go first); an expired key is a new key.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde::{Deserialize, Serialize};

use crate::record::EncodedBatch;

/// The longest accepted key, in bytes.
pub const MAX_KEY_BYTES: usize = 255;
/// The request header that carries a key.
pub const HEADER: &str = "idempotency-key";
/// The response header that marks a replayed answer.
pub const REPLAYED_HEADER: &str = "idempotent-replayed";

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |since| since.as_millis() as u64)
}

fn hash128(parts: &[&[u8]]) -> u128 {
    let mut hasher = blake3::Hasher::new();
    for part in parts {
        hasher.update(part);
    }
    let digest = hasher.finalize();
    u128::from_le_bytes(digest.as_bytes()[..16].try_into().expect("16 bytes"))
}

/// The hash of an `Idempotency-Key`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Key(pub u128);

/// Why a header value is not a key.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("Idempotency-Key is empty")]
    Empty,
    #[error("Idempotency-Key is longer than {MAX_KEY_BYTES} bytes")]
    TooLong,
    #[error(
        "Idempotency-Key must be printable ASCII without spaces (bytes 0x21 to 0x7e); byte {position} is 0x{byte:02x}"
    )]
    NotPrintable { position: usize, byte: u8 },
    #[error("Idempotency-Key is given more than once")]
    Repeated,
}

impl Key {
    /// The key a header value names.
    pub fn parse(value: &[u8]) -> Result<Key, KeyError> {
        if value.is_empty() {
            return Err(KeyError::Empty);
        }
        if value.len() > MAX_KEY_BYTES {
            return Err(KeyError::TooLong);
        }
        if let Some(position) = value.iter().position(|b| !(0x21..=0x7e).contains(b)) {
            return Err(KeyError::NotPrintable {
                position,
                byte: value[position],
            });
        }
        Ok(Key(hash128(&[b"key\0", value])))
    }
}

/// What identifies a batch's content: the hash of its encoded lines, hour by hour.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u128);

impl Fingerprint {
    /// The fingerprint of `batch`.
    pub fn of(batch: &EncodedBatch) -> Fingerprint {
        let mut hasher = blake3::Hasher::new();
        hasher.update(b"batch\0");
        for chunk in &batch.chunks {
            hasher.update(&chunk.hour.index().to_le_bytes());
            hasher.update(&(chunk.lines.len() as u64).to_le_bytes());
            hasher.update(&chunk.lines);
        }
        let digest = hasher.finalize();
        Fingerprint(u128::from_le_bytes(
            digest.as_bytes()[..16].try_into().expect("16 bytes"),
        ))
    }
}

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

    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.0.lock().expect("ledger lock")
    }
}

/// What to do with a request carrying a key.
#[derive(Debug)]
pub enum Claim {
    /// First seen (or expired): store the batch; the key is in flight until `guard` is dropped.
    Fresh(ClaimGuard),
    /// Done before with the same batch: answer as then (202 with this many records).
    Replay { records: u32 },
    /// Done before with another batch: refuse (422).
    Reused,
    /// Another request with it is still in flight: refuse for now (409, retry later).
    InFlight,
}

/// Holds a key in flight; dropping it lets the next request with the key through (replayed, if
/// the batch was done meanwhile, else as new). It goes with the batch to whoever decides its
/// outcome (the store's writer in v1), so that the key is in flight exactly as long as the batch.
#[derive(Debug)]
pub struct ClaimGuard {
    index: Arc<KeyIndex>,
    key: Key,
}

impl ClaimGuard {
    pub fn key(&self) -> Key {
        self.key
    }
}

impl Drop for ClaimGuard {
    fn drop(&mut self) {
        self.index
            .in_flight
            .lock()
            .expect("in-flight keys lock")
            .remove(&self.key);
    }
}

/// The API's view: which keys are done (a [`SharedLedger`]) and which are in flight.
#[derive(Debug)]
pub struct KeyIndex {
    done: SharedLedger,
    in_flight: Mutex<HashSet<Key>>,
}

impl KeyIndex {
    /// An index whose "done" is `done` (v1: the store's ledger; v2: a ledger of its own).
    pub fn new(done: SharedLedger) -> Arc<KeyIndex> {
        Arc::new(KeyIndex {
            done,
            in_flight: Mutex::new(HashSet::new()),
        })
    }

    /// Decides about a request with `key` for a batch with `fingerprint`, at `now_ms`.
    pub fn claim(self: &Arc<Self>, key: Key, fingerprint: Fingerprint, now_ms: u64) -> Claim {
        // In-flight first: a key leaves it only after its outcome is in the ledger.
        let mut in_flight = self.in_flight.lock().expect("in-flight keys lock");
        if in_flight.contains(&key) {
            return Claim::InFlight;
        }
        {
            let mut done = self.done.lock();
            done.expire(now_ms);
            if let Some(entry) = done.get(&key).filter(|entry| entry.complete()) {
                return if entry.is_batch(fingerprint) {
                    Claim::Replay {
                        records: entry.records(),
                    }
                } else {
                    Claim::Reused
                };
            }
        }
        in_flight.insert(key);
        Claim::Fresh(ClaimGuard {
            index: self.clone(),
            key,
        })
    }

    /// Records a batch as done (v2: acknowledged by the broker).
    pub fn complete(&self, update: &Update) {
        self.done.apply_all([update]);
    }

    /// Keys done and held.
    pub fn len(&self) -> usize {
        self.done.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
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
    use chrono::{DateTime, Utc};

    const HOUR_MS: u64 = 3_600_000;

    fn batch(paths: &[&str]) -> EncodedBatch {
        let mut batch = EncodedBatch::default();
        let ts: DateTime<Utc> = "2025-11-22T14:00:00Z".parse().unwrap();
        for path in paths {
            batch.push(&ts, path, "ua");
        }
        batch
    }

    fn ledger(max_keys: usize) -> SharedLedger {
        SharedLedger::new(Ledger::new(Retention {
            retention: Duration::from_secs(24 * 3600),
            max_keys,
        }))
    }

    #[test]
    fn keys_are_printable_ascii_of_bounded_length() {
        assert!(Key::parse(b"order-42/attempt:1").is_ok());
        assert!(Key::parse(&[b'k'; 255]).is_ok());
        assert_eq!(Key::parse(b""), Err(KeyError::Empty));
        assert_eq!(Key::parse(&[b'k'; 256]), Err(KeyError::TooLong));
        assert_eq!(
            Key::parse(b"with space"),
            Err(KeyError::NotPrintable {
                position: 4,
                byte: b' '
            })
        );
        assert!(matches!(
            Key::parse("ключ".as_bytes()),
            Err(KeyError::NotPrintable { position: 0, .. })
        ));
        assert_ne!(Key::parse(b"a").unwrap(), Key::parse(b"b").unwrap());
    }

    #[test]
    fn the_same_records_in_the_same_order_are_the_same_batch() {
        let a = Fingerprint::of(&batch(&["/a", "/b"]));
        assert_eq!(a, Fingerprint::of(&batch(&["/a", "/b"])));
        assert_ne!(a, Fingerprint::of(&batch(&["/b", "/a"])));
        assert_ne!(a, Fingerprint::of(&batch(&["/a"])));
    }

    #[test]
    fn a_key_is_fresh_then_in_flight_then_replayed_or_refused() {
        let done = ledger(10);
        let index = KeyIndex::new(done.clone());
        let key = Key::parse(b"k").unwrap();
        let (mine, other) = (
            Fingerprint::of(&batch(&["/a"])),
            Fingerprint::of(&batch(&["/b"])),
        );
        let Claim::Fresh(guard) = index.claim(key, mine, 0) else {
            panic!("first time is fresh")
        };
        assert!(matches!(index.claim(key, mine, 1), Claim::InFlight));
        assert!(matches!(index.claim(key, other, 1), Claim::InFlight));
        // The store records it, then lets the key go.
        done.apply_all([&Update::whole(key, mine, 1, 2)]);
        drop(guard);
        assert!(matches!(
            index.claim(key, mine, 3),
            Claim::Replay { records: 1 }
        ));
        assert!(matches!(index.claim(key, other, 3), Claim::Reused));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_key_released_without_its_batch_stored_is_fresh_again() {
        let index = KeyIndex::new(ledger(10));
        let key = Key::parse(b"k").unwrap();
        let mine = Fingerprint::of(&batch(&["/a"]));
        let Claim::Fresh(guard) = index.claim(key, mine, 0) else {
            panic!()
        };
        drop(guard); // The batch was refused: nothing stored.
        assert!(matches!(index.claim(key, mine, 1), Claim::Fresh(_)));
    }

    #[test]
    fn a_batch_stored_in_part_is_not_done() {
        let done = ledger(10);
        let index = KeyIndex::new(done.clone());
        let key = Key::parse(b"k").unwrap();
        let fp = Fingerprint::of(&batch(&["/a", "/b"]));
        let mut part = Update::whole(key, fp, 2, 0);
        part.written = Written::all(1);
        done.apply_all([&part]);
        assert!(matches!(index.claim(key, fp, 1), Claim::Fresh(_)));
    }

    #[test]
    fn keys_expire_after_the_retention_and_the_oldest_go_beyond_the_cap() {
        let done = ledger(2);
        let index = KeyIndex::new(done.clone());
        let fp = Fingerprint::of(&batch(&["/a"]));
        let keys: Vec<Key> = (0..3u8).map(|i| Key::parse(&[b'a' + i]).unwrap()).collect();
        for (i, key) in keys.iter().enumerate() {
            done.apply_all([&Update::whole(*key, fp, 1, i as u64 * HOUR_MS)]);
        }
        assert_eq!(index.len(), 2, "the cap evicted the oldest");
        assert!(matches!(
            index.claim(keys[0], fp, 2 * HOUR_MS),
            Claim::Fresh(_)
        ));
        assert!(matches!(
            index.claim(keys[1], fp, 2 * HOUR_MS),
            Claim::Replay { .. }
        ));
        // 24 h after key 1 was stored, it is new again; key 2 is still held.
        let later = HOUR_MS + 24 * HOUR_MS + 1;
        assert!(matches!(index.claim(keys[1], fp, later), Claim::Fresh(_)));
        assert!(matches!(
            index.claim(keys[2], fp, later),
            Claim::Replay { .. }
        ));
    }

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
}
