//! **Durable delivery.** What is not delivered within the response budget, and anything
//! Amplitude throttled, is kept in a queue as self-contained delivery jobs ([`job`]) instead of
//! being handed back to Segment; the *redeliver* function ([`redeliver`]) sends them later with
//! the same client and retry policy, and parks what cannot be delivered in a dead-letter queue
//! ([`DeadLetter`], with its reason) for an operator to inspect and replay with SQS's redrive.
//!
//! Three queues ([`QueueKind`]): the **delivery** queue (standard; every ingest function writes
//! here), the **deletion** queue (FIFO with one message group, so one consumer at a time keeps
//! Amplitude's one-deletion-request-per-second limit across instances; the redeliver function
//! forwards deletion jobs there from the delivery queue), and the **dead-letter** queue. On AWS
//! they are SQS ([`SqsQueues`]); the local runner keeps them in process ([`MemoryQueues`]) with
//! the same semantics.
//!
//! This folder knows queues and jobs; it does not read requests or answer Segment (`ingest`),
//! and it settles a redelivery through the same step as the ingest functions (`delivery`).

mod dead_letter;
pub mod job;
mod memory;
pub(crate) mod redeliver;
mod sqs;

use std::sync::Arc;
use std::time::Duration;

pub use dead_letter::{DeadLetter, Reason, Unreadable};
pub use job::{Job, JobError, JobItem, V1};
pub use memory::{MemoryQueues, Received};
pub use redeliver::{Fate, Record, consume_memory_queues};
pub use sqs::SqsQueues;

/// Which queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum QueueKind {
    Delivery,
    Deletion,
    DeadLetter,
}

impl QueueKind {
    pub fn name(self) -> &'static str {
        match self {
            QueueKind::Delivery => "delivery",
            QueueKind::Deletion => "deletion",
            QueueKind::DeadLetter => "dead-letter",
        }
    }
}

/// A message to put on a queue.
#[derive(Debug, Clone, PartialEq)]
pub struct Outgoing {
    pub body: String,
    /// Not visible before this (SQS's `DelaySeconds`, at most 15 minutes; the FIFO deletion
    /// queue takes no per-message delay).
    pub delay: Duration,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum QueueError {
    #[error("the {0} queue is not configured")]
    NotConfigured(&'static str),
    #[error("the {queue} queue refused the write: {reason}")]
    Refused { queue: &'static str, reason: String },
}

/// The queues, on SQS or in process.
#[derive(Clone)]
pub enum Queues {
    Sqs(Arc<SqsQueues>),
    Memory(Arc<MemoryQueues>),
}

impl Queues {
    /// Sends messages in as few calls as the queue allows; returns the calls made. On an error
    /// some messages may have been written: the caller keeps everything retryable, and a resend
    /// is deduplicated by `insert_id`.
    pub async fn send(
        &self,
        kind: QueueKind,
        messages: Vec<Outgoing>,
    ) -> Result<usize, QueueError> {
        if messages.is_empty() {
            return Ok(0);
        }
        match self {
            Queues::Sqs(q) => q.send(kind, messages).await,
            Queues::Memory(q) => q.send(kind, messages),
        }
    }

    /// Makes a received message visible again after `delay` (a retry in place, with backoff).
    pub async fn retry_later(
        &self,
        kind: QueueKind,
        receipt: &str,
        delay: Duration,
    ) -> Result<(), QueueError> {
        match self {
            Queues::Sqs(q) => q.retry_later(kind, receipt, delay).await,
            Queues::Memory(q) => {
                q.retry_later(kind, receipt, delay);
                Ok(())
            }
        }
    }

    /// True when `kind` exists here.
    pub fn has(&self, kind: QueueKind) -> bool {
        match self {
            Queues::Sqs(q) => q.url(kind).is_ok(),
            Queues::Memory(_) => true,
        }
    }
}

/// When a job that made no progress is tried again: exponential backoff from `base`, doubled
/// per attempt and capped at 15 minutes (SQS's longest message delay).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RetrySchedule {
    pub base: Duration,
    pub max: Duration,
}

impl Default for RetrySchedule {
    fn default() -> Self {
        RetrySchedule {
            base: Duration::from_secs(10),
            max: Duration::from_secs(900),
        }
    }
}

impl RetrySchedule {
    /// The wait after `attempts` attempts (1 = after the first).
    pub fn after(&self, attempts: u32) -> Duration {
        let doublings = attempts.saturating_sub(1).min(16);
        self.base.saturating_mul(1 << doublings).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_and_stops_at_fifteen_minutes() {
        let s = RetrySchedule::default();
        let waits: Vec<u64> = [1, 2, 3, 4, 7, 8, 50]
            .map(|a| s.after(a).as_secs())
            .to_vec();
        assert_eq!(waits, vec![10, 20, 40, 80, 640, 900, 900]);
    }
}
