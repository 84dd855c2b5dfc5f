//! The queues in process, for the local runner: the semantics the functions rely on from SQS
//! (per-message delay, a visibility timeout while a message is being handled, a retry in place
//! after a backoff, delete when handled, a receive count), without AWS. It can also rehearse
//! an SQS outage ([`MemoryQueues::refuse_sends`]), so the paths that keep work when the queue
//! refuses a write can be exercised without one.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use super::job::MAX_MESSAGE_BYTES;
use super::{Outgoing, QueueError, QueueKind};

#[derive(Debug)]
struct Stored {
    id: u64,
    body: String,
    visible_at: Instant,
    receives: u32,
}

/// A message handed to a consumer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Received {
    /// Deletes the message or retries it in place.
    pub receipt: String,
    pub body: String,
    /// How often it has been received (SQS's `ApproximateReceiveCount`).
    pub receives: u32,
}

#[derive(Default)]
pub struct MemoryQueues {
    queues: Mutex<HashMap<QueueKind, Vec<Stored>>>,
    next_id: AtomicU64,
    refusals: AtomicUsize,
}

impl MemoryQueues {
    pub fn new() -> Self {
        Self::default()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<QueueKind, Vec<Stored>>> {
        self.queues.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The next `n` writes fail as `SendMessageBatch` can: the first half of their messages
    /// (rounded down) is stored, then the write is refused.
    pub fn refuse_sends(&self, n: usize) {
        self.refusals.store(n, Ordering::SeqCst);
    }

    pub fn send(&self, kind: QueueKind, mut messages: Vec<Outgoing>) -> Result<usize, QueueError> {
        if let Some(m) = messages.iter().find(|m| m.body.len() > MAX_MESSAGE_BYTES) {
            // As SQS refuses it (the whole call).
            return Err(QueueError::Refused {
                queue: kind.name(),
                reason: format!(
                    "a message of {} bytes is over the {MAX_MESSAGE_BYTES}-byte limit",
                    m.body.len()
                ),
            });
        }
        let refused = self
            .refusals
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok();
        if refused {
            messages.truncate(messages.len() / 2);
        }
        let now = Instant::now();
        let mut queues = self.lock();
        let queue = queues.entry(kind).or_default();
        for m in messages {
            queue.push(Stored {
                id: self.next_id.fetch_add(1, Ordering::Relaxed),
                body: m.body,
                visible_at: now + m.delay,
                receives: 0,
            });
        }
        if refused {
            return Err(QueueError::Refused {
                queue: kind.name(),
                reason: "a rehearsed outage".into(),
            });
        }
        Ok(1)
    }

    /// Up to `max` visible messages, hidden for `visibility` while they are handled.
    pub fn receive(&self, kind: QueueKind, max: usize, visibility: Duration) -> Vec<Received> {
        let now = Instant::now();
        let mut queues = self.lock();
        let Some(queue) = queues.get_mut(&kind) else {
            return Vec::new();
        };
        queue
            .iter_mut()
            .filter(|m| m.visible_at <= now)
            .take(max)
            .map(|m| {
                m.visible_at = now + visibility;
                m.receives += 1;
                Received {
                    receipt: m.id.to_string(),
                    body: m.body.clone(),
                    receives: m.receives,
                }
            })
            .collect()
    }

    pub fn delete(&self, kind: QueueKind, receipt: &str) {
        if let Some(queue) = self.lock().get_mut(&kind) {
            queue.retain(|m| m.id.to_string() != receipt);
        }
    }

    pub fn retry_later(&self, kind: QueueKind, receipt: &str, delay: Duration) {
        if let Some(queue) = self.lock().get_mut(&kind)
            && let Some(m) = queue.iter_mut().find(|m| m.id.to_string() == receipt)
        {
            m.visible_at = Instant::now() + delay;
        }
    }

    /// Messages in a queue (visible or not).
    pub fn len(&self, kind: QueueKind) -> usize {
        self.lock().get(&kind).map_or(0, Vec::len)
    }

    /// Each message's receive count and how long until it is visible (zero when it is):
    /// what a test shows of a message that stays too long.
    pub fn waits(&self, kind: QueueKind) -> Vec<(u32, Duration)> {
        let now = Instant::now();
        self.lock()
            .get(&kind)
            .map(|q| {
                q.iter()
                    .map(|m| (m.receives, m.visible_at.saturating_duration_since(now)))
                    .collect()
            })
            .unwrap_or_default()
    }

    /// The bodies in a queue (the local runner's inspection of the dead-letter queue).
    pub fn bodies(&self, kind: QueueKind) -> Vec<String> {
        self.lock()
            .get(&kind)
            .map(|q| q.iter().map(|m| m.body.clone()).collect())
            .unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delay_visibility_retry_and_delete_as_sqs_does() {
        let q = MemoryQueues::new();
        let out = |body: &str, delay_ms| Outgoing {
            body: body.into(),
            delay: Duration::from_millis(delay_ms),
        };
        q.send(
            QueueKind::Delivery,
            vec![out("now", 0), out("later", 60_000)],
        )
        .unwrap();
        let got = q.receive(QueueKind::Delivery, 10, Duration::from_secs(30));
        assert_eq!(got.len(), 1, "the delayed one is not visible yet");
        assert_eq!((got[0].body.as_str(), got[0].receives), ("now", 1));
        assert!(
            q.receive(QueueKind::Delivery, 10, Duration::from_secs(30))
                .is_empty(),
            "hidden while handled"
        );
        q.retry_later(QueueKind::Delivery, &got[0].receipt, Duration::ZERO);
        let again = q.receive(QueueKind::Delivery, 10, Duration::from_secs(30));
        assert_eq!(again[0].receives, 2);
        q.delete(QueueKind::Delivery, &again[0].receipt);
        assert_eq!(q.len(QueueKind::Delivery), 1);
    }

    #[test]
    fn a_refused_write_may_have_stored_part_of_it_as_sqs_batches_can() {
        let q = MemoryQueues::new();
        let out = |body: &str| Outgoing {
            body: body.into(),
            delay: Duration::ZERO,
        };
        q.refuse_sends(2);
        let refused = q.send(QueueKind::Delivery, vec![out("a"), out("b"), out("c")]);
        assert_eq!(
            refused,
            Err(QueueError::Refused {
                queue: "delivery",
                reason: "a rehearsed outage".into()
            })
        );
        assert_eq!(q.bodies(QueueKind::Delivery), vec!["a"]);
        assert!(q.send(QueueKind::Delivery, vec![out("d")]).is_err());
        assert_eq!(q.send(QueueKind::Delivery, vec![out("e")]), Ok(1));
        assert_eq!(q.bodies(QueueKind::Delivery), vec!["a", "e"]);
    }
}
