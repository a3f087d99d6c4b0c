//! What a number or duration may hold: a [`Range`] and why its bounds are where they are
//! ([`Bounds`]), with the bounds most keys share. Each key's row in [`super::key`] names its
//! bounds; a number or duration without them fails a test, so no key is left unbounded.
//!
//! The bounds are what a value can mean here, not what its Rust type can hold:
//!
//! - byte sizes at most 2 GiB: a body or a batch is held in memory whole, and a batch's share of
//!   a budget is counted in 32-bit units;
//! - counts of records and keys held in memory at most 100,000,000 (beyond that the memory is
//!   the limit, not the count; stored record counts are 32-bit);
//! - timeouts and periods from 1 ms (the timers' resolution; Kafka's settings are whole
//!   milliseconds) to 7 days;
//! - the Kafka settings within what librdkafka accepts for the properties they set.
//!
//! Within them, the arithmetic done with the values cannot overflow: `now + timeout` deadlines,
//! `limit + 1`, 32-bit semaphore permits, milliseconds as librdkafka's 32-bit integers.

use std::fmt;
use std::time::Duration;

/// What a key may hold.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Range {
    /// A whole number (a count, or bytes) from `min` to `max`.
    Number { min: u64, max: u64 },
    /// A duration from `min` to `max`.
    Duration { min: Duration, max: Duration },
    /// A fraction greater than 0 and at most 1.
    Fraction,
}

/// A range and why it is that range.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Bounds {
    pub range: Range,
    /// Why the bounds are where they are; errors and the reference page show it. Never holds
    /// `"; "`, which separates the problems of a [`super::ConfigError`].
    pub why: &'static str,
}

impl Bounds {
    pub const fn new(range: Range, why: &'static str) -> Bounds {
        Bounds { range, why }
    }

    /// Whole numbers from `min` to `max`.
    pub const fn number(min: u64, max: u64, why: &'static str) -> Bounds {
        Bounds::new(Range::Number { min, max }, why)
    }

    /// Durations from `min` to `max`.
    pub const fn duration(min: Duration, max: Duration, why: &'static str) -> Bounds {
        Bounds::new(Range::Duration { min, max }, why)
    }
}

pub const MILLISECOND: Duration = Duration::from_millis(1);
pub const GIB: u64 = 1 << 30;
pub const MIB: u64 = 1 << 20;
pub const DAY: Duration = Duration::from_secs(24 * 3600);

/// Byte sizes.
pub const BYTES: Bounds = Bounds::number(
    1,
    2 * GIB,
    "2 GiB: held in memory whole, and counted in 32-bit units by the budgets",
);
/// Counts of records and keys held in memory.
pub const COUNT: Bounds = Bounds::number(
    1,
    100_000_000,
    "held in memory: beyond 10^8 the memory is the limit, not the count",
);
/// Timeouts and periods.
pub const PERIOD: Bounds = Bounds::duration(
    MILLISECOND,
    Duration::from_secs(7 * 24 * 3600),
    "the timers count milliseconds, and longer than a week means never",
);
/// A fraction in (0, 1].
pub const FRACTION: Bounds = Bounds::new(Range::Fraction, "a fraction: 0.9 means 90%");

impl Range {
    /// The largest value in the range, as it is written in YAML.
    pub fn largest(&self) -> String {
        match self {
            Range::Number { max, .. } => max.to_string(),
            Range::Duration { max, .. } => humantime::format_duration(*max).to_string(),
            Range::Fraction => "1".to_owned(),
        }
    }
}

/// How errors and the reference page write a range: `from 1 to 1024`, `from 1ms to 7days`,
/// `in (0, 1]`.
impl fmt::Display for Range {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Range::Number { min, max } => write!(f, "from {min} to {max}"),
            Range::Duration { min, max } => write!(
                f,
                "from {} to {}",
                humantime::format_duration(*min),
                humantime::format_duration(*max)
            ),
            Range::Fraction => write!(f, "in (0, 1]"),
        }
    }
}
