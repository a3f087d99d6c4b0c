//! Dead letters on their way: a message that is not a valid record goes to the dead-letter topic
//! before its offset counts as consumed; its partition waits (paused) until the broker has it,
//! and the others go on.

use std::sync::Arc;
use std::time::{Duration, Instant};

use rdkafka::consumer::BaseConsumer;

use super::super::dead_letter::DeadLetter;
use super::super::resume::Resume;
use super::rebalance::GroupContext;
use super::shared::Shared;

/// The first back-off after a failed dead-letter send; it doubles up to the maximum.
const DEAD_LETTER_BACKOFF: Duration = Duration::from_millis(250);
const MAX_DEAD_LETTER_BACKOFF: Duration = Duration::from_secs(30);

/// A dead letter on its way; its partition is paused until the broker has it.
pub(super) struct PendingDeadLetter {
    pub letter: Arc<DeadLetter>,
    /// The send in flight, if any.
    pub sending: Option<tokio::task::JoinHandle<Result<(), String>>>,
    /// Failed sends so far.
    pub failures: u32,
    /// When to send again after a failure.
    pub retry_at: Instant,
}

impl PendingDeadLetter {
    fn failed(&mut self, reason: &str) {
        self.failures += 1;
        let backoff = DEAD_LETTER_BACKOFF
            .saturating_mul(1 << self.failures.min(6))
            .min(MAX_DEAD_LETTER_BACKOFF);
        self.retry_at = Instant::now() + backoff;
        tracing::warn!(
            error = reason,
            partition = self.letter.partition,
            offset = self.letter.offset,
            failures = self.failures,
            retry_in = ?backoff,
            "cannot deliver a dead letter; its partition waits, the others go on"
        );
    }
}

impl Shared {
    pub fn send_dead_letter(
        &self,
        letter: &Arc<DeadLetter>,
    ) -> tokio::task::JoinHandle<Result<(), String>> {
        let (dead_letters, letter) = (self.dead_letters.clone(), letter.clone());
        self.runtime
            .spawn(async move { dead_letters.send(&letter).await })
    }

    /// Completes delivered dead letters (their partition resumes after them) and retries failed
    /// ones with a growing back-off, without ever blocking the poll loop.
    pub fn tend_dead_letters(&self, consumer: &BaseConsumer<GroupContext>) {
        let mut state = self.state();
        if state.dead_letters.is_empty() {
            return;
        }
        let mut delivered = Vec::new();
        for (partition, pending) in state.dead_letters.iter_mut() {
            if let Some(sending) = &pending.sending
                && sending.is_finished()
            {
                let sending = pending.sending.take().expect("checked above");
                match self.runtime.block_on(sending) {
                    Ok(Ok(())) => {
                        delivered.push((*partition, pending.letter.clone()));
                        continue;
                    }
                    Ok(Err(reason)) => pending.failed(&reason),
                    Err(join) => pending.failed(&join.to_string()),
                }
                self.metrics.kafka_dead_letter_failures.inc();
            }
            if pending.sending.is_none() && Instant::now() >= pending.retry_at {
                pending.sending = Some(self.send_dead_letter(&pending.letter));
            }
        }
        for (partition, letter) in &delivered {
            state.dead_letters.remove(partition);
            state.buffer.consumed(*partition, letter.offset);
            state.resume.insert(
                *partition,
                Resume::at(letter.offset + 1, self.resume_window),
            );
            self.metrics.kafka_dead_letters.inc();
            self.metrics.kafka_consumed_messages.inc();
            tracing::warn!(partition, offset = letter.offset, reason = %letter.reason, truncated = letter.truncated(), topic = %self.dead_letters.topic(), "message is not a valid record; sent to the dead-letter topic");
        }
        self.report_stalled(&state);
        drop(state);
        for (partition, letter) in delivered {
            self.seek(consumer, partition, letter.offset + 1);
            self.pause(consumer, partition, false);
        }
    }
}
