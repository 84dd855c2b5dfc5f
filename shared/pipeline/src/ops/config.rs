//! A function's configuration from its environment, validated once at start-up: a missing or
//! out-of-range variable stops the cold start with a message naming it, instead of failing
//! requests later. Segment's settings come from `SEGMENT_SETTINGS`; keys come from Secrets
//! Manager (see `secrets`).

use std::ops::RangeInclusive;
use std::time::Duration;

use amplitude_client::ClientConfig;
use mapping::Settings;

use crate::durable::{Job, Outgoing, QueueKind, RetrySchedule};
use crate::function::Kind;
use crate::ops::secrets::SecretId;

/// Every environment variable a function reads, with what it sets: the README's table, and
/// what `segment-amplitude serve` passes on to its functions (`serve --help` lists them).
pub const VARIABLES: [(&str, &str); 22] = [
    (
        "SEGMENT_SETTINGS",
        "Segment's settings JSON (apiKey/secretKey in it are ignored)",
    ),
    (
        "INGEST_SECRET_ID",
        "the ingest secret's id or ARN (required)",
    ),
    ("PRIVACY_SECRET_ID", "the privacy secret (deletions)"),
    (
        "ALLOW_UNAUTHENTICATED",
        "true: accept requests without credentials",
    ),
    (
        "ALLOW_SIGNED_BATCHES",
        "true: accept batches vouched for by X-Signature alone",
    ),
    ("RESPONSE_BUDGET_MS", "answer within this (4500; 500-29000)"),
    ("SECRET_TTL_SECONDS", "how long keys are cached (300)"),
    (
        "SECRET_REREAD_SECONDS",
        "a mismatch reads the secret again at most this often (30)",
    ),
    (
        "AMPLITUDE_BASE_URL",
        "one override of every Amplitude host ({host} = Amplitude's)",
    ),
    (
        "AMPLITUDE_MIN_ID_LENGTH",
        "Amplitude's options.min_id_length (1-1024); wins over minIdLength",
    ),
    (
        "LOG_PAYLOADS",
        "true: log request and response bodies at INFO",
    ),
    (
        "METRICS_NAMESPACE",
        "CloudWatch namespace of the metrics (SegmentAmplitude)",
    ),
    (
        "DELETION_REQUESTER",
        "the requester Amplitude records on deletions (segment)",
    ),
    (
        "SESSIONS_TABLE",
        "sessionize: the DynamoDB table of the sessions' state (events function)",
    ),
    (
        "SESSIONS_BUDGET_MS",
        "sessionize: the most time a request waits on the sessions' store (300; 10-300)",
    ),
    ("DELIVERY_QUEUE_URL", "durable mode: the delivery queue"),
    (
        "DELETION_QUEUE_URL",
        "durable mode: the FIFO deletion queue (redeliver)",
    ),
    (
        "DEAD_LETTER_QUEUE_URL",
        "durable mode: the dead-letter queue (redeliver)",
    ),
    (
        "DELIVERY_RETRY_BASE_SECONDS",
        "durable mode: the first backoff (10)",
    ),
    (
        "DELIVERY_THROTTLE_DELAY_SECONDS",
        "durable mode: the wait of throttled items (tests)",
    ),
    (
        "DELIVERY_MAX_AGE_SECONDS",
        "durable mode: a job older goes to the dead-letter queue (3 days)",
    ),
    (
        "DELIVERY_MAX_ATTEMPTS",
        "durable mode: after this many attempts too (none)",
    ),
];

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    #[error("environment: `{0}` is required")]
    Missing(&'static str),
    #[error("environment: `{name}` is invalid: {reason}")]
    Invalid { name: &'static str, reason: String },
}

/// Everything a function needs besides its secrets.
#[derive(Debug, Clone)]
pub struct FunctionConfig {
    pub kind: Kind,
    /// Segment's settings, validated once at start-up.
    pub settings: Settings,
    pub ingest_secret: SecretId,
    pub privacy_secret: Option<SecretId>,
    pub client: ClientConfig,
    /// Answer Segment within this (its timeout is 5 s).
    pub response_budget: Duration,
    pub secret_ttl: Duration,
    /// `SECRET_REREAD_SECONDS` (default 30): after a credential does not match, the secret is
    /// read again at most this often per instance, so a rotation is picked up at once and
    /// forged requests cannot hammer Secrets Manager.
    pub secret_reread: Duration,
    /// `ALLOW_UNAUTHENTICATED=true`: the API is protected otherwise (IAM); no credentials needed.
    pub allow_unauthenticated: bool,
    /// `ALLOW_SIGNED_BATCHES=true`: accept batches vouched for by their first event's signature
    /// only (see `auth`).
    pub allow_signed_batches: bool,
    /// Log full payloads (debugging only; off by default).
    pub log_payloads: bool,
    /// Durable delivery (`DELIVERY_QUEUE_URL` set): what is not delivered in time is queued.
    pub queue: Option<QueueConfig>,
    /// `METRICS_NAMESPACE`: the CloudWatch namespace of the EMF metrics (default
    /// `SegmentAmplitude`).
    pub metrics_namespace: String,
    /// `SESSIONS_TABLE`: where the events function keeps the sessions' state when the
    /// settings' `sessionize` is on (spec §18).
    pub sessions_table: Option<String>,
    /// `SESSIONS_BUDGET_MS` (default and most 300): the time a request may wait on the
    /// sessions' store before its events go without a synthesised session (§18.8).
    pub sessions_budget: Duration,
}

/// Durable delivery: the queues and how jobs are retried.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueConfig {
    /// `DELIVERY_QUEUE_URL`: every ingest function writes its jobs here.
    pub delivery: String,
    /// `DELETION_QUEUE_URL` (redeliver): the FIFO queue deletion jobs go through.
    pub deletion: Option<String>,
    /// `DEAD_LETTER_QUEUE_URL` (redeliver): where jobs that gave up go, with their reason.
    pub dead_letter: Option<String>,
    /// `DELIVERY_RETRY_BASE_SECONDS` (default 10): the first backoff, doubled per attempt.
    pub retry: RetrySchedule,
    /// `DELIVERY_THROTTLE_DELAY_SECONDS`: replaces the delay Amplitude asks throttled items to
    /// wait (30 s, 15 s on `/batch`); tests only.
    pub throttle_delay: Option<Duration>,
    /// `DELIVERY_MAX_AGE_SECONDS` (default 3 days): a job older than this goes to the
    /// dead-letter queue.
    pub max_age: Duration,
    /// `DELIVERY_MAX_ATTEMPTS` (default none): after this many attempts, too.
    pub max_attempts: Option<u32>,
}

/// `RESPONSE_BUDGET_MS`: at least time for one Amplitude request, at most under API Gateway's
/// 30 s integration limit.
const RESPONSE_BUDGET_MS: RangeInclusive<u64> = 500..=29_000;
const SECRET_TTL_SECONDS: RangeInclusive<u64> = 1..=86_400;
const SECRET_REREAD_SECONDS: RangeInclusive<u64> = 0..=3_600;
const MIN_ID_LENGTH: RangeInclusive<u64> = 1..=1024;
/// Delivery never waits on sessions for long (spec §18.8).
const SESSIONS_BUDGET_MS: RangeInclusive<u64> = 10..=300;
const RETRY_BASE_SECONDS: RangeInclusive<u64> = 1..=900;
const THROTTLE_DELAY_SECONDS: RangeInclusive<u64> = 0..=900;
/// At most 12 days: SQS keeps a message 14, and a job must be dead-lettered, with its reason,
/// before SQS could drop it (two days of margin for its last backoff and a slow redeliver).
const MAX_AGE_SECONDS: RangeInclusive<u64> = 60..=1_036_800;
const MAX_ATTEMPTS: RangeInclusive<u64> = 1..=100_000;

impl FunctionConfig {
    pub fn from_env(kind: Kind) -> Result<Self, ConfigError> {
        Self::from_vars(kind, |name| std::env::var(name).ok())
    }

    /// Reads the variables through `var` (tests pass a map).
    pub fn from_vars(
        kind: Kind,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let env = Env(&var);
        let mut client = ClientConfig {
            base_url: env.base_url("AMPLITUDE_BASE_URL")?,
            min_id_length: env
                .number_in("AMPLITUDE_MIN_ID_LENGTH", MIN_ID_LENGTH)?
                .map(|n| n as u32),
            ..ClientConfig::default()
        };
        if let Some(requester) = env.get("DELETION_REQUESTER") {
            if requester.chars().count() > 256 {
                return Err(ConfigError::Invalid {
                    name: "DELETION_REQUESTER",
                    reason: "longer than 256 characters".into(),
                });
            }
            client.deletion_requester = requester;
        }
        let mut settings = settings(env.get("SEGMENT_SETTINGS"))?;
        // Spec §17.5: the operator's AMPLITUDE_MIN_ID_LENGTH wins over the settings'
        // `minIdLength`; the one in effect is both applied by the mapping (short ids dropped
        // before sending) and sent to Amplitude, by every function (redeliver included).
        if let Some(n) = client.min_id_length {
            settings.min_id_length = Some(n);
        }
        client.min_id_length = settings.min_id_length;
        Ok(FunctionConfig {
            kind,
            settings,
            ingest_secret: env
                .get("INGEST_SECRET_ID")
                .map(SecretId::new)
                .ok_or(ConfigError::Missing("INGEST_SECRET_ID"))?,
            privacy_secret: env.get("PRIVACY_SECRET_ID").map(SecretId::new),
            client,
            response_budget: Duration::from_millis(
                env.number_in("RESPONSE_BUDGET_MS", RESPONSE_BUDGET_MS)?
                    .unwrap_or(4500),
            ),
            secret_ttl: Duration::from_secs(
                env.number_in("SECRET_TTL_SECONDS", SECRET_TTL_SECONDS)?
                    .unwrap_or(300),
            ),
            secret_reread: Duration::from_secs(
                env.number_in("SECRET_REREAD_SECONDS", SECRET_REREAD_SECONDS)?
                    .unwrap_or(30),
            ),
            allow_unauthenticated: env.flag("ALLOW_UNAUTHENTICATED")?,
            allow_signed_batches: env.flag("ALLOW_SIGNED_BATCHES")?,
            log_payloads: env.flag("LOG_PAYLOADS")?,
            queue: queue(&env, kind)?,
            metrics_namespace: namespace(env.get("METRICS_NAMESPACE"))?,
            sessions_table: env.get("SESSIONS_TABLE"),
            sessions_budget: Duration::from_millis(
                env.number_in("SESSIONS_BUDGET_MS", SESSIONS_BUDGET_MS)?
                    .unwrap_or(300),
            ),
        })
    }
}

impl QueueConfig {
    /// How long a job waits before its next attempt: the backoff for its attempt count, and
    /// for throttled items at least the delay Amplitude asks for.
    pub fn delay(&self, job: &Job) -> Duration {
        let backoff = self.retry.after(job.attempts.max(1));
        if job.cause == amplitude_client::RetryCause::Throttled {
            let asked = self
                .throttle_delay
                .unwrap_or_else(|| amplitude_client::throttle_delay(job.endpoint));
            backoff.max(asked)
        } else {
            backoff
        }
    }

    /// The queue an SQS record came from, by its event source ARN: the deletion queue when the
    /// ARN names the configured deletion queue (an ARN ends with the queue's name, as a queue
    /// URL does), else the delivery queue.
    pub fn kind_of(&self, source_arn: Option<&str>) -> QueueKind {
        let name = |s: &str| s.rsplit([':', '/']).next().map(str::to_owned);
        let deletion = self.deletion.as_deref().and_then(name);
        match (source_arn.and_then(name), deletion) {
            (Some(source), Some(deletion)) if source == deletion => QueueKind::Deletion,
            _ => QueueKind::Delivery,
        }
    }

    /// Jobs as messages for `queue`: on the delivery queue each visible after its
    /// [`delay`](Self::delay); at once elsewhere (the FIFO deletion queue takes no per-message
    /// delay, and a dead letter waits for an operator).
    pub fn messages(&self, jobs: Vec<Job>, queue: QueueKind) -> Vec<Outgoing> {
        jobs.into_iter()
            .flat_map(|job| {
                let delay = match queue {
                    QueueKind::Delivery => self.delay(&job),
                    QueueKind::Deletion | QueueKind::DeadLetter => Duration::ZERO,
                };
                job.bodies()
                    .into_iter()
                    .map(move |body| Outgoing { body, delay })
            })
            .collect()
    }
}

/// A CloudWatch namespace: 1 to 255 characters, no `:` (CloudWatch's rules).
fn namespace(value: Option<String>) -> Result<String, ConfigError> {
    let ns = value.unwrap_or_else(|| "SegmentAmplitude".to_owned());
    let valid = (1..=255).contains(&ns.chars().count())
        && ns
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || ".-_/#".contains(c));
    if !valid {
        return Err(ConfigError::Invalid {
            name: "METRICS_NAMESPACE",
            reason: "must be 1 to 255 of A-Z a-z 0-9 . - _ / #".into(),
        });
    }
    Ok(ns)
}

/// The queue settings; the redeliver function needs its queues, an ingest function runs in
/// direct mode without `DELIVERY_QUEUE_URL`.
fn queue(env: &Env<'_>, kind: Kind) -> Result<Option<QueueConfig>, ConfigError> {
    let Some(delivery) = env.get("DELIVERY_QUEUE_URL") else {
        return match kind {
            Kind::Redeliver => Err(ConfigError::Missing("DELIVERY_QUEUE_URL")),
            Kind::Ingest(_) => Ok(None),
        };
    };
    let dead_letter = env.get("DEAD_LETTER_QUEUE_URL");
    if kind == Kind::Redeliver && dead_letter.is_none() {
        return Err(ConfigError::Missing("DEAD_LETTER_QUEUE_URL"));
    }
    let seconds = |name, range, default| -> Result<Duration, ConfigError> {
        Ok(Duration::from_secs(
            env.number_in(name, range)?.unwrap_or(default),
        ))
    };
    Ok(Some(QueueConfig {
        delivery,
        deletion: env.get("DELETION_QUEUE_URL"),
        dead_letter,
        retry: RetrySchedule {
            base: seconds("DELIVERY_RETRY_BASE_SECONDS", RETRY_BASE_SECONDS, 10)?,
            ..RetrySchedule::default()
        },
        throttle_delay: env
            .number_in("DELIVERY_THROTTLE_DELAY_SECONDS", THROTTLE_DELAY_SECONDS)?
            .map(Duration::from_secs),
        max_age: seconds("DELIVERY_MAX_AGE_SECONDS", MAX_AGE_SECONDS, 259_200)?,
        max_attempts: env
            .number_in("DELIVERY_MAX_ATTEMPTS", MAX_ATTEMPTS)?
            .map(|n| n as u32),
    }))
}

/// The environment, read through a lookup function; empty values count as unset.
struct Env<'v>(&'v dyn Fn(&str) -> Option<String>);

impl Env<'_> {
    fn get(&self, name: &str) -> Option<String> {
        (self.0)(name)
            .map(|v| v.trim().to_owned())
            .filter(|v| !v.is_empty())
    }

    fn number_in(
        &self,
        name: &'static str,
        range: RangeInclusive<u64>,
    ) -> Result<Option<u64>, ConfigError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        let n: u64 = text.parse().map_err(|_| ConfigError::Invalid {
            name,
            reason: format!("{text:?} is not a whole number"),
        })?;
        if !range.contains(&n) {
            return Err(ConfigError::Invalid {
                name,
                reason: format!("{n} is outside {}..={}", range.start(), range.end()),
            });
        }
        Ok(Some(n))
    }

    fn flag(&self, name: &'static str) -> Result<bool, ConfigError> {
        match self.get(name).as_deref() {
            None | Some("false") | Some("0") => Ok(false),
            Some("true") | Some("1") => Ok(true),
            Some(other) => Err(ConfigError::Invalid {
                name,
                reason: format!("{other:?} is not true or false"),
            }),
        }
    }

    /// An `http(s)://host[:port][/path]` URL, where `{host}` may stand for Amplitude's host.
    fn base_url(&self, name: &'static str) -> Result<Option<String>, ConfigError> {
        let Some(text) = self.get(name) else {
            return Ok(None);
        };
        let invalid = |reason: &str| ConfigError::Invalid {
            name,
            reason: reason.to_owned(),
        };
        let url = reqwest::Url::parse(&text.replace("{host}", "amplitude-host"))
            .map_err(|e| invalid(&format!("not a URL ({e})")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
            return Err(invalid("must be an http:// or https:// URL with a host"));
        }
        if url.query().is_some() || url.fragment().is_some() || !url.username().is_empty() {
            return Err(invalid("must not carry a query, a fragment or credentials"));
        }
        Ok(Some(text))
    }
}

/// Segment's settings JSON. Its `apiKey` and `secretKey`, if any, are ignored: the keys come
/// from Secrets Manager.
fn settings(json: Option<String>) -> Result<Settings, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: "SEGMENT_SETTINGS",
        reason,
    };
    match json {
        None => Ok(Settings::default()),
        Some(text) => Settings::from_json_str(&text).map_err(|e| invalid(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ingest::Route;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    /// `VARIABLES` is every variable the configuration reads, and no other.
    #[test]
    fn the_table_of_variables_is_what_the_configuration_reads() {
        let read = std::cell::RefCell::new(std::collections::BTreeSet::new());
        for kind in [Kind::Ingest(Route::Events), Kind::Redeliver] {
            let _ = FunctionConfig::from_vars(kind, |name| {
                read.borrow_mut().insert(name.to_owned());
                match name {
                    "INGEST_SECRET_ID" | "DELIVERY_QUEUE_URL" | "DEAD_LETTER_QUEUE_URL" => {
                        Some("x".into())
                    }
                    _ => None,
                }
            });
        }
        let table: std::collections::BTreeSet<String> =
            VARIABLES.iter().map(|(n, _)| n.to_string()).collect();
        assert_eq!(read.into_inner(), table);
    }

    #[test]
    fn reads_every_variable_with_defaults() {
        let c = FunctionConfig::from_vars(
            Kind::Ingest(Route::Events),
            vars(&[
                ("INGEST_SECRET_ID", "ingest"),
                (
                    "SEGMENT_SETTINGS",
                    r#"{"trackAllPages": true, "apiKey": "ignored"}"#,
                ),
                ("AMPLITUDE_BASE_URL", "http://127.0.0.1:9/_host/{host}"),
                ("DELETION_REQUESTER", "dpo@example.com"),
            ]),
        )
        .unwrap();
        assert!(c.settings.track_all_pages);
        assert_eq!(c.response_budget, Duration::from_millis(4500));
        assert_eq!(c.secret_ttl, Duration::from_secs(300));
        assert!(!c.allow_unauthenticated && !c.allow_signed_batches);
        assert_eq!(c.client.deletion_requester, "dpo@example.com");
        assert_eq!(
            c.client.base_url.as_deref(),
            Some("http://127.0.0.1:9/_host/{host}")
        );
    }

    /// Spec §17.5: `minIdLength` is applied by the mapping and sent to Amplitude; the
    /// operator's AMPLITUDE_MIN_ID_LENGTH wins over it for both.
    #[test]
    fn the_minimum_id_length_in_effect_is_both_applied_and_sent() {
        let read = |pairs: &[(&str, &str)]| {
            let mut all = vec![("INGEST_SECRET_ID", "ingest")];
            all.extend_from_slice(pairs);
            let c = FunctionConfig::from_vars(Kind::Ingest(Route::Events), vars(&all)).unwrap();
            (c.settings.min_id_length, c.client.min_id_length)
        };
        assert_eq!(read(&[]), (None, None));
        let settings = ("SEGMENT_SETTINGS", r#"{"minIdLength": 3}"#);
        assert_eq!(read(&[settings]), (Some(3), Some(3)));
        let operator = ("AMPLITUDE_MIN_ID_LENGTH", "2");
        assert_eq!(read(&[settings, operator]), (Some(2), Some(2)));
        assert_eq!(read(&[operator]), (Some(2), Some(2)));
    }

    #[test]
    fn errors_name_the_variable() {
        let err = |pairs: &[(&str, &str)]| {
            FunctionConfig::from_vars(Kind::Ingest(Route::Events), vars(pairs))
                .unwrap_err()
                .to_string()
        };
        assert_eq!(err(&[]), "environment: `INGEST_SECRET_ID` is required");
        assert_eq!(
            err(&[
                ("INGEST_SECRET_ID", "i"),
                ("SEGMENT_SETTINGS", r#"{"endpoint": "mars"}"#)
            ]),
            "environment: `SEGMENT_SETTINGS` is invalid: settings: `endpoint` has the unknown value \"mars\" (expected \"\", \"standard\", \"north_america\", \"us\", \"europe\" or \"eu\")"
        );
        assert_eq!(
            err(&[("INGEST_SECRET_ID", "i"), ("ALLOW_UNAUTHENTICATED", "yes")]),
            "environment: `ALLOW_UNAUTHENTICATED` is invalid: \"yes\" is not true or false"
        );
        assert_eq!(
            err(&[("INGEST_SECRET_ID", "i"), ("RESPONSE_BUDGET_MS", "soon")]),
            "environment: `RESPONSE_BUDGET_MS` is invalid: \"soon\" is not a whole number"
        );
    }

    #[test]
    fn jobs_wait_their_backoff_or_amplitudes_delay_except_on_the_fifo_queue() {
        let q = FunctionConfig::from_vars(
            Kind::Redeliver,
            vars(&[
                ("INGEST_SECRET_ID", "i"),
                ("DELIVERY_QUEUE_URL", "http://q/delivery"),
                ("DEAD_LETTER_QUEUE_URL", "http://q/dlq"),
            ]),
        )
        .unwrap()
        .queue
        .unwrap();
        let job = |attempts, cause, endpoint| Job {
            v: crate::durable::V1,
            route: crate::ingest::Route::Events,
            endpoint,
            region: mapping::Region::Standard,
            message_ids: vec![Some("m".into())],
            items: vec![crate::durable::JobItem {
                message: 0,
                wire: "{}".into(),
                user_id: None,
                device_id: None,
            }],
            attempts,
            first_seen_ms: 0,
            last_reason: "r".into(),
            cause,
            dead_letter_reason: None,
        };
        use amplitude_client::RetryCause::{Throttled, Transient};
        use mapping::Endpoint::{Batch, Deletion, HttpApi};
        let secs = |d: Duration| d.as_secs();
        assert_eq!(secs(q.delay(&job(0, Transient, HttpApi))), 10);
        assert_eq!(secs(q.delay(&job(3, Transient, HttpApi))), 40);
        assert_eq!(
            secs(q.delay(&job(1, Throttled, HttpApi))),
            30,
            "HTTP V2 asks 30 s"
        );
        assert_eq!(
            secs(q.delay(&job(1, Throttled, Batch))),
            15,
            "/batch asks 15 s"
        );
        assert_eq!(
            secs(q.delay(&job(4, Throttled, Batch))),
            80,
            "the backoff when longer"
        );
        let delays = |jobs, kind| -> Vec<u64> {
            q.messages(jobs, kind)
                .iter()
                .map(|m| secs(m.delay))
                .collect()
        };
        assert_eq!(
            delays(
                vec![job(3, Transient, HttpApi), job(1, Throttled, HttpApi)],
                QueueKind::Delivery
            ),
            vec![40, 30]
        );
        assert_eq!(
            delays(vec![job(3, Transient, Deletion)], QueueKind::Deletion),
            vec![0],
            "the FIFO deletion queue takes no per-message delay"
        );
    }

    #[test]
    fn a_record_comes_from_the_deletion_queue_when_its_arn_names_that_queue() {
        let q = FunctionConfig::from_vars(
            Kind::Redeliver,
            vars(&[
                ("INGEST_SECRET_ID", "i"),
                (
                    "DELIVERY_QUEUE_URL",
                    "https://sqs.us-east-1.amazonaws.com/123456789012/seg-delivery",
                ),
                (
                    "DELETION_QUEUE_URL",
                    "https://sqs.us-east-1.amazonaws.com/123456789012/seg-deletions.fifo",
                ),
                ("DEAD_LETTER_QUEUE_URL", "https://sqs.x/1/seg-dlq"),
            ]),
        )
        .unwrap()
        .queue
        .unwrap();
        let arn = |name: &str| format!("arn:aws:sqs:us-east-1:123456789012:{name}");
        assert_eq!(
            q.kind_of(Some(&arn("seg-deletions.fifo"))),
            QueueKind::Deletion
        );
        assert_eq!(q.kind_of(Some(&arn("seg-delivery"))), QueueKind::Delivery);
        assert_eq!(q.kind_of(None), QueueKind::Delivery);
    }

    #[test]
    fn durable_delivery_settings() {
        let get = |pairs: &[(&str, &str)], route| {
            let mut all = vec![("INGEST_SECRET_ID", "i")];
            all.extend_from_slice(pairs);
            FunctionConfig::from_vars(route, vars(&all)).map(|c| c.queue)
        };
        assert_eq!(
            get(&[], Kind::Ingest(Route::Events)),
            Ok(None),
            "direct mode"
        );
        let q = get(
            &[("DELIVERY_QUEUE_URL", "http://q/delivery")],
            Kind::Ingest(Route::Events),
        )
        .unwrap()
        .unwrap();
        assert_eq!(q.retry.after(1), Duration::from_secs(10));
        assert_eq!(q.max_age, Duration::from_secs(3 * 24 * 3600));
        assert_eq!((q.max_attempts, q.throttle_delay), (None, None));
        assert_eq!(
            get(&[], Kind::Redeliver).unwrap_err().to_string(),
            "environment: `DELIVERY_QUEUE_URL` is required"
        );
        assert_eq!(
            get(&[("DELIVERY_QUEUE_URL", "http://q/d")], Kind::Redeliver)
                .unwrap_err()
                .to_string(),
            "environment: `DEAD_LETTER_QUEUE_URL` is required"
        );
        assert_eq!(
            get(
                &[
                    ("DELIVERY_QUEUE_URL", "q"),
                    ("DELIVERY_MAX_AGE_SECONDS", "5")
                ],
                Kind::Ingest(Route::Events)
            )
            .unwrap_err()
            .to_string(),
            "environment: `DELIVERY_MAX_AGE_SECONDS` is invalid: 5 is outside 60..=1036800"
        );
    }

    #[test]
    fn bounds_are_checked_at_start_up() {
        let err = |name: &str, value: &str| {
            FunctionConfig::from_vars(
                Kind::Ingest(Route::Events),
                vars(&[("INGEST_SECRET_ID", "i"), (name, value)]),
            )
            .unwrap_err()
            .to_string()
        };
        assert_eq!(
            err("RESPONSE_BUDGET_MS", "100"),
            "environment: `RESPONSE_BUDGET_MS` is invalid: 100 is outside 500..=29000"
        );
        assert_eq!(
            err("RESPONSE_BUDGET_MS", "60000"),
            "environment: `RESPONSE_BUDGET_MS` is invalid: 60000 is outside 500..=29000"
        );
        assert_eq!(
            err("SECRET_TTL_SECONDS", "0"),
            "environment: `SECRET_TTL_SECONDS` is invalid: 0 is outside 1..=86400"
        );
        assert_eq!(
            err("AMPLITUDE_MIN_ID_LENGTH", "5000"),
            "environment: `AMPLITUDE_MIN_ID_LENGTH` is invalid: 5000 is outside 1..=1024"
        );
        assert_eq!(
            err("AMPLITUDE_BASE_URL", "ftp://example.com"),
            "environment: `AMPLITUDE_BASE_URL` is invalid: must be an http:// or https:// URL with a host"
        );
        assert!(
            err("AMPLITUDE_BASE_URL", "not a url")
                .starts_with("environment: `AMPLITUDE_BASE_URL` is invalid: not a URL")
        );
        assert_eq!(
            err("AMPLITUDE_BASE_URL", "https://user:pw@example.com"),
            "environment: `AMPLITUDE_BASE_URL` is invalid: must not carry a query, a fragment or credentials"
        );
        assert_eq!(
            err("ALLOW_SIGNED_BATCHES", "maybe"),
            "environment: `ALLOW_SIGNED_BATCHES` is invalid: \"maybe\" is not true or false"
        );
    }
}
