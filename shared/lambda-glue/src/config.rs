//! A function's configuration from its environment. Non-secret settings (Segment's keys) come
//! from `SEGMENT_SETTINGS`; keys come from Secrets Manager (see `secrets`).

use std::time::Duration;

use amplitude_client::ClientConfig;
use mapping::{Call, Settings};
use serde_json::Value;

/// The four functions, one route each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Route {
    /// `POST /events`: track, page, screen, identify (Engage identifies too), group.
    Events,
    /// `POST /alias`: alias → usermap / unmap.
    Alias,
    /// `POST /deletions`: Segment `delete` → User Privacy API.
    Deletions,
    /// `POST /engage`: Engage audience and computed-trait identifies and tracks.
    Engage,
}

impl Route {
    pub fn path(self) -> &'static str {
        match self {
            Route::Events => "/events",
            Route::Alias => "/alias",
            Route::Deletions => "/deletions",
            Route::Engage => "/engage",
        }
    }

    /// The Segment call types this route handles; others are answered 501.
    pub fn accepts(self, call: Call) -> bool {
        match self {
            Route::Events => matches!(
                call,
                Call::Track | Call::Page | Call::Screen | Call::Identify | Call::Group
            ),
            Route::Alias => call == Call::Alias,
            Route::Deletions => call == Call::Delete,
            Route::Engage => matches!(call, Call::Identify | Call::Track),
        }
    }
}

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
    pub route: Route,
    /// Validated once at start-up; the API key from the ingest secret is set per request.
    pub settings: Settings,
    pub ingest_secret_id: String,
    pub privacy_secret_id: Option<String>,
    pub client: ClientConfig,
    /// Answer Segment within this (its timeout is 5 s).
    pub response_budget: Duration,
    pub secret_ttl: Duration,
    /// `ALLOW_UNAUTHENTICATED=true`: the API is protected otherwise (IAM); no credentials needed.
    pub allow_unauthenticated: bool,
    /// Log full payloads (debugging only; off by default).
    pub log_payloads: bool,
    /// `requester` of Amplitude deletion requests (`DELETION_REQUESTER`; default "segment").
    pub deletion_requester: Option<String>,
}

/// Stands in for the API key while settings are validated at start-up.
const KEY_PLACEHOLDER: &str = "from-the-ingest-secret";

impl FunctionConfig {
    pub fn from_env(route: Route) -> Result<Self, ConfigError> {
        Self::from_vars(route, |name| std::env::var(name).ok())
    }

    /// Reads the variables through `var` (tests pass a map).
    pub fn from_vars(
        route: Route,
        var: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let get = |name: &'static str| var(name).filter(|v| !v.trim().is_empty());
        let settings = settings(get("SEGMENT_SETTINGS"))?;
        let ingest_secret_id =
            get("INGEST_SECRET_ID").ok_or(ConfigError::Missing("INGEST_SECRET_ID"))?;
        let privacy_secret_id = get("PRIVACY_SECRET_ID");
        let number = |name: &'static str, default: u64| -> Result<u64, ConfigError> {
            get(name).map_or(Ok(default), |v| {
                v.trim().parse().map_err(|_| ConfigError::Invalid {
                    name,
                    reason: format!("{v:?} is not a whole number"),
                })
            })
        };
        let flag = |name: &'static str| -> Result<bool, ConfigError> {
            match get(name).as_deref().map(str::trim) {
                None | Some("false") | Some("0") => Ok(false),
                Some("true") | Some("1") => Ok(true),
                Some(other) => Err(ConfigError::Invalid {
                    name,
                    reason: format!("{other:?} is not true or false"),
                }),
            }
        };
        let mut client = ClientConfig {
            base_url: get("AMPLITUDE_BASE_URL"),
            ..ClientConfig::default()
        };
        if let Some(n) = get("AMPLITUDE_MIN_ID_LENGTH") {
            client.min_id_length = Some(n.trim().parse().map_err(|_| ConfigError::Invalid {
                name: "AMPLITUDE_MIN_ID_LENGTH",
                reason: format!("{n:?} is not a whole number"),
            })?);
        }
        Ok(FunctionConfig {
            route,
            settings,
            ingest_secret_id,
            privacy_secret_id,
            client,
            response_budget: Duration::from_millis(number("RESPONSE_BUDGET_MS", 4500)?),
            secret_ttl: Duration::from_secs(number("SECRET_TTL_SECONDS", 300)?),
            allow_unauthenticated: flag("ALLOW_UNAUTHENTICATED")?,
            log_payloads: flag("LOG_PAYLOADS")?,
            deletion_requester: get("DELETION_REQUESTER"),
        })
    }
}

/// Segment's settings JSON without its secrets: `apiKey` and `secretKey` come from Secrets
/// Manager, so any value here is ignored.
fn settings(json: Option<String>) -> Result<Settings, ConfigError> {
    let invalid = |reason: String| ConfigError::Invalid {
        name: "SEGMENT_SETTINGS",
        reason,
    };
    let mut value: Value = match json {
        None => Value::Object(Default::default()),
        Some(text) => {
            serde_json::from_str(&text).map_err(|e| invalid(format!("not JSON ({e})")))?
        }
    };
    let obj = value
        .as_object_mut()
        .ok_or_else(|| invalid("must be a JSON object".into()))?;
    obj.insert("apiKey".into(), Value::from(KEY_PLACEHOLDER));
    obj.remove("secretKey");
    Settings::from_json(&value).map_err(|e| invalid(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn vars(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn reads_every_variable_with_defaults() {
        let c = FunctionConfig::from_vars(
            Route::Events,
            vars(&[
                ("INGEST_SECRET_ID", "ingest"),
                (
                    "SEGMENT_SETTINGS",
                    r#"{"trackAllPages": true, "apiKey": "ignored"}"#,
                ),
            ]),
        )
        .unwrap();
        assert!(c.settings.track_all_pages);
        assert_eq!(c.settings.api_key(), KEY_PLACEHOLDER);
        assert_eq!(c.response_budget, Duration::from_millis(4500));
        assert!(!c.allow_unauthenticated);
    }

    #[test]
    fn errors_name_the_variable() {
        let err = |pairs: &[(&str, &str)]| {
            FunctionConfig::from_vars(Route::Events, vars(pairs))
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
}
