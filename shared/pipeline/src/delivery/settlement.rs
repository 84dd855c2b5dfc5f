//! **Settlement**: what follows every delivery, the same for an ingest function's request and
//! for the redeliver function's jobs.
//!
//! Once per delivery ([`Function::delivered`]): when Amplitude refused the keys, the cached
//! secrets are forgotten (an ERROR line says so), and the requests are counted.
//!
//! Then for each part of it ([`Function::settle`]: a request, or one job):
//! 1. what is left undelivered is stored as new jobs, if the caller keeps it ([`Keep`]); the
//!    messages stored are `Queued`, and stay `Retryable` when the queue refuses the write;
//! 2. each rejected or dead-lettered message gets a WARN line (messageId, route, endpoint,
//!    reason), the first [`LOGGED_ONE_BY_ONE`] of them, and one line counts the rest; messages
//!    kept because Amplitude refused the whole request get one ERROR line;
//! 3. every message is counted by outcome;
//! 4. deletions: one audit line per user id, with the day of the Amplitude job that lists it.

use amplitude_client::{Report, RetryCause, Undelivered};
use amplitude_wire::DeletionJob;
use mapping::Region;
use tokio::time::Instant;

use super::outcome::{Entry, MessageOutcome, Tally};
use crate::durable::{QueueError, QueueKind, job};
use crate::function::Function;
use crate::ingest::Route;
use crate::ingest::body::UNREAD;
use crate::ops::logging::Capped;
use crate::ops::metrics::Invocation;

/// How many messageIds a log line about a refused request names.
const FIRST_IDS: usize = 5;
/// How many rejected or dead-lettered messages of one request (or job) get a line each; one
/// line counts the others. Segment's largest batch (Webhooks (Actions)) is 4,000 events, so
/// every message Segment sends is logged on its own, and a sender's 250,000 refused messages
/// take 4,000 lines (about 1 MB of logs), not 250,000.
const LOGGED_ONE_BY_ONE: usize = 4_000;

/// What becomes of the items a delivery left.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Nothing is stored: they stay retryable (direct mode; a job retried in place).
    Nothing,
    /// Stored as new jobs on `queue`, having been tried `attempts` times since `first_seen_ms`.
    Jobs {
        queue: QueueKind,
        attempts: u32,
        first_seen_ms: u64,
    },
}

/// One part of a delivery to settle: a request's messages, or one job's.
pub(crate) struct Part<'a> {
    pub request_id: &'a str,
    /// The route the messages came in on.
    pub route: Route,
    pub region: Region,
    /// Each message's outcome, in order.
    pub entries: Vec<Entry>,
    /// Messages past the request's first `body::MAX_MESSAGES`, rejected unread.
    pub unread: usize,
    /// The items not delivered yet; `item.message` is the message's place in `entries`.
    pub left: Vec<Undelivered>,
    pub keep: Keep,
    /// Deletions: the user id each message asked to delete (audited with its outcome).
    pub deleted_users: Option<Vec<Option<String>>>,
    /// The deletion jobs Amplitude returned (the audit names each user's job day).
    pub deletion_jobs: &'a [DeletionJob],
    /// Storing gives up at this instant.
    pub deadline: Instant,
}

/// A settled part.
#[derive(Debug)]
pub(crate) struct Settled {
    pub entries: Vec<Entry>,
    /// `None` when nothing was to be stored; otherwise the `SendMessageBatch` calls made, or
    /// why the queue refused.
    pub stored: Option<Result<usize, QueueError>>,
}

/// Each message's outcome after a delivery of `messages` messages: `Rejected` outcomes name
/// the endpoint that refused them.
pub(crate) fn outcomes(report: &Report) -> Vec<MessageOutcome> {
    let mut endpoints: Vec<Option<&'static str>> = vec![None; report.outcomes.len()];
    for r in &report.rejections {
        if let Some(slot) = endpoints.get_mut(r.message) {
            slot.get_or_insert(r.endpoint.as_str());
        }
    }
    report
        .outcomes
        .iter()
        .zip(endpoints)
        .map(|(o, endpoint)| MessageOutcome::delivered(o, endpoint))
        .collect()
}

impl Function {
    /// Settles what one delivery did as a whole: refused keys are forgotten, requests counted.
    pub(crate) fn delivered(&self, report: &Report, request_id: &str, measured: &mut Invocation) {
        if let Some(reason) = &report.credentials_refused {
            tracing::error!(
                request_id,
                route = measured.route,
                reason,
                "Amplitude refused the credentials; the secrets are read again on the next request"
            );
            self.forget_keys();
        }
        measured.count_requests(report);
    }

    /// Settles one part of a delivery (see the module docs).
    pub(crate) async fn settle(&self, part: Part<'_>, measured: &mut Invocation) -> Settled {
        let Part {
            request_id,
            route,
            region,
            mut entries,
            unread,
            left,
            keep,
            deleted_users,
            deletion_jobs,
            deadline,
        } = part;
        let ids: Vec<Option<String>> = entries.iter().map(|e| e.message_id.clone()).collect();
        let stored = self
            .keep_left(&left, &ids, keep, (route, region), deadline, request_id)
            .await;
        if let Some(Ok(_)) = stored {
            for e in &mut entries {
                if let MessageOutcome::Retryable { reason, .. } = &mut e.outcome {
                    e.outcome = MessageOutcome::Queued {
                        reason: std::mem::take(reason),
                    };
                }
            }
        }
        log_outcomes(request_id, route, &entries, unread);
        let mut tally = Tally::of(&entries);
        tally.add_unread(unread);
        measured.messages.merge(&tally);
        if let Some(users) = deleted_users {
            audit(&users, &entries, deletion_jobs);
        }
        Settled { entries, stored }
    }

    /// Stores what a delivery left (`left`, whose items index `message_ids`) as jobs, when
    /// the caller keeps it: `None` when there was nothing to store.
    pub(crate) async fn keep_left(
        &self,
        left: &[Undelivered],
        message_ids: &[Option<String>],
        keep: Keep,
        (route, region): (Route, Region),
        deadline: Instant,
        request_id: &str,
    ) -> Option<Result<usize, QueueError>> {
        let Keep::Jobs {
            queue,
            attempts,
            first_seen_ms,
        } = keep
        else {
            return None;
        };
        if left.is_empty() {
            return None;
        }
        let jobs = job::jobs_from(left, message_ids, route, region, attempts, first_seen_ms);
        Some(self.store(queue, jobs, deadline, request_id, route).await)
    }

    /// Writes jobs to `queue` before `deadline`; logs the result.
    async fn store(
        &self,
        queue: QueueKind,
        jobs: Vec<job::Job>,
        deadline: Instant,
        request_id: &str,
        route: Route,
    ) -> Result<usize, QueueError> {
        let durable = self
            .durable()
            .ok_or(QueueError::NotConfigured(queue.name()))?;
        let (messages, items) = jobs.iter().fold((0, 0), |(m, i), j| {
            (m + j.message_ids.len(), i + j.items.len())
        });
        let outgoing = durable.config.messages(jobs, queue);
        let bodies = outgoing.len();
        let sent = tokio::time::timeout_at(deadline, durable.queues.send(queue, outgoing))
            .await
            .unwrap_or_else(|_| {
                Err(QueueError::Refused {
                    queue: queue.name(),
                    reason: "no answer before the deadline".into(),
                })
            });
        match &sent {
            Ok(calls) => tracing::info!(
                request_id,
                route = route.path(),
                queue = queue.name(),
                messages,
                items,
                queue_messages = bodies,
                calls,
                "kept in the queue"
            ),
            Err(e) => tracing::error!(
                request_id,
                route = route.path(),
                error = %e,
                "could not keep undelivered messages in the queue; they stay retryable"
            ),
        }
        sent
    }
}

/// What the operator must see: each rejected or dead-lettered message with its messageId and
/// reason (WARN; past [`LOGGED_ONE_BY_ONE`] of them, one line with the count of the rest, and
/// one for the messages rejected unread), and messages kept back because Amplitude refused the
/// request or the configuration (ERROR, with their count and the first messageIds). Never keys
/// or payloads.
fn log_outcomes(request_id: &str, route: Route, entries: &[Entry], unread: usize) {
    let route = route.path();
    let is_logged = |e: &&Entry| {
        matches!(
            e.outcome,
            MessageOutcome::Rejected { .. } | MessageOutcome::DeadLettered { .. }
        )
    };
    let mut logged = entries.iter().filter(is_logged);
    for e in logged.by_ref().take(LOGGED_ONE_BY_ONE) {
        let message_id = Capped::text(e.message_id.as_deref().unwrap_or("none"));
        match &e.outcome {
            MessageOutcome::Rejected {
                by,
                reason,
                endpoint,
            } => tracing::warn!(
                request_id,
                route,
                endpoint = endpoint.unwrap_or("none"),
                message_id = %message_id,
                by = ?by,
                reason = %Capped::text(reason),
                "message rejected"
            ),
            MessageOutcome::DeadLettered { reason, endpoint } => tracing::warn!(
                request_id,
                route,
                endpoint,
                message_id = %message_id,
                reason = %Capped::text(reason),
                "dead-lettered"
            ),
            _ => {}
        }
    }
    let (rejected, dead_lettered) = logged.fold((0, 0), |(r, d), e| match e.outcome {
        MessageOutcome::Rejected { .. } => (r + 1, d),
        _ => (r, d + 1),
    });
    if rejected + dead_lettered > 0 {
        tracing::warn!(
            request_id,
            route,
            rejected,
            dead_lettered,
            "more messages rejected or dead-lettered than are logged one by one (their outcomes are in the answer's counts and the metrics)"
        );
    }
    if unread > 0 {
        tracing::warn!(
            request_id,
            route,
            count = unread,
            reason = UNREAD,
            "messages rejected unread"
        );
    }
    let refused: Vec<&Entry> = entries
        .iter()
        .filter(|e| {
            matches!(
                e.outcome,
                MessageOutcome::Retryable {
                    cause: RetryCause::Refused,
                    ..
                }
            )
        })
        .collect();
    if let Some(first) = refused.first() {
        let ids: Vec<Capped<'_>> = refused
            .iter()
            .take(FIRST_IDS)
            .filter_map(|e| e.message_id.as_deref().map(Capped::text))
            .collect();
        tracing::error!(
            request_id,
            route,
            count = refused.len(),
            first_message_ids = ?ids,
            reason = %Capped::text(first.outcome.reason().unwrap_or_default()),
            "Amplitude refused the request or the configuration; the messages are kept for a retry"
        );
    }
}

/// One audit line per user id a deletion was asked for: the id, the day of the Amplitude job
/// that lists it, and the outcome. Never the secret key.
fn audit(users: &[Option<String>], entries: &[Entry], jobs: &[DeletionJob]) {
    for (entry, user_id) in entries.iter().zip(users) {
        let Some(user_id) = user_id else {
            continue;
        };
        let job_day = jobs.iter().find_map(|job| {
            job.amplitude_ids
                .iter()
                .any(|e| e.user_id.as_deref() == Some(user_id))
                .then_some(job.day.as_str())
        });
        tracing::info!(
            audit = "deletion",
            user_id = %Capped::audited_id(user_id),
            job_day = job_day.unwrap_or("none"),
            outcome = entry.outcome.word(),
            "deletion audit"
        );
    }
}
