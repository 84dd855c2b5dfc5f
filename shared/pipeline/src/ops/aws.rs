//! AWS SDK clients built from the function's environment alone. Lambda puts everything a
//! function needs there: the region, the execution role's credentials, and (in tests) an
//! endpoint override. So the functions skip `aws-config`'s default chain (profile files,
//! instance metadata, container credentials, STS for web identity): none of it applies on
//! Lambda, it would cost binary size and cold start, and without it no code path can ever
//! probe the instance-metadata address.

use aws_sdk_secretsmanager::config::{BehaviorVersion, Credentials, Region, SharedHttpClient};
use aws_smithy_http_client::tls::{Provider, rustls_provider::CryptoMode};

use crate::ops::config::ConfigError;

/// What the SDK clients are built from.
#[derive(Clone, Debug)]
pub struct AwsEnv {
    region: Region,
    credentials: Credentials,
    /// `AWS_ENDPOINT_URL`: one endpoint for every service (tests point it at moto).
    endpoint: Option<String>,
    /// `AWS_ENDPOINT_URL_<SERVICE>`: one service's endpoint.
    service_endpoints: Vec<(&'static str, String)>,
}

impl AwsEnv {
    /// Reads `AWS_REGION` (or `AWS_DEFAULT_REGION`), `AWS_ACCESS_KEY_ID`,
    /// `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN` and the endpoint overrides.
    pub fn from_env() -> Result<Self, ConfigError> {
        Self::from_vars(|name| std::env::var(name).ok())
    }

    pub fn from_vars(var: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let get = |name: &str| var(name).filter(|v| !v.trim().is_empty());
        let required = |name: &'static str| get(name).ok_or(ConfigError::Missing(name));
        let region = get("AWS_REGION")
            .or_else(|| get("AWS_DEFAULT_REGION"))
            .ok_or(ConfigError::Missing("AWS_REGION"))?;
        let credentials = Credentials::new(
            required("AWS_ACCESS_KEY_ID")?,
            required("AWS_SECRET_ACCESS_KEY")?,
            get("AWS_SESSION_TOKEN"),
            None,
            "lambda-environment",
        );
        let service_endpoints = ["SECRETS_MANAGER", "SQS", "DYNAMODB"]
            .into_iter()
            .filter_map(|s| get(&format!("AWS_ENDPOINT_URL_{s}")).map(|url| (s, url)))
            .collect();
        Ok(AwsEnv {
            region: Region::new(region),
            credentials,
            endpoint: get("AWS_ENDPOINT_URL"),
            service_endpoints,
        })
    }

    fn endpoint(&self, service: &str) -> Option<&str> {
        self.service_endpoints
            .iter()
            .find(|(s, _)| *s == service)
            .map(|(_, url)| url.as_str())
            .or(self.endpoint.as_deref())
    }

    pub fn secrets_manager(&self) -> aws_sdk_secretsmanager::Client {
        let mut config = aws_sdk_secretsmanager::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .http_client(http_client())
            .region(self.region.clone())
            .credentials_provider(self.credentials.clone());
        if let Some(url) = self.endpoint("SECRETS_MANAGER") {
            config = config.endpoint_url(url);
        }
        aws_sdk_secretsmanager::Client::from_conf(config.build())
    }

    pub fn sqs(&self) -> aws_sdk_sqs::Client {
        let mut config = aws_sdk_sqs::Config::builder()
            .behavior_version(aws_sdk_sqs::config::BehaviorVersion::latest())
            .http_client(http_client())
            .region(self.region.clone())
            .credentials_provider(self.credentials.clone());
        if let Some(url) = self.endpoint("SQS") {
            config = config.endpoint_url(url);
        }
        aws_sdk_sqs::Client::from_conf(config.build())
    }
}

impl AwsEnv {
    /// The sessions' store client (spec §18). Its calls must fit a budget of a few hundred
    /// milliseconds, so one quick retry and no attempt longer than that budget: past it the
    /// events go without a synthesised session rather than wait.
    pub fn dynamodb(&self) -> aws_sdk_dynamodb::Client {
        use aws_sdk_dynamodb::config::retry::RetryConfig;
        use aws_sdk_dynamodb::config::timeout::TimeoutConfig;
        let mut config = aws_sdk_dynamodb::Config::builder()
            .behavior_version(aws_sdk_dynamodb::config::BehaviorVersion::latest())
            .http_client(http_client())
            .region(self.region.clone())
            .credentials_provider(self.credentials.clone())
            .retry_config(
                RetryConfig::standard()
                    .with_max_attempts(2)
                    .with_initial_backoff(std::time::Duration::from_millis(20)),
            )
            .timeout_config(
                TimeoutConfig::builder()
                    .operation_attempt_timeout(sessions::stage::MAX_BUDGET)
                    .build(),
            );
        if let Some(url) = self.endpoint("DYNAMODB") {
            config = config.endpoint_url(url);
        }
        aws_sdk_dynamodb::Client::from_conf(config.build())
    }
}

/// The AWS SDK's HTTPS client on the workspace's one TLS stack (rustls with ring; see the
/// workspace manifest). The local runner and the tests give it to `aws-config` too.
pub fn http_client() -> SharedHttpClient {
    aws_smithy_http_client::Builder::new()
        .tls_provider(Provider::Rustls(CryptoMode::Ring))
        .build_https()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_environment_names_what_is_missing() {
        let vars = |pairs: &'static [(&str, &str)]| {
            move |k: &str| {
                pairs
                    .iter()
                    .find(|(n, _)| *n == k)
                    .map(|(_, v)| v.to_string())
            }
        };
        assert_eq!(
            AwsEnv::from_vars(vars(&[])).unwrap_err().to_string(),
            "environment: `AWS_REGION` is required"
        );
        assert_eq!(
            AwsEnv::from_vars(vars(&[("AWS_DEFAULT_REGION", "eu-west-1")]))
                .unwrap_err()
                .to_string(),
            "environment: `AWS_ACCESS_KEY_ID` is required"
        );
        let env = AwsEnv::from_vars(vars(&[
            ("AWS_REGION", "us-east-1"),
            ("AWS_ACCESS_KEY_ID", "a"),
            ("AWS_SECRET_ACCESS_KEY", "s"),
            ("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"),
            ("AWS_ENDPOINT_URL_SQS", "http://127.0.0.1:6000"),
        ]))
        .unwrap();
        assert_eq!(
            env.endpoint("SECRETS_MANAGER"),
            Some("http://127.0.0.1:5000")
        );
        assert_eq!(env.endpoint("SQS"), Some("http://127.0.0.1:6000"));
    }
}
