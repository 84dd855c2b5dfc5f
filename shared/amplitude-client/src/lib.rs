//! The Amplitude client: delivers the requests the mapping planned for a set of Segment
//! messages, as few HTTP requests as Amplitude's limits allow, and says for every message
//! whether it was delivered, rejected for good, or must be kept for a retry.
//!
//! The pieces, each small: [`encode`] (items in wire form), [`batch`] (packing within limits),
//! [`policy`] (**the retry policy**: what each response means, and the backoff), `engine` (one
//! lane per endpoint, applying each verdict), `send` (the sending loop: attempts, backoff,
//! deadline), `deletion_jobs` (the User Privacy API's job listing) and [`outcome`].

pub mod batch;
mod deletion_jobs;
pub mod encode;
mod engine;
mod outcome;
pub mod policy;
mod send;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};

pub use deletion_jobs::JobListError;
pub use encode::Item;
pub use outcome::{ItemRejection, Outcome, Report, RequestRecord, RetryCause, Undelivered};
pub use policy::{Backoff, throttle_delay};

/// Who Amplitude records as having asked for a deletion, unless the operator names someone.
pub const DEFAULT_REQUESTER: &str = "segment";

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
    /// Requests in flight at once, per endpoint (endpoints are delivered independently).
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
    /// The `requester` Amplitude records on deletions.
    pub deletion_requester: String,
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
            deletion_requester: DEFAULT_REQUESTER.to_owned(),
            max_api_key_len: 64,
            max_items_per_request: None,
        }
    }
}

/// The keys a delivery is made with: the project's API key, and its secret key for the User
/// Privacy API. They travel with each delivery (the mapping never sees them) and never appear
/// in `Debug` output, reasons or logs.
#[derive(Clone)]
pub struct Credentials {
    api_key: SecretString,
    secret_key: Option<SecretString>,
}

impl Credentials {
    pub fn new(api_key: impl Into<String>) -> Self {
        Credentials {
            api_key: SecretString::from(api_key.into()),
            secret_key: None,
        }
    }

    /// Adds the secret key (deletions only); an empty key counts as none.
    pub fn with_secret_key(mut self, secret_key: impl Into<String>) -> Self {
        let key = secret_key.into();
        self.secret_key = (!key.is_empty()).then(|| SecretString::from(key));
        self
    }

    pub(crate) fn api_key(&self) -> &str {
        self.api_key.expose_secret()
    }

    pub(crate) fn secret_key(&self) -> Option<&str> {
        self.secret_key.as_ref().map(|k| k.expose_secret())
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Credentials([redacted])")
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
        install_crypto_provider();
        let http = reqwest::Client::builder()
            .connect_timeout(config.connect_timeout)
            .pool_idle_timeout(Duration::from_secs(60))
            // A redirect means the URL is wrong; following it could send keys elsewhere.
            .redirect(reqwest::redirect::Policy::none())
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

    /// Returns when Amplitude's one-deletion-request-per-second spacing allows the next
    /// request (at once if this client sent none lately).
    pub async fn wait_for_deletion_spacing(&self) {
        self.shared.wait_for_deletion_spacing().await;
    }
}

/// Makes ring rustls's process-wide crypto provider (the workspace's one TLS stack), before any
/// client is built. Later calls change nothing.
pub fn install_crypto_provider() {
    let _ = rustls::crypto::ring::default_provider().install_default();
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
