//! What earlier writers decided, read back from their intents: the end of a range about to be
//! opened ([`Objects::decided`]), and the keyed records a partition's recent ranges stored
//! ([`Objects::kept_before`]), so that whoever takes a partition over deduplicates as its earlier
//! owners did.

use futures_util::future::try_join_all;
use tokio::sync::Semaphore;

use super::intent::Intent;
use super::{
    Decision, FIRST_WINDOW, Fetched, KeptRun, LISTED_PER_WINDOW, ObjectError, Objects,
    PUT_CONCURRENCY, RECENT_OFFSETS, RECENT_RANGES,
};
use crate::layout;
use crate::metrics::OBJECT_INTENT;

impl Objects {
    /// What a writer decided for the range starting at `first` of `partition`, if one did.
    pub async fn decided(
        &self,
        topic: &str,
        partition: i32,
        first: i64,
    ) -> Result<Option<Decision>, ObjectError> {
        let key = layout::intent_object(topic, partition, first);
        let bytes = match self.fetch(&key, None, OBJECT_INTENT).await? {
            Fetched::Found { bytes, .. } => bytes,
            Fetched::Missing => return Ok(None),
            Fetched::Unchanged => unreachable!("no entity tag was given"),
        };
        let intent = Intent::parse(&key, &bytes, partition, Some(first))?;
        Ok(Some(Decision {
            last: intent.last,
            copies: intent.copies,
        }))
    }

    /// The keyed records stored by the ranges of `partition` that start before `before`, in
    /// offset order: those of the last [`RECENT_RANGES`] ranges within the [`RECENT_OFFSETS`]
    /// offsets before it (what a consumer that starts reading there needs to know to drop later
    /// copies of them; see `kafka::keyed::KeptCopies`). Intents of older versions name none.
    pub async fn kept_before(
        &self,
        topic: &str,
        partition: i32,
        before: i64,
    ) -> Result<Vec<KeptRun>, ObjectError> {
        let keys = self.recent_intents(topic, partition, before).await?;
        let limit = Semaphore::new(PUT_CONCURRENCY);
        let intents = try_join_all(keys.iter().map(|key| async {
            let _permit = limit.acquire().await.expect("never closed");
            match self.fetch(key, None, OBJECT_INTENT).await? {
                Fetched::Found { bytes, .. } => {
                    Intent::parse(key, &bytes, partition, None).map(Some)
                }
                // Expired by a lifecycle rule since the listing.
                _ => Ok(None),
            }
        }))
        .await?;
        Ok(intents.into_iter().flatten().flat_map(|i| i.kept).collect())
    }

    /// The keys of the intents of the last [`RECENT_RANGES`] ranges of `partition` that start
    /// before `before`, within [`RECENT_OFFSETS`] offsets, oldest first. A store lists names
    /// only forwards: they are listed backwards in windows of offsets, each eight times as wide
    /// as the one after it; a window that holds more than [`LISTED_PER_WINDOW`] intents (a long
    /// stretch of tiny ranges) ends the search there.
    async fn recent_intents(
        &self,
        topic: &str,
        partition: i32,
        before: i64,
    ) -> Result<Vec<String>, ObjectError> {
        let floor = before.saturating_sub(RECENT_OFFSETS).max(0);
        let mut keys = std::collections::VecDeque::new();
        let (mut to, mut width) = (before, FIRST_WINDOW);
        while keys.len() < RECENT_RANGES && to > floor {
            let from = to.saturating_sub(width).max(floor);
            let Some(window) = self.intents_between(topic, partition, from, to).await? else {
                break;
            };
            for key in window.into_iter().rev().take(RECENT_RANGES - keys.len()) {
                keys.push_front(key);
            }
            (to, width) = (from, width.saturating_mul(8));
        }
        Ok(keys.into())
    }

    /// The keys of the intents of `partition` for ranges starting in `from..to`, in order; `None`
    /// if there are more than [`LISTED_PER_WINDOW`].
    async fn intents_between(
        &self,
        topic: &str,
        partition: i32,
        from: i64,
        to: i64,
    ) -> Result<Option<Vec<String>>, ObjectError> {
        let dir = layout::intent_dir(topic, partition);
        let end = layout::intent_object(topic, partition, to);
        self.request(&dir, || async {
            let prefix = self.path(&dir);
            // Names sort by offset: list those after the one just before `from`.
            let mut pages = match from.checked_sub(1) {
                Some(after) => {
                    let after = self.path(&layout::intent_object(topic, partition, after));
                    self.store.list_with_offset(Some(&prefix), &after)
                }
                None => self.store.list(Some(&prefix)),
            };
            let mut keys = Vec::new();
            while let Some(meta) = futures_util::TryStreamExt::try_next(&mut pages).await? {
                let Some(key) = meta.location.as_ref().strip_prefix(&self.prefix) else {
                    continue;
                };
                if key >= end.as_str() {
                    break;
                }
                if keys.len() == LISTED_PER_WINDOW {
                    return Ok(None);
                }
                keys.push(key.to_owned());
            }
            Ok(Some(keys))
        })
        .await
    }
}
