//! A consumer's **lease** on its partitions with `storage.backend: s3`: whether it may still write
//! their ranges to the bucket, asked before every request that writes one
//! ([`Ownership`](crate::objects::Ownership)).
//!
//! A consumer holds a partition from its assignment to its revocation. But a process frozen
//! (SIGSTOP, a paused VM, a stalled host) for longer than `kafka.sessionTimeout` wakes up owning
//! nothing, and learns it only when librdkafka next checks its session: a flush that resumes
//! first could race the partition's new owner for a range's intent (see [`crate::objects`]). So
//! a write is withheld unless
//!
//! 1. the consumer holds the partition (a lost assignment is let go before anything else), and
//! 2. the process has not been paused for more than a third of `kafka.sessionTimeout` since
//!    the consumer last confirmed its assignment.
//!
//! A [`Pulse`] notices pauses: a thread ticks every [`TICK`], and a gap of more than that third
//! between two ticks, or between the last tick and a check, is a pause (a process starved of CPU
//! that long counts too). After a pause the consumer's thread confirms its assignment with
//! librdkafka ([`Lease::unconfirmed`], [`Lease::confirm`]); a new assignment confirms it as well.
//! A withheld write fails its flush, and the assignment-lost path drops what was read.
//!
//! What remains: a pause that begins after a write's check and before its request has reached
//! the store; and a pause that ends within about a network round trip of the session timeout,
//! when librdkafka (counting from the last heartbeat answer) still holds the session that the
//! coordinator (counting from the last heartbeat it received) has just expired, until the next
//! heartbeat's answer at most `heartbeat.interval.ms` (1 s) later.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use crate::objects::Ownership;

/// How often the pulse ticks.
pub const TICK: Duration = Duration::from_millis(50);

/// Notices when this process did not run; one per process, shared by its consumers' leases.
#[derive(Debug)]
pub struct Pulse {
    /// A longer gap is a pause.
    max_gap: Duration,
    beat: Mutex<Beat>,
}

#[derive(Debug, Clone, Copy)]
struct Beat {
    last: Instant,
    /// Pauses noticed so far.
    pauses: u64,
}

impl Pulse {
    /// A pulse for consumers whose session times out after `session_timeout`, last ticked `now`.
    pub fn new(session_timeout: Duration, now: Instant) -> Pulse {
        Pulse {
            max_gap: session_timeout / 3,
            beat: Mutex::new(Beat {
                last: now,
                pauses: 0,
            }),
        }
    }

    /// Starts the thread that ticks every [`TICK`], as long as anything holds the pulse.
    pub fn start(session_timeout: Duration) -> std::io::Result<Arc<Pulse>> {
        let pulse = Arc::new(Pulse::new(session_timeout, Instant::now()));
        let weak: Weak<Pulse> = Arc::downgrade(&pulse);
        std::thread::Builder::new()
            .name("consumer-pulse".to_owned())
            .spawn(move || {
                loop {
                    std::thread::sleep(TICK);
                    let Some(pulse) = weak.upgrade() else { break };
                    if let Some(pause) = pulse.tick(Instant::now()) {
                        tracing::warn!(?pause, "this process did not run for a while; the consumers confirm their assignment before writing to the bucket again");
                    }
                }
            })?;
        Ok(pulse)
    }

    /// A tick at `now`; returns the pause it ends, if the last tick is more than the limit ago.
    pub fn tick(&self, now: Instant) -> Option<Duration> {
        let mut beat = self.beat.lock().expect("pulse lock");
        let gap = now.saturating_duration_since(beat.last);
        beat.last = beat.last.max(now);
        if gap <= self.max_gap {
            return None;
        }
        beat.pauses += 1;
        Some(gap)
    }

    /// Pauses noticed so far.
    fn pauses(&self) -> u64 {
        self.beat.lock().expect("pulse lock").pauses
    }

    /// Pauses noticed so far, if the process runs at `now` as far as the pulse can tell; `None`
    /// while a pause may be going on that its thread has not counted yet.
    fn pauses_at(&self, now: Instant) -> Option<u64> {
        let beat = self.beat.lock().expect("pulse lock");
        (now.saturating_duration_since(beat.last) <= self.max_gap).then_some(beat.pauses)
    }
}

/// One consumer's lease on its partitions; its flushes ask it before each write.
#[derive(Debug)]
pub struct Lease {
    pulse: Arc<Pulse>,
    held: Mutex<Held>,
}

#[derive(Debug, Default)]
struct Held {
    partitions: BTreeSet<i32>,
    /// The pulse's pauses when the assignment was last confirmed.
    confirmed: u64,
}

impl Lease {
    pub fn new(pulse: Arc<Pulse>) -> Lease {
        Lease {
            pulse,
            held: Mutex::default(),
        }
    }

    /// The group assigned `partitions`: held from now on, and the assignment is confirmed.
    pub fn hold(&self, partitions: impl IntoIterator<Item = i32>) {
        let pauses = self.pulse.pauses();
        let mut held = self.held.lock().expect("lease lock");
        held.partitions.extend(partitions);
        held.confirmed = pauses;
    }

    /// `partitions` were revoked (or lost): nothing of theirs is written any more.
    pub fn let_go(&self, partitions: impl IntoIterator<Item = i32>) {
        let mut held = self.held.lock().expect("lease lock");
        for partition in partitions {
            held.partitions.remove(&partition);
        }
    }

    /// If partitions are held and the process was paused since the assignment was last
    /// confirmed: the pauses to confirm it for ([`Lease::confirm`]).
    pub fn unconfirmed(&self) -> Option<u64> {
        let pauses = self.pulse.pauses();
        let held = self.held.lock().expect("lease lock");
        (!held.partitions.is_empty() && held.confirmed < pauses).then_some(pauses)
    }

    /// The group still held the assignment after the first `pauses` pauses.
    pub fn confirm(&self, pauses: u64) {
        let mut held = self.held.lock().expect("lease lock");
        held.confirmed = held.confirmed.max(pauses);
    }

    /// [`Ownership::withheld`] at `now`.
    fn withheld_at(&self, partition: i32, now: Instant) -> Option<String> {
        let pauses = self.pulse.pauses_at(now);
        let held = self.held.lock().expect("lease lock");
        if !held.partitions.contains(&partition) {
            return Some("this consumer no longer holds the partition".to_owned());
        }
        match pauses {
            Some(pauses) if pauses == held.confirmed => None,
            _ => Some(format!(
                "this process was paused for more than {:?} and its assignment is not confirmed since",
                self.pulse.max_gap
            )),
        }
    }
}

impl Ownership for Lease {
    fn withheld(&self, partition: i32) -> Option<String> {
        self.withheld_at(partition, Instant::now())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const SESSION: Duration = Duration::from_secs(6);

    fn at(start: Instant, ms: u64) -> Instant {
        start + Duration::from_millis(ms)
    }

    #[test]
    fn a_held_partition_is_written_until_it_is_let_go() {
        let start = Instant::now();
        let lease = Lease::new(Arc::new(Pulse::new(SESSION, start)));
        assert!(lease.withheld_at(1, start).is_some(), "not assigned yet");
        lease.hold([1, 2]);
        assert_eq!(lease.withheld_at(1, at(start, 10)), None);
        lease.let_go([1]);
        let reason = lease.withheld_at(1, at(start, 20)).unwrap();
        assert!(reason.contains("no longer holds"), "{reason}");
        assert_eq!(lease.withheld_at(2, at(start, 20)), None);
    }

    #[test]
    fn after_a_pause_nothing_is_written_until_the_assignment_is_confirmed() {
        let start = Instant::now();
        let pulse = Arc::new(Pulse::new(SESSION, start));
        let lease = Lease::new(pulse.clone());
        lease.hold([0]);
        for ms in (50..=2000).step_by(50) {
            assert_eq!(pulse.tick(at(start, ms)), None, "a tick every 50 ms");
        }
        assert_eq!(lease.withheld_at(0, at(start, 2100)), None);
        assert_eq!(lease.unconfirmed(), None);
        // Frozen for 9 s: a write that runs before the pulse's next tick sees the gap ...
        let woke = at(start, 11_000);
        let reason = lease.withheld_at(0, woke).unwrap();
        assert!(reason.contains("paused for more than 2s"), "{reason}");
        // ... and once the pulse counted the pause, the assignment waits for confirmation.
        assert_eq!(pulse.tick(woke), Some(Duration::from_secs(9)));
        assert!(lease.withheld_at(0, woke).is_some());
        let pauses = lease.unconfirmed().expect("a pause to confirm");
        lease.confirm(pauses);
        assert_eq!(lease.withheld_at(0, woke), None);
        assert_eq!(lease.unconfirmed(), None);
    }

    #[test]
    fn a_new_assignment_confirms_and_a_lease_without_partitions_needs_no_confirmation() {
        let start = Instant::now();
        let pulse = Arc::new(Pulse::new(SESSION, start));
        let lease = Lease::new(pulse.clone());
        pulse.tick(at(start, 5_000));
        assert_eq!(lease.unconfirmed(), None, "nothing held");
        lease.hold([3]);
        assert_eq!(lease.unconfirmed(), None);
        assert_eq!(lease.withheld_at(3, at(start, 5_010)), None);
    }
}
