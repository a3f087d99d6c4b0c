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

use rdkafka::Message;
use rdkafka::message::{Header, Headers, OwnedHeaders};

use crate::idempotency::{Fingerprint, Key, Update};

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
