//! **Delivery in bounded chunks**, so a request's memory does not grow with what its messages
//! become. Messages are planned one by one, in order, and their items encoded one by one into
//! a chunk; when the chunk holds [`CHUNK_BYTES`] of items it is delivered (or queued, by the
//! function's mode) before the next is filled, so a message that becomes many large items (an
//! order's product events, each with the user's properties) never has them all in memory at
//! once. A normal request, a few MB of events, is one chunk: one delivery, as few Amplitude
//! requests as the limits allow.
//!
//! A message whose items span chunks gets the outcome of all its parts together
//! (`Outcome::and`): delivered only if every part was. In durable mode each chunk's leftovers
//! are queued with it, and a message is queued once all it left is stored. Direct mode stops
//! encoding at the deadline: later messages are answered retryable without the work.

use amplitude_client::{Credentials, Item, Outcome, Report, RetryCause, encode};
use amplitude_wire::DeletionJob;
use tokio::time::Instant;

use super::outcome::{Entry, MessageOutcome};
use super::planning::{self, Shared};
use super::settlement::Keep;
use crate::function::{Function, Mode};
use crate::ingest::Route;
use crate::ingest::body::Messages;
use crate::ops::metrics::Invocation;

/// A chunk is delivered once its items hold this many bytes.
pub const CHUNK_BYTES: usize = 8 * 1024 * 1024;
/// Time kept back from the deadline for writing to the queue (an SQS `SendMessageBatch` takes
/// tens of milliseconds) ...
const QUEUE_RESERVE: std::time::Duration = std::time::Duration::from_millis(500);
/// ... plus this much per megabyte of items still to queue, for building and compressing the
/// jobs (about 40 ms per MB measured; the rest is margin for a slower Lambda CPU).
const QUEUE_RESERVE_PER_MB: std::time::Duration = std::time::Duration::from_millis(100);
/// Why the deletions function queues its items at once in durable mode.
const DELETIONS_QUEUED: &str = "deletions go through the deletion queue (one request per second)";
const NOT_SENT: &str = "not sent before the deadline";

/// What became of a request's messages.
pub(crate) struct Delivered {
    pub entries: Vec<Entry>,
    /// Each message's `userId` (the deletions audit names it).
    pub user_ids: Vec<Option<String>>,
    /// The deletion jobs Amplitude returned.
    pub deletion_jobs: Vec<DeletionJob>,
}

/// One message while the request is delivered.
enum Progress {
    /// Settled by planning.
    Planned(MessageOutcome),
    /// Its items go to Amplitude: what its parts came to so far.
    Sending {
        outcome: Option<Outcome>,
        /// The endpoint of its first rejected item.
        endpoint: Option<&'static str>,
        /// Whether what it left is stored: `None` nothing yet, then all (`true`) or not.
        stored: Option<bool>,
    },
}

/// The request's state: its messages so far, the chunk being filled.
struct State<'r> {
    route: Route,
    credentials: &'r Credentials,
    deadline: Instant,
    request_id: &'r str,
    message_ids: Vec<Option<String>>,
    user_ids: Vec<Option<String>>,
    progress: Vec<Progress>,
    deletion_jobs: Vec<DeletionJob>,
    chunk: Vec<Item>,
    chunk_bytes: usize,
    /// Bytes of message text planned so far, of the whole request, and of items made so far:
    /// their ratio estimates what the rest will become.
    planned_bytes: usize,
    request_bytes: usize,
    item_bytes: usize,
}

impl Function {
    /// Plans and delivers (or queues) a request's messages, in bounded chunks.
    pub(crate) async fn deliver_messages(
        &self,
        route: Route,
        messages: &Messages<'_>,
        credentials: &Credentials,
        deadline: Instant,
        request_id: &str,
        measured: &mut Invocation,
    ) -> Delivered {
        let mut shared_scratch = planning::SharedScratch::default();
        let shared = Shared::of(messages, &mut shared_scratch);
        let sessions = self
            .assign_sessions(route, messages, &shared, deadline, request_id)
            .await;
        let count = messages.items.len();
        // Direct-mode deletions: what Amplitude accepted from an earlier attempt is not sent
        // again (`recent_deletions`).
        let remember = route == Route::Deletions && matches!(self.mode, Mode::Direct);
        let mut state = State {
            route,
            credentials,
            deadline,
            request_id,
            message_ids: Vec::with_capacity(count),
            user_ids: Vec::with_capacity(count),
            progress: Vec::with_capacity(count),
            deletion_jobs: Vec::new(),
            chunk: Vec::new(),
            chunk_bytes: 0,
            planned_bytes: 0,
            request_bytes: messages.texts().map(str::len).sum(),
            item_bytes: 0,
        };
        for (index, text) in messages.texts().enumerate() {
            state.planned_bytes += text.len();
            let mut scratch = mapping::Scratch::default();
            let value = match planning::parse(text, &mut scratch) {
                Ok(value) => value,
                Err(outcome) => {
                    state.message_ids.push(None);
                    state.user_ids.push(None);
                    state.progress.push(Progress::Planned(outcome));
                    continue;
                }
            };
            let planned = planning::plan(route, &self.config.settings, &value, shared.batch());
            state.message_ids.push(planned.message_id);
            state.user_ids.push(planned.user_id);
            let mut plan = match planned.plan {
                Ok(plan) => plan,
                Err(outcome) => {
                    state.progress.push(Progress::Planned(outcome));
                    continue;
                }
            };
            let accepted_lately = |id: &Option<String>| {
                id.as_deref()
                    .is_some_and(|id| self.recent_deletions.contains(id))
            };
            if remember && state.user_ids.last().is_some_and(accepted_lately) {
                state
                    .progress
                    .push(Progress::Planned(MessageOutcome::Delivered));
                continue;
            }
            if let Some(id) = sessions.ids.get(&index) {
                plan.set_session_id(*id);
                measured.sessions.assigned += event_count(&plan);
            } else if sessions.degraded.contains(&index) {
                measured.sessions.degraded += event_count(&plan);
            }
            if matches!(self.mode, Mode::Direct) && self.out_of_time(deadline) {
                // Nothing more can be sent: retryable, without encoding what cannot go.
                state.progress.push(Progress::Sending {
                    outcome: Some(not_sent()),
                    endpoint: None,
                    stored: None,
                });
                continue;
            }
            state.progress.push(Progress::Sending {
                outcome: None,
                endpoint: None,
                stored: None,
            });
            let mut items = encode::Items::new(index, &plan);
            loop {
                let filled = planning::guarded(|| Ok(state.fill(&mut items)));
                match filled {
                    Ok(more) => {
                        if state.chunk_bytes >= CHUNK_BYTES {
                            self.flush(&mut state, measured).await;
                        }
                        if !more {
                            break;
                        }
                    }
                    Err(bug) => {
                        // What was encoded of it is delivered with its chunk; the message is
                        // answered rejected, as planning's bugs are.
                        if let Some(p) = state.progress.get_mut(index) {
                            *p = Progress::Planned(bug);
                        }
                        break;
                    }
                }
            }
        }
        self.flush(&mut state, measured).await;
        let entries = state.entries();
        if remember {
            let delivered = entries.iter().zip(&state.user_ids).filter_map(|(e, id)| {
                (e.outcome == MessageOutcome::Delivered)
                    .then_some(id.as_deref())
                    .flatten()
            });
            self.recent_deletions.remember(delivered);
        }
        Delivered {
            entries,
            user_ids: state.user_ids,
            deletion_jobs: state.deletion_jobs,
        }
    }

    /// True when no Amplitude request could start before `deadline` any more.
    fn out_of_time(&self, deadline: Instant) -> bool {
        Instant::now() + self.client.config().min_request_time >= deadline
    }

    /// Delivers (or queues) the chunk, and records what became of its messages.
    async fn flush(&self, state: &mut State<'_>, measured: &mut Invocation) {
        let mut items = std::mem::take(&mut state.chunk);
        state.chunk_bytes = 0;
        let (Some(first), Some(last)) = (items.first(), items.last()) else {
            return;
        };
        let (first, last) = (first.message, last.message);
        items.iter_mut().for_each(|item| item.message -= first);
        let count = last - first + 1;
        let region = self.config.settings.region;
        let report = match &self.mode {
            Mode::Direct => {
                self.client
                    .deliver_items(items, count, region, state.credentials, state.deadline)
                    .await
            }
            Mode::Durable(_) => {
                let until = state.deliver_until(&items);
                self.client
                    .deliver_items(items, count, region, state.credentials, until)
                    .await
            }
            Mode::QueueFirst(_) => Report::held(items, count, DELETIONS_QUEUED),
        };
        self.delivered(&report, state.request_id, measured);
        let stored = self
            .keep_left(
                &report.undelivered,
                state.message_ids.get(first..=last).unwrap_or_default(),
                self.keep(),
                (state.route, region),
                state.deadline,
                state.request_id,
            )
            .await
            .map(|result| result.is_ok());
        let mut endpoints = vec![None; count];
        for r in &report.rejections {
            if let Some(slot) = endpoints.get_mut(r.message) {
                slot.get_or_insert(r.endpoint.as_str());
            }
        }
        let mut left = vec![false; count];
        for u in &report.undelivered {
            if let Some(slot) = left.get_mut(u.item.message) {
                *slot = true;
            }
        }
        let parts = report.outcomes.into_iter().zip(endpoints).zip(left);
        for (k, ((part, rejected_at), has_left)) in parts.enumerate() {
            let Some(Progress::Sending {
                outcome,
                endpoint,
                stored: was_stored,
            }) = state.progress.get_mut(first + k)
            else {
                continue;
            };
            *outcome = Some(match outcome.take() {
                Some(o) => o.and(part),
                None => part,
            });
            *endpoint = endpoint.or(rejected_at);
            if has_left && let Some(now) = stored {
                *was_stored = Some(was_stored.unwrap_or(true) && now);
            }
        }
        state.deletion_jobs.extend(report.deletion_jobs);
    }

    /// What an ingest function does with what a delivery left.
    pub(crate) fn keep(&self) -> Keep {
        let attempts = match &self.mode {
            Mode::Direct => return Keep::Nothing,
            Mode::Durable(_) => 1,
            Mode::QueueFirst(_) => 0,
        };
        Keep::Jobs {
            queue: crate::durable::QueueKind::Delivery,
            attempts,
            first_seen_ms: crate::ops::now_ms(),
        }
    }
}

impl State<'_> {
    /// Encodes `items` into the chunk until it is full; false once they are all in.
    fn fill(&mut self, items: &mut encode::Items<'_, '_>) -> bool {
        while self.chunk_bytes < CHUNK_BYTES {
            let Some(item) = items.next() else {
                return false;
            };
            self.chunk_bytes += item.wire.len();
            self.item_bytes += item.wire.len();
            self.chunk.push(item);
        }
        true
    }

    /// In durable mode, delivery stops early enough to queue this chunk and what the rest of
    /// the request is likely to become, should it all be left.
    fn deliver_until(&self, chunk: &[Item]) -> Instant {
        let bytes: usize = chunk.iter().map(|i| i.wire.len()).sum();
        let ratio = self.item_bytes as f64 / self.planned_bytes.max(1) as f64;
        let rest = (self.request_bytes - self.planned_bytes.min(self.request_bytes)) as f64;
        let megabytes = (bytes as f64 + rest * ratio) / 1e6;
        let reserve = QUEUE_RESERVE + QUEUE_RESERVE_PER_MB.mul_f64(megabytes);
        self.deadline
            .checked_sub(reserve)
            .unwrap_or(self.deadline)
            .max(Instant::now())
    }

    /// Each message's outcome: planning's, or what its parts came to (queued when all it left
    /// is stored).
    fn entries(&mut self) -> Vec<Entry> {
        let progress = std::mem::take(&mut self.progress);
        let ids = std::mem::take(&mut self.message_ids);
        progress
            .into_iter()
            .zip(ids)
            .enumerate()
            .map(|(index, (p, message_id))| {
                let outcome = match p {
                    Progress::Planned(outcome) => outcome,
                    Progress::Sending {
                        outcome,
                        endpoint,
                        stored,
                    } => {
                        let outcome = outcome.unwrap_or(Outcome::Delivered);
                        match (MessageOutcome::delivered(&outcome, endpoint), stored) {
                            (MessageOutcome::Retryable { reason, .. }, Some(true)) => {
                                MessageOutcome::Queued { reason }
                            }
                            (other, _) => other,
                        }
                    }
                };
                Entry {
                    index,
                    message_id,
                    outcome,
                }
            })
            .collect()
    }
}

/// The events a plan sends (a session covers each of them).
fn event_count(plan: &mapping::Plan<'_>) -> u64 {
    plan.requests
        .iter()
        .map(|r| match &r.body {
            mapping::Body::Events(events) => events.len() as u64,
            _ => 0,
        })
        .sum()
}

fn not_sent() -> Outcome {
    Outcome::Retryable {
        reason: NOT_SENT.into(),
        cause: RetryCause::Transient,
    }
}
