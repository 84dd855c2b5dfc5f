//! The redeliver function: delivery jobs from the queues, sent with the same client and retry
//! policy as the ingest functions, and settled by the same step (`delivery::settlement`).
//!
//! Each record of an SQS batch gets a [`Fate`]:
//! * unreadable: moved to the dead-letter queue as it came, with the reason;
//! * too old or tried too often: moved to the dead-letter queue with its reason;
//! * a deletion job on the delivery queue: forwarded to the FIFO deletion queue, whose one
//!   consumer keeps Amplitude's one deletion request per second across instances; done;
//! * delivered (or refused item by item, each logged with messageId and reason): done;
//! * partly delivered: what is left becomes a new job (attempts + 1, with backoff); done;
//! * not delivered at all: retried later, after an exponential backoff (at least the delay
//!   Amplitude asks of throttled items).
//!
//! A record is only done once what is left of it is stored; if a queue refuses that write, the
//! record is retried later and SQS hands it out again (a resend is deduplicated by
//! `insert_id`; deletions and identifications without increments are idempotent).

use std::sync::Arc;
use std::time::Duration;

use amplitude_client::Report;
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Diagnostic, LambdaEvent};
use mapping::{Endpoint, Region};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use super::dead_letter::{DeadLetter, Reason, Unreadable};
use super::{Job, MemoryQueues, Outgoing, QueueError, QueueKind, Received};
use crate::delivery::settlement::{self, Keep, Part};
use crate::delivery::{Entry, MessageOutcome};
use crate::function::{Durable, Function, Kind};
use crate::ingest::error::RequestError;
use crate::ops::config::QueueConfig;
use crate::ops::logging::Capped;
use crate::ops::metrics::Invocation;

/// One record of an SQS batch, with the queue it came from.
#[derive(Debug, Clone)]
pub struct Record {
    pub queue: QueueKind,
    pub message: SqsMessage,
}

impl Record {
    /// A message of the in-process queues, as Lambda's SQS event source would hand it over.
    pub fn from_memory(queue: QueueKind, received: &Received) -> Record {
        let mut message = SqsMessage::default();
        message.message_id = Some(received.receipt.clone());
        message.receipt_handle = Some(received.receipt.clone());
        message.body = Some(received.body.clone());
        message.attributes.insert(
            "ApproximateReceiveCount".into(),
            received.receives.to_string(),
        );
        Record { queue, message }
    }
}

/// What becomes of a record.
#[derive(Debug, Clone, PartialEq)]
pub enum Fate {
    /// Handled: SQS deletes it.
    Done,
    /// Handed out again after this wait (made visible again then; a batch item failure).
    RetryLater(Duration),
    /// Given up: written to the dead-letter queue, then done.
    DeadLetter(DeadLetter),
}

/// Why a record could not be handled now (it is retried later).
#[derive(Debug, thiserror::Error)]
enum RedeliverError {
    #[error("no keys to deliver with: {0}")]
    Keys(#[from] RequestError),
    #[error(transparent)]
    Queue(#[from] QueueError),
}

/// Where a record came from: what its fate is carried out on.
struct Origin {
    /// The record's `messageId`: what a batch item failure names.
    id: String,
    receipt: String,
    queue: QueueKind,
}

/// A job taken from a queue, to deliver now.
struct Held {
    origin: Origin,
    job: Job,
}

impl Function {
    /// The Lambda entry point of the redeliver function.
    pub async fn redeliver_event(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, Diagnostic> {
        let deadline = self.deadline(event.context.deadline);
        let request_id = event.context.request_id;
        let Some(durable) = self.durable() else {
            return Err(Diagnostic {
                error_type: "NotConfigured".into(),
                error_message: "the redeliver function has no queues".into(),
            });
        };
        let records: Vec<Record> = event
            .payload
            .records
            .into_iter()
            .map(|message| Record {
                queue: durable.config.kind_of(message.event_source_arn.as_deref()),
                message,
            })
            .collect();
        let count = records.len();
        let started = Instant::now();
        // Boxed: the nested delivery futures are too deep for the compiler's layout limit.
        let response = Box::pin(self.redeliver(records, deadline, &request_id)).await;
        tracing::info!(
            request_id,
            route = Kind::Redeliver.name(),
            records = count,
            failed = response.batch_item_failures.len(),
            duration_ms = started.elapsed().as_millis() as u64,
            "batch handled"
        );
        Ok(response)
    }

    /// Handles one SQS batch: returns the records to hand out again.
    pub async fn redeliver(
        &self,
        records: Vec<Record>,
        deadline: Instant,
        request_id: &str,
    ) -> SqsBatchResponse {
        let started = Instant::now();
        let mut measured = Invocation::new(Kind::Redeliver.name());
        let mut failed = Vec::new();
        if let Some(durable) = self.durable() {
            let fates = self
                .fates(durable, records, deadline, request_id, &mut measured)
                .await;
            for (origin, fate) in fates {
                if !self
                    .apply(durable, &origin, fate, deadline, request_id, &mut measured)
                    .await
                {
                    failed.push(origin.id);
                }
            }
        }
        measured.duration = started.elapsed();
        self.metrics.record(&measured);
        response(failed)
    }

    /// Every record's fate: read, then the jobs delivered together, one delivery per region.
    async fn fates(
        &self,
        durable: &Durable,
        records: Vec<Record>,
        deadline: Instant,
        request_id: &str,
        measured: &mut Invocation,
    ) -> Vec<(Origin, Fate)> {
        let now = crate::ops::now_ms();
        let mut fates = Vec::new();
        let mut work = Vec::new();
        for record in records {
            match self.read(durable, record, now, request_id).await {
                Ok(held) => work.push(held),
                Err(decided) => fates.push(decided),
            }
        }
        let deletions = work.iter().any(|h| h.job.endpoint == Endpoint::Deletion);
        for region in [Region::Standard, Region::Eu] {
            let (jobs, rest): (Vec<Held>, Vec<Held>) =
                work.into_iter().partition(|h| h.job.region == region);
            work = rest;
            if !jobs.is_empty() {
                let decided = self
                    .deliver(
                        &durable.config,
                        &jobs,
                        region,
                        deadline,
                        request_id,
                        measured,
                    )
                    .await;
                fates.extend(jobs.into_iter().map(|h| h.origin).zip(decided));
            }
        }
        if deletions {
            // The next batch of the FIFO queue may start at once, maybe in another instance:
            // hand over only when Amplitude's one-per-second spacing is kept.
            self.client.wait_for_deletion_spacing().await;
        }
        fates
    }

    /// Reads a record: a job to deliver now, or its fate already (unreadable or expired: the
    /// dead-letter queue; a deletion job on the delivery queue: forwarded).
    async fn read(
        &self,
        durable: &Durable,
        record: Record,
        now: u64,
        request_id: &str,
    ) -> Result<Held, (Origin, Fate)> {
        let Record { queue, message } = record;
        let receives: u32 = message
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let origin = Origin {
            id: message.message_id.unwrap_or_default(),
            receipt: message.receipt_handle.unwrap_or_default(),
            queue,
        };
        let body = message.body.unwrap_or_default();
        let mut job = match Job::decode(&body) {
            Ok(job) => job,
            Err(e) => {
                let letter = Unreadable::new(&body, &Reason::Unreadable(e));
                return Err((origin, Fate::DeadLetter(DeadLetter::Unreadable(letter))));
            }
        };
        if job.endpoint == Endpoint::Deletion
            && queue == QueueKind::Delivery
            && durable.queues.has(QueueKind::Deletion)
        {
            let delay = durable.config.delay(&job);
            let fate = match self.send(QueueKind::Deletion, vec![body], request_id).await {
                Ok(_) => Fate::Done,
                Err(_) => Fate::RetryLater(delay),
            };
            return Err((origin, fate));
        }
        if job.dead_letter_reason.take().is_some() {
            // Replayed from the dead-letter queue (SQS's redrive, after a fix): a fresh start.
            tracing::info!(
                request_id,
                route = job.route.path(),
                endpoint = job.endpoint.as_str(),
                messages = job.message_ids.len(),
                "replayed from the dead-letter queue"
            );
            job.attempts = 0;
            job.first_seen_ms = now;
        }
        // Retries in place leave the body as it was: SQS counts them.
        job.attempts += receives.saturating_sub(1);
        match expired(&job, &durable.config, now) {
            Some(reason) => Err((origin, Fate::DeadLetter(DeadLetter::job(job, &reason)))),
            None => Ok(Held { origin, job }),
        }
    }

    /// Delivers the jobs of one region together, then settles each: its fate.
    async fn deliver(
        &self,
        config: &QueueConfig,
        jobs: &[Held],
        region: Region,
        deadline: Instant,
        request_id: &str,
        measured: &mut Invocation,
    ) -> Vec<Fate> {
        let deletions = jobs.iter().any(|h| h.job.endpoint == Endpoint::Deletion);
        let credentials = match self.keys(deletions, deadline).await {
            Ok(c) => c,
            Err(e) => {
                tracing::error!(request_id, error = %e, "redeliver: the jobs wait");
                return jobs
                    .iter()
                    .map(|h| Fate::RetryLater(config.delay(&h.job)))
                    .collect();
            }
        };
        // One delivery for all the jobs: each job's messages follow the previous job's.
        let mut items = Vec::new();
        let mut starts = Vec::new();
        for h in jobs {
            let start = starts.last().map_or(0, |(s, n)| s + n);
            items.extend(h.job.client_items(start));
            starts.push((start, h.job.message_ids.len()));
        }
        let messages = starts.last().map_or(0, |(s, n)| s + n);
        let report = self
            .client
            .deliver_items(items, messages, region, &credentials, deadline)
            .await;
        self.delivered(&report, request_id, measured);
        let mut outcomes = settlement::outcomes(&report).into_iter();
        let mut fates = Vec::new();
        for (h, (start, count)) in jobs.iter().zip(starts) {
            let own: Vec<MessageOutcome> = outcomes.by_ref().take(count).collect();
            let fate = self
                .settle_job(
                    config, h, start, own, &report, deadline, request_id, measured,
                )
                .await;
            fates.push(fate);
        }
        fates
    }

    /// The credentials for jobs: the API key, and the secret key for deletions.
    async fn keys(
        &self,
        deletions: bool,
        deadline: Instant,
    ) -> Result<amplitude_client::Credentials, RedeliverError> {
        let keys = self
            .secrets
            .ingest(&self.config.ingest_secret, deadline)
            .await
            .map_err(RequestError::from)?;
        Ok(self
            .credentials(keys.api_key.expose_secret(), deletions, deadline)
            .await?)
    }

    /// Settles one job after the delivery (messages `start..` of it): done, a new job of what
    /// is left, or a retry in place when nothing went.
    #[allow(clippy::too_many_arguments)]
    async fn settle_job(
        &self,
        config: &QueueConfig,
        held: &Held,
        start: usize,
        outcomes: Vec<MessageOutcome>,
        report: &Report,
        deadline: Instant,
        request_id: &str,
        measured: &mut Invocation,
    ) -> Fate {
        let job = &held.job;
        let own = start..start + job.message_ids.len();
        let left: Vec<_> = report
            .undelivered
            .iter()
            .filter(|u| own.contains(&u.item.message))
            .map(|u| {
                let mut u = u.clone();
                u.item.message -= start;
                u
            })
            .collect();
        let progress = left.len() < job.items.len();
        let cause = left.first().map(|u| (u.cause, u.reason.clone()));
        let keep = if progress {
            Keep::Jobs {
                queue: held.origin.queue,
                attempts: job.attempts + 1,
                first_seen_ms: job.first_seen_ms,
            }
        } else {
            Keep::Nothing
        };
        let settled = self
            .settle(
                Part {
                    request_id,
                    route: job.route,
                    region: job.region,
                    entries: entries(job, outcomes),
                    unread: 0,
                    left,
                    keep,
                    deleted_users: deleted_users(job),
                    deletion_jobs: &report.deletion_jobs,
                    deadline,
                },
                measured,
            )
            .await;
        let Some((cause, reason)) = cause else {
            return Fate::Done;
        };
        let mut waiting = job.clone();
        waiting.cause = cause;
        let delay = config.delay(&waiting);
        match settled.stored {
            Some(Ok(_)) => Fate::Done,
            Some(Err(_)) => Fate::RetryLater(delay),
            None => {
                tracing::info!(request_id, endpoint = job.endpoint.as_str(), attempts = job.attempts, reason = %reason, delay_s = delay.as_secs(), "job not delivered; retried later");
                Fate::RetryLater(delay)
            }
        }
    }

    /// Carries out a record's fate; false when SQS must hand it out again.
    async fn apply(
        &self,
        durable: &Durable,
        origin: &Origin,
        fate: Fate,
        deadline: Instant,
        request_id: &str,
        measured: &mut Invocation,
    ) -> bool {
        match fate {
            Fate::Done => true,
            Fate::RetryLater(delay) => {
                if let Err(e) = durable
                    .queues
                    .retry_later(origin.queue, &origin.receipt, delay)
                    .await
                {
                    tracing::warn!(request_id, error = %e, "redeliver: the retry's delay was not set; the visibility timeout applies");
                }
                false
            }
            Fate::DeadLetter(letter) => {
                // An unreadable message has no messages of its own to settle.
                let messages = match &letter {
                    DeadLetter::Job(job) => Some((
                        job.route,
                        job.region,
                        entries(
                            job,
                            vec![
                                MessageOutcome::DeadLettered {
                                    reason: letter.reason().to_owned(),
                                    endpoint: job.endpoint.as_str(),
                                };
                                job.message_ids.len()
                            ],
                        ),
                    )),
                    DeadLetter::Unreadable(u) => {
                        tracing::warn!(request_id, reason = %Capped::text(&u.dead_letter_reason), bytes = u.bytes, sha1 = %u.sha1, "dead-lettered an unreadable message");
                        None
                    }
                };
                if self
                    .send(QueueKind::DeadLetter, letter.bodies(), request_id)
                    .await
                    .is_err()
                {
                    return false;
                }
                if let Some((route, region, entries)) = messages {
                    self.settle(
                        Part {
                            request_id,
                            route,
                            region,
                            entries,
                            unread: 0,
                            left: Vec::new(),
                            keep: Keep::Nothing,
                            deleted_users: None,
                            deletion_jobs: &[],
                            deadline,
                        },
                        measured,
                    )
                    .await;
                }
                true
            }
        }
    }

    /// Writes bodies to a queue at once (no delay); logs a refusal.
    async fn send(
        &self,
        kind: QueueKind,
        bodies: Vec<String>,
        request_id: &str,
    ) -> Result<usize, RedeliverError> {
        let durable = self
            .durable()
            .ok_or(QueueError::NotConfigured(kind.name()))?;
        let outgoing = bodies
            .into_iter()
            .map(|body| Outgoing {
                body,
                delay: Duration::ZERO,
            })
            .collect();
        durable.queues.send(kind, outgoing).await.map_err(|e| {
            tracing::error!(request_id, error = %e, "redeliver: the queue refused a write; the record is handed out again");
            e.into()
        })
    }
}

/// A job's messages with their outcomes.
fn entries(job: &Job, outcomes: Vec<MessageOutcome>) -> Vec<Entry> {
    job.message_ids
        .iter()
        .zip(outcomes)
        .enumerate()
        .map(|(index, (id, outcome))| Entry {
            index,
            message_id: id.clone(),
            outcome,
        })
        .collect()
}

/// For a deletion job, the user id each message asked to delete.
fn deleted_users(job: &Job) -> Option<Vec<Option<String>>> {
    if job.endpoint != Endpoint::Deletion {
        return None;
    }
    let mut users = vec![None; job.message_ids.len()];
    for item in &job.items {
        if let Some(slot) = users.get_mut(item.message) {
            *slot = item.user_id.clone();
        }
    }
    Some(users)
}

/// Why a job gives up, if it does: too old, or tried too often.
fn expired(job: &Job, config: &QueueConfig, now: u64) -> Option<Reason> {
    let age = job.age(now);
    let too_old = age > config.max_age;
    let too_often = config.max_attempts.is_some_and(|max| job.attempts >= max);
    (too_old || too_often).then(|| Reason::GaveUp {
        attempts: job.attempts,
        age_seconds: age.as_secs(),
        last_reason: job.last_reason.clone(),
    })
}

fn response(failed: Vec<String>) -> SqsBatchResponse {
    let mut r = SqsBatchResponse::default();
    r.batch_item_failures = failed
        .into_iter()
        .map(|id| {
            let mut f = BatchItemFailure::default();
            f.item_identifier = id;
            f
        })
        .collect();
    r
}

/// The local runner's stand-in for Lambda's SQS event source: takes batches from the
/// in-process queues, runs them through the redeliver function, deletes what it handled and
/// leaves the failures for their retry. Runs until the process ends. `visibility` is the
/// queue's visibility timeout: how long a failed record that set no backoff of its own stays
/// hidden.
pub async fn consume_memory_queues(
    function: Arc<Function>,
    queues: Arc<MemoryQueues>,
    visibility: Duration,
) {
    debug_assert_eq!(function.config.kind, Kind::Redeliver);
    loop {
        let mut idle = true;
        for (kind, max) in [(QueueKind::Deletion, 1), (QueueKind::Delivery, 10)] {
            let received = queues.receive(kind, max, visibility);
            if received.is_empty() {
                continue;
            }
            idle = false;
            let records = received
                .iter()
                .map(|r| Record::from_memory(kind, r))
                .collect();
            let deadline = Instant::now() + Duration::from_secs(30);
            let response = function.redeliver(records, deadline, "local").await;
            for r in &received {
                let failed = response
                    .batch_item_failures
                    .iter()
                    .any(|f| f.item_identifier == r.receipt);
                if !failed {
                    queues.delete(kind, &r.receipt);
                }
            }
        }
        if idle {
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
}
