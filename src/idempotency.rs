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
//!
//! # Layout
//!
//! Keys and fingerprints are here; `ledger.rs` holds the [`Ledger`] and its journal lines
//! ([`Update`]), `index.rs` the API's [`KeyIndex`].

use std::time::{SystemTime, UNIX_EPOCH};

use crate::record::EncodedBatch;
use crate::site::SiteId;

#[cfg(test)]
mod fixtures;
mod index;
mod ledger;

pub use index::{Claim, ClaimGuard, KeyIndex};
pub use ledger::{Entry, Ledger, Retention, SharedLedger, Update, Written};

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
    /// The key a header value names, without sites.
    pub fn parse(value: &[u8]) -> Result<Key, KeyError> {
        Key::parse_for(None, value)
    }

    /// The key a header value names for `site`: keys are scoped per site, so the same value sent
    /// by two sites names two keys, and one site can never replay or probe another's answer.
    /// Without a site, the key is the one it always was (journals and ledgers written before
    /// sites existed keep their meaning).
    pub fn parse_for(site: Option<&SiteId>, value: &[u8]) -> Result<Key, KeyError> {
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
        Ok(Key(match site {
            None => hash128(&[b"key\0", value]),
            Some(site) => hash128(&[b"site-key\0", site.as_str().as_bytes(), b"\0", value]),
        }))
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

#[cfg(test)]
mod tests {
    use super::*;
    use fixtures::batch;

    #[test]
    fn keys_are_scoped_per_site_and_unsited_keys_keep_their_hash() {
        let (a, b) = (SiteId::parse("a").unwrap(), SiteId::parse("b").unwrap());
        let value = b"order-42";
        let of = |site| Key::parse_for(site, value).unwrap();
        assert_eq!(of(None), Key::parse(value).unwrap());
        assert_eq!(
            of(None),
            Key(hash128(&[b"key\0", value])),
            "as journals wrote it"
        );
        assert_ne!(of(Some(&a)), of(Some(&b)));
        assert_ne!(of(Some(&a)), of(None));
        assert_eq!(of(Some(&a)), of(Some(&a)));
        // The site and the value are separated: site "a" with "bc" is not site "ab" with "c".
        let ab = SiteId::parse("ab").unwrap();
        assert_ne!(
            Key::parse_for(Some(&a), b"bc"),
            Key::parse_for(Some(&ab), b"c")
        );
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
}
