//! A range's **intent** (`intents/<topic>/<partition>/<first>.json`, see [`crate::objects`]):
//! what the range's first writer decided, so that whoever writes the range again does the same.
//!
//! | field | what |
//! |---|---|
//! | `topic`, `partition`, `first`, `last` | the range, `first..=last` |
//! | `hours`, `records` | the hours it has records of, and how many records (for people) |
//! | `objects` | with sites, its records objects, each below its site's prefix (absent when its records are all unsited) |
//! | `copies` | offsets not stored, as copies of keyed records kept before |
//! | `kept` | the keyed records it stored, as runs ([`KeptRun`]); absent in intents of older versions |

use serde::{Deserialize, Serialize};

use super::ObjectError;

/// What an intent object holds.
#[derive(Debug, Serialize, Deserialize)]
pub(super) struct Intent {
    pub topic: String,
    pub partition: i32,
    pub first: i64,
    pub last: i64,
    /// The hours (`YYYY-MM-DDTHH:00:00Z`) it has records of.
    pub hours: Vec<String>,
    pub records: usize,
    /// With sites, the records objects it writes (keys below the prefix): a range of one
    /// partition holds the records of every site produced to it, one object per site and hour.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub objects: Vec<String>,
    /// Offsets of copies of keyed records, not stored.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub copies: Vec<i64>,
    /// The keyed records stored: what a consumer that starts after this range needs to know to
    /// drop later copies of them (see `kafka::keyed::KeptCopies`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub kept: Vec<KeptRun>,
}

/// Records of one keyed batch stored by a range, one after the other: `count` records, indexes
/// `index..index + count` of the batch, at offsets `offset..offset + count`. A batch's records are
/// produced in order to one partition, so a range usually holds each batch as one run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeptRun {
    /// The batch's key hash (its message key), 32 hex digits.
    #[serde(with = "hex")]
    pub key: u128,
    /// The batch's fingerprint, 32 hex digits.
    #[serde(with = "hex")]
    pub fingerprint: u128,
    pub index: u32,
    pub offset: i64,
    pub count: u32,
}

impl KeptRun {
    /// Adds the record `index` of batch (`key`, `fingerprint`), stored at `offset`, to `runs`: to
    /// the last run if it continues it.
    pub fn push(runs: &mut Vec<KeptRun>, key: u128, fingerprint: u128, index: u32, offset: i64) {
        if let Some(last) = runs.last_mut()
            && (last.key, last.fingerprint) == (key, fingerprint)
            && i64::from(last.index) + i64::from(last.count) == i64::from(index)
            && last.offset + i64::from(last.count) == offset
        {
            last.count += 1;
            return;
        }
        runs.push(KeptRun {
            key,
            fingerprint,
            index,
            offset,
            count: 1,
        });
    }

    /// Each record of the run: its index in the batch and its offset.
    pub fn records(&self) -> impl Iterator<Item = (u32, i64)> + use<> {
        let (index, offset) = (self.index, self.offset);
        (0..self.count).map(move |i| (index + i, offset + i64::from(i)))
    }
}

impl Intent {
    /// Reads the intent at `key` from `bytes`; it must be of `partition`, and start at `first`
    /// when that is given.
    pub fn parse(
        key: &str,
        bytes: &[u8],
        partition: i32,
        first: Option<i64>,
    ) -> Result<Intent, ObjectError> {
        let bad = |reason: String| ObjectError::BadIntent {
            key: key.to_owned(),
            reason,
        };
        let intent: Intent = serde_json::from_slice(bytes).map_err(|err| bad(err.to_string()))?;
        let range = intent.first..=intent.last;
        let kept_inside = intent.kept.iter().all(|run| {
            run.count > 0
                && range.contains(&run.offset)
                && range.contains(&(run.offset + i64::from(run.count) - 1))
        });
        if first.is_some_and(|first| first != intent.first)
            || intent.partition != partition
            || intent.last < intent.first
            || !intent.copies.iter().all(|c| range.contains(c))
            || !kept_inside
        {
            return Err(bad(format!(
                "it names offsets {}..={} of partition {} (copies {:?}, kept {:?})",
                intent.first, intent.last, intent.partition, intent.copies, intent.kept
            )));
        }
        Ok(intent)
    }
}

/// A `u128` as 32 lower-case hex digits, as in the message keys of keyed records.
mod hex {
    use serde::{Deserialize, Deserializer, Serializer, de::Error as _};

    pub fn serialize<S: Serializer>(value: &u128, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&format!("{value:032x}"))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<u128, D::Error> {
        let text = <&str>::deserialize(deserializer)?;
        if text.len() != 32 {
            return Err(D::Error::custom("expected 32 hex digits"));
        }
        u128::from_str_radix(text, 16).map_err(D::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consecutive_records_of_a_batch_make_one_run() {
        let mut runs = Vec::new();
        for (index, offset) in [(0, 10), (1, 11), (2, 12)] {
            KeptRun::push(&mut runs, 7, 9, index, offset);
        }
        // Another batch in between, then the first one goes on: a second run.
        KeptRun::push(&mut runs, 8, 9, 0, 13);
        KeptRun::push(&mut runs, 7, 9, 3, 14);
        assert_eq!(
            runs.iter()
                .map(|r| (r.key, r.index, r.offset, r.count))
                .collect::<Vec<_>>(),
            [(7, 0, 10, 3), (8, 0, 13, 1), (7, 3, 14, 1)]
        );
        assert_eq!(
            runs[0].records().collect::<Vec<_>>(),
            [(0, 10), (1, 11), (2, 12)]
        );
    }

    #[test]
    fn an_intent_of_an_older_version_reads_and_a_run_outside_its_range_does_not() {
        let old = br#"{"topic":"t","partition":1,"first":5,"last":9,"hours":[],"records":5}"#;
        let intent = Intent::parse("k", old, 1, Some(5)).unwrap();
        assert!(intent.kept.is_empty() && intent.copies.is_empty());

        let key = "1".repeat(32);
        let kept = |offset: i64, count: u32| {
            format!(
                r#"{{"topic":"t","partition":1,"first":5,"last":9,"hours":[],"records":5,
                "kept":[{{"key":"{key}","fingerprint":"{key}","index":0,"offset":{offset},"count":{count}}}]}}"#
            )
        };
        let intent = Intent::parse("k", kept(5, 5).as_bytes(), 1, None).unwrap();
        assert_eq!(intent.kept[0].key, u128::from_str_radix(&key, 16).unwrap());
        let err = Intent::parse("k", kept(8, 3).as_bytes(), 1, None).unwrap_err();
        assert!(err.to_string().contains("kept"), "{err}");
        let err = Intent::parse("k", old, 2, None).unwrap_err();
        assert!(err.to_string().contains("partition 1"), "{err}");
    }
}
