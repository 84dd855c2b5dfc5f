//! What happened to each Segment message, and to the whole delivery.

use serde::Serialize;

/// The fate of one Segment message after a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Amplitude accepted every request of the message (or it needed none).
    Delivered,
    /// Amplitude refused it for good (its reason is kept); retrying can never succeed.
    Rejected { reason: String },
    /// Not (fully) delivered yet: the caller must answer with a retryable status so Segment
    /// sends the message again. `insert_id` makes that safe. `throttled` when Amplitude
    /// rate-limited the message's user or device.
    Retryable { reason: String, throttled: bool },
}

impl Outcome {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Outcome::Retryable { .. })
    }
}

/// The result of one delivery.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One outcome per message, in the caller's order.
    pub outcomes: Vec<Outcome>,
    /// HTTP requests sent to Amplitude (retries and splits included).
    pub requests_sent: usize,
    /// Set when Amplitude refused the credentials (invalid API key, or 401 on deletions): the
    /// caller should refresh its secrets. The affected messages are `Retryable`, so nothing
    /// valid is lost while the key is fixed.
    pub bad_credentials: Option<String>,
    /// Deletion jobs Amplitude returned (User Privacy API), as it sent them.
    pub deletion_jobs: Vec<serde_json::Value>,
}

impl Report {
    /// Messages per outcome kind: (delivered, rejected, retryable).
    pub fn tally(&self) -> (usize, usize, usize) {
        self.outcomes
            .iter()
            .fold((0, 0, 0), |(d, r, t), o| match o {
                Outcome::Delivered => (d + 1, r, t),
                Outcome::Rejected { .. } => (d, r + 1, t),
                Outcome::Retryable { .. } => (d, r, t + 1),
            })
    }
}

/// Per-item state while a delivery runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemState {
    Pending,
    Delivered,
    Rejected(String),
    Retryable { reason: String, throttled: bool },
}

/// Folds the states of a message's items into its outcome: any retryable item makes the message
/// retryable (a redelivery is deduplicated by `insert_id`); otherwise any rejected item makes it
/// rejected; otherwise it was delivered.
pub(crate) fn fold<'s>(states: impl Iterator<Item = &'s ItemState>) -> Outcome {
    let mut rejected: Vec<&str> = Vec::new();
    let mut retry: Option<(String, bool)> = None;
    for s in states {
        match s {
            ItemState::Retryable { reason, throttled } => {
                let t = retry.as_ref().is_some_and(|(_, t)| *t) || *throttled;
                let r = retry.map_or_else(|| reason.clone(), |(r, _)| r);
                retry = Some((r, t));
            }
            ItemState::Rejected(r) if !rejected.contains(&r.as_str()) => rejected.push(r),
            ItemState::Pending => {
                retry.get_or_insert(("not sent before the deadline".into(), false));
            }
            _ => {}
        }
    }
    match (retry, rejected.is_empty()) {
        (Some((reason, throttled)), _) => Outcome::Retryable { reason, throttled },
        (None, false) => Outcome::Rejected {
            reason: rejected.join("; "),
        },
        (None, true) => Outcome::Delivered,
    }
}
