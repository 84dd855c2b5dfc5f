//! The user ids a direct-mode deletions function has had Amplitude accept for deletion lately.
//!
//! Amplitude takes one deletion request (100 user ids) per second, so one invocation sends
//! about 400 ids within the response budget and answers the rest retryable; Segment then sends
//! the whole request again. Every retry used to send the same first ids again and never reach
//! the others. Now an id this instance had accepted within [`KEPT_FOR`] is answered delivered
//! without being sent again, so each retry moves on to ids not sent yet. (Durable mode queues
//! deletions instead and does not need this.) The template reserves one instance for the
//! deletions function, so its retries meet the same memory unless it was replaced.
//!
//! Bounded: at most [`MAX_IDS`] ids and [`MAX_BYTES`] of them, the oldest forgotten first; a
//! forgotten id is only sent again, which Amplitude takes as another deletion of the same user.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// How long an accepted deletion is remembered: longer than a run of Segment's retries of one
/// request, short enough that a deletion asked for again later (new data, a new regulation) is
/// sent again.
pub const KEPT_FOR: Duration = Duration::from_secs(60 * 60);
/// At most this many ids are remembered ...
pub const MAX_IDS: usize = 100_000;
/// ... taking at most this many bytes of id text.
pub const MAX_BYTES: usize = 4 * 1024 * 1024;

/// See the module docs.
#[derive(Debug, Default)]
pub struct RecentDeletions {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    /// When each id was accepted, oldest first (each id's text is held once, by both).
    order: VecDeque<(Instant, Arc<str>)>,
    ids: HashSet<Arc<str>>,
    bytes: usize,
}

impl RecentDeletions {
    /// True if Amplitude accepted a deletion of `user_id` from this instance within
    /// [`KEPT_FOR`].
    pub fn contains(&self, user_id: &str) -> bool {
        let mut inner = self.lock();
        inner.forget_older_than(Instant::now());
        inner.ids.contains(user_id)
    }

    /// Remembers ids Amplitude accepted now (an id already remembered keeps its first time).
    pub fn remember<'i>(&self, user_ids: impl IntoIterator<Item = &'i str>) {
        let now = Instant::now();
        let mut inner = self.lock();
        inner.forget_older_than(now);
        for id in user_ids {
            if id.len() > MAX_BYTES || inner.ids.contains(id) {
                continue;
            }
            while inner.ids.len() >= MAX_IDS || inner.bytes + id.len() > MAX_BYTES {
                inner.forget_oldest();
            }
            let id: Arc<str> = Arc::from(id);
            inner.bytes += id.len();
            inner.ids.insert(Arc::clone(&id));
            inner.order.push_back((now, id));
        }
    }

    /// The set, even if a thread panicked while holding it (it is consistent between calls).
    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Inner {
    fn forget_older_than(&mut self, now: Instant) {
        while self
            .order
            .front()
            .is_some_and(|(at, _)| now.duration_since(*at) >= KEPT_FOR)
        {
            self.forget_oldest();
        }
    }

    fn forget_oldest(&mut self) {
        if let Some((_, id)) = self.order.pop_front() {
            self.bytes -= id.len();
            self.ids.remove(&id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn remembers_accepted_ids_and_forgets_the_oldest_past_its_bounds() {
        let recent = RecentDeletions::default();
        recent.remember(["user-1", "user-2", "user-1"]);
        assert!(recent.contains("user-1") && recent.contains("user-2"));
        assert!(!recent.contains("user-3"));
        let many: Vec<String> = (0..MAX_IDS).map(|i| format!("u{i}")).collect();
        recent.remember(many.iter().map(String::as_str));
        assert!(!recent.contains("user-1") && !recent.contains("user-2"));
        assert!(recent.contains("u0") && recent.contains(&format!("u{}", MAX_IDS - 1)));
        let big = "x".repeat(MAX_BYTES / 2);
        let bigger = "y".repeat(MAX_BYTES / 2 + 1);
        recent.remember([big.as_str(), bigger.as_str()]);
        assert!(!recent.contains(&big) && recent.contains(&bigger));
        let inner = recent.lock();
        assert!(inner.bytes <= MAX_BYTES && inner.ids.len() == inner.order.len());
    }
}
