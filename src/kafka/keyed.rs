//! How a record of a batch sent with an `Idempotency-Key` travels through Kafka, so that the
//! consumers can store it once however often the batch was produced.
//!
//! | where | what |
//! |---|---|
//! | message key | the key's hash, 32 hex digits (never the client's key itself); all records of a batch go to one partition, in order |
//! | header `idempotency-fingerprint` | the batch's fingerprint, 32 hex digits |
//! | header `idempotency-index` | the record's position in the batch, from 0 |
//! | header `idempotency-records` | how many records the batch has |
//!
//! A message without all four is an ordinary record.
//!
//! With the hour files, the store's ledger says which keyed records are stored. With the bucket
//! there is no ledger on the machine; [`KeptCopies`] remembers, per keyed record a consumer kept,
//! where (partition and offset), so that a later copy (the batch produced again, e.g. retried
//! through another instance: its records go to the same partition, after the first copy) is
//! dropped, while the kept copy itself, read again after a rewind, is kept again. Each range's
//! intent names the keyed records it stored, and a consumer that is assigned a partition starts
//! from those of the partition's recent ranges ([`KeptCopies::seed`]), so a consumer that
//! restarted, or another instance that took the partition over, knows them too.

use std::collections::{HashMap, VecDeque};

use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};

use crate::idempotency::{Fingerprint, Key, Update};
use crate::objects::KeptRun;
#[cfg(doc)]
use crate::objects::{RECENT_OFFSETS, RECENT_RANGES};

const FINGERPRINT: &str = "idempotency-fingerprint";
const INDEX: &str = "idempotency-index";
const RECORDS: &str = "idempotency-records";

/// One record of a keyed batch, as a consumer reads it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KeyedRecord {
    pub key: Key,
    pub fingerprint: Fingerprint,
    pub index: u32,
    pub records: u32,
}

impl KeyedRecord {
    /// What a consumed message says of its batch, if it was produced with a key.
    pub fn of(message: &impl Message) -> Option<KeyedRecord> {
        let key = parse_hex(message.key()?)?;
        let headers = message.headers()?;
        let value = |name: &str| {
            headers
                .iter()
                .find(|header| header.key == name)
                .and_then(|header| header.value)
        };
        let number =
            |name: &str| -> Option<u32> { std::str::from_utf8(value(name)?).ok()?.parse().ok() };
        Some(KeyedRecord {
            key: Key(key),
            fingerprint: Fingerprint(parse_hex(value(FINGERPRINT)?)?),
            index: number(INDEX)?,
            records: number(RECORDS)?,
        })
    }
}

/// The message key of every record of `update`'s batch.
pub fn message_key(update: &Update) -> String {
    format!("{:032x}", update.key)
}

/// The headers of record `index` of `update`'s batch.
pub fn headers(update: &Update, index: u32) -> OwnedHeaders {
    let fingerprint = format!("{:032x}", update.fingerprint);
    OwnedHeaders::new_with_capacity(3)
        .insert(Header {
            key: FINGERPRINT,
            value: Some(&fingerprint),
        })
        .insert(Header {
            key: INDEX,
            value: Some(&index.to_string()),
        })
        .insert(Header {
            key: RECORDS,
            value: Some(&update.records.to_string()),
        })
}

/// Where the kept copy of each keyed record is, for the most recent keyed records a consumer
/// kept (at most [`KeptCopies::new`]'s `max_records`; older keys are forgotten first).
///
/// Deciding by position makes the decision the same however often a range is read: a record is
/// dropped only if a copy at another position was kept, and that copy is at a lower offset of the
/// same partition, so it is written before (or with) anything after it is committed.
///
/// The bound: a consumer that starts on a partition (a restart, or another instance taking it
/// over) knows the keyed records of the partition's last [`RECENT_RANGES`] ranges among the
/// [`RECENT_OFFSETS`] offsets before where it starts (from their intents); a later copy of a record
/// stored before those, or of a key forgotten beyond `max_records`, is kept too: stored twice,
/// never lost.
#[derive(Debug)]
pub struct KeptCopies {
    /// Per key: the batch's fingerprint, and per record index where its kept copy is.
    keys: HashMap<Key, (Fingerprint, HashMap<u32, Position>)>,
    /// Keys in the order they were first kept, for forgetting the oldest.
    order: VecDeque<Key>,
    records: usize,
    max_records: usize,
}

/// A message's partition and offset.
type Position = (i32, i64);

/// How many keyed records a consumer remembers the position of with the bucket: about 50 bytes
/// each, so at most ~10 MB.
pub const KEPT_RECORDS: usize = 200_000;

impl Default for KeptCopies {
    fn default() -> KeptCopies {
        KeptCopies::new(KEPT_RECORDS)
    }
}

impl KeptCopies {
    pub fn new(max_records: usize) -> KeptCopies {
        KeptCopies {
            keys: HashMap::new(),
            order: VecDeque::new(),
            records: 0,
            max_records,
        }
    }

    /// Whether `record`, at `offset` of `partition`, is another copy of one kept elsewhere.
    pub fn is_copy(&self, record: &KeyedRecord, partition: i32, offset: i64) -> bool {
        self.keys
            .get(&record.key)
            .filter(|(fingerprint, _)| *fingerprint == record.fingerprint)
            .and_then(|(_, at)| at.get(&record.index))
            .is_some_and(|kept| *kept != (partition, offset))
    }

    /// Remembers that `record` was kept at `offset` of `partition`, unless a copy was kept first.
    pub fn keep(&mut self, record: &KeyedRecord, partition: i32, offset: i64) {
        self.remember(
            record.key,
            record.fingerprint,
            record.index,
            (partition, offset),
        );
    }

    /// Remembers the keyed records that earlier owners of `partition` stored, `runs` in offset
    /// order (from [`Objects::kept_before`](crate::objects::Objects::kept_before)); returns how
    /// many.
    pub fn seed(&mut self, partition: i32, runs: &[KeptRun]) -> usize {
        let mut records = 0;
        for run in runs {
            for (index, offset) in run.records() {
                let (key, fingerprint) = (Key(run.key), Fingerprint(run.fingerprint));
                self.remember(key, fingerprint, index, (partition, offset));
                records += 1;
            }
        }
        records
    }

    fn remember(&mut self, key: Key, fingerprint: Fingerprint, index: u32, position: Position) {
        let (kept_batch, at) = self.keys.entry(key).or_insert_with(|| {
            self.order.push_back(key);
            (fingerprint, HashMap::new())
        });
        if *kept_batch != fingerprint {
            // Another batch under the same key (the API refuses that; a forged message): the
            // latest one is remembered.
            self.records -= at.len();
            *kept_batch = fingerprint;
            at.clear();
        }
        if let std::collections::hash_map::Entry::Vacant(vacant) = at.entry(index) {
            vacant.insert(position);
            self.records += 1;
        }
        while self.records > self.max_records
            && let Some(oldest) = self.order.pop_front()
        {
            if let Some((_, at)) = self.keys.remove(&oldest) {
                self.records -= at.len();
            }
        }
    }
}

fn parse_hex(bytes: &[u8]) -> Option<u128> {
    if bytes.len() != 32 {
        return None;
    }
    u128::from_str_radix(std::str::from_utf8(bytes).ok()?, 16).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use rdkafka::message::{OwnedMessage, Timestamp};

    fn record(key: u128, fingerprint: u128, index: u32) -> KeyedRecord {
        KeyedRecord {
            key: Key(key),
            fingerprint: Fingerprint(fingerprint),
            index,
            records: 2,
        }
    }

    #[test]
    fn a_later_copy_is_dropped_and_the_kept_one_is_kept_again() {
        let mut kept = KeptCopies::new(100);
        let first = record(1, 9, 0);
        assert!(!kept.is_copy(&first, 3, 10));
        kept.keep(&first, 3, 10);
        // Read again after a rewind: the same position, kept again.
        assert!(!kept.is_copy(&first, 3, 10));
        kept.keep(&first, 3, 10);
        // A later copy kept anyway (its range's writer decided so) does not move the kept one.
        kept.keep(&first, 3, 40);
        assert!(!kept.is_copy(&first, 3, 10));
        // The batch produced again: a later offset, dropped.
        assert!(kept.is_copy(&first, 3, 57));
        // Its other record was not kept yet; another batch under the key is not a copy.
        assert!(!kept.is_copy(&record(1, 9, 1), 3, 58));
        assert!(!kept.is_copy(&record(1, 8, 0), 3, 59));
        assert!(!kept.is_copy(&record(2, 9, 0), 3, 60));
    }

    #[test]
    fn a_consumer_seeded_from_the_intents_drops_a_later_copy() {
        let mut runs = Vec::new();
        for (index, offset) in [(0, 20), (1, 21)] {
            KeptRun::push(&mut runs, 1, 9, index, offset);
        }
        let mut kept = KeptCopies::new(100);
        assert_eq!(kept.seed(3, &runs), 2);
        // The batch produced again, after the consumer started: both records are copies ...
        assert!(kept.is_copy(&record(1, 9, 0), 3, 80));
        assert!(kept.is_copy(&record(1, 9, 1), 3, 81));
        // ... while the first copy, read again, is kept again.
        assert!(!kept.is_copy(&record(1, 9, 0), 3, 20));
    }

    #[test]
    fn the_oldest_keys_are_forgotten_beyond_the_bound() {
        let mut kept = KeptCopies::new(3);
        for (key, index, offset) in [(1, 0, 0), (1, 1, 1), (2, 0, 2), (3, 0, 3)] {
            kept.keep(&record(key, 9, index), 0, offset);
        }
        // Four records kept, at most three remembered: key 1 (two records) is forgotten whole.
        assert!(!kept.is_copy(&record(1, 9, 0), 0, 100));
        assert!(kept.is_copy(&record(2, 9, 0), 0, 100));
        assert!(kept.is_copy(&record(3, 9, 0), 0, 100));
        assert_eq!(kept.records, 2);
    }

    #[test]
    fn a_keyed_record_reads_back_what_was_sent() {
        let key = Key::parse(b"batch-7").unwrap();
        let update = Update::whole(key, Fingerprint(0xabc), 3, 0);
        let message = OwnedMessage::new(
            Some(b"{}".to_vec()),
            Some(message_key(&update).into_bytes()),
            "logs".to_owned(),
            Timestamp::NotAvailable,
            0,
            0,
            Some(headers(&update, 2)),
        );
        assert_eq!(
            KeyedRecord::of(&message),
            Some(KeyedRecord {
                key,
                fingerprint: Fingerprint(0xabc),
                index: 2,
                records: 3
            })
        );
        let plain = OwnedMessage::new(
            Some(b"{}".to_vec()),
            None,
            "logs".to_owned(),
            Timestamp::NotAvailable,
            0,
            0,
            None,
        );
        assert_eq!(KeyedRecord::of(&plain), None);
    }
}
