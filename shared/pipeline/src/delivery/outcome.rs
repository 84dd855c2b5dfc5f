//! What became of each message ([`MessageOutcome`], one [`Entry`] per message), and the one
//! table that counts them ([`Tally`]): the reply's counts, the request's log line, the EMF
//! metrics and `/_metrics` all come from it, so adding an outcome touches [`Tally::add`] and
//! [`Tally::named`] only.

use amplitude_client::{Outcome, RetryCause};
use serde::Serialize;
use serde_with::skip_serializing_none;

/// serde_json's reason for refusing a text, without its " at line 1 column 42" tail: a reason
/// for a message or a queue job is then the same wherever in the text the fault is, so
/// counts by reason group them. Cut exactly at the position serde_json reports, so a reason
/// that itself holds " at line " keeps it.
pub(crate) fn json_reason(e: &serde_json::Error) -> String {
    let full = e.to_string();
    let at = format!(" at line {} column {}", e.line(), e.column());
    match full.strip_suffix(&at) {
        Some(reason) => reason.to_owned(),
        None => full,
    }
}

/// The longest prefix of `text` that takes at most `max` bytes written as the contents of a
/// JSON string. A reason can quote what a sender, a queue's writer or Amplitude wrote, and a
/// control character there takes six bytes once escaped (`\u0001`), a quote or backslash two:
/// a reason cut by its own bytes could take six times its room in an answer or a dead letter.
pub(crate) fn json_prefix(text: &str, max: usize) -> &str {
    let mut written = 0;
    for (at, c) in text.char_indices() {
        written += match c {
            '"' | '\\' => 2,
            c if c < ' ' => 6,
            c => c.len_utf8(),
        };
        if written > max {
            return text.get(..at).unwrap_or_default();
        }
    }
    text
}

/// Who refused a message for good.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum RejectedBy {
    /// The mapping: the message lacks what Amplitude needs (the reason names the field).
    Mapping,
    /// Amplitude refused one of its events.
    Amplitude,
}

/// What happened to one message.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "outcome", rename_all = "snake_case")]
pub enum MessageOutcome {
    Delivered,
    /// Nothing to send (a page with no page setting on; an Engage profile without ids); never
    /// retried.
    Skipped {
        #[serde(skip_serializing_if = "Option::is_none")]
        reason: Option<String>,
    },
    /// Refused for good.
    Rejected {
        by: RejectedBy,
        reason: String,
        /// The Amplitude endpoint that refused it (Amplitude's rejections).
        #[serde(skip_serializing_if = "Option::is_none")]
        endpoint: Option<&'static str>,
    },
    /// Not handled by this route or these settings.
    Unsupported {
        reason: String,
    },
    /// Not delivered yet; Segment must retry (or, in the redeliver function, the job is tried
    /// again).
    Retryable {
        reason: String,
        cause: RetryCause,
    },
    /// Not delivered yet, and kept in the delivery queue: the redeliver function sends it
    /// (`reason` says why it was not delivered at once). Done for Segment.
    Queued {
        reason: String,
    },
    /// Given up: moved to the dead-letter queue with this reason (redeliver function).
    DeadLettered {
        reason: String,
        endpoint: &'static str,
    },
}

impl MessageOutcome {
    /// A delivery's outcome for one message; `endpoint` names who refused a rejected one.
    pub fn delivered(outcome: &Outcome, endpoint: Option<&'static str>) -> MessageOutcome {
        match outcome {
            Outcome::Delivered => MessageOutcome::Delivered,
            Outcome::Rejected { reason } => MessageOutcome::Rejected {
                by: RejectedBy::Amplitude,
                reason: reason.clone(),
                endpoint,
            },
            Outcome::Retryable { reason, cause } => MessageOutcome::Retryable {
                reason: reason.clone(),
                cause: *cause,
            },
        }
    }

    /// Why the message was not delivered, if it says.
    pub fn reason(&self) -> Option<&str> {
        match self {
            MessageOutcome::Rejected { reason, .. }
            | MessageOutcome::Unsupported { reason }
            | MessageOutcome::Retryable { reason, .. }
            | MessageOutcome::Queued { reason }
            | MessageOutcome::DeadLettered { reason, .. } => Some(reason),
            MessageOutcome::Skipped { reason } => reason.as_deref(),
            MessageOutcome::Delivered => None,
        }
    }

    /// The outcome's name in an answer (`outcome`).
    pub fn kind(&self) -> &'static str {
        match self {
            MessageOutcome::Delivered => "delivered",
            MessageOutcome::Skipped { .. } => "skipped",
            MessageOutcome::Rejected { .. } => "rejected",
            MessageOutcome::Unsupported { .. } => "unsupported",
            MessageOutcome::Retryable { .. } => "retryable",
            MessageOutcome::Queued { .. } => "queued",
            MessageOutcome::DeadLettered { .. } => "dead_lettered",
        }
    }

    /// Cuts the reason to at most `max` bytes written as JSON, on a character boundary.
    pub fn cut_reason(&mut self, max: usize) {
        let reason = match self {
            MessageOutcome::Rejected { reason, .. }
            | MessageOutcome::Unsupported { reason }
            | MessageOutcome::Retryable { reason, .. }
            | MessageOutcome::Queued { reason }
            | MessageOutcome::DeadLettered { reason, .. } => reason,
            MessageOutcome::Skipped { reason } => match reason {
                Some(r) => r,
                None => return,
            },
            MessageOutcome::Delivered => return,
        };
        let kept = json_prefix(reason, max).len();
        reason.truncate(kept);
    }

    /// One word for the outcome (the deletion audit line's `outcome`).
    pub fn word(&self) -> &'static str {
        match self {
            MessageOutcome::Delivered => "requested",
            MessageOutcome::Skipped { .. } => "skipped",
            MessageOutcome::Rejected { .. } => "rejected",
            MessageOutcome::Unsupported { .. } => "unsupported",
            MessageOutcome::Retryable { .. } => "retryable",
            MessageOutcome::Queued { .. } => "queued",
            MessageOutcome::DeadLettered { .. } => "dead_lettered",
        }
    }
}

/// One message's line in the answer.
#[skip_serializing_none]
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Entry {
    pub index: usize,
    pub message_id: Option<String>,
    #[serde(flatten)]
    pub outcome: MessageOutcome,
}

/// Messages counted by what became of them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Tally {
    pub received: u64,
    pub delivered: u64,
    pub skipped: u64,
    pub unsupported: u64,
    /// Refused by the mapping (the message lacks what Amplitude needs).
    pub rejected_mapping: u64,
    /// Refused by Amplitude, event by event.
    pub rejected_amplitude: u64,
    /// Kept because Amplitude refused the request or the configuration (a bad key, 403, ...).
    pub refused_amplitude: u64,
    /// Not delivered yet (includes the throttled and the refused).
    pub retryable: u64,
    pub throttled: u64,
    pub queued: u64,
    pub dead_lettered: u64,
}

impl Tally {
    /// The tally of these entries.
    pub fn of<'e>(entries: impl IntoIterator<Item = &'e Entry>) -> Tally {
        let mut tally = Tally::default();
        for e in entries {
            tally.add(&e.outcome);
        }
        tally
    }

    /// Counts one message.
    pub fn add(&mut self, outcome: &MessageOutcome) {
        self.received += 1;
        match outcome {
            MessageOutcome::Delivered => self.delivered += 1,
            MessageOutcome::Skipped { .. } => self.skipped += 1,
            MessageOutcome::Unsupported { .. } => self.unsupported += 1,
            MessageOutcome::Rejected { by, .. } => match by {
                RejectedBy::Mapping => self.rejected_mapping += 1,
                RejectedBy::Amplitude => self.rejected_amplitude += 1,
            },
            MessageOutcome::Retryable { cause, .. } => {
                self.retryable += 1;
                match cause {
                    RetryCause::Throttled => self.throttled += 1,
                    RetryCause::Refused => self.refused_amplitude += 1,
                    RetryCause::Transient => {}
                }
            }
            MessageOutcome::Queued { .. } => self.queued += 1,
            MessageOutcome::DeadLettered { .. } => self.dead_lettered += 1,
        }
    }

    /// Counts `n` messages rejected unread (past a request's `body::MAX_MESSAGES`).
    pub fn add_unread(&mut self, n: usize) {
        let n = n as u64;
        self.received += n;
        self.rejected_mapping += n;
    }

    /// Adds another tally.
    pub fn merge(&mut self, other: &Tally) {
        for ((_, _, mine), (_, _, theirs)) in self.named_mut().into_iter().zip(other.named()) {
            *mine += theirs;
        }
    }

    /// Each count with its EMF metric name and its `/_metrics` outcome label: the table.
    pub fn named(&self) -> [(&'static str, &'static str, u64); 11] {
        let mut copy = *self;
        copy.named_mut().map(|(name, label, n)| (name, label, *n))
    }

    fn named_mut(&mut self) -> [(&'static str, &'static str, &mut u64); 11] {
        [
            ("Received", "received", &mut self.received),
            ("Delivered", "delivered", &mut self.delivered),
            ("Skipped", "skipped", &mut self.skipped),
            ("Unsupported", "unsupported", &mut self.unsupported),
            (
                "RejectedMapping",
                "rejected_mapping",
                &mut self.rejected_mapping,
            ),
            (
                "RejectedAmplitude",
                "rejected_amplitude",
                &mut self.rejected_amplitude,
            ),
            (
                "RefusedAmplitude",
                "refused_amplitude",
                &mut self.refused_amplitude,
            ),
            ("Retryable", "retryable", &mut self.retryable),
            ("Throttled", "throttled", &mut self.throttled),
            ("Queued", "queued", &mut self.queued),
            ("DeadLettered", "dead_lettered", &mut self.dead_lettered),
        ]
    }

    /// The counts Segment's answer carries (and the request's log line).
    pub fn counts(&self) -> Counts {
        let n = |v: u64| v as usize;
        Counts {
            received: n(self.received),
            delivered: n(self.delivered),
            skipped: n(self.skipped),
            rejected: n(self.rejected_mapping + self.rejected_amplitude),
            unsupported: n(self.unsupported),
            retryable: n(self.retryable),
            queued: n(self.queued),
        }
    }
}

/// Counts by outcome, for the response body and the log line (a view of the [`Tally`]).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Counts {
    pub received: usize,
    pub delivered: usize,
    pub skipped: usize,
    pub rejected: usize,
    pub unsupported: usize,
    pub retryable: usize,
    pub queued: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_outcome_is_counted_once_under_its_name_and_retries_by_cause() {
        let retry = |cause| MessageOutcome::Retryable {
            reason: "r".into(),
            cause,
        };
        let outcomes = [
            MessageOutcome::Delivered,
            MessageOutcome::Skipped { reason: None },
            MessageOutcome::Unsupported { reason: "u".into() },
            MessageOutcome::Rejected {
                by: RejectedBy::Mapping,
                reason: "m".into(),
                endpoint: None,
            },
            MessageOutcome::Rejected {
                by: RejectedBy::Amplitude,
                reason: "a".into(),
                endpoint: Some("httpapi"),
            },
            retry(RetryCause::Transient),
            retry(RetryCause::Throttled),
            retry(RetryCause::Refused),
            MessageOutcome::Queued { reason: "q".into() },
            MessageOutcome::DeadLettered {
                reason: "d".into(),
                endpoint: "httpapi",
            },
        ];
        let mut tally = Tally::default();
        outcomes.iter().for_each(|o| tally.add(o));
        let named: Vec<(&str, u64)> = tally.named().iter().map(|(n, _, v)| (*n, *v)).collect();
        assert_eq!(
            named,
            vec![
                ("Received", 10),
                ("Delivered", 1),
                ("Skipped", 1),
                ("Unsupported", 1),
                ("RejectedMapping", 1),
                ("RejectedAmplitude", 1),
                ("RefusedAmplitude", 1),
                ("Retryable", 3),
                ("Throttled", 1),
                ("Queued", 1),
                ("DeadLettered", 1),
            ]
        );
        assert_eq!(
            tally.counts(),
            Counts {
                received: 10,
                delivered: 1,
                skipped: 1,
                rejected: 2,
                unsupported: 1,
                retryable: 3,
                queued: 1
            }
        );
        let mut twice = tally;
        twice.merge(&tally);
        assert_eq!((twice.received, twice.throttled), (20, 2));
    }
}
