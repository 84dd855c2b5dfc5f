//! One function's request handling, in one direction:
//!
//! 1. **keys** — the ingest secret (cached; never fetched past the deadline);
//! 2. **authenticate** — works out the signed bytes and returns the messages (a credential that
//!    does not match makes the secret be read again first, so a rotation is never refused);
//! 3. **plan** — each message on its own becomes items to send, or its final outcome;
//! 4. **deliver** — all items at once, every endpoint independently, until the deadline;
//! 5. **reply** — each message's outcome written once, then the answer to Segment.
//!
//! The deletions route adds its secret key at step 2 and its audit lines at step 5 (see
//! `deletions`); its `GET` lists deletion jobs instead.

use std::collections::HashSet;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amplitude_client::{AmplitudeClient, Credentials, Item, Outcome, Report, RetryCause};
use lambda_runtime::{Diagnostic, LambdaEvent};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::time::Instant;

use crate::auth::{AuthConfig, AuthError, Presented};
use crate::aws::AwsEnv;
use crate::body::{self, Messages};
use crate::config::{ConfigError, FunctionConfig, QueueConfig, Route};
use crate::deletions;
use crate::error::RequestError;
use crate::inbound::{Inbound, LambdaRequest, Source};
use crate::metrics;
use crate::planning::{self, Decision, Planned};
use crate::queue::{QueueKind, Queues, SqsQueues, job};
use crate::reply::{Entry, LambdaResponse, MessageOutcome, RejectedBy, Reply};
use crate::secrets::{IngestKeys, SecretCache, SecretError, SecretId, SecretSource};

/// Larger bodies are refused with 413 (a synchronous Lambda invocation carries at most 6 MB).
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
/// Time kept back from the Lambda deadline for answering.
const DEADLINE_MARGIN: Duration = Duration::from_millis(300);
/// After a credential does not match, the secret is read again at most this often per
/// instance (a rotation is picked up; forged requests cannot hammer Secrets Manager).
const REREAD_AFTER: Duration = Duration::from_secs(30);
/// How many messageIds a log line about a refused request names.
const FIRST_IDS: usize = 5;
/// In durable mode, the part of the response budget kept for writing to the queue (an SQS
/// `SendMessageBatch` takes tens of milliseconds) ...
const QUEUE_RESERVE: Duration = Duration::from_millis(500);
/// ... plus this much per megabyte of items, for building and compressing the jobs (about
/// 40 ms per MB measured; the rest is margin for a slower Lambda CPU).
const QUEUE_RESERVE_PER_MB: Duration = Duration::from_millis(100);

/// A ready function: configuration, one Amplitude client, the secret cache, and in durable
/// mode the queues.
pub struct Function {
    pub config: FunctionConfig,
    pub(crate) client: AmplitudeClient,
    pub(crate) secrets: SecretCache,
    pub(crate) queues: Option<Queues>,
    pub(crate) metrics: metrics::Sink,
}

impl Function {
    pub fn new(config: FunctionConfig, source: SecretSource) -> Result<Self, ConfigError> {
        let client =
            AmplitudeClient::new(config.client.clone()).map_err(|e| ConfigError::Invalid {
                name: "AMPLITUDE_BASE_URL",
                reason: e.to_string(),
            })?;
        let secrets = SecretCache::new(source, config.secret_ttl);
        let metrics = metrics::Sink::Emf {
            namespace: config.metrics_namespace.clone(),
        };
        Ok(Function {
            config,
            client,
            secrets,
            queues: None,
            metrics,
        })
    }

    /// Where the invocations' metrics go (EMF lines on standard output unless told otherwise).
    pub fn with_metrics(mut self, sink: metrics::Sink) -> Self {
        self.metrics = sink;
        self
    }

    /// The queues of durable mode (used when the configuration names a delivery queue).
    pub fn with_queues(mut self, queues: Queues) -> Self {
        self.queues = Some(queues);
        self
    }

    /// Durable mode: the queues and their settings, when both are there.
    pub(crate) fn durable(&self) -> Option<(&Queues, &QueueConfig)> {
        self.queues.as_ref().zip(self.config.queue.as_ref())
    }

    /// The deployed function: configuration from the environment, secrets from Secrets Manager.
    pub async fn from_env(route: Route) -> Result<Self, ConfigError> {
        let config = FunctionConfig::from_env(route)?;
        let aws = AwsEnv::from_env()?;
        let queues = config.queue.as_ref().map(|q| {
            Queues::Sqs(std::sync::Arc::new(SqsQueues::new(
                aws.sqs(),
                q.delivery.clone(),
                q.deletion.clone(),
                q.dead_letter.clone(),
            )))
        });
        let function = Self::new(config, SecretSource::SecretsManager(aws.secrets_manager()))?;
        Ok(match queues {
            Some(q) => function.with_queues(q),
            None => function,
        })
    }

    /// The Lambda entry point.
    pub async fn invoke(&self, event: LambdaEvent<Value>) -> Result<LambdaResponse, Diagnostic> {
        let deadline = self.deadline(event.context.deadline);
        let request_id = event.context.request_id;
        let request = match LambdaRequest::from_payload(event.payload) {
            Ok(r) => r,
            Err(e) => {
                return RequestError::from(e)
                    .reply(&request_id)
                    .into_response(Source::HttpApi);
            }
        };
        let source = request.source();
        let reply = match Inbound::try_from(request) {
            Ok(inbound) => self.handle(inbound, deadline, &request_id).await,
            Err(e) => RequestError::from(e).reply(&request_id),
        };
        reply.into_response(source)
    }

    /// The smaller of the response budget and the Lambda's remaining time less a margin (the
    /// redeliver function answers no one waiting: all its remaining time).
    pub(crate) fn deadline(&self, lambda_deadline_ms: u64) -> Instant {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let remaining = Duration::from_millis(lambda_deadline_ms.saturating_sub(now_ms))
            .saturating_sub(DEADLINE_MARGIN);
        Instant::now()
            + match self.config.route {
                Route::Redeliver => remaining,
                _ => self.config.response_budget.min(remaining),
            }
    }

    /// Handles one request and logs one line about it.
    pub async fn handle(&self, inbound: Inbound, deadline: Instant, request_id: &str) -> Reply {
        let started = Instant::now();
        let mut measured = metrics::Invocation::new(self.config.route.name());
        // Boxed: the nested delivery futures are too deep for the compiler's layout limit.
        let processed = Box::pin(self.process(&inbound, deadline, request_id, &mut measured));
        let reply = match processed.await {
            Ok(reply) => reply,
            Err(e) => {
                if e.status().is_server_error() {
                    tracing::error!(request_id, route = self.config.route.path(), error = %e, "request failed");
                }
                e.reply(request_id)
            }
        };
        let c = reply.counts();
        tracing::info!(
            request_id,
            route = self.config.route.path(),
            source = ?inbound.source,
            gateway_request_id = inbound.gateway_request_id.as_deref(),
            sender_request_id = inbound.sender_request_id(),
            status = reply.status.as_u16(),
            received = c.received,
            delivered = c.delivered,
            skipped = c.skipped,
            rejected = c.rejected,
            unsupported = c.unsupported,
            retryable = c.retryable,
            queued = c.queued,
            duration_ms = started.elapsed().as_millis() as u64,
            error = reply.body.error.as_deref(),
            "request handled"
        );
        if self.config.log_payloads {
            // At INFO, so the default Lambda log level shows them (debugging only: payloads
            // carry personal data).
            let reply_text = serde_json::to_string(&reply.body).unwrap_or_default();
            tracing::info!(request_id, body = %String::from_utf8_lossy(&inbound.body), reply = %reply_text, "payloads");
        }
        measured.duration = started.elapsed();
        self.metrics.record(&measured);
        reply
    }

    async fn process(
        &self,
        inbound: &Inbound,
        deadline: Instant,
        request_id: &str,
        measured: &mut metrics::Invocation,
    ) -> Result<Reply, RequestError> {
        if inbound.body.len() > MAX_BODY_BYTES {
            return Err(RequestError::TooLarge);
        }
        let route = self.config.route;
        if route == Route::Deletions && inbound.is_get() {
            let keys = self
                .secrets
                .ingest(&self.config.ingest_secret, deadline)
                .await?;
            return self
                .list_deletion_jobs(inbound, keys.api_key.expose_secret(), deadline)
                .await;
        }
        let (keys, messages) = self.authenticate(inbound, deadline).await?;
        let api_key = keys.api_key.expose_secret();
        let credentials = match route {
            Route::Deletions => self.deletion_credentials(api_key, deadline).await?,
            _ => Credentials::new(api_key),
        };

        let mut planned: Vec<Planned> = messages
            .items
            .iter()
            .map(|text| planning::decide(route, &self.config.settings, text))
            .collect();
        // The items of every message to send, numbered by the message's place among them.
        let mut items = Vec::new();
        let mut sent_ids = Vec::new();
        for p in &mut planned {
            if let Decision::Send(own) = &mut p.decision {
                own.iter_mut()
                    .for_each(|item| item.message = sent_ids.len());
                items.append(own);
                sent_ids.push(p.message_id.clone());
            }
        }
        let region = self.config.settings.region;
        let durable_deletions = route == Route::Deletions && self.durable().is_some();
        let report = if durable_deletions {
            // In durable mode deletions go through the FIFO deletion queue, whose one consumer
            // keeps Amplitude's one request per second across every instance.
            Report::held(items, sent_ids.len(), DELETIONS_QUEUED)
        } else {
            // Durable mode stops delivering early enough to write what is left to the queue.
            let deliver_until = match self.durable() {
                Some(_) => deadline
                    .checked_sub(queue_reserve(&items))
                    .unwrap_or(deadline)
                    .max(Instant::now()),
                None => deadline,
            };
            self.client
                .deliver_items(items, sent_ids.len(), region, &credentials, deliver_until)
                .await
        };
        let attempts = u32::from(!durable_deletions);
        let queued = self
            .keep(&report, &sent_ids, attempts, deadline, request_id)
            .await;
        if let Some(reason) = &report.credentials_refused {
            tracing::error!(
                request_id,
                route = route.path(),
                reason,
                "Amplitude refused the credentials; the secrets are read again on the next request"
            );
            self.forget_keys();
        }
        let user_ids: Vec<Option<String>> = planned.iter().map(|p| p.user_id.clone()).collect();
        let entries = entries(planned, &report, &queued);
        log_outcomes(request_id, route, &entries);
        measured.count_entries(&entries);
        measured.count_requests(&report);
        if route == Route::Deletions {
            deletions::audit(&user_ids, &entries, &report.deletion_jobs);
        }
        let jobs = (route == Route::Deletions).then_some(report.deletion_jobs);
        Ok(Reply::for_entries(entries, jobs))
    }

    /// Durable mode: puts what the delivery left undelivered into the delivery queue, as jobs.
    /// Returns the (sent) messages now kept there; on a queue error, none: they stay retryable
    /// and Segment is told to retry, as nothing is acknowledged that is not stored.
    async fn keep(
        &self,
        report: &Report,
        message_ids: &[Option<String>],
        attempts: u32,
        deadline: Instant,
        request_id: &str,
    ) -> HashSet<usize> {
        let Some((queues, queue)) = self.durable() else {
            return HashSet::new();
        };
        if report.undelivered.is_empty() {
            return HashSet::new();
        }
        let route = self.config.route;
        let jobs = job::jobs_from(
            &report.undelivered,
            message_ids,
            route.path(),
            self.config.settings.region,
            attempts,
            job::now_ms(),
        );
        let outgoing = queue.messages(jobs, QueueKind::Delivery);
        let messages: HashSet<usize> = report.undelivered.iter().map(|u| u.item.message).collect();
        let jobs = outgoing.len();
        let sent = tokio::time::timeout_at(deadline, queues.send(QueueKind::Delivery, outgoing))
            .await
            .unwrap_or_else(|_| {
                Err(crate::queue::QueueError::Refused {
                    queue: QueueKind::Delivery.name(),
                    reason: "no answer before the response deadline".into(),
                })
            });
        match sent {
            Ok(calls) => {
                tracing::info!(
                    request_id,
                    route = route.path(),
                    messages = messages.len(),
                    items = report.undelivered.len(),
                    jobs,
                    calls,
                    "kept in the delivery queue"
                );
                messages
            }
            Err(e) => {
                tracing::error!(request_id, route = route.path(), error = %e, "could not keep undelivered messages in the queue; Segment is told to retry");
                HashSet::new()
            }
        }
    }

    /// The ingest keys and the request's messages, once its credentials passed. A direct
    /// invocation is authenticated by IAM.
    async fn authenticate(
        &self,
        inbound: &Inbound,
        deadline: Instant,
    ) -> Result<(IngestKeys, Messages), RequestError> {
        let id = &self.config.ingest_secret;
        if inbound.source == Source::Direct {
            let keys = self.secrets.ingest(id, deadline).await?;
            return Ok((keys, body::split(&inbound.body)?));
        }
        // An unauthenticated caller learns nothing about the body: a body that does not parse
        // is checked as signed whole, and only an authenticated one hears it is malformed.
        let messages = body::split(&inbound.body);
        let (signed, events, covers) = match &messages {
            Ok(m) => (
                m.signed_bytes(&inbound.body),
                m.items.len(),
                m.signed == body::Signed::WholeBody,
            ),
            Err(_) => (inbound.body.as_slice(), 1, true),
        };
        let header = |name: &str| inbound.header(name);
        let presented = Presented {
            header: &header,
            signed,
            events,
            signature_covers_body: covers,
        };
        let check = |keys: &IngestKeys| {
            AuthConfig {
                shared_secrets: &keys.webhook_secrets,
                bearer_tokens: &keys.bearer_tokens,
                allow_unauthenticated: self.config.allow_unauthenticated,
                allow_signed_batches: self.config.allow_signed_batches,
            }
            .check(&presented)
        };
        let keys = self.checked(id, deadline, IngestKeys::parse, check).await?;
        Ok((keys, messages?))
    }

    /// Reads a secret and checks the request's credentials against it. On a mismatch the
    /// secret is read again (at most once per [`REREAD_AFTER`] per instance) before the request
    /// is refused, so a rotation never causes a burst of 401s, which Segment drops.
    pub(crate) async fn checked<K>(
        &self,
        id: &SecretId,
        deadline: Instant,
        parse: fn(&SecretId, &str) -> Result<K, SecretError>,
        check: impl Fn(&K) -> Result<(), AuthError>,
    ) -> Result<K, RequestError> {
        let keys = parse(id, &self.secrets.get(id, deadline).await?)?;
        match check(&keys) {
            Ok(()) => Ok(keys),
            Err(e @ AuthError::NotConfigured) => Err(e.into()),
            Err(e) if self.secrets.allow_reread(id, REREAD_AFTER) => {
                tracing::info!(secret = %id, error = %e, "credential mismatch: reading the secret again");
                let keys = parse(id, &self.secrets.get(id, deadline).await?)?;
                check(&keys)?;
                Ok(keys)
            }
            Err(e) => Err(e.into()),
        }
    }

    /// Forgets the cached keys so the next request reads them again (after Amplitude refused
    /// them).
    pub(crate) fn forget_keys(&self) {
        self.secrets.invalidate(&self.config.ingest_secret);
        if let Some(id) = &self.config.privacy_secret {
            self.secrets.invalidate(id);
        }
    }
}

/// Why deletions were not sent at once in durable mode.
const DELETIONS_QUEUED: &str = "deletions go through the deletion queue (one request per second)";

/// Each message's outcome, written once: decided at planning, or by the delivery (and the
/// queue, which turns a retryable message into a queued one).
fn entries(planned: Vec<Planned>, report: &Report, queued: &HashSet<usize>) -> Vec<Entry> {
    let mut delivered = report.outcomes.iter().enumerate();
    planned
        .into_iter()
        .enumerate()
        .map(|(index, p)| {
            let outcome = match p.decision {
                Decision::Send(_) => match delivered.next() {
                    Some((k, Outcome::Retryable { reason, .. })) if queued.contains(&k) => {
                        MessageOutcome::Queued {
                            reason: reason.clone(),
                        }
                    }
                    Some((k, Outcome::Rejected { reason })) => MessageOutcome::Rejected {
                        by: RejectedBy::Amplitude,
                        reason: reason.clone(),
                        endpoint: report
                            .rejections
                            .iter()
                            .find(|r| r.message == k)
                            .map(|r| r.endpoint.as_str()),
                    },
                    Some((_, o)) => o.clone().into(),
                    None => MessageOutcome::Retryable {
                        reason: "not sent before the deadline".into(),
                        cause: RetryCause::Transient,
                    },
                },
                Decision::Skip(reason) => MessageOutcome::Skipped { reason },
                Decision::Reject(reason) => MessageOutcome::Rejected {
                    by: RejectedBy::Mapping,
                    reason,
                    endpoint: None,
                },
                Decision::Unsupported(reason) => MessageOutcome::Unsupported { reason },
            };
            Entry {
                index,
                message_id: p.message_id,
                outcome,
            }
        })
        .collect()
}

/// What the operator must see: each rejection with its messageId and reason (WARN), and
/// messages kept back because Amplitude refused the request or the configuration (ERROR, with
/// their count and the first messageIds). Never keys or payloads.
fn log_outcomes(request_id: &str, route: Route, entries: &[Entry]) {
    for e in entries {
        if let MessageOutcome::Rejected {
            by,
            reason,
            endpoint,
        } = &e.outcome
        {
            tracing::warn!(
                request_id,
                route = route.path(),
                endpoint = endpoint.unwrap_or("none"),
                message_id = e.message_id.as_deref().unwrap_or("none"),
                by = ?by,
                reason = %reason,
                "message rejected"
            );
        }
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
        let ids: Vec<&str> = refused
            .iter()
            .take(FIRST_IDS)
            .filter_map(|e| e.message_id.as_deref())
            .collect();
        tracing::error!(
            request_id,
            route = route.path(),
            count = refused.len(),
            first_message_ids = ?ids,
            reason = first.outcome.reason().unwrap_or_default(),
            "Amplitude refused the request or the configuration; the messages are kept for a retry"
        );
    }
}

/// The time durable mode keeps for writing `items` to the queue, should they all be left.
fn queue_reserve(items: &[Item]) -> Duration {
    let bytes: usize = items.iter().map(|i| i.wire.len()).sum();
    QUEUE_RESERVE + QUEUE_RESERVE_PER_MB.mul_f64(bytes as f64 / 1e6)
}
