//! The API's [`KeyIndex`]: which keys are done (a [`SharedLedger`]) and which are in flight, and
//! what that means for a request carrying a key ([`Claim`]).

use std::collections::HashSet;
use std::sync::{Arc, Mutex};

use super::{Fingerprint, Key, SharedLedger, Update};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::idempotency::Written;
    use crate::idempotency::fixtures::{HOUR_MS, batch, ledger};

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
}
