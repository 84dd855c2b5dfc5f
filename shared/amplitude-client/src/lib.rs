//! The Amplitude client: delivers the requests the mapping planned for a set of Segment
//! messages, as few HTTP requests as Amplitude's limits allow, and says for every message
//! whether it was delivered, rejected for good, or must be retried by Segment.
//!
//! The pieces, each small: [`encode`] (items in wire form), [`batch`] (packing within limits),
//! [`policy`] (what each response means, and the backoff), `deliver` (the engine that applies
//! the policy under a deadline) and [`outcome`].

pub mod batch;
mod deliver;
pub mod encode;
pub mod outcome;
pub mod policy;

use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use outcome::{Outcome, Report};
pub use policy::Backoff;

/// How the client talks to Amplitude.
#[derive(Debug, Clone)]
pub struct ClientConfig {
    /// One base URL for every Amplitude API (e.g. `http://127.0.0.1:8080` for the emulator).
    /// A `{host}` in it is replaced by the Amplitude host the request would go to (so the
    /// emulator's `/_host/{host}` routes can check the region's hosts). `None` uses Amplitude's
    /// own hosts for the settings' region.
    pub base_url: Option<String>,
    pub connect_timeout: Duration,
    /// Cap on one request; the deadline shortens it further.
    pub request_timeout: Duration,
    /// Requests in flight at once.
    pub concurrency: usize,
    pub backoff: Backoff,
    /// Attempts per request for transient failures (the SDKs' default is 12 retries).
    pub max_attempts: u32,
    /// No attempt starts with less than this left before the deadline.
    pub min_request_time: Duration,
    /// `options.min_id_length`, sent only when set (an operator knob, not a Segment setting).
    pub min_id_length: Option<u32>,
    /// Spacing of deletion requests (Amplitude allows one per second).
    pub deletion_interval: Duration,
    /// Longest API key expected; batches leave room for its URL-encoded form.
    pub max_api_key_len: usize,
    /// Caps items per request below Amplitude's limits (smaller requests fail smaller).
    pub max_items_per_request: Option<usize>,
}

impl Default for ClientConfig {
    fn default() -> Self {
        ClientConfig {
            base_url: None,
            connect_timeout: Duration::from_secs(2),
            request_timeout: Duration::from_secs(10),
            concurrency: 8,
            backoff: Backoff::default(),
            max_attempts: 13,
            min_request_time: Duration::from_millis(50),
            min_id_length: None,
            deletion_interval: Duration::from_secs(1),
            max_api_key_len: 64,
            max_items_per_request: None,
        }
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    #[error("cannot build the HTTP client: {0}")]
    Build(String),
}

/// One per process: connections are reused across deliveries.
#[derive(Clone)]
pub struct AmplitudeClient {
    shared: Arc<Shared>,
}

struct Shared {
    http: reqwest::Client,
    config: ClientConfig,
    next_deletion: Mutex<Option<tokio::time::Instant>>,
}

impl AmplitudeClient {
    pub fn new(config: ClientConfig) -> Result<Self, ClientError> {
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            .no_proxy()
            .build()
            .map_err(|e| ClientError::Build(e.to_string()))?;
        Ok(AmplitudeClient {
            shared: Arc::new(Shared {
                http,
                config,
                next_deletion: Mutex::new(None),
            }),
        })
    }

    pub fn config(&self) -> &ClientConfig {
        &self.shared.config
    }
}

impl AmplitudeClient {
    /// The User Privacy API's deletion jobs between two days (`YYYY-MM-DD`), as Amplitude lists
    /// them; `Err` holds a reason without credentials. Sent through the same retry loop as
    /// deliveries, so it keeps the deletion endpoint's one-request-per-second spacing.
    pub async fn deletion_jobs(
        &self,
        settings: &mapping::Settings,
        start_day: &str,
        end_day: &str,
        deadline: tokio::time::Instant,
    ) -> Result<serde_json::Value, String> {
        let endpoint = mapping::Endpoint::Deletion;
        let base = target_url(
            self.shared.config.base_url.as_deref(),
            endpoint,
            settings.region,
        );
        let query = form_urlencoded::Serializer::new(String::new())
            .append_pair("start_day", start_day)
            .append_pair("end_day", end_day)
            .finish();
        let url = format!("{base}?{query}");
        let resolution = self
            .shared
            .attempt(endpoint, deadline, |timeout| {
                self.shared
                    .http
                    .get(&url)
                    .basic_auth(settings.api_key(), settings.secret_key())
                    .timeout(timeout)
            })
            .await;
        match resolution {
            deliver::Resolution::Answered { verdict, body } => match *verdict {
                policy::Verdict::Delivered => serde_json::from_slice(&body)
                    .map_err(|_| "Amplitude answered a job list that is not JSON".to_string()),
                policy::Verdict::BadCredentials { reason }
                | policy::Verdict::RejectAll { reason }
                | policy::Verdict::Isolate { reason }
                | policy::Verdict::Permanent { reason }
                | policy::Verdict::Retry { reason } => Err(reason),
                other => Err(format!("Amplitude refused the job list: {other:?}")),
            },
            deliver::Resolution::GaveUp { reason } => Err(reason),
        }
    }
}

/// The URL of an endpoint: Amplitude's own for the region, or under the configured base URL.
pub fn target_url(
    base: Option<&str>,
    endpoint: mapping::Endpoint,
    region: mapping::Region,
) -> String {
    let real = endpoint.url(region);
    match base {
        None => real.to_owned(),
        Some(base) => {
            let host = real
                .trim_start_matches("https://")
                .split('/')
                .next()
                .unwrap_or_default();
            format!(
                "{}{}",
                base.replace("{host}", host).trim_end_matches('/'),
                endpoint.path()
            )
        }
    }
}
