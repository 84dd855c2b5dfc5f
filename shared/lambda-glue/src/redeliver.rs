//! The redeliver function: delivery jobs from the queues, sent with the same client and retry
//! policy as the ingest functions.
//!
//! For each job of an SQS batch:
//! * delivered (or refused item by item, logged with messageId and reason): done;
//! * partly delivered: what is left becomes a new job (attempts + 1, with backoff) and the old
//!   one is done;
//! * not delivered at all: it stays, made visible again after an exponential backoff (at least
//!   the delay Amplitude asks of throttled items), and is reported as a batch item failure;
//! * too old or tried too often: moved to the dead-letter queue with its reason;
//! * a deletion job on the delivery queue: forwarded to the FIFO deletion queue, whose one
//!   consumer keeps Amplitude's one deletion request per second across instances;
//! * unreadable: moved to the dead-letter queue as it is, with the reason.
//!
//! A job is only done once what is left of it is stored again; if the queue refuses that, the
//! job is reported as failed and SQS hands it out again (a resend is deduplicated by
//! `insert_id`; deletions and identifications without increments are idempotent).

use std::sync::Arc;
use std::time::Duration;

use amplitude_client::{Credentials, Outcome, Report};
use aws_lambda_events::sqs::{BatchItemFailure, SqsBatchResponse, SqsEvent, SqsMessage};
use lambda_runtime::{Diagnostic, LambdaEvent};
use mapping::{Endpoint, Region};
use secrecy::ExposeSecret;
use tokio::time::Instant;

use crate::config::{QueueConfig, Route};
use crate::function::Function;
use crate::metrics;
use crate::queue::{Job, MemoryQueues, Outgoing, QueueKind, Queues, job};

/// One job taken from a queue.
struct Taken {
    /// The record's `messageId`: what a batch item failure names.
    id: String,
    receipt: String,
    queue: QueueKind,
    job: Job,
}

/// What became of a record.
enum Fate {
    Done,
    Failed,
}

impl Function {
    /// The Lambda entry point of the redeliver function.
    pub async fn redeliver_event(
        &self,
        event: LambdaEvent<SqsEvent>,
    ) -> Result<SqsBatchResponse, Diagnostic> {
        let deadline = self.deadline(event.context.deadline);
        let request_id = event.context.request_id;
        let records = event.payload.records.len();
        let started = Instant::now();
        // Boxed: the nested delivery futures are too deep for the compiler's layout limit.
        let response = Box::pin(self.redeliver(event.payload.records, deadline, &request_id)).await;
        tracing::info!(
            request_id,
            route = self.config.route.path(),
            records,
            failed = response.batch_item_failures.len(),
            duration_ms = started.elapsed().as_millis() as u64,
            "batch handled"
        );
        Ok(response)
    }

    /// Handles one SQS batch: returns the records to hand out again.
    pub async fn redeliver(
        &self,
        records: Vec<SqsMessage>,
        deadline: Instant,
        request_id: &str,
    ) -> SqsBatchResponse {
        let started = Instant::now();
        let mut measured = metrics::Invocation::new(self.config.route.name());
        let response = self
            .redeliver_measured(records, deadline, request_id, &mut measured)
            .await;
        measured.duration = started.elapsed();
        self.metrics.record(&measured);
        response
    }

    async fn redeliver_measured(
        &self,
        records: Vec<SqsMessage>,
        deadline: Instant,
        request_id: &str,
        measured: &mut metrics::Invocation,
    ) -> SqsBatchResponse {
        let mut failed: Vec<String> = Vec::new();
        let Some((queues, config)) = self.durable() else {
            tracing::error!(request_id, "redeliver: no queues are configured");
            failed.extend(records.into_iter().filter_map(|r| r.message_id));
            return response(failed);
        };
        let now = job::now_ms();
        let mut work = Vec::new();
        for record in records {
            let id = record.message_id.clone().unwrap_or_default();
            match self
                .take(queues, config, record, now, request_id, measured)
                .await
            {
                Ok(Some(taken)) => work.push(taken),
                Ok(None) => {}
                Err(()) => failed.push(id),
            }
        }
        let deletions = work.iter().any(|t| t.job.endpoint == Endpoint::Deletion);
        for region in [Region::Standard, Region::Eu] {
            let (jobs, rest): (Vec<Taken>, Vec<Taken>) =
                work.into_iter().partition(|t| t.job.region == region);
            work = rest;
            if !jobs.is_empty() {
                let fates = self
                    .deliver_jobs(queues, config, &jobs, deadline, request_id, measured)
                    .await;
                for (t, fate) in jobs.iter().zip(fates) {
                    if matches!(fate, Fate::Failed) {
                        failed.push(t.id.clone());
                    }
                }
            }
        }
        if deletions {
            // The next batch of the FIFO queue may start at once, maybe in another instance:
            // hand over only when Amplitude's one-per-second spacing is kept.
            self.client.wait_for_deletion_spacing().await;
        }
        response(failed)
    }

    /// Reads a record: a job to deliver, or `None` when it was dealt with here (forwarded,
    /// dead-lettered). `Err` when the queue refused what had to be written.
    async fn take(
        &self,
        queues: &Queues,
        config: &QueueConfig,
        record: SqsMessage,
        now: u64,
        request_id: &str,
        measured: &mut metrics::Invocation,
    ) -> Result<Option<Taken>, ()> {
        let body = record.body.unwrap_or_default();
        let queue = if record
            .event_source_arn
            .as_deref()
            .is_some_and(|arn| arn.ends_with(".fifo"))
        {
            QueueKind::Deletion
        } else {
            QueueKind::Delivery
        };
        let receives: u32 = record
            .attributes
            .get("ApproximateReceiveCount")
            .and_then(|n| n.parse().ok())
            .unwrap_or(1);
        let mut job = match Job::decode(&body) {
            Ok(job) => job,
            Err(e) => {
                let reason = format!("unreadable job: {e}");
                tracing::warn!(request_id, reason = %reason, "dead-lettered");
                let wrapped = serde_json::json!({"unreadable": true, "dead_letter_reason": reason, "body": body});
                return send(
                    queues,
                    QueueKind::DeadLetter,
                    vec![now_out(wrapped.to_string())],
                )
                .await
                .map(|_| None);
            }
        };
        if job.endpoint == Endpoint::Deletion
            && queue == QueueKind::Delivery
            && queues.has(QueueKind::Deletion)
        {
            return send(queues, QueueKind::Deletion, vec![now_out(body)])
                .await
                .map(|_| None);
        }
        if job.dead_letter_reason.take().is_some() {
            // Replayed from the dead-letter queue (SQS's redrive, after a fix): a fresh start.
            tracing::info!(request_id, route = %job.route, endpoint = job.endpoint.as_str(), messages = job.message_ids.len(), "replayed from the dead-letter queue");
            job.attempts = 0;
            job.first_seen_ms = now;
        }
        // Retries in place leave the body as it was: SQS counts them.
        job.attempts += receives.saturating_sub(1);
        if let Some(reason) = expired(&job, config, now) {
            measured.messages.dead_lettered += job.message_ids.len() as u64;
            return self
                .dead_letter(queues, job, reason, request_id)
                .await
                .map(|_| None);
        }
        Ok(Some(Taken {
            id: record.message_id.unwrap_or_default(),
            receipt: record.receipt_handle.unwrap_or_default(),
            queue,
            job,
        }))
    }

    /// Delivers the jobs of one region together, then settles each.
    async fn deliver_jobs(
        &self,
        queues: &Queues,
        config: &QueueConfig,
        jobs: &[Taken],
        deadline: Instant,
        request_id: &str,
        measured: &mut metrics::Invocation,
    ) -> Vec<Fate> {
        let region = jobs.first().map_or(Region::Standard, |t| t.job.region);
        let credentials = match self.job_credentials(jobs, deadline).await {
            Ok(c) => c,
            Err(reason) => {
                tracing::error!(request_id, reason = %reason, "redeliver: no keys; the jobs wait");
                let mut fates = Vec::new();
                for t in jobs {
                    let delay = config.delay(&t.job);
                    let _ = queues.retry_later(t.queue, &t.receipt, delay).await;
                    fates.push(Fate::Failed);
                }
                return fates;
            }
        };
        // One delivery for all the jobs: each job's messages follow the previous job's.
        let mut items = Vec::new();
        let mut starts = Vec::new();
        let mut messages = 0;
        for t in jobs {
            starts.push(messages);
            items.extend(t.job.client_items(messages));
            messages += t.job.message_ids.len();
        }
        let report = self
            .client
            .deliver_items(items, messages, region, &credentials, deadline)
            .await;
        if report.credentials_refused.is_some() {
            self.forget_keys();
        }
        measured.count_requests(&report);
        measured.count_outcomes(report.outcomes.iter());
        let mut fates = Vec::new();
        for (t, start) in jobs.iter().zip(starts) {
            fates.push(
                self.settle(queues, config, t, start, &report, request_id)
                    .await,
            );
        }
        fates
    }

    /// The keys the jobs need: the API key, and the secret key for deletions.
    async fn job_credentials(
        &self,
        jobs: &[Taken],
        deadline: Instant,
    ) -> Result<Credentials, String> {
        let keys = self
            .secrets
            .ingest(&self.config.ingest_secret, deadline)
            .await
            .map_err(|e| e.to_string())?;
        let api_key = keys.api_key.expose_secret();
        if jobs.iter().any(|t| t.job.endpoint == Endpoint::Deletion) {
            self.deletion_credentials(api_key, deadline)
                .await
                .map_err(|e| e.to_string())
        } else {
            Ok(Credentials::new(api_key))
        }
    }

    /// Settles one job after the delivery: done, a new job of what is left, or a retry in
    /// place.
    async fn settle(
        &self,
        queues: &Queues,
        config: &QueueConfig,
        t: &Taken,
        start: usize,
        report: &Report,
        request_id: &str,
    ) -> Fate {
        let job = &t.job;
        let own = start..start + job.message_ids.len();
        for (m, outcome) in report
            .outcomes
            .iter()
            .enumerate()
            .filter(|(m, _)| own.contains(m))
        {
            if let Outcome::Rejected { reason } = outcome {
                tracing::warn!(
                    request_id,
                    route = %job.route,
                    endpoint = job.endpoint.as_str(),
                    message_id = job.message_ids[m - start].as_deref().unwrap_or("none"),
                    reason = %reason,
                    "message rejected"
                );
            }
        }
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
        if job.endpoint == Endpoint::Deletion {
            let done = job
                .items
                .iter()
                .filter(|i| !left.iter().any(|l| l.item.wire == i.wire));
            crate::deletions::audit_users(
                done.filter_map(|i| i.user_id.as_deref()),
                &report.deletion_jobs,
                "requested",
            );
        }
        if left.is_empty() {
            return Fate::Done;
        }
        if left.len() == job.items.len() {
            // No progress: the job stays, visible again after its backoff.
            let mut waiting = job.clone();
            waiting.cause = left[0].cause;
            let delay = config.delay(&waiting);
            tracing::info!(request_id, endpoint = job.endpoint.as_str(), attempts = job.attempts, reason = %left[0].reason, delay_s = delay.as_secs(), "job not delivered; retried later");
            let _ = queues.retry_later(t.queue, &t.receipt, delay).await;
            return Fate::Failed;
        }
        let next = job::jobs_from(
            &left,
            &job.message_ids,
            &job.route,
            job.region,
            job.attempts + 1,
            job.first_seen_ms,
        );
        match send(queues, t.queue, config.messages(next, t.queue)).await {
            Ok(()) => Fate::Done,
            Err(()) => Fate::Failed,
        }
    }

    /// Moves a job to the dead-letter queue with its reason, logging each message.
    async fn dead_letter(
        &self,
        queues: &Queues,
        mut job: Job,
        reason: String,
        request_id: &str,
    ) -> Result<(), ()> {
        for id in &job.message_ids {
            tracing::warn!(
                request_id,
                route = %job.route,
                endpoint = job.endpoint.as_str(),
                message_id = id.as_deref().unwrap_or("none"),
                reason = %reason,
                "dead-lettered"
            );
        }
        job.dead_letter_reason = Some(reason);
        let bodies = job.bodies().into_iter().map(now_out).collect();
        send(queues, QueueKind::DeadLetter, bodies).await
    }
}

/// Why a job gives up, if it does: too old, or tried too often.
fn expired(job: &Job, config: &QueueConfig, now: u64) -> Option<String> {
    let age = job.age(now);
    let too_old = age > config.max_age;
    let too_often = config.max_attempts.is_some_and(|max| job.attempts >= max);
    (too_old || too_often).then(|| {
        format!(
            "gave up after {} attempts over {} s: {}",
            job.attempts,
            age.as_secs(),
            job.last_reason
        )
    })
}

fn now_out(body: String) -> Outgoing {
    Outgoing {
        body,
        delay: Duration::ZERO,
    }
}

async fn send(queues: &Queues, kind: QueueKind, messages: Vec<Outgoing>) -> Result<(), ()> {
    queues.send(kind, messages).await.map(|_| ()).map_err(|e| {
        tracing::error!(error = %e, "redeliver: the queue refused a write; the job is handed out again");
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
/// queue's visibility timeout: how long a failed record that set no backoff of its own (its
/// leftovers could not be stored) stays hidden.
pub async fn consume_memory_queues(
    function: Arc<Function>,
    queues: Arc<MemoryQueues>,
    visibility: Duration,
) {
    debug_assert_eq!(function.config.route, Route::Redeliver);
    loop {
        let mut idle = true;
        for (kind, max) in [(QueueKind::Deletion, 1), (QueueKind::Delivery, 10)] {
            let received = queues.receive(kind, max, visibility);
            if received.is_empty() {
                continue;
            }
            idle = false;
            let arn = match kind {
                QueueKind::Deletion => "arn:local:sqs:local:0:deletion.fifo",
                _ => "arn:local:sqs:local:0:delivery",
            };
            let records = received
                .iter()
                .map(|r| {
                    let mut m = SqsMessage::default();
                    m.message_id = Some(r.receipt.clone());
                    m.receipt_handle = Some(r.receipt.clone());
                    m.body = Some(r.body.clone());
                    m.event_source_arn = Some(arn.into());
                    m.attributes
                        .insert("ApproximateReceiveCount".into(), r.receives.to_string());
                    m
                })
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
