//! **The function pipeline.** What a function is ([`Kind`]), how it hands over what it could
//! not deliver ([`Mode`], decided once when it is built), and one request, read top to bottom:
//!
//! 1. **route** — the method decides the operation (`ingest::Route`'s table): deliver the body's
//!    messages, or, for `GET /deletions`, list Amplitude's deletion jobs; others get 405;
//! 2. **keys** — the ingest secret (cached; never fetched past the deadline);
//! 3. **authenticate** — the request's credentials against the keys (a credential that does
//!    not match makes the secret be read again first, so a rotation is never refused);
//! 4. **plan** — each message on its own becomes items to send, or its final outcome; with
//!    `sessionize` on, the events that need a session get one first (`delivery::sessions`);
//! 5. **deliver, or queue** — by the mode: *direct* delivers until the deadline; *durable*
//!    delivers until it must leave time to queue what is left; *queue first* (the deletions
//!    function in durable mode) queues every item at once;
//! 6. **settle** — the step the redeliver function shares (`delivery::settlement`): refused
//!    keys forgotten, rejections logged, what is left stored, messages counted, deletions
//!    audited;
//! 7. **reply** — the answer to Segment.
//!
//! The redeliver function (`durable::redeliver`) runs steps 5 and 6 on queued jobs.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use amplitude_client::AmplitudeClient;
use lambda_runtime::{Diagnostic, LambdaEvent};
use secrecy::ExposeSecret;
use serde_json::Value;
use sessions::{DynamoStore, SessionStore, Sessionizer};
use tokio::time::Instant;

use crate::delivery::recent_deletions::RecentDeletions;
use crate::delivery::settlement::{Keep, Part};
use crate::durable::{Queues, SqsQueues};
use crate::ingest::auth::{self, AuthConfig, AuthError, Presented};
use crate::ingest::body::{self, Messages};
use crate::ingest::error::RequestError;
use crate::ingest::inbound::{Inbound, LambdaRequest, Payload, Source};
use crate::ingest::reply::{LambdaResponse, Reply};
use crate::ingest::{Operation, Route};
use crate::ops::aws::AwsEnv;
use crate::ops::config::{ConfigError, FunctionConfig, QueueConfig};
use crate::ops::logging::Capped;
use crate::ops::metrics::{Invocation, Sink};
use crate::ops::secrets::{IngestKeys, SecretCache, SecretError, SecretId, SecretSource};

/// Larger bodies are refused with 413 (a synchronous Lambda invocation carries at most 6 MB).
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
/// Time kept back from the Lambda deadline for answering.
const DEADLINE_MARGIN: Duration = Duration::from_millis(300);

/// What a function is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Behind API Gateway, on one route.
    Ingest(Route),
    /// Fed delivery jobs by the queues.
    Redeliver,
}

impl Kind {
    /// The function's name in metrics (the `Route` dimension) and logs.
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ingest(route) => route.name(),
            Kind::Redeliver => "redeliver",
        }
    }
}

/// How a function hands over what it could not deliver.
pub(crate) enum Mode {
    /// No queue: what is not delivered in time is answered retryable (Segment retries).
    Direct,
    /// Deliver within the budget, minus the time to queue what is left; queue the rest.
    Durable(Durable),
    /// Queue every item at once, on the delivery queue: the deletions function in durable
    /// mode (the redeliver function forwards deletion jobs to the FIFO deletion queue, whose one
    /// consumer keeps Amplitude's one request per second across every instance).
    QueueFirst(Durable),
}

/// The queues of durable mode and their settings.
pub(crate) struct Durable {
    pub queues: Queues,
    pub config: QueueConfig,
}

/// A ready function: configuration, one Amplitude client, the secret cache, its mode and
/// where its metrics go.
pub struct Function {
    pub config: FunctionConfig,
    pub(crate) client: AmplitudeClient,
    pub(crate) secrets: SecretCache,
    pub(crate) mode: Mode,
    pub(crate) metrics: Sink,
    /// The sessions stage (spec §18): the events function with `sessionize` on.
    pub(crate) sessions: Option<Sessionizer>,
    /// Deletions Amplitude accepted lately (the deletions function in direct mode).
    pub(crate) recent_deletions: RecentDeletions,
}

/// Builds a [`Function`] from its environment variables (the names `template.yaml` sets) and
/// its secrets; the local runner, the tests and the benchmarks add queues, a metrics sink and
/// adjustments of the validated configuration.
pub struct Builder {
    kind: Kind,
    vars: HashMap<String, String>,
    secrets: SecretSource,
    queues: Option<Queues>,
    metrics: Option<Sink>,
    sessions: Option<Arc<dyn SessionStore>>,
    adjust: Vec<Adjustment>,
}

/// A change to a function's configuration once it is read.
type Adjustment = Box<dyn FnOnce(&mut FunctionConfig)>;

impl Builder {
    /// Sets an environment variable.
    pub fn var(mut self, name: &str, value: impl Into<String>) -> Self {
        self.vars.insert(name.to_owned(), value.into());
        self
    }

    /// Sets environment variables.
    pub fn vars<'v>(mut self, vars: impl IntoIterator<Item = (&'v str, String)>) -> Self {
        self.vars
            .extend(vars.into_iter().map(|(k, v)| (k.to_owned(), v)));
        self
    }

    /// Where the secrets come from (in memory unless set).
    pub fn secrets(mut self, secrets: SecretSource) -> Self {
        self.secrets = secrets;
        self
    }

    /// Puts a secret (its JSON text) in the in-memory secrets.
    pub fn secret(self, id: &str, text: impl AsRef<str>) -> Self {
        self.secrets.put(id, text.as_ref());
        self
    }

    /// The queues of durable mode (used when the configuration names a delivery queue).
    pub fn queues(mut self, queues: Queues) -> Self {
        self.queues = Some(queues);
        self
    }

    /// The sessions' store (used by the events function when `sessionize` is on).
    pub fn sessions(mut self, store: Arc<dyn SessionStore>) -> Self {
        self.sessions = Some(store);
        self
    }

    /// Where the invocations' metrics go (EMF lines on standard output unless set).
    pub fn metrics(mut self, sink: Sink) -> Self {
        self.metrics = Some(sink);
        self
    }

    /// Adjusts the configuration once it is read (timings in tests).
    pub fn configure(mut self, adjust: impl FnOnce(&mut FunctionConfig) + 'static) -> Self {
        self.adjust.push(Box::new(adjust));
        self
    }

    pub fn build(self) -> Result<Function, ConfigError> {
        let mut config = FunctionConfig::from_vars(self.kind, |name| self.vars.get(name).cloned())?;
        for adjust in self.adjust {
            adjust(&mut config);
        }
        Function::assemble(
            config,
            self.secrets,
            self.queues,
            self.metrics,
            self.sessions,
        )
    }
}

impl Function {
    /// A function of this kind, built from variables and secrets given one by one.
    pub fn builder(kind: Kind) -> Builder {
        Builder {
            kind,
            vars: HashMap::new(),
            secrets: SecretSource::fixed([]),
            queues: None,
            metrics: None,
            sessions: None,
            adjust: Vec::new(),
        }
    }

    /// The deployed function: configuration from the environment, secrets from Secrets
    /// Manager, the queues on SQS.
    pub async fn from_env(kind: Kind) -> Result<Self, ConfigError> {
        let config = FunctionConfig::from_env(kind)?;
        let aws = AwsEnv::from_env()?;
        let queues = config.queue.as_ref().map(|q| {
            Queues::Sqs(std::sync::Arc::new(SqsQueues::new(
                aws.sqs(),
                q.delivery.clone(),
                q.deletion.clone(),
                q.dead_letter.clone(),
            )))
        });
        let secrets = SecretSource::SecretsManager(aws.secrets_manager());
        let sessions = config.sessions_table.as_ref().map(|table| {
            Arc::new(DynamoStore::new(aws.dynamodb(), table.clone())) as Arc<dyn SessionStore>
        });
        Self::assemble(config, secrets, queues, None, sessions)
    }

    /// The function, with its mode decided once: durable when it has queues and a queue
    /// configuration, queue-first for the privacy route in durable mode, direct otherwise;
    /// and the sessions stage for the events function when `sessionize` is on, which then
    /// needs a store.
    fn assemble(
        config: FunctionConfig,
        secrets: SecretSource,
        queues: Option<Queues>,
        metrics: Option<Sink>,
        sessions: Option<Arc<dyn SessionStore>>,
    ) -> Result<Self, ConfigError> {
        let sessions = match (config.kind, config.settings.sessionize, sessions) {
            (Kind::Ingest(Route::Events), true, Some(store)) => Some(Sessionizer::new(
                store,
                Duration::from_secs(u64::from(config.settings.session_timeout_minutes) * 60),
                config.sessions_budget,
            )),
            (Kind::Ingest(Route::Events), true, None) => {
                return Err(ConfigError::Invalid {
                    name: "SESSIONS_TABLE",
                    reason: "not set, and the settings turn `sessionize` on: the events \
                        function keeps the sessions' state there (the template's `Sessions` \
                        parameter)"
                        .into(),
                });
            }
            _ => None,
        };
        let client =
            AmplitudeClient::new(config.client.clone()).map_err(|e| ConfigError::Invalid {
                name: "AMPLITUDE_BASE_URL",
                reason: e.to_string(),
            })?;
        let mode = match (queues, config.queue.clone()) {
            (Some(queues), Some(queue)) => {
                let durable = Durable {
                    queues,
                    config: queue,
                };
                match config.kind {
                    Kind::Ingest(route) if route.is_privacy() => Mode::QueueFirst(durable),
                    _ => Mode::Durable(durable),
                }
            }
            _ if config.kind == Kind::Redeliver => {
                return Err(ConfigError::Missing("DELIVERY_QUEUE_URL"));
            }
            _ => Mode::Direct,
        };
        let metrics = metrics.unwrap_or_else(|| Sink::Emf {
            namespace: config.metrics_namespace.clone(),
        });
        Ok(Function {
            secrets: SecretCache::new(secrets, config.secret_ttl),
            config,
            client,
            mode,
            metrics,
            sessions,
            recent_deletions: RecentDeletions::default(),
        })
    }

    /// The queues and their settings, in durable and queue-first modes.
    pub(crate) fn durable(&self) -> Option<&Durable> {
        match &self.mode {
            Mode::Direct => None,
            Mode::Durable(d) | Mode::QueueFirst(d) => Some(d),
        }
    }

    /// The Lambda entry point of the ingest functions.
    pub async fn invoke(&self, event: LambdaEvent<Value>) -> Result<LambdaResponse, Diagnostic> {
        let deadline = self.deadline(event.context.deadline);
        let request_id = event.context.request_id;
        let request = LambdaRequest::from_payload(event.payload);
        let source = request
            .as_ref()
            .map_or(Source::HttpApi, LambdaRequest::source);
        let reply = match request.and_then(Inbound::try_from) {
            Ok(inbound) => {
                let body_len = inbound.body.len();
                let reply = self.handle(inbound, deadline, &request_id).await;
                // The request's values are gone: after a large one, their pages go back.
                crate::ops::memory::after_request(body_len);
                reply
            }
            Err(e) => self.refuse(&e.into(), &request_id),
        };
        reply.into_response(source)
    }

    /// The answer to a request that could not be read: one log line with the detail the
    /// answer leaves out (it could quote the caller's bytes).
    fn refuse(&self, error: &RequestError, request_id: &str) -> Reply {
        let reply = error.reply(request_id);
        tracing::warn!(
            request_id,
            route = self.config.kind.name(),
            status = reply.status.as_u16(),
            error = %error,
            detail = error.detail(),
            "request refused"
        );
        let mut measured = Invocation::new(self.config.kind.name());
        measured.status = Some(reply.status.as_u16());
        self.metrics.record(&measured);
        reply
    }

    /// The smaller of the response budget and the Lambda's remaining time less a margin (the
    /// redeliver function answers no one waiting: all its remaining time).
    pub(crate) fn deadline(&self, lambda_deadline_ms: u64) -> Instant {
        let remaining =
            Duration::from_millis(lambda_deadline_ms.saturating_sub(crate::ops::now_ms()))
                .saturating_sub(DEADLINE_MARGIN);
        Instant::now()
            + match self.config.kind {
                Kind::Redeliver => remaining,
                Kind::Ingest(_) => self.config.response_budget.min(remaining),
            }
    }

    /// Handles one request and logs one line about it.
    pub async fn handle(&self, inbound: Inbound, deadline: Instant, request_id: &str) -> Reply {
        let Kind::Ingest(route) = self.config.kind else {
            return RequestError::NoRoute.reply(request_id);
        };
        let started = Instant::now();
        let mut measured = Invocation::new(route.name());
        // Boxed: the nested delivery futures are too deep for the compiler's layout limit.
        let processed =
            Box::pin(self.process(route, &inbound, deadline, request_id, &mut measured));
        let reply = match processed.await {
            Ok(reply) => reply,
            Err(e) => {
                if e.status().is_server_error() {
                    tracing::error!(request_id, route = route.path(), error = %e, "request failed");
                }
                e.reply(request_id)
            }
        };
        let c = reply.counts();
        tracing::info!(
            request_id,
            route = route.path(),
            source = ?inbound.source,
            gateway_request_id = inbound.gateway_request_id.as_deref(),
            sender_request_id = inbound
                .sender_request_id()
                .map(|id| tracing::field::display(Capped::text(id))),
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
            tracing::info!(request_id, body = %String::from_utf8_lossy(inbound.body.as_bytes()), reply = %reply_text, "payloads");
        }
        measured.duration = started.elapsed();
        measured.status = Some(reply.status.as_u16());
        self.metrics.record(&measured);
        reply
    }

    /// Steps 1 to 7 (see the module docs).
    async fn process(
        &self,
        route: Route,
        inbound: &Inbound,
        deadline: Instant,
        request_id: &str,
        measured: &mut Invocation,
    ) -> Result<Reply, RequestError> {
        let operation = route
            .operation(&inbound.method)
            .ok_or(RequestError::MethodNotAllowed(route))?;
        if inbound.body.len() > MAX_BODY_BYTES {
            return Err(RequestError::TooLarge);
        }
        if operation == Operation::ListDeletionJobs {
            return self.list_deletion_jobs(inbound, deadline).await;
        }
        let (keys, messages) = self.authenticate(inbound, deadline).await?;
        let credentials = self
            .credentials(keys.api_key.expose_secret(), route.is_privacy(), deadline)
            .await?;
        let delivered = self
            .deliver_messages(
                route,
                &messages,
                &credentials,
                deadline,
                request_id,
                measured,
            )
            .await;
        let settled = self
            .settle(
                Part {
                    request_id,
                    route,
                    region: self.config.settings.region,
                    entries: delivered.entries,
                    unread: messages.unread,
                    left: Vec::new(),
                    keep: Keep::Nothing,
                    deleted_users: route.is_privacy().then_some(delivered.user_ids),
                    deletion_jobs: &delivered.deletion_jobs,
                    deadline,
                },
                measured,
            )
            .await;
        let jobs = route.is_privacy().then_some(delivered.deletion_jobs);
        Ok(Reply::for_entries(settled.entries, messages.unread, jobs))
    }

    /// The ingest keys and the request's messages, once its credentials passed. A direct
    /// invocation is authenticated by IAM.
    async fn authenticate<'b>(
        &self,
        inbound: &'b Inbound,
        deadline: Instant,
    ) -> Result<(IngestKeys, Messages<'b>), RequestError> {
        let id = &self.config.ingest_secret;
        if inbound.source == Source::Direct {
            let keys = self.secrets.ingest(id, deadline).await?;
            return Ok((keys, split(inbound)?));
        }
        // Credentials first, from the headers and the signed bytes found in place: an
        // unauthenticated caller costs no work on its body and learns nothing about it.
        let header = |name: &str| inbound.header(name);
        let presented = Presented {
            header: &header,
            body: inbound.body.as_bytes(),
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
        // A request with neither a bearer token (no Authorization header, another scheme, an
        // empty token) nor an X-Signature header can pass no secret, rotated or not: its
        // refusal is final, without reading the secret again or answering 503 (which Segment
        // would retry for hours). Unless unauthenticated requests are allowed, when an emptied
        // secret would let it pass.
        let no_credentials = !self.config.allow_unauthenticated
            && auth::bearer_token(&header).is_none()
            && header("x-signature").is_none();
        let keys = self
            .checked(id, deadline, IngestKeys::parse, check, no_credentials)
            .await?;
        Ok((keys, split(inbound)?))
    }

    /// Reads a secret and checks the request's credentials against it. A mismatch is only
    /// final against keys read after it arrived: the secret is read again (at most once per
    /// `secret_reread` per instance, so forged requests cannot hammer Secrets Manager) and the
    /// request checked again; when it was read again lately for another request, this one
    /// cannot be told from a rotation yet and is answered 503, which Segment retries — never
    /// 401, which Segment drops. A mismatch no rotation could mend (`final_mismatch`) is
    /// refused at once.
    pub(crate) async fn checked<K>(
        &self,
        id: &SecretId,
        deadline: Instant,
        parse: fn(&SecretId, &str) -> Result<K, SecretError>,
        check: impl Fn(&K) -> Result<(), AuthError>,
        final_mismatch: bool,
    ) -> Result<K, RequestError> {
        let keys = parse(id, &self.secrets.get(id, deadline).await?)?;
        match check(&keys) {
            Ok(()) => Ok(keys),
            Err(e @ AuthError::NotConfigured) => Err(e.into()),
            Err(e) if final_mismatch => Err(e.into()),
            Err(e) if self.secrets.allow_reread(id, self.config.secret_reread) => {
                tracing::info!(secret = %id, error = %e, "credential mismatch: reading the secret again");
                let keys = parse(id, &self.secrets.get(id, deadline).await?)?;
                check(&keys)?;
                Ok(keys)
            }
            Err(_) => Err(RequestError::CannotTellYet),
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

/// The request's messages (a text body is not checked for UTF-8 again).
fn split(inbound: &Inbound) -> Result<Messages<'_>, body::BodyError> {
    let messages = match &inbound.body {
        Payload::Text(text) => body::split_text(text),
        Payload::Bytes(bytes) => body::split(bytes),
    };
    // Only a body that is not JSON is blamed on its encoding: a gateway that decompresses
    // bodies (a REST API with compression on) passes them on with the header still there.
    let encoded = || {
        inbound
            .header("content-encoding")
            .map(str::trim)
            .is_some_and(|e| !e.is_empty() && !e.eq_ignore_ascii_case("identity"))
    };
    messages.map_err(|e| match e {
        body::BodyError::NotJson(_) if encoded() => body::BodyError::Encoded,
        e => e,
    })
}
