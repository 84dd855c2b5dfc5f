//! Keys from AWS Secrets Manager, fetched on first use (once per cold start), cached with a
//! TTL, and refreshed early when Amplitude refuses the key (rotation).
//!
//! Two secrets, both JSON objects:
//! * the **ingest secret** — `{"api_key": "...", "webhook_secret": "...", "bearer_token": "..."}`
//!   (Amplitude API key; Segment's shared secret and/or a bearer token for inbound requests);
//! * the **privacy secret** — `{"secret_key": "..."}`, read only by the deletion function.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde_json::Value;

/// Where secrets come from.
#[derive(Clone)]
pub enum SecretSource {
    /// AWS Secrets Manager (the deployed functions).
    SecretsManager(aws_sdk_secretsmanager::Client),
    /// Fixed values by secret id (the local runner, tests).
    Fixed(Arc<HashMap<String, String>>),
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SecretError {
    #[error("secret `{id}` could not be read: {reason}")]
    Unavailable { id: String, reason: String },
    #[error("secret `{id}` is not a JSON object")]
    NotJson { id: String },
    #[error("secret `{id}` has no `{key}`")]
    MissingKey { id: String, key: &'static str },
}

impl SecretSource {
    /// The AWS SDK client from the standard environment (region, credentials, endpoint).
    pub async fn from_aws_env() -> Self {
        let config = aws_config::load_defaults(aws_config::BehaviorVersion::latest()).await;
        SecretSource::SecretsManager(aws_sdk_secretsmanager::Client::new(&config))
    }

    async fn fetch(&self, id: &str) -> Result<String, SecretError> {
        match self {
            SecretSource::Fixed(map) => {
                map.get(id)
                    .cloned()
                    .ok_or_else(|| SecretError::Unavailable {
                        id: id.to_owned(),
                        reason: "no such secret".into(),
                    })
            }
            SecretSource::SecretsManager(client) => {
                let out = client
                    .get_secret_value()
                    .secret_id(id)
                    .send()
                    .await
                    .map_err(|e| SecretError::Unavailable {
                        id: id.to_owned(),
                        reason: sdk_reason(&e),
                    })?;
                out.secret_string
                    .ok_or_else(|| SecretError::NotJson { id: id.to_owned() })
            }
        }
    }
}

/// An SDK error as `Code: message` (service errors) or its display chain (transport errors),
/// which name the problem and never hold the secret's value.
fn sdk_reason<E, R>(e: &aws_sdk_secretsmanager::error::SdkError<E, R>) -> String
where
    E: aws_sdk_secretsmanager::error::ProvideErrorMetadata + std::error::Error + 'static,
    R: std::fmt::Debug,
{
    use aws_sdk_secretsmanager::error::ProvideErrorMetadata;
    match e.code() {
        Some(code) => format!("{code}: {}", e.message().unwrap_or("no message")),
        None => aws_sdk_secretsmanager::error::DisplayErrorContext(e)
            .to_string()
            .chars()
            .take(300)
            .collect(),
    }
}

/// The keys of the ingest secret.
#[derive(Clone)]
pub struct IngestKeys {
    pub api_key: SecretString,
    pub webhook_secret: Option<SecretString>,
    pub bearer_token: Option<SecretString>,
}

/// The key of the privacy secret.
#[derive(Clone)]
pub struct PrivacyKeys {
    pub secret_key: SecretString,
}

fn field(obj: &serde_json::Map<String, Value>, names: &[&str]) -> Option<SecretString> {
    names
        .iter()
        .find_map(|n| obj.get(*n).and_then(Value::as_str))
        .filter(|s| !s.is_empty())
        .map(|s| SecretString::from(s.to_owned()))
}

fn object(id: &str, text: &str) -> Result<serde_json::Map<String, Value>, SecretError> {
    match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(o)) => Ok(o),
        _ => Err(SecretError::NotJson { id: id.to_owned() }),
    }
}

impl IngestKeys {
    pub fn parse(id: &str, text: &str) -> Result<Self, SecretError> {
        let o = object(id, text)?;
        Ok(IngestKeys {
            api_key: field(&o, &["api_key", "apiKey"]).ok_or(SecretError::MissingKey {
                id: id.to_owned(),
                key: "api_key",
            })?,
            webhook_secret: field(&o, &["webhook_secret", "sharedSecret"]),
            bearer_token: field(&o, &["bearer_token", "bearerToken"]),
        })
    }
}

impl PrivacyKeys {
    pub fn parse(id: &str, text: &str) -> Result<Self, SecretError> {
        let o = object(id, text)?;
        Ok(PrivacyKeys {
            secret_key: field(&o, &["secret_key", "secretKey"]).ok_or(SecretError::MissingKey {
                id: id.to_owned(),
                key: "secret_key",
            })?,
        })
    }
}

/// Secret texts by id, each kept for `ttl`.
pub struct SecretCache {
    source: SecretSource,
    ttl: Duration,
    entries: Mutex<HashMap<String, (Instant, Arc<String>)>>,
}

impl SecretCache {
    pub fn new(source: SecretSource, ttl: Duration) -> Self {
        SecretCache {
            source,
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Instant, Arc<String>)>> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The secret's text, from the cache while it is fresh.
    pub async fn get(&self, id: &str) -> Result<Arc<String>, SecretError> {
        if let Some((at, text)) = self.lock().get(id)
            && at.elapsed() < self.ttl
        {
            return Ok(text.clone());
        }
        let text = Arc::new(self.source.fetch(id).await?);
        self.lock()
            .insert(id.to_owned(), (Instant::now(), text.clone()));
        Ok(text)
    }

    /// Forgets a secret so the next use fetches it again (after Amplitude refused the key).
    pub fn invalidate(&self, id: &str) {
        self.lock().remove(id);
    }

    pub async fn ingest(&self, id: &str) -> Result<IngestKeys, SecretError> {
        IngestKeys::parse(id, &self.get(id).await?)
    }

    pub async fn privacy(&self, id: &str) -> Result<PrivacyKeys, SecretError> {
        PrivacyKeys::parse(id, &self.get(id).await?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;

    #[tokio::test]
    async fn cache_fetches_once_per_ttl_and_refreshes_after_invalidate() {
        let source = SecretSource::Fixed(Arc::new(
            [(
                "ingest".to_string(),
                r#"{"api_key": "k1", "bearer_token": "t"}"#.to_string(),
            )]
            .into(),
        ));
        let cache = SecretCache::new(source, Duration::from_secs(60));
        let keys = cache.ingest("ingest").await.unwrap();
        assert_eq!(keys.api_key.expose_secret(), "k1");
        assert!(keys.webhook_secret.is_none());
        cache.invalidate("ingest");
        assert!(cache.ingest("ingest").await.is_ok());
        assert_eq!(
            cache.ingest("missing").await.err().unwrap().to_string(),
            "secret `missing` could not be read: no such secret"
        );
    }

    #[test]
    fn errors_name_the_secret_and_key_never_the_value() {
        assert_eq!(
            IngestKeys::parse("arn:ingest", r#"{"webhook_secret": "s3cr3t"}"#)
                .err()
                .unwrap()
                .to_string(),
            "secret `arn:ingest` has no `api_key`"
        );
        assert_eq!(
            PrivacyKeys::parse("arn:privacy", "plain-text-key")
                .err()
                .unwrap()
                .to_string(),
            "secret `arn:privacy` is not a JSON object"
        );
    }
}
