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
use crate::secrets::{SecretCache, SecretSource};

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
        let messages = body::split(&inbound.body);
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
        if self.config.route == Route::Deletions
            && let Some(id) = &self.config.privacy_secret_id
        {
            match self.secrets.privacy(id).await {
                Ok(p) => settings.set_secret_key(Some(p.secret_key.expose_secret().to_owned())),
                Err(e) => return Reply::error(500, format!("configuration: {e}")),
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
                    Ok(plan) if plan.requests.is_empty() => Res::Skipped,
                    Ok(plan) => {
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
        }
        (entries, jobs)
    }

    /// The route decides which call types it takes; the mapping does the rest.
    fn plan<'a>(
        &self,
        message: &'a serde_json_borrow::Value<'a>,
        settings: &Settings,
    ) -> Result<Plan<'a>, Rejection> {
        let call = Message::parse(message)?.call;
        if !self.config.route.accepts(call) {
            return Err(Rejection::Unsupported(format!(
                "`type`: {call:?} calls are not handled by the {} route",
                self.config.route.path()
            )));
        }
        mapping::plan(message, settings)
    }
}
