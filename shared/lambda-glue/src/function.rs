//! One function's request handling: parse → authenticate → map → deliver → respond.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use amplitude_client::AmplitudeClient;
use lambda_runtime::LambdaEvent;
use mapping::message::Message;
use mapping::{Plan, Rejection, Settings};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::time::Instant;

use crate::auth::AuthConfig;
use crate::body;
use crate::config::{ConfigError, FunctionConfig, Route};
use crate::inbound::{Inbound, Source};
use crate::reply::{Entry, Reply, Result as Res};
use crate::secrets::{SecretCache, SecretError, SecretSource};
use mapping::rules::engage::Engage;

/// Larger bodies are refused with 413 (a synchronous Lambda invocation carries at most 6 MB).
pub const MAX_BODY_BYTES: usize = 6 * 1024 * 1024;
/// Time kept back from the Lambda deadline for answering.
const DEADLINE_MARGIN: Duration = Duration::from_millis(300);

/// A ready function: configuration, one Amplitude client, the secret cache.
pub struct Function {
    pub config: FunctionConfig,
    client: AmplitudeClient,
    secrets: SecretCache,
}

impl Function {
    pub fn new(config: FunctionConfig, source: SecretSource) -> Result<Self, ConfigError> {
        let client =
            AmplitudeClient::new(config.client.clone()).map_err(|e| ConfigError::Invalid {
                name: "AMPLITUDE_BASE_URL",
                reason: e.to_string(),
            })?;
        let secrets = SecretCache::new(source, config.secret_ttl);
        Ok(Function {
            config,
            client,
            secrets,
        })
    }

    /// The deployed function: configuration from the environment, secrets from Secrets Manager.
    pub async fn from_env(route: Route) -> Result<Self, ConfigError> {
        let config = FunctionConfig::from_env(route)?;
        Self::new(config, SecretSource::from_aws_env().await)
    }

    /// The Lambda entry point.
    pub async fn invoke(
        &self,
        event: LambdaEvent<Value>,
    ) -> Result<Value, lambda_runtime::Diagnostic> {
        let now_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64);
        let remaining = Duration::from_millis(event.context.deadline.saturating_sub(now_ms));
        let deadline = Instant::now()
            + self
                .config
                .response_budget
                .min(remaining.saturating_sub(DEADLINE_MARGIN));
        let request_id = event.context.request_id.clone();
        match Inbound::from_payload(event.payload) {
            Ok(inbound) => {
                let source = inbound.source;
                self.handle(inbound, deadline, &request_id)
                    .await
                    .into_payload(source)
            }
            Err(e) => Reply::error(400, e.to_string()).into_payload(Source::HttpApi),
        }
    }

    /// Handles one request and logs one line about it.
    pub async fn handle(&self, inbound: Inbound, deadline: Instant, request_id: &str) -> Reply {
        let route = self.config.route;
        // Boxed: the nested delivery futures are too deep for the compiler's layout limit.
        let reply = Box::pin(self.process(&inbound, deadline)).await;
        let c = reply.counts;
        tracing::info!(
            request_id,
            route = route.path(),
            source = ?inbound.source,
            status = reply.status,
            received = c.received,
            delivered = c.delivered,
            skipped = c.skipped,
            rejected = c.rejected,
            unsupported = c.unsupported,
            retryable = c.retryable,
            error = reply.body.get("error").and_then(serde_json::Value::as_str),
            "request handled"
        );
        if self.config.log_payloads {
            tracing::debug!(request_id, body = %String::from_utf8_lossy(&inbound.body), reply = %reply.body, "payloads");
        }
        reply
    }

    async fn process(&self, inbound: &Inbound, deadline: Instant) -> Reply {
        if inbound.body.len() > MAX_BODY_BYTES {
            return Reply::error(
                413,
                "body: larger than 6 MB; lower the batch size in Segment",
            );
        }
        let keys = match self.secrets.ingest(&self.config.ingest_secret_id).await {
            Ok(k) => k,
            Err(e) => return Reply::error(500, format!("configuration: {e}")),
        };
        let get_jobs =
            self.config.route == Route::Deletions && inbound.method.eq_ignore_ascii_case("GET");
        let messages = if get_jobs {
            // A job listing has no body; what is authenticated is the empty body.
            Ok(body::Messages {
                items: Vec::new(),
                signed: Vec::new(),
            })
        } else {
            body::split(&inbound.body)
        };
        if inbound.source != Source::Direct {
            let auth = AuthConfig {
                shared_secret: keys.webhook_secret.clone(),
                bearer_token: keys.bearer_token.clone(),
                allow_unauthenticated: self.config.allow_unauthenticated,
            };
            let signed = messages
                .as_ref()
                .map_or(inbound.body.as_slice(), |m| m.signed.as_slice());
            if let Err(e) = auth.check(|h| inbound.header(h).map(str::to_owned), signed) {
                return Reply::error(401, format!("authentication: {e}"));
            }
        }
        let messages = match messages {
            Ok(m) => m,
            Err(e) => return Reply::error(400, e.to_string()),
        };

        let mut settings = self.config.settings.clone();
        settings.set_api_key(keys.api_key.expose_secret().to_owned());
        if self.config.route == Route::Deletions {
            match self.secret_key().await {
                Ok(key) => settings.set_secret_key(Some(key)),
                Err(reply) => return reply,
            }
            if get_jobs {
                return self.list_deletion_jobs(inbound, &settings, deadline).await;
            }
        }
        let (entries, deletion_jobs) = self
            .map_and_deliver(&messages.items, &settings, deadline)
            .await;
        let extra = (self.config.route == Route::Deletions)
            .then_some(("jobs", Value::Array(deletion_jobs)));
        Reply::for_entries(entries, extra)
    }

    async fn map_and_deliver(
        &self,
        items: &[String],
        settings: &Settings,
        deadline: Instant,
    ) -> (Vec<Entry>, Vec<Value>) {
        let parsed: Vec<Option<serde_json_borrow::Value>> =
            items.iter().map(|t| serde_json::from_str(t).ok()).collect();
        let mut entries = Vec::with_capacity(items.len());
        let mut plans: Vec<Plan> = Vec::new();
        let mut planned: Vec<usize> = Vec::new();
        for (index, value) in parsed.iter().enumerate() {
            let message_id = value
                .as_ref()
                .and_then(|v| v.get("messageId").as_str().map(str::to_owned));
            let result = match value {
                None => Res::Rejected {
                    reason: "the event is not valid JSON".into(),
                },
                Some(v) => match self.plan(v, settings) {
                    Ok(Engage::Skip(reason)) => Res::Skipped {
                        reason: Some(reason.to_owned()),
                    },
                    Ok(Engage::Plan(plan)) if plan.requests.is_empty() => {
                        Res::Skipped { reason: None }
                    }
                    Ok(Engage::Plan(plan)) => {
                        planned.push(index);
                        plans.push(plan);
                        Res::Delivered
                    }
                    Err(Rejection::Invalid(reason)) => Res::Rejected { reason },
                    Err(Rejection::Unsupported(reason) | Rejection::Configuration(reason)) => {
                        Res::Unsupported { reason }
                    }
                },
            };
            entries.push(Entry {
                index,
                message_id,
                result,
            });
        }
        let mut jobs = Vec::new();
        if !plans.is_empty() {
            let report = self.client.deliver(&plans, settings, deadline).await;
            if report.bad_credentials.is_some() {
                // Amplitude refused the key: fetch the secrets again on the next request.
                self.secrets.invalidate(&self.config.ingest_secret_id);
                if let Some(id) = &self.config.privacy_secret_id {
                    self.secrets.invalidate(id);
                }
            }
            for (k, outcome) in report.outcomes.into_iter().enumerate() {
                entries[planned[k]].result = outcome.into();
            }
            jobs = report.deletion_jobs;
            if self.config.route == Route::Deletions {
                audit(&parsed, &entries, &jobs);
            }
        }
        (entries, jobs)
    }

    /// The route decides which call types it takes; the mapping does the rest.
    fn plan<'a>(
        &self,
        message: &'a serde_json_borrow::Value<'a>,
        settings: &Settings,
    ) -> Result<Engage<'a>, Rejection> {
        let call = Message::parse(message)?.call;
        if !self.config.route.accepts(call) {
            return Err(Rejection::Unsupported(format!(
                "`type`: {call:?} calls are not handled by the {} route",
                self.config.route.path()
            )));
        }
        if self.config.route == Route::Engage {
            return mapping::rules::engage::plan(message, settings);
        }
        let mut plan = mapping::plan(message, settings)?;
        if let Some(requester) = &self.config.deletion_requester {
            for r in &mut plan.requests {
                if let mapping::Body::Deletion(d) = &mut r.body {
                    d.requester = requester.clone().into();
                }
            }
        }
        Ok(Engage::Plan(plan))
    }

    /// The Amplitude secret key for deletions; without one, deletions are answered 501 (Segment
    /// does not retry them: they cannot succeed until the key is configured).
    async fn secret_key(&self) -> Result<String, Reply> {
        let not_configured = |why: String| {
            Reply::error(
                501,
                format!(
                    "deletions: no Amplitude secret key is configured ({why}); Amplitude's User Privacy API needs the project's secret key"
                ),
            )
        };
        let Some(id) = &self.config.privacy_secret_id else {
            return Err(not_configured("PRIVACY_SECRET_ID is not set".into()));
        };
        match self.secrets.privacy(id).await {
            Ok(p) => Ok(p.secret_key.expose_secret().to_owned()),
            Err(e @ SecretError::MissingKey { .. }) => Err(not_configured(e.to_string())),
            Err(e) => Err(Reply::error(500, format!("configuration: {e}"))),
        }
    }

    /// `GET /deletions?start_day=YYYY-MM-DD&end_day=YYYY-MM-DD`: Amplitude's deletion jobs, so an
    /// operator can prove a deletion ran.
    async fn list_deletion_jobs(
        &self,
        inbound: &Inbound,
        settings: &Settings,
        deadline: Instant,
    ) -> Reply {
        let day = |name: &'static str| -> Result<jiff::civil::Date, Reply> {
            let value = inbound.query(name).unwrap_or_default();
            let dashed =
                value.len() == 10 && value.as_bytes()[4] == b'-' && value.as_bytes()[7] == b'-';
            value
                .parse::<jiff::civil::Date>()
                .ok()
                .filter(|_| dashed)
                .ok_or_else(|| {
                    Reply::error(400, format!("query: `{name}` must be a date YYYY-MM-DD"))
                })
        };
        let (start, end) = match (day("start_day"), day("end_day")) {
            (Ok(s), Ok(e)) => (s, e),
            (Err(r), _) | (_, Err(r)) => return r,
        };
        if !(0..=184).contains(&(end - start).get_days()) {
            return Reply::error(
                400,
                "query: `end_day` must be on or after `start_day`, at most 6 months later",
            );
        }
        match self
            .client
            .deletion_jobs(settings, &start.to_string(), &end.to_string(), deadline)
            .await
        {
            Ok(jobs) => Reply {
                status: 200,
                body: serde_json::json!({"status": 200, "jobs": jobs}),
                counts: Default::default(),
            },
            Err(reason) => Reply::error(503, reason),
        }
    }
}

/// One audit line per user id a deletion was requested for: the id, the day Amplitude scheduled
/// its job, and the outcome. Never the secret key.
fn audit(parsed: &[Option<serde_json_borrow::Value<'_>>], entries: &[Entry], jobs: &[Value]) {
    for entry in entries {
        let Some(user_id) = parsed[entry.index]
            .as_ref()
            .and_then(|v| mapping::json::id(v.get("userId")))
        else {
            continue;
        };
        let job_day = jobs.iter().find_map(|job| {
            let ids = job.get("amplitude_ids")?.as_array()?;
            ids.iter()
                .any(|e| e.get("user_id").and_then(Value::as_str) == Some(&user_id))
                .then(|| job.get("day").and_then(Value::as_str).map(str::to_owned))
                .flatten()
        });
        let outcome = match &entry.result {
            Res::Delivered => "requested",
            Res::Skipped { .. } => "skipped",
            Res::Rejected { .. } => "rejected",
            Res::Unsupported { .. } => "unsupported",
            Res::Retryable { .. } => "retryable",
        };
        tracing::info!(
            audit = "deletion",
            user_id = %user_id,
            job_day = job_day.as_deref().unwrap_or("none"),
            outcome,
            "deletion audit"
        );
    }
}
