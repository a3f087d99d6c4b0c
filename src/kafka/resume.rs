//! Where a consumed partition starts and resumes: pure decisions, no I/O, so that every branch is
//! unit-tested. The consumer ([`super::consumer`]) does the broker calls they ask for.
//!
//! Two problems are solved here:
//!
//! - **Start.** A newly assigned partition starts after what is already stored here: the larger of
//!   its checkpoint (stored with the lines) and the group's committed offset. A checkpoint beyond
//!   the end of the partition, while the group has no committed offset, means the topic was
//!   recreated (tansu's memory storage loses topics on a restart): resuming there would silently
//!   drop every new record below it, so the checkpoint is ignored ([`start_position`]).
//! - **Resume.** A fetch from an offset inside a record batch must return that whole batch (the
//!   client drops the records before the offset). tansu 0.6 returns the *next* batch instead,
//!   silently skipping the rest of the batch. So the first message after a (re)start must be the
//!   start offset itself; if it is later, the partition is rewound to read the skipped records
//!   ([`Resume::admit`]), further back each time, and messages below the start are dropped as
//!   already stored.

/// Where a newly assigned partition starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Start {
    /// Never consumed by this group (or its checkpoint was ignored with no committed offset):
    /// the consumer's `auto.offset.reset` (the beginning); nothing to skip.
    Beginning,
    /// At this offset; messages below it are already stored.
    At(i64),
}

/// The start of a partition from its checkpoint here and the group's committed offset.
/// `high_watermark` is asked only when a checkpoint exists and nothing is committed; `window` is
/// the margin allowed for brokers that report the high watermark at the start of the last batch.
/// Returns the start and whether the checkpoint was ignored as beyond the partition's end.
pub fn start_position(
    checkpoint: Option<i64>,
    committed: Option<i64>,
    high_watermark: impl FnOnce() -> Option<i64>,
    window: i64,
) -> (Start, bool) {
    let beyond_end = checkpoint.is_some_and(|saved| {
        committed.is_none()
            && high_watermark().is_some_and(|high| {
                // An empty partition (high watermark 0) holds none of what the checkpoint counts.
                saved > high && (high == 0 || saved > high.saturating_add(window))
            })
    });
    let checkpoint = checkpoint.filter(|_| !beyond_end);
    let start = match (checkpoint, committed) {
        (Some(saved), Some(committed)) => Start::At(saved.max(committed)),
        (Some(one), None) | (None, Some(one)) => Start::At(one),
        (None, None) => Start::Beginning,
    };
    (start, beyond_end)
}

/// What to do with a consumed message, from its partition's [`Resume`] state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admission {
    /// Buffer it.
    Take,
    /// Buffer it, although offsets between the resume point and it never arrived: the broker
    /// has none there (or rewinding could not find them). Worth a warning.
    TakeAfterGap { floor: i64 },
    /// Below the resume point: already stored here; drop it.
    AlreadyStored,
    /// The broker skipped past the resume point: drop it and seek the partition to `to`.
    Rewind { to: i64 },
}

/// One partition's resume point, and whether the broker was seen to deliver from there.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Resume {
    /// The first offset not yet stored here, then, once messages are taken, the first offset not
    /// yet taken: a message delivered again is dropped instead of being buffered twice (seen with
    /// tansu 0.6 in the scale suite: after rewinds and rebalances, parts of a partition arrived
    /// twice, and 79 to 170 records were written twice per run before this check).
    floor: i64,
    /// A message at `floor` arrived (or a gap was accepted): no more checks.
    verified: bool,
    /// How far before `floor` the next rewind starts.
    window: i64,
    /// A rewind to offset 0 was already made: nothing earlier to read.
    exhausted: bool,
}

impl Resume {
    /// Resuming at `floor`; the first rewind goes `window` offsets back (at least one producer
    /// batch), doubling each time.
    pub fn at(floor: i64, window: i64) -> Resume {
        Resume {
            floor,
            verified: false,
            window: window.max(1),
            exhausted: false,
        }
    }

    /// Decides about the message at `offset`.
    pub fn admit(&mut self, offset: i64) -> Admission {
        if offset < self.floor {
            return Admission::AlreadyStored;
        }
        if self.verified || offset == self.floor {
            self.verified = true;
            self.floor = offset + 1;
            return Admission::Take;
        }
        if self.floor == 0 || self.exhausted {
            // Nothing before the floor can hold the missing offsets any more.
            self.verified = true;
            let floor = self.floor;
            self.floor = offset + 1;
            return Admission::TakeAfterGap { floor };
        }
        let to = (self.floor - self.window).max(0);
        self.exhausted = to == 0;
        self.window = self.window.saturating_mul(2);
        Admission::Rewind { to }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: i64 = 1000;

    fn never_asked() -> Option<i64> {
        panic!("the high watermark is only needed for a checkpoint without a committed offset")
    }

    #[test]
    fn a_partition_never_consumed_starts_at_the_beginning() {
        assert_eq!(
            start_position(None, None, never_asked, WINDOW),
            (Start::Beginning, false)
        );
    }

    #[test]
    fn the_larger_of_checkpoint_and_committed_offset_wins() {
        assert_eq!(
            start_position(Some(50), Some(40), never_asked, WINDOW),
            (Start::At(50), false),
            "crash after the store, before the commit"
        );
        assert_eq!(
            start_position(Some(40), Some(50), never_asked, WINDOW),
            (Start::At(50), false),
            "another process (another logs directory) went further"
        );
        assert_eq!(
            start_position(None, Some(7), never_asked, WINDOW),
            (Start::At(7), false)
        );
    }

    #[test]
    fn a_checkpoint_without_commit_is_kept_within_the_partition() {
        assert_eq!(
            start_position(Some(50), None, || Some(50), WINDOW),
            (Start::At(50), false)
        );
        // tansu reports the high watermark at the start of the last batch: a checkpoint up to one
        // batch beyond it is still inside the partition.
        assert_eq!(
            start_position(Some(50 + WINDOW), None, || Some(50), WINDOW),
            (Start::At(50 + WINDOW), false)
        );
        // The broker cannot say: keep it.
        assert_eq!(
            start_position(Some(5000), None, || None, WINDOW),
            (Start::At(5000), false)
        );
    }

    #[test]
    fn a_checkpoint_beyond_a_recreated_partition_is_ignored() {
        assert_eq!(
            start_position(Some(10), None, || Some(0), WINDOW),
            (Start::Beginning, true),
            "an empty partition holds none of what the checkpoint counts"
        );
        assert_eq!(
            start_position(Some(51 + WINDOW), None, || Some(50), WINDOW),
            (Start::Beginning, true)
        );
    }

    #[test]
    fn messages_below_the_floor_are_already_stored() {
        let mut resume = Resume::at(100, WINDOW);
        assert_eq!(resume.admit(99), Admission::AlreadyStored);
        assert_eq!(resume.admit(0), Admission::AlreadyStored);
    }

    #[test]
    fn a_message_at_the_floor_verifies_the_partition() {
        let mut resume = Resume::at(100, WINDOW);
        assert_eq!(resume.admit(100), Admission::Take);
        assert_eq!(resume.admit(101), Admission::Take);
        assert_eq!(
            resume.admit(250),
            Admission::Take,
            "gaps after verification are the broker's business"
        );
        assert_eq!(resume.admit(42), Admission::AlreadyStored);
    }

    #[test]
    fn a_message_delivered_again_is_not_taken_twice() {
        // tansu after a rewind: the range from the floor arrives, then parts of it again.
        let mut resume = Resume::at(100, WINDOW);
        assert_eq!(resume.admit(150), Admission::Rewind { to: 0 });
        for offset in 100..=160 {
            assert_eq!(resume.admit(offset), Admission::Take);
        }
        for offset in 150..=160 {
            assert_eq!(resume.admit(offset), Admission::AlreadyStored, "{offset}");
        }
        assert_eq!(resume.admit(161), Admission::Take);
    }

    #[test]
    fn a_skip_past_the_floor_rewinds_further_back_each_time() {
        let mut resume = Resume::at(5000, WINDOW);
        assert_eq!(resume.admit(5100), Admission::Rewind { to: 4000 });
        // The rewind landed, but the broker still answered from after the floor.
        assert_eq!(resume.admit(5100), Admission::Rewind { to: 3000 });
        assert_eq!(resume.admit(5100), Admission::Rewind { to: 1000 });
        // Reading from before the floor again: those are stored already.
        assert_eq!(resume.admit(1000), Admission::AlreadyStored);
        assert_eq!(resume.admit(5000), Admission::Take);
    }

    #[test]
    fn after_a_rewind_to_zero_a_remaining_gap_is_accepted() {
        let mut resume = Resume::at(1500, WINDOW);
        assert_eq!(resume.admit(1600), Admission::Rewind { to: 500 });
        assert_eq!(resume.admit(1600), Admission::Rewind { to: 0 });
        assert_eq!(
            resume.admit(1600),
            Admission::TakeAfterGap { floor: 1500 },
            "nothing earlier can hold the missing offsets"
        );
        assert_eq!(resume.admit(1601), Admission::Take);
    }

    #[test]
    fn a_gap_after_floor_zero_is_accepted_at_once() {
        let mut resume = Resume::at(0, WINDOW);
        assert_eq!(resume.admit(3), Admission::TakeAfterGap { floor: 0 });
        assert_eq!(resume.admit(4), Admission::Take);
    }
}
