//! Idempotent retries: the `Idempotency-Key` contract, in memory. What is durable, and where, is
//! the store's business (v1: a journal written with the lines; v2: the consumers' dedupe state,
//! kept with their checkpoint).
//!
//! - A key is printable ASCII, 1 to [`MAX_KEY_BYTES`] bytes ([`Key::parse`]). Only its 128-bit
//!   hash is kept.
//! - A batch's [`Fingerprint`] is the hash of its encoded lines: the same records in the same
//!   order are the same batch, whatever the format, compression or whitespace they came in.
//! - [`KeyIndex`] answers a request carrying a key ([`KeyIndex::claim`]): first time, go on
//!   ([`Claim::Fresh`], holding the key until the outcome is known); same key and batch done
//!   before, replay the answer; same key, another batch, refuse; same key still in flight, refuse
//!   for now. Keys are kept `retention` after they were done and at most `max_keys` of them (the
//!   oldest go first); an expired key is a new key.
//! - [`Written`] is what v2's consumers remember of a keyed batch: which of its records they
//!   stored, so that a batch produced again after a timeout is stored once.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use xxhash_rust::xxh3::{Xxh3, xxh3_128};

use crate::record::EncodedBatch;

/// The longest accepted key, in bytes.
pub const MAX_KEY_BYTES: usize = 255;

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
    #[error("Idempotency-Key must be printable ASCII (no spaces or control characters)")]
    NotPrintable,
}

impl Key {
    /// The key a header value names.
    pub fn parse(value: &[u8]) -> Result<Key, KeyError> {
        if value.is_empty() {
            Err(KeyError::Empty)
        } else if value.len() > MAX_KEY_BYTES {
            Err(KeyError::TooLong)
        } else if !value.iter().all(|b| (0x21..=0x7e).contains(b)) {
            Err(KeyError::NotPrintable)
        } else {
            Ok(Key(xxh3_128(value)))
        }
    }
}

/// What identifies a batch's content: the hash of its encoded lines, chunk by chunk.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Fingerprint(pub u128);

impl Fingerprint {
    /// The fingerprint of `batch`.
    pub fn of(batch: &EncodedBatch) -> Fingerprint {
        let mut hasher = Xxh3::new();
        for chunk in &batch.chunks {
            hasher.update(&chunk.hour.index().to_le_bytes());
            hasher.update(&chunk.lines);
        }
        Fingerprint(hasher.digest128())
    }
}

/// The one identity of a keyed batch: its key and fingerprint together.
pub fn batch_id(key: Key, fingerprint: Fingerprint) -> u128 {
    let mut bytes = [0u8; 32];
    bytes[..16].copy_from_slice(&key.0.to_le_bytes());
    bytes[16..].copy_from_slice(&fingerprint.0.to_le_bytes());
    xxh3_128(&bytes)
}

/// A key that was done: the batch it stored and how many records it had.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Done {
    pub fingerprint: Fingerprint,
    pub records: u32,
    /// When it was done, in milliseconds since the Unix epoch.
    pub at_ms: u64,
}

/// What to do with a request carrying a key.
#[derive(Debug)]
pub enum Claim {
    /// First seen (or expired): store the batch; the key is held until `guard` is dropped.
    Fresh(ClaimGuard),
    /// Done before with the same batch: answer as then (202 with this many records).
    Replay { records: u32 },
    /// Done before with another batch: refuse (422).
    Reused,
    /// Another request with it is still in flight: refuse for now (409, retry later).
    InFlight,
}

/// Holds a key in flight; dropping it lets the next request with the key through (as done, if
/// [`KeyIndex::complete`] was called meanwhile, else as new).
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
            .state
            .lock()
            .expect("key index lock")
            .in_flight
            .remove(&self.key);
    }
}

/// Keys done within the retention, and keys in flight.
#[derive(Debug)]
pub struct KeyIndex {
    state: Mutex<State>,
    retention: Duration,
    max_keys: usize,
}

#[derive(Debug, Default)]
struct State {
    done: HashMap<Key, Done>,
    /// Keys in the order they were done (oldest first), for expiry and the cap; an entry whose
    /// time no longer matches `done` is stale and skipped.
    order: VecDeque<(u64, Key)>,
    in_flight: HashMap<Key, Fingerprint>,
}

impl KeyIndex {
    pub fn new(retention: Duration, max_keys: usize) -> Arc<KeyIndex> {
        Arc::new(KeyIndex {
            state: Mutex::new(State::default()),
            retention,
            max_keys: max_keys.max(1),
        })
    }

    /// Decides about a request with `key` for a batch with `fingerprint`, at `now_ms`.
    pub fn claim(self: &Arc<Self>, key: Key, fingerprint: Fingerprint, now_ms: u64) -> Claim {
        let mut state = self.state.lock().expect("key index lock");
        self.expire(&mut state, now_ms);
        if let Some(done) = state.done.get(&key) {
            return if done.fingerprint == fingerprint {
                Claim::Replay {
                    records: done.records,
                }
            } else {
                Claim::Reused
            };
        }
        if state.in_flight.contains_key(&key) {
            return Claim::InFlight;
        }
        state.in_flight.insert(key, fingerprint);
        Claim::Fresh(ClaimGuard {
            index: self.clone(),
            key,
        })
    }

    /// Records `key` as done (its batch stored), e.g. when the store commits it or when a
    /// journal is read back at start-up.
    pub fn complete(&self, key: Key, done: Done) {
        let mut state = self.state.lock().expect("key index lock");
        state.done.insert(key, done);
        state.order.push_back((done.at_ms, key));
        while state.done.len() > self.max_keys {
            evict_oldest(&mut state);
        }
    }

    /// Keys done and still held.
    pub fn len(&self) -> usize {
        self.state.lock().expect("key index lock").done.len()
    }

    /// Whether no key is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every key held, with when it was done (for rewriting a journal).
    pub fn entries(&self) -> Vec<(Key, Done)> {
        let state = self.state.lock().expect("key index lock");
        let mut entries: Vec<(Key, Done)> = state.done.iter().map(|(k, d)| (*k, *d)).collect();
        entries.sort_by_key(|(key, done)| (done.at_ms, *key));
        entries
    }

    fn expire(&self, state: &mut State, now_ms: u64) {
        let horizon = now_ms.saturating_sub(self.retention.as_millis() as u64);
        while state.order.front().is_some_and(|(at, _)| *at < horizon) {
            evict_oldest(state);
        }
    }
}

/// Removes the oldest entry of the order (if it is not stale, its key too).
fn evict_oldest(state: &mut State) {
    if let Some((at, key)) = state.order.pop_front()
        && state.done.get(&key).is_some_and(|done| done.at_ms == at)
    {
        state.done.remove(&key);
    }
}

/// Which records of one keyed batch (by their index in it) are stored, as sorted, disjoint,
/// half-open ranges.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Written(pub Vec<(u32, u32)>);

impl Written {
    /// Whether record `index` is stored.
    pub fn contains(&self, index: u32) -> bool {
        self.0.iter().any(|(start, end)| (*start..*end).contains(&index))
    }

    /// Records `index` as stored.
    pub fn insert(&mut self, index: u32) {
        if self.contains(index) {
            return;
        }
        self.0.push((index, index + 1));
        self.0.sort_unstable();
        let mut merged: Vec<(u32, u32)> = Vec::with_capacity(self.0.len());
        for (start, end) in self.0.drain(..) {
            match merged.last_mut() {
                Some(last) if start <= last.1 => last.1 = last.1.max(end),
                _ => merged.push((start, end)),
            }
        }
        self.0 = merged;
    }

    /// Everything of `other` too.
    pub fn merge(&mut self, other: &Written) {
        for (start, end) in &other.0 {
            for index in *start..*end {
                self.insert(index);
            }
        }
    }

    /// How many records are stored.
    pub fn count(&self) -> u32 {
        self.0.iter().map(|(start, end)| end - start).sum()
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

    fn done(fingerprint: Fingerprint, records: u32, at_ms: u64) -> Done {
        Done {
            fingerprint,
            records,
            at_ms,
        }
    }

    #[test]
    fn keys_are_printable_ascii_of_bounded_length() {
        assert!(Key::parse(b"order-42/attempt:1").is_ok());
        assert!(Key::parse(&[b'k'; 255]).is_ok());
        assert_eq!(Key::parse(b""), Err(KeyError::Empty));
        assert_eq!(Key::parse(&[b'k'; 256]), Err(KeyError::TooLong));
        assert_eq!(Key::parse(b"with space"), Err(KeyError::NotPrintable));
        assert_eq!(Key::parse("ключ".as_bytes()), Err(KeyError::NotPrintable));
        assert_eq!(Key::parse(b"tab\there"), Err(KeyError::NotPrintable));
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
        let index = KeyIndex::new(Duration::from_secs(3600), 10);
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
        index.complete(key, done(mine, 1, 2));
        drop(guard);
        assert!(matches!(
            index.claim(key, mine, 3),
            Claim::Replay { records: 1 }
        ));
        assert!(matches!(index.claim(key, other, 3), Claim::Reused));
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn a_key_released_without_completion_is_fresh_again() {
        let index = KeyIndex::new(Duration::from_secs(3600), 10);
        let key = Key::parse(b"k").unwrap();
        let mine = Fingerprint::of(&batch(&["/a"]));
        let Claim::Fresh(guard) = index.claim(key, mine, 0) else {
            panic!()
        };
        drop(guard); // The batch was refused: nothing stored.
        assert!(matches!(index.claim(key, mine, 1), Claim::Fresh(_)));
    }

    #[test]
    fn keys_expire_after_the_retention_and_the_oldest_go_beyond_the_cap() {
        let index = KeyIndex::new(Duration::from_secs(24 * 3600), 2);
        let fp = Fingerprint::of(&batch(&["/a"]));
        let keys: Vec<Key> = (0..3u8).map(|i| Key::parse(&[b'a' + i]).unwrap()).collect();
        index.complete(keys[0], done(fp, 1, 0));
        index.complete(keys[1], done(fp, 1, HOUR_MS));
        index.complete(keys[2], done(fp, 1, 2 * HOUR_MS));
        assert_eq!(index.len(), 2, "the cap evicted the oldest");
        assert!(matches!(index.claim(keys[0], fp, 2 * HOUR_MS), Claim::Fresh(_)));
        assert!(matches!(
            index.claim(keys[1], fp, 2 * HOUR_MS),
            Claim::Replay { .. }
        ));
        // 24 h after key 1 was done, it is new again; key 2 is still held.
        let later = HOUR_MS + 24 * HOUR_MS + 1;
        assert!(matches!(index.claim(keys[1], fp, later), Claim::Fresh(_)));
        assert!(matches!(index.claim(keys[2], fp, later), Claim::Replay { .. }));
    }

    #[test]
    fn written_ranges_merge() {
        let mut written = Written::default();
        for index in [0, 1, 2, 5, 4, 3, 9] {
            written.insert(index);
        }
        assert_eq!(written.0, [(0, 6), (9, 10)]);
        assert!(written.contains(4) && !written.contains(6) && written.contains(9));
        assert_eq!(written.count(), 7);
        let mut other = Written::default();
        other.insert(6);
        other.insert(7);
        written.merge(&other);
        assert_eq!(written.0, [(0, 8), (9, 10)]);
    }
}
