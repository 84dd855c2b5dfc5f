//! What happened to each Segment message, to each item, and to each request of a delivery.

use std::collections::HashSet;
use std::time::Duration;

use amplitude_wire::DeletionJob;
use mapping::Endpoint;
use serde::{Deserialize, Serialize};

use crate::encode::Item;

/// The fate of one Segment message after a delivery.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum Outcome {
    /// Amplitude accepted every item of the message (or it needed none).
    Delivered,
    /// Amplitude refused one of its events for good (its reason is kept); retrying can never
    /// succeed.
    Rejected { reason: String },
    /// Not (fully) delivered yet: the caller must keep it for a retry. `insert_id` makes a
    /// resend of the delivered part harmless.
    Retryable { reason: String, cause: RetryCause },
}

/// Why a message is not delivered yet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RetryCause {
    /// Amplitude failed, timed out or was unreachable until the deadline.
    Transient,
    /// Amplitude throttled the message's user or device: retry after its delay.
    Throttled,
    /// Amplitude refused the request or the credentials, not an event (a bad key, 403, 404, a
    /// request it calls malformed, a redirect): someone must fix the configuration. Logged at
    /// ERROR; the events are kept so nothing is lost meanwhile.
    Refused,
}

impl Outcome {
    pub fn is_retryable(&self) -> bool {
        matches!(self, Outcome::Retryable { .. })
    }

    /// The outcome of a message delivered in parts (its items in several deliveries), as
    /// [`fold`] decides for its items: any retryable part makes it retryable (the most pressing
    /// cause wins), else any rejected part rejected, else delivered.
    pub fn and(self, other: Outcome) -> Outcome {
        match (self, other) {
            (
                Outcome::Retryable { reason, cause },
                Outcome::Retryable {
                    reason: r2,
                    cause: c2,
                },
            ) => {
                if rank(c2) > rank(cause) {
                    Outcome::Retryable {
                        reason: r2,
                        cause: c2,
                    }
                } else {
                    Outcome::Retryable { reason, cause }
                }
            }
            (retry @ Outcome::Retryable { .. }, _) | (_, retry @ Outcome::Retryable { .. }) => {
                retry
            }
            (Outcome::Rejected { reason }, Outcome::Rejected { reason: r2 }) => {
                let (first, n1) = split_reasons(&reason);
                let (second, n2) = split_reasons(&r2);
                Outcome::Rejected {
                    reason: joined(first.chain(second), n1.max(n2)),
                }
            }
            (rejected @ Outcome::Rejected { .. }, Outcome::Delivered)
            | (Outcome::Delivered, rejected @ Outcome::Rejected { .. }) => rejected,
            (Outcome::Delivered, Outcome::Delivered) => Outcome::Delivered,
        }
    }
}

/// How pressing a retry's cause is: a refusal (someone must act) over throttling over a
/// transient failure.
fn rank(cause: RetryCause) -> u8 {
    match cause {
        RetryCause::Transient => 0,
        RetryCause::Throttled => 1,
        RetryCause::Refused => 2,
    }
}

/// An item that is not delivered yet, in the form it is sent in: enough to send it later
/// without the Segment message (a durable queue stores these).
#[derive(Debug, Clone)]
pub struct Undelivered {
    pub item: Item,
    pub reason: String,
    pub cause: RetryCause,
}

/// An item Amplitude refused for good.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemRejection {
    pub message: usize,
    pub endpoint: Endpoint,
    pub reason: String,
}

/// One HTTP request sent to Amplitude.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RequestRecord {
    pub endpoint: Endpoint,
    /// The HTTP status, or `None` when no answer came (timeout, reset, refused connection).
    pub status: Option<u16>,
    pub latency: Duration,
    /// Items (events, identifications, mappings, deletion ids) in the request.
    pub items: usize,
}

/// The result of one delivery.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// One outcome per message, in the caller's order.
    pub outcomes: Vec<Outcome>,
    /// Every item not delivered yet, with why (the items of the `Retryable` messages).
    pub undelivered: Vec<Undelivered>,
    /// Every item Amplitude refused for good, with its endpoint and reason.
    pub rejections: Vec<ItemRejection>,
    /// Every HTTP request sent (retries and splits included), in the order they ended.
    pub requests: Vec<RequestRecord>,
    /// Set when Amplitude refused the credentials (invalid API key, or 401): the caller should
    /// refresh its secrets. The affected messages are `Retryable`, so nothing valid is lost
    /// while the key is fixed.
    pub credentials_refused: Option<String>,
    /// Deletion jobs Amplitude returned (User Privacy API).
    pub deletion_jobs: Vec<DeletionJob>,
}

impl Report {
    /// A delivery that sends nothing: every item kept retryable with `reason` (for a caller
    /// that queues them instead).
    pub fn held(items: Vec<Item>, messages: usize, reason: &str) -> Report {
        let retryable = |reason: &str| Outcome::Retryable {
            reason: reason.to_owned(),
            cause: RetryCause::Transient,
        };
        let mut outcomes = vec![Outcome::Delivered; messages];
        for item in &items {
            if let Some(o) = outcomes.get_mut(item.message) {
                *o = retryable(reason);
            }
        }
        Report {
            outcomes,
            undelivered: items
                .into_iter()
                .map(|item| Undelivered {
                    item,
                    reason: reason.to_owned(),
                    cause: RetryCause::Transient,
                })
                .collect(),
            ..Report::default()
        }
    }

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

    /// HTTP requests sent to Amplitude.
    pub fn requests_sent(&self) -> usize {
        self.requests.len()
    }
}

/// Per-item state while a delivery runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ItemState {
    Pending,
    Delivered,
    Rejected(String),
    Retryable { reason: String, cause: RetryCause },
}

impl ItemState {
    /// What a pending item means once the delivery is over: it was not sent in time.
    pub(crate) fn settled(self) -> ItemState {
        match self {
            ItemState::Pending => ItemState::Retryable {
                reason: "not sent before the deadline".into(),
                cause: RetryCause::Transient,
            },
            other => other,
        }
    }
}

/// Folds the states of a message's items into its outcome: any retryable item makes the message
/// retryable (a redelivery is deduplicated by `insert_id`); otherwise any rejected item makes it
/// rejected; otherwise it was delivered. The most pressing cause wins: a refusal (someone must
/// act) over throttling over a transient failure.
pub(crate) fn fold<'s>(states: impl Iterator<Item = &'s ItemState>) -> Outcome {
    // Every rejected item's reason, repeats included: `joined` keeps each once.
    let mut rejected: Vec<&str> = Vec::new();
    let mut retry: Option<(&str, RetryCause)> = None;
    for s in states {
        match s {
            ItemState::Retryable { reason, cause }
                if retry.is_none_or(|(_, c)| rank(*cause) > rank(c)) =>
            {
                retry = Some((reason, *cause));
            }
            ItemState::Rejected(r) => rejected.push(r),
            ItemState::Pending => {
                retry.get_or_insert(("not sent before the deadline", RetryCause::Transient));
            }
            _ => {}
        }
    }
    match (retry, rejected.is_empty()) {
        (Some((reason, cause)), _) => Outcome::Retryable {
            reason: reason.to_owned(),
            cause,
        },
        (None, false) => Outcome::Rejected {
            reason: joined(rejected.into_iter(), 0),
        },
        (None, true) => Outcome::Delivered,
    }
}

/// The most bytes of distinct reasons one message's reason lists: a misbehaving Amplitude can
/// give each of a message's items (a product fan-out makes thousands) a reason of its own.
const MESSAGE_REASON_BYTES: usize = 2048;

/// How a message's reason ends when reasons were left out of it.
const OTHERS: (&str, &str) = ("and ", " other reasons");

/// Distinct `reasons`, each once in the order first seen, joined by `; ` up to
/// [`MESSAGE_REASON_BYTES`], then `; and N other reasons` for those left out (`more` of them
/// already counted elsewhere). The first reason is always kept whole.
fn joined<'r>(reasons: impl Iterator<Item = &'r str>, more: usize) -> String {
    let mut seen: HashSet<&str> = HashSet::new();
    let mut out = String::new();
    let mut left_out = more;
    for r in reasons.filter(|r| seen.insert(r)) {
        if out.is_empty() {
            out.push_str(r);
        } else if out.len() + 2 + r.len() <= MESSAGE_REASON_BYTES {
            out.push_str("; ");
            out.push_str(r);
        } else {
            left_out += 1;
        }
    }
    if left_out > 0 {
        out.push_str(&format!("; {}{left_out}{}", OTHERS.0, OTHERS.1));
    }
    out
}

/// A message's reason as the reasons [`joined`] listed, and how many it left out. Across the
/// parts of a message the same reasons recur, so merging two parts counts the larger number
/// left out (a lower bound).
fn split_reasons(reason: &str) -> (impl Iterator<Item = &str>, usize) {
    let (listed, left_out) = match reason.rsplit_once("; ") {
        Some((listed, last)) => match last
            .strip_prefix(OTHERS.0)
            .and_then(|n| n.strip_suffix(OTHERS.1))
            .and_then(|n| n.parse().ok())
        {
            Some(n) => (listed, n),
            None => (reason, 0),
        },
        None => (reason, 0),
    };
    (listed.split("; "), left_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn retry(reason: &str, cause: RetryCause) -> ItemState {
        ItemState::Retryable {
            reason: reason.into(),
            cause,
        }
    }

    #[test]
    fn a_message_delivered_in_parts_is_as_undelivered_as_its_least_delivered_part() {
        let retry = |reason: &str, cause| Outcome::Retryable {
            reason: reason.into(),
            cause,
        };
        let rejected = |reason: &str| Outcome::Rejected {
            reason: reason.into(),
        };
        assert_eq!(
            Outcome::Delivered.and(rejected("a")).and(rejected("b; a")),
            rejected("a; b")
        );
        assert_eq!(
            rejected("a")
                .and(retry("503", RetryCause::Transient))
                .and(retry("key", RetryCause::Refused))
                .and(retry("429", RetryCause::Throttled)),
            retry("key", RetryCause::Refused)
        );
        assert_eq!(
            Outcome::Delivered.and(Outcome::Delivered),
            Outcome::Delivered
        );
    }

    #[test]
    fn a_message_is_as_undelivered_as_its_least_delivered_item() {
        let states = [
            ItemState::Delivered,
            ItemState::Rejected("bad time".into()),
            retry("503", RetryCause::Transient),
            retry("throttled", RetryCause::Throttled),
        ];
        assert_eq!(
            fold(states.iter()),
            Outcome::Retryable {
                reason: "throttled".into(),
                cause: RetryCause::Throttled
            }
        );
        assert_eq!(
            fold(
                [
                    ItemState::Rejected("a".into()),
                    ItemState::Rejected("a".into()),
                    ItemState::Rejected("b".into())
                ]
                .iter()
            ),
            Outcome::Rejected {
                reason: "a; b".into()
            }
        );
        assert_eq!(fold([ItemState::Delivered].iter()), Outcome::Delivered);
        assert_eq!(
            fold(
                [
                    retry("x", RetryCause::Transient),
                    retry("key", RetryCause::Refused)
                ]
                .iter()
            ),
            Outcome::Retryable {
                reason: "key".into(),
                cause: RetryCause::Refused
            }
        );
    }

    /// A misbehaving Amplitude can give every item of a message a reason of its own (a 400
    /// naming each index with its own field): the message's reason is each distinct reason
    /// once, up to [`MESSAGE_REASON_BYTES`], then how many more, found in one pass (before:
    /// every reason kept and compared with every other, quadratic in the items).
    #[test]
    fn many_distinct_item_reasons_make_one_bounded_message_reason() {
        let states: Vec<ItemState> = (0..100_000)
            .map(|i| ItemState::Rejected(format!("Amplitude 400: invalid field f{i:06}")))
            .chain([ItemState::Rejected(
                "Amplitude 400: invalid field f000000".into(),
            )])
            .collect();
        let Outcome::Rejected { reason } = fold(states.iter()) else {
            panic!("not rejected");
        };
        // Each reason is 36 bytes, 38 with its separator: 53 fit in 2,048 bytes.
        let shown: Vec<String> = (0..53)
            .map(|i| format!("Amplitude 400: invalid field f{i:06}"))
            .collect();
        let expected = format!("{}; and 99947 other reasons", shown.join("; "));
        assert_eq!(reason, expected);
        // Two parts of a message with the same reasons: the same reason, not a longer one.
        let part = || Outcome::Rejected {
            reason: expected.clone(),
        };
        assert_eq!(part().and(part()), part());
        // A part with reasons of its own: listed while they fit (2,046 bytes with the first),
        // then counted among those left out.
        let other = Outcome::Rejected {
            reason: "Amplitude 400: invalid field g; Amplitude 400: invalid field h".into(),
        };
        assert_eq!(
            part().and(other),
            Outcome::Rejected {
                reason: format!(
                    "{}; Amplitude 400: invalid field g; and 99948 other reasons",
                    shown.join("; ")
                )
            }
        );
    }
}
