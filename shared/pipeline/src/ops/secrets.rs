//! **The secret cache.** Keys from AWS Secrets Manager, fetched on first use (a cold start never
//! waits for them), cached with a TTL, refreshed early when Amplitude refuses the key or an
//! inbound credential does not match (rotation), and never fetched past the request's deadline.
//!
//! Two secrets, both JSON objects:
//! * the **ingest secret**: `{"api_key": "...", "webhook_secret": "...", "bearer_token": "..."}`
//!   (the Amplitude API key; Segment's shared secret and/or a bearer token for inbound
//!   requests). `webhook_secret` and `bearer_token` may also be lists, current and previous, so
//!   a rotation never refuses a request signed with the other one;
//! * the **privacy secret**: `{"secret_key": "...", "operator_token": "..."}`, read only by the
//!   deletion function (the Amplitude secret key, and the token that lists deletion jobs).
//!
//! Secret ids are shown by name only (never the ARN with its account id) in errors and logs.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde::Deserialize;

/// A secret's id or ARN. `Display` shows its name only: an ARN carries the account id.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct SecretId(String);

impl SecretId {
    pub fn new(id: impl Into<String>) -> Self {
        SecretId(id.into())
    }

    /// The id as Secrets Manager takes it.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for SecretId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0.split_once(":secret:") {
            Some((_, name)) if self.0.starts_with("arn:") => f.write_str(name),
            _ => f.write_str(&self.0),
        }
    }
}

impl fmt::Debug for SecretId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SecretId({self})")
    }
}

/// Where secrets come from.
#[derive(Clone)]
pub enum SecretSource {
    /// AWS Secrets Manager (the deployed functions).
    SecretsManager(aws_sdk_secretsmanager::Client),
    /// Values by secret id held in memory (the local runner, tests); [`SecretSource::put`]
    /// changes one, as a rotation does.
    Fixed(Arc<FixedSecrets>),
}

/// Secrets in memory, and how often they were read.
#[derive(Default)]
pub struct FixedSecrets {
    values: Mutex<HashMap<String, String>>,
    reads: std::sync::atomic::AtomicUsize,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret `{id}` could not be read: {reason}")]
    Unavailable { id: SecretId, reason: String },
    #[error("secret `{id}` is not a JSON object of the expected keys")]
    NotJson { id: SecretId },
    #[error("secret `{id}` has no `{key}`")]
    MissingKey { id: SecretId, key: &'static str },
}

impl SecretSource {
    /// Secrets held in memory.
    pub fn fixed(secrets: impl IntoIterator<Item = (String, String)>) -> Self {
        SecretSource::Fixed(Arc::new(FixedSecrets {
            values: Mutex::new(secrets.into_iter().collect()),
            reads: Default::default(),
        }))
    }

    /// Replaces an in-memory secret (no effect on Secrets Manager).
    pub fn put(&self, id: &str, text: &str) {
        if let SecretSource::Fixed(fixed) = self {
            fixed
                .values
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(id.to_owned(), text.to_owned());
        }
    }

    /// How often in-memory secrets were read (0 for Secrets Manager).
    pub fn reads(&self) -> usize {
        match self {
            SecretSource::Fixed(fixed) => fixed.reads.load(std::sync::atomic::Ordering::SeqCst),
            SecretSource::SecretsManager(_) => 0,
        }
    }

    async fn fetch(&self, id: &SecretId) -> Result<String, SecretError> {
        let unavailable = |reason: String| SecretError::Unavailable {
            id: id.clone(),
            reason,
        };
        match self {
            SecretSource::Fixed(fixed) => {
                fixed
                    .reads
                    .fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                fixed
                    .values
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .get(id.as_str())
                    .cloned()
                    .ok_or_else(|| unavailable("no such secret".into()))
            }
            SecretSource::SecretsManager(client) => {
                let out = client
                    .get_secret_value()
                    .secret_id(id.as_str())
                    .send()
                    .await
                    .map_err(|e| unavailable(sdk_reason(&e)))?;
                out.secret_string
                    .ok_or_else(|| SecretError::NotJson { id: id.clone() })
            }
        }
    }
}

/// An SDK error as its code (service errors) or the kind of transport failure. The service's
/// message is left out: it can quote the ARN, and with it the account id.
fn sdk_reason<E, R>(e: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> String
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: fmt::Debug,
{
    use aws_sdk_secretsmanager::error::{ProvideErrorMetadata, SdkError};
    match (e.code(), e) {
        (Some(code), _) => code.to_owned(),
        (None, SdkError::TimeoutError(_)) => "timed out".into(),
        (None, SdkError::DispatchFailure(_)) => "could not reach Secrets Manager".into(),
        (None, SdkError::ConstructionFailure(_)) => "the request could not be built".into(),
        (None, _) => "unexpected answer from Secrets Manager".into(),
    }
}

/// A list of accepted values: one string or an array of strings (empty ones ignored).
#[derive(Default, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    #[default]
    None,
    One(String),
    Many(Vec<String>),
}

impl OneOrMany {
    fn into_secrets(self) -> Vec<SecretString> {
        let list = match self {
            OneOrMany::None => Vec::new(),
            OneOrMany::One(s) => vec![s],
            OneOrMany::Many(v) => v,
        };
        list.into_iter()
            .filter(|s| !s.is_empty())
            .map(SecretString::from)
            .collect()
    }
}

/// The keys of the ingest secret.
#[derive(Clone)]
pub struct IngestKeys {
    pub api_key: SecretString,
    /// Segment's shared secrets (current first); any one may sign a request.
    pub webhook_secrets: Vec<SecretString>,
    /// Accepted bearer tokens (current first).
    pub bearer_tokens: Vec<SecretString>,
}

/// The keys of the privacy secret.
#[derive(Clone)]
pub struct PrivacyKeys {
    /// Empty while the secret is not set up yet (a created secret starts empty).
    pub secret_key: Option<SecretString>,
    /// Tokens that may list deletion jobs (`GET /deletions`): the operator's, not Segment's.
    pub operator_tokens: Vec<SecretString>,
}

#[derive(Deserialize)]
struct IngestSecret {
    #[serde(alias = "apiKey", default)]
    api_key: Option<String>,
    #[serde(alias = "sharedSecret", alias = "webhook_secrets", default)]
    webhook_secret: OneOrMany,
    #[serde(alias = "bearerToken", alias = "bearer_tokens", default)]
    bearer_token: OneOrMany,
}

#[derive(Deserialize)]
struct PrivacySecret {
    #[serde(alias = "secretKey", default)]
    secret_key: Option<String>,
    #[serde(alias = "operatorToken", alias = "operator_tokens", default)]
    operator_token: OneOrMany,
}

impl IngestKeys {
    pub fn parse(id: &SecretId, text: &str) -> Result<Self, SecretError> {
        let secret: IngestSecret =
            serde_json::from_str(text).map_err(|_| SecretError::NotJson { id: id.clone() })?;
        Ok(IngestKeys {
            api_key: secret
                .api_key
                .filter(|k| !k.is_empty())
                .map(SecretString::from)
                .ok_or(SecretError::MissingKey {
                    id: id.clone(),
                    key: "api_key",
                })?,
            webhook_secrets: secret.webhook_secret.into_secrets(),
            bearer_tokens: secret.bearer_token.into_secrets(),
        })
    }
}

impl PrivacyKeys {
    pub fn parse(id: &SecretId, text: &str) -> Result<Self, SecretError> {
        let secret: PrivacySecret =
            serde_json::from_str(text).map_err(|_| SecretError::NotJson { id: id.clone() })?;
        Ok(PrivacyKeys {
            secret_key: secret
                .secret_key
                .filter(|k| !k.is_empty())
                .map(SecretString::from),
            operator_tokens: secret.operator_token.into_secrets(),
        })
    }
}

/// Secret texts by id, each kept for `ttl`.
pub struct SecretCache {
    source: SecretSource,
    ttl: Duration,
    entries: Mutex<HashMap<SecretId, (Instant, Arc<String>)>>,
    /// When each secret was last read again because a credential did not match.
    rereads: Mutex<HashMap<SecretId, Instant>>,
}

impl SecretCache {
    pub fn new(source: SecretSource, ttl: Duration) -> Self {
        SecretCache {
            source,
            ttl,
            entries: Mutex::new(HashMap::new()),
            rereads: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SecretId, (Instant, Arc<String>)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The secret's text, from the cache while it is fresh; a fetch never runs past
    /// `deadline`.
    pub async fn get(
        &self,
        id: &SecretId,
        deadline: tokio::time::Instant,
    ) -> Result<Arc<String>, SecretError> {
        let cached = self.lock().get(id).cloned();
        if let Some((at, text)) = cached
            && at.elapsed() < self.ttl
        {
            return Ok(text);
        }
        let text = tokio::time::timeout_at(deadline, self.source.fetch(id))
            .await
            .map_err(|_| SecretError::Unavailable {
                id: id.clone(),
                reason: "timed out before the response deadline".into(),
            })??;
        let text = Arc::new(text);
        self.lock()
            .insert(id.clone(), (Instant::now(), text.clone()));
        Ok(text)
    }

    /// Forgets a secret so the next use fetches it again (after Amplitude refused the key).
    pub fn invalidate(&self, id: &SecretId) {
        self.lock().remove(id);
    }

    /// After an inbound credential failed to match: forgets the secret so it is read again
    /// (it may have been rotated), unless that already happened within `every`; says whether it
    /// did. So a rotation is picked up at once, and a stream of forged requests cannot hammer
    /// Secrets Manager.
    pub fn allow_reread(&self, id: &SecretId, every: Duration) -> bool {
        let mut rereads = self.rereads.lock().unwrap_or_else(|p| p.into_inner());
        if rereads.get(id).is_some_and(|at| at.elapsed() < every) {
            return false;
        }
        rereads.insert(id.clone(), Instant::now());
        self.invalidate(id);
        true
    }

    pub async fn ingest(
        &self,
        id: &SecretId,
        deadline: tokio::time::Instant,
    ) -> Result<IngestKeys, SecretError> {
        IngestKeys::parse(id, &self.get(id, deadline).await?)
    }

    pub async fn privacy(
        &self,
        id: &SecretId,
        deadline: tokio::time::Instant,
    ) -> Result<PrivacyKeys, SecretError> {
        PrivacyKeys::parse(id, &self.get(id, deadline).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    fn soon() -> tokio::time::Instant {
        tokio::time::Instant::now() + Duration::from_secs(5)
    }

    fn fixed(pairs: &[(&str, &str)]) -> SecretSource {
        SecretSource::fixed(pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[tokio::test]
    async fn cache_fetches_once_per_ttl_and_refreshes_after_invalidate() {
        let source = fixed(&[("ingest", r#"{"api_key": "k1", "bearer_token": "t"}"#)]);
        let cache = SecretCache::new(source, Duration::from_secs(60));
        let id = SecretId::new("ingest");
        let keys = cache.ingest(&id, soon()).await.unwrap();
        assert_eq!(keys.api_key.expose_secret(), "k1");
        assert!(keys.webhook_secrets.is_empty());
        cache.invalidate(&id);
        assert!(cache.ingest(&id, soon()).await.is_ok());
        // A credential mismatch reads the secret again at once, then not again within 30 s.
        assert!(cache.allow_reread(&id, Duration::from_secs(30)));
        assert!(!cache.allow_reread(&id, Duration::from_secs(30)));
        assert_eq!(
            cache
                .ingest(&SecretId::new("missing"), soon())
                .await
                .err()
                .unwrap()
                .to_string(),
            "secret `missing` could not be read: no such secret"
        );
    }

    #[test]
    fn rotation_lists_and_aliases() {
        let id = SecretId::new("i");
        let keys = IngestKeys::parse(
            &id,
            r#"{"apiKey": "k", "webhook_secret": ["new", "old", ""], "bearerToken": "t"}"#,
        )
        .unwrap();
        let shown: Vec<&str> = keys
            .webhook_secrets
            .iter()
            .map(|s| s.expose_secret())
            .collect();
        assert_eq!(shown, ["new", "old"]);
        assert_eq!(keys.bearer_tokens.len(), 1);
        let privacy = PrivacyKeys::parse(&id, r#"{"secret_key": ""}"#).unwrap();
        assert!(privacy.secret_key.is_none());
    }

    #[test]
    fn errors_name_the_secret_and_key_never_the_value_or_the_account() {
        let arn =
            SecretId::new("arn:aws:secretsmanager:us-east-1:123456789012:secret:seg/ingest-AbC123");
        assert_eq!(arn.to_string(), "seg/ingest-AbC123");
        assert_eq!(
            IngestKeys::parse(&arn, r#"{"webhook_secret": "s3cr3t"}"#)
                .err()
                .unwrap()
                .to_string(),
            "secret `seg/ingest-AbC123` has no `api_key`"
        );
        assert_eq!(
            PrivacyKeys::parse(&SecretId::new("arn:privacy"), "plain-text-key")
                .err()
                .unwrap()
                .to_string(),
            "secret `arn:privacy` is not a JSON object of the expected keys"
        );
    }
}
